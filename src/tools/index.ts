/**
 * tools: offline metadata tools compatible with thin-provisioning-tools: check, dump and
 * restore (thin_dump XML), repair, ls. Imports thin, pdata, block and util. Nothing is
 * exported yet.
 */

export {};
