#!/usr/bin/env node
/**
 * The daemon process. `thinp daemon` starts it with one argument, a JSON `DaemonLaunch`
 * (the configuration the CLI resolved and the listeners asked for), so that the CLI never
 * imports this layer. It prints the root's `thinp info` section and where it serves, then
 * serves until SIGINT or SIGTERM. With `exitAfterStart` it checks that its NBD socket
 * greets a client, stops cleanly and exits 0: a smoke test for CI.
 *
 * Exit status: 0 after a clean stop, 1 when the start or the stop failed.
 */

import { dockerInfo, formatDockerInfo } from '../driver/index.js';
import { ThinpError } from '../util/index.js';
import { type DaemonHandle, startDaemon, stopOnSignals } from './daemon.js';
import { type DaemonLaunch, decodeLaunch, describeAddress } from './launch.js';
import { checkNbdGreeting } from './smoke.js';

async function main(argv: readonly string[]): Promise<number> {
  const launch = decodeLaunch(argv[0]);
  const handle = await startDaemon(launch.config, {
    ...(launch.nbd === undefined ? {} : { nbd: launch.nbd }),
    ...(launch.metrics === undefined ? {} : { metrics: launch.metrics }),
    ...(launch.dockerPlugin === undefined ? {} : { dockerPlugin: launch.dockerPlugin }),
    ...(launch.containerdSnapshotter === undefined
      ? {}
      : { containerdSnapshotter: launch.containerdSnapshotter }),
  });
  const detach = stopOnSignals(handle);
  if (launch.stopWhenStdinEnds === true) stopWhenStdinEnds(handle);
  await printBanner(handle);
  if (launch.exitAfterStart === true) await smoke(handle, launch);
  await handle.stopped;
  detach();
  return 0;
}

/** The launching `thinp daemon` is gone (its pipe closed): stop as on SIGTERM. */
function stopWhenStdinEnds(handle: DaemonHandle): void {
  const stop = () => {
    handle.stop().catch(() => undefined);
  };
  process.stdin.once('end', stop);
  process.stdin.once('close', stop);
  process.stdin.once('error', stop);
  process.stdin.resume();
  handle.stopped.then(
    () => process.stdin.destroy(),
    () => process.stdin.destroy(),
  );
}

async function printBanner(handle: DaemonHandle): Promise<void> {
  const info = await dockerInfo(handle.config, handle.deviceSet);
  const lines = [
    formatDockerInfo(info).trimEnd(),
    '',
    ...handle.nbdAddresses.map((a) => `Serving NBD on ${describeAddress(a)}`),
    `Serving the control API on unix:${handle.controlSocket}`,
    ...(handle.metricsAddress === undefined
      ? []
      : [
          `Serving metrics on http://${handle.metricsAddress.host}:${handle.metricsAddress.port}/metrics`,
        ]),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

async function smoke(handle: DaemonHandle, _launch: DaemonLaunch): Promise<void> {
  try {
    await checkNbdGreeting(handle.config.layout.nbdSocket);
    process.stdout.write('NBD handshake: ok\n');
  } finally {
    await handle.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const text = err instanceof ThinpError ? err.describe() : String(err);
    process.stderr.write(`thinp: ${text}\n`);
    process.exitCode = 1;
  },
);
