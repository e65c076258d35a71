/**
 * mount: a served thin device as a kernel block device and a mounted filesystem: nbdfuse +
 * losetup where the kernel has no nbd module, nbd-client where it has; the mount table;
 * mkfs, filesystem growth and identification. Imports util only.
 */

export {};
