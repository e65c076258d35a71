/**
 * pool: the thin pool's data path: reads, writes, discards and block status of thin
 * devices, allocate-on-demand, copy-on-write, block zeroing, the commit policy, the
 * no-space policy, free-space events, status and resize. Imports thin, block and util.
 * Nothing is exported yet.
 */

export {};
