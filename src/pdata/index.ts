/**
 * pdata: persistent data, as the kernel's persistent-data library. Checksums and
 * validators, a bounded block cache, the transaction manager (shadowing, two-phase commit),
 * the generic btree, and the data and metadata space maps. Knows nothing of thin devices.
 * Imports block and util. Nothing is exported yet.
 */

export {};
