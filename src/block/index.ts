/**
 * block: the BlockDevice interface (read, write, flush, discard, size) and its
 * implementations: a file (loop mode), a block device (direct mode), memory (tests), and a
 * linear concatenation of segments. Imports only util. Nothing is exported yet.
 */

export {};
