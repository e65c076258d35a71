/**
 * `thinp daemon`: serves the root's devices over NBD and the control API until SIGINT or
 * SIGTERM. The CLI may not import the daemon layer, so it launches the daemon process
 * (dist/daemon/main.js) with the configuration it resolved, passes its output through,
 * forwards the signals, and exits when it does.
 */

import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import {
  type Config,
  DEFAULT_DOCKER_PLUGIN_SOCKET,
  DEFAULT_SNAPSHOTTER_SOCKET,
} from '../../config/index.js';
import { InternalError } from '../../util/index.js';
import { type ListenAddress, listenAddress } from '../arguments.js';
import { commandConfig } from '../context.js';
import type { CliIo } from '../io.js';

interface DaemonCommandOptions {
  nbd?: ListenAddress[];
  metrics?: ListenAddress;
  dockerPlugin?: string | true;
  containerdSnapshotter?: string | true;
  exitAfterStart?: boolean;
}

export function addDaemonCommand(program: Command, io: CliIo): void {
  program
    .command('daemon')
    .description('serve every device over NBD and the control API on ROOT/thinp.sock')
    .addOption(
      new Option(
        '--nbd <address>',
        'NBD listener, repeatable (default: unix:ROOT/nbd.sock)',
      ).argParser((value: string, previous: ListenAddress[] | undefined) => [
        ...(previous ?? []),
        listenAddress(value),
      ]),
    )
    .addOption(
      new Option(
        '--metrics <address>',
        'Prometheus metrics listener, e.g. tcp:127.0.0.1:9323',
      ).argParser(listenAddress),
    )
    .option(
      '--docker-plugin [path]',
      `serve Docker's graphdriver plugin (storage driver "thinp") on this socket (default ${DEFAULT_DOCKER_PLUGIN_SOCKET})`,
    )
    .option(
      '--containerd-snapshotter [path]',
      `serve containerd's snapshot service (proxy plugin) on this socket (default ${DEFAULT_SNAPSHOTTER_SOCKET})`,
    )
    .option(
      '--exit-after-start',
      'start, print where it serves, check NBD, stop and exit (also THINP_DAEMON_SMOKE=1)',
    )
    .action(async (options: DaemonCommandOptions, self: Command) => {
      const config = await commandConfig(self, io);
      const launch = launchOf(config, options, io.env.THINP_DAEMON_SMOKE === '1');
      const status = await runDaemonProcess(JSON.stringify(launch), io);
      if (status !== 0) {
        throw new InternalError(`the daemon stopped with status ${status}`, {
          hint: 'see its messages above',
        });
      }
    });
}

function launchOf(config: Config, options: DaemonCommandOptions, smoke: boolean): unknown {
  const metrics = options.metrics;
  if (metrics?.kind === 'unix') {
    throw new InternalError('--metrics takes a TCP address', {
      hint: 'give --metrics tcp:127.0.0.1:9323',
    });
  }
  return {
    config,
    nbd: (options.nbd ?? []).map((a) =>
      a.kind === 'unix' ? { path: a.path } : { host: a.host, port: a.port },
    ),
    ...(metrics === undefined ? {} : { metrics: { host: metrics.host, port: metrics.port } }),
    ...socketOption('dockerPlugin', options.dockerPlugin, DEFAULT_DOCKER_PLUGIN_SOCKET),
    ...socketOption(
      'containerdSnapshotter',
      options.containerdSnapshotter,
      DEFAULT_SNAPSHOTTER_SOCKET,
    ),
    exitAfterStart: options.exitAfterStart === true || smoke,
    stopWhenStdinEnds: true,
  };
}

/** `--flag` alone means the default socket; `--flag PATH` that path (made absolute). */
function socketOption(
  key: string,
  value: string | true | undefined,
  fallback: string,
): Record<string, string> {
  if (value === undefined) return {};
  return { [key]: value === true ? fallback : path.resolve(value) };
}

/** Runs the daemon process to its end, forwarding SIGINT and SIGTERM; resolves its status. */
async function runDaemonProcess(launch: string, io: CliIo): Promise<number> {
  const { script, execArgv } = await daemonScript();
  // The daemon stops when this pipe closes, so it never outlives this process.
  const child = spawn(process.execPath, [...execArgv, script, launch], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: io.env,
  });
  child.stdin.on('error', () => undefined);
  child.stdout.setEncoding('utf8').on('data', (s: string) => io.stdout.write(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => io.stderr.write(s));
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
    });
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
  }
}

/** dist/daemon/main.js next to this build; from the sources (tests), main.ts through tsx. */
async function daemonScript(): Promise<{ script: string; execArgv: string[] }> {
  const built = fileURLToPath(new URL('../../daemon/main.js', import.meta.url));
  try {
    await access(built);
    return { script: built, execArgv: [] };
  } catch {
    const source = fileURLToPath(new URL('../../daemon/main.ts', import.meta.url));
    return { script: source, execArgv: ['--import', 'tsx'] };
  }
}
