/**
 * nbd: an NBD server (newstyle fixed handshake, structured replies, block status) over an
 * `Export` interface; it never imports the pool. Imports only util. Nothing is exported yet.
 */

export {};
