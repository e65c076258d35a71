/**
 * archive: tar layers on plain directories, the way Docker's naive diff driver treats them:
 * apply a layer (whiteouts, hard links, devices, ownership, times, xattrs) with every entry
 * kept inside the root, diff a tree against its parent as a tar with whiteouts, list the
 * changes and their size. Imports util only.
 */

export {};
