/**
 * thin: dm-thin pool metadata in the kernel's on-disk format: superblock, device details,
 * the two-level mapping tree, the metadata snapshot. Imports pdata, block and util.
 * Nothing is exported yet.
 */

export {};
