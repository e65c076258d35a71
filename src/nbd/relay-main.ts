/**
 * The relay process: `relay-main SOCKET EXPORT`. Serves one NBD client on its stdin/stdout
 * (a socket: nbdfuse's `--command` mode) with the export EXPORT of the daemon listening on
 * SOCKET, through a `RelayClient` that reconnects when the daemon restarts. It ends when its
 * client goes (nbdfuse unmounted); its log lines (JSON) go to stderr.
 */

import net from 'node:net';
import { serveConnection } from './connection.js';
import { staticRegistry } from './export.js';
import { RelayClient } from './relay-client.js';
import { RelayExport } from './relay-export.js';

/** How long the first connection may take, and how long a reconnection is tried. */
const FIRST_CONNECT_MS = 30_000;
const RECONNECT_MS = 300_000;

function log(event: string, fields: Record<string, unknown> = {}): void {
  const line = {
    time: new Date().toISOString(),
    event: `relay-${event}`,
    pid: process.pid,
    ...fields,
  };
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [socketPath, exportName] = argv;
  if (socketPath === undefined || exportName === undefined) {
    process.stderr.write('usage: relay-main SOCKET EXPORT\n');
    return 2;
  }
  const client = await RelayClient.open(socketPath, exportName, FIRST_CONNECT_MS, {
    reconnectMs: RECONNECT_MS,
    log,
  });
  log('connected', { export: exportName, size: client.info.size });
  const stream = new net.Socket({ fd: 0, readable: true, writable: true });
  const connection = serveConnection(stream, {
    registry: staticRegistry([new RelayExport(exportName, client)]),
  });
  await connection.closed;
  await client.close();
  log('done', { export: exportName });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    log('failed', { error: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  },
);
