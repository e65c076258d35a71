/**
 * nbd: an NBD server (newstyle fixed handshake, structured replies, block status) over an
 * `Export` interface; it never imports the pool. Imports only util.
 *
 * `NbdServer` listens on UNIX sockets and TCP ports; `serveConnection` serves one client over
 * any Duplex (tests and fuzzers drive it in memory). `daemon/` adapts a thin device to an
 * `Export` and hands the server a registry of them. The wire constants and codecs are public
 * so that tests and tools can speak the protocol too.
 */

export {
  type ConnectionOptions,
  type ConnectionStatus,
  NbdConnection,
  STATUS,
  serveConnection,
} from './connection.js';
export { toNbdErrno } from './errno.js';
export {
  type Export,
  type ExportListing,
  type ExportRegistry,
  type Extent,
  staticRegistry,
} from './export.js';
export { blockSizes, MAX_PAYLOAD, preferredBlockSizeFor, transmissionFlags } from './flags.js';
export { Framer, type FrameSink, type Need } from './framer.js';
export { ALLOCATION_CONTEXT_ID, MAX_OPTION_DATA, type Negotiated } from './handshake.js';
export { type NbdLog, type NbdLogLevel, silentLog } from './log.js';
export { ProtocolError } from './protocol-error.js';
export { RelayClient, type RelayClientOptions } from './relay-client.js';
export { relayCommand } from './relay-command.js';
export { RelayExport } from './relay-export.js';
export { type ListenAddress, NbdServer, type NbdServerOptions } from './server.js';
export { type Rejection, validateRequest } from './validate-request.js';
export * as wire from './wire.js';
