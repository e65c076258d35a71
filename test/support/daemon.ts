/**
 * The thinp daemon on a temp root, for tests that drive it with real clients: in this
 * process through `startDaemon`, or as a real process (`node dist/cli/main.js daemon`) that
 * a test can `kill -9`. Also the external programs those tests run: `requireTool` fails
 * loudly, naming the Debian package, when one is missing (tests never skip), and `runTool`
 * runs one to completion whatever its exit status. `NbdClient` is a small well-behaved
 * client over the daemon's real socket, with many requests in flight.
 */

import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/index.js';
import { type DaemonHandle, startDaemon } from '../../src/daemon/index.js';
import { wire } from '../../src/nbd/index.js';
import { findOnPath } from '../../src/util/index.js';
import { RawClient, type Reply } from '../unit/nbd/harness.js';
import { THINP_BIN } from './cli-process.js';

const execFileAsync = promisify(execFile);

/** A sparse 1 GiB data file and 32 MiB of metadata; the checks on free space are off. */
export const DAEMON_POOL_OPTS: readonly string[] = [
  'dm.loopdatasize=1G',
  'dm.loopmetadatasize=32M',
  'dm.min_free_space=0%',
];

/** PATH, then the sbin folders a non-root PATH often lacks (losetup, mkfs.ext4, thin_check). */
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);

const found = new Map<string, Promise<string>>();

/** The absolute path of `program`, or an Error naming the Debian package to install. */
export function requireTool(program: string, debianPackage: string): Promise<string> {
  let location = found.get(program);
  if (location === undefined) {
    location = findOnPath(program, SEARCH_PATH).then((where) => {
      if (where !== undefined) return where;
      throw new Error(
        `${program} is not installed: it comes with the Debian package ${debianPackage}; ` +
          "run 'npm run deps:test'",
      );
    });
    found.set(program, location);
  }
  return location;
}

export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `file args` (a path from `requireTool`) asynchronously, so that this process keeps
 * serving NBD while the tool does I/O through it; resolves with the exit status whatever it
 * is, and rejects only when the tool could not run at all or `timeoutMs` passed.
 */
export async function runTool(
  file: string,
  args: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<ToolResult> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: options.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
    });
    return { status: 0, stdout, stderr };
  } catch (err) {
    const failure = err as { code?: unknown; killed?: boolean; stdout?: string; stderr?: string };
    if (failure.killed === true) {
      throw new Error(`${path.basename(file)} ${args.join(' ')} timed out`, { cause: err });
    }
    if (typeof failure.code !== 'number') throw err;
    return { status: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

/** Like `runTool`, but throws with the tool's stderr unless it exits 0. */
export async function runToolOk(
  file: string,
  args: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<string> {
  const result = await runTool(file, args, options);
  if (result.status !== 0) {
    throw new Error(
      `${path.basename(file)} ${args.join(' ')} exited with status ${result.status}: ` +
        (result.stderr.trim() || result.stdout.trim()),
    );
  }
  return result.stdout;
}

/** The NBD URI of device `name` served from `root`. */
export function nbdUri(root: string, name: string): string {
  return `nbd+unix:///${name}?socket=${path.join(root, 'nbd.sock')}`;
}

/** A connected client socket on `socketPath`. */
export function connectUnix(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

export interface InProcessDaemon {
  root: string;
  handle: DaemonHandle;
  /** The daemon's log lines (JSON), in order. */
  logs: string[];
  uri(name: string): string;
  stop(): Promise<void>;
}

/** `startDaemon` on `root` (created with a pool when it has none). */
export async function startInProcess(
  root: string,
  storageOpts: readonly string[] = DAEMON_POOL_OPTS,
): Promise<InProcessDaemon> {
  const config = await loadConfig({ root, storageOpts, env: { PATH: SEARCH_PATH } });
  const logs: string[] = [];
  const handle = await startDaemon(config, { log: (line) => logs.push(line) });
  return { root, handle, logs, uri: (name) => nbdUri(root, name), stop: () => handle.stop() };
}

/** What a daemon process printed and how it ended. */
export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * `node dist/cli/main.js --root R daemon` as a process. The CLI runs the daemon in a child
 * process of its own (dist/daemon/main.js), whose pid its `started` log line gives: `kill9()`
 * kills that one, which is the process holding the pool.
 */
export class DaemonProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<DaemonExit>;

  private constructor(
    readonly root: string,
    private readonly child: ReturnType<typeof spawn>,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      this.stdout += s;
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
    });
    this.exited = once(child, 'close').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
  }

  /**
   * Starts the daemon on `root` and resolves once it serves the control API. `pathFirst`
   * puts folders before the search path (a test's stand-ins for the programs it runs).
   */
  static async start(
    root: string,
    storageOpts: readonly string[] = DAEMON_POOL_OPTS,
    daemonArgs: readonly string[] = [],
    pathFirst: readonly string[] = [],
  ): Promise<DaemonProcess> {
    await access(THINP_BIN).catch(() => {
      throw new Error(`${THINP_BIN} is missing: run 'npm run build' (npm test does it first)`);
    });
    const args = [THINP_BIN, '--root', root];
    for (const o of storageOpts) args.push('--storage-opt', o);
    const child = spawn(process.execPath, [...args, 'daemon', ...daemonArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: [...pathFirst, SEARCH_PATH].join(path.delimiter) },
    });
    const daemon = new DaemonProcess(root, child);
    let ended = false;
    void daemon.exited.then(() => {
      ended = true;
    });
    const deadline = Date.now() + 20_000;
    while (!daemon.stdout.includes('Serving the control API') || daemon.pid === undefined) {
      if (ended || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(
          `the daemon did not start (${ended ? 'it exited' : 'timed out'}):\n${daemon.stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    return daemon;
  }

  /** The pid of the daemon process proper (not the CLI that launched it). */
  get pid(): number | undefined {
    for (const line of this.stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const record = JSON.parse(line) as { event?: unknown; pid?: unknown };
        if (record.event === 'started' && typeof record.pid === 'number') return record.pid;
      } catch {
        // a partial line: not yet
      }
    }
    return undefined;
  }

  get controlSocket(): string {
    return path.join(this.root, 'thinp.sock');
  }

  get nbdSocket(): string {
    return path.join(this.root, 'nbd.sock');
  }

  /**
   * SIGKILL to the daemon process; resolves once the CLI wrapping it has reaped it and
   * exited (killing the CLI too would leave the daemon a zombie that nobody may reap).
   */
  async kill9(): Promise<DaemonExit> {
    const pid = this.pid;
    if (pid === undefined) this.child.kill('SIGKILL');
    else process.kill(pid, 'SIGKILL');
    return this.exited;
  }

  /** SIGTERM, a clean shutdown; resolves with how the CLI exited. */
  async stop(): Promise<DaemonExit> {
    this.child.kill('SIGTERM');
    return this.exited;
  }
}

/**
 * A well-behaved NBD client on a UNIX socket: fixed newstyle handshake and GO (simple
 * replies), then any number of requests in flight, each resolving with its own reply. Once
 * the connection ends, every pending and later request rejects.
 */
export class NbdClient {
  private readonly pending = new Map<bigint, (reply: Reply | Error) => void>();
  private nextHandle = 1n;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly raw: RawClient,
    readonly size: number,
    readonly flags: number,
  ) {
    void this.pump();
  }

  static async connect(socketPath: string, name: string): Promise<NbdClient> {
    const socket = await connectUnix(socketPath);
    const raw = new RawClient(socket);
    try {
      const { size, flags } = await raw.connect(name);
      return new NbdClient(socket, raw, size, flags);
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** Why the connection ended, once it has. */
  get ended(): Error | undefined {
    return this.failure;
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const reply = await this.raw.reply();
        const settle = this.pending.get(reply.handle);
        this.pending.delete(reply.handle);
        if (settle === undefined) throw new Error(`a reply to unknown handle ${reply.handle}`);
        settle(reply);
      }
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
      for (const settle of this.pending.values()) settle(this.failure);
      this.pending.clear();
      this.socket.destroy();
    }
  }

  /** Sends one request; resolves with its reply, whatever its error. */
  request(
    type: number,
    offset: number,
    length: number,
    options: { flags?: number; payload?: Buffer } = {},
  ): Promise<Reply> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const handle = this.nextHandle++;
    const replied = new Promise<Reply>((resolve, reject) => {
      this.pending.set(handle, (reply) =>
        reply instanceof Error ? reject(reply) : resolve(reply),
      );
    });
    this.raw.request({ type, flags: options.flags ?? 0, handle, offset, length }, options.payload);
    return replied;
  }

  /** Writes `data` at `offset`; rejects on an error reply. */
  async write(offset: number, data: Buffer, options: { fua?: boolean } = {}): Promise<void> {
    const flags = options.fua === true ? wire.CMD_FLAG.FUA : 0;
    const reply = await this.request(wire.CMD.WRITE, offset, data.length, { flags, payload: data });
    if (reply.error !== 0) throw new Error(`write at ${offset}: ${wire.nameOfErrno(reply.error)}`);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const reply = await this.request(wire.CMD.READ, offset, length);
    if (reply.error !== 0) throw new Error(`read at ${offset}: ${wire.nameOfErrno(reply.error)}`);
    if (reply.data === undefined) throw new Error(`read at ${offset}: no data`);
    return reply.data;
  }

  async flush(): Promise<void> {
    const reply = await this.request(wire.CMD.FLUSH, 0, 0);
    if (reply.error !== 0) throw new Error(`flush: ${wire.nameOfErrno(reply.error)}`);
  }

  /** NBD_CMD_DISC, then the socket ends. */
  async close(): Promise<void> {
    if (this.failure === undefined) {
      this.raw.request({ type: wire.CMD.DISC, flags: 0, handle: 0n, offset: 0, length: 0 });
      this.socket.end();
    }
    await new Promise<void>((resolve) => {
      if (this.socket.closed) resolve();
      else this.socket.once('close', () => resolve());
    });
  }
}
