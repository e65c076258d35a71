/**
 * A private dockerd for tests: its own --data-root, --exec-root, API socket, pid file and
 * containerd namespaces under a temp directory, no networking (`--iptables=false
 * --bridge=none`), started by the test and always stopped, with every mount it left under
 * its data root undone, also when the test failed. Debian's docker.io (dockerd 20.10) runs
 * containers on this machine; graphdriver plugins need `--experimental`.
 *
 * `docker(...)` runs the real docker CLI against it.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { requireTool, runTool, type ToolResult } from './daemon.js';

export interface DockerdOptions {
  /** The storage driver (`vfs`, or a plugin's name). */
  storageDriver: string;
  storageOpts?: readonly string[];
  experimental?: boolean;
  /** How long to wait for the API socket. */
  startTimeoutMs?: number;
}

export class PrivateDockerd {
  readonly socket: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  private child: ChildProcess | undefined;
  private logText = '';

  constructor(
    readonly dir: string,
    readonly options: DockerdOptions,
  ) {
    this.socket = path.join(dir, 'docker.sock');
    this.dataRoot = path.join(dir, 'data');
    this.execRoot = path.join(dir, 'exec');
  }

  /** A dockerd on `vfs` under `dir`, started. */
  static async start(dir: string): Promise<PrivateDockerd> {
    const dockerd = new PrivateDockerd(dir, { storageDriver: 'vfs' });
    await dockerd.start();
    return dockerd;
  }

  /** `docker ARGS` that must succeed; its stdout. */
  run(...args: string[]): Promise<string> {
    return this.dockerOk(args);
  }

  /** dockerd's output so far (for failure messages). */
  get log(): string {
    return this.logText;
  }

  async start(): Promise<void> {
    const dockerd = await requireTool('dockerd', 'docker.io');
    await mkdir(this.dir, { recursive: true });
    const config = path.join(this.dir, 'daemon.json');
    await writeFile(
      config,
      JSON.stringify({
        experimental: this.options.experimental ?? false,
        'storage-driver': this.options.storageDriver,
        'storage-opts': this.options.storageOpts ?? [],
      }),
    );
    const name = path.basename(this.dir).replace(/[^a-z0-9]/gi, '');
    this.child = spawn(
      dockerd,
      [
        '--config-file',
        config,
        '--data-root',
        this.dataRoot,
        '--exec-root',
        this.execRoot,
        '--pidfile',
        path.join(this.dir, 'docker.pid'),
        '-H',
        `unix://${this.socket}`,
        '--iptables=false',
        '--ip6tables=false',
        '--bridge=none',
        '--containerd-namespace',
        `t${name}`,
        '--containerd-plugins-namespace',
        `t${name}p`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child.stdout?.on('data', (c: Buffer) => this.appendLog(c));
    this.child.stderr?.on('data', (c: Buffer) => this.appendLog(c));
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 60_000);
    const exited = once(this.child, 'exit');
    for (;;) {
      const ready = await this.ping();
      if (ready) return;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`dockerd exited at start:\n${this.logText.slice(-4000)}`);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`dockerd did not answer within the timeout:\n${this.logText.slice(-4000)}`);
      }
      await Promise.race([new Promise((r) => setTimeout(r, 250)), exited]);
    }
  }

  /** Runs the docker CLI against this daemon; resolves with the result whatever its status. */
  async docker(args: readonly string[], timeoutMs = 120_000): Promise<ToolResult> {
    const docker = await requireTool('docker', 'docker.io');
    return runTool(docker, ['-H', `unix://${this.socket}`, ...args], { timeoutMs });
  }

  /** As `docker`, but a non-zero status is an Error with docker's stderr. */
  async dockerOk(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.docker(args, timeoutMs);
    if (r.status !== 0) {
      throw new Error(`docker ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
    }
    return r.stdout;
  }

  /** Stops dockerd (SIGTERM, then SIGKILL after 30 s) and undoes mounts under its data root. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    this.child = undefined;
    await unmountUnder(this.dir);
  }

  /** Stops and removes everything under its directory. */
  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  private async ping(): Promise<boolean> {
    try {
      await access(this.socket);
    } catch {
      return false;
    }
    const r = await this.docker(['version', '--format', '{{.Server.Version}}'], 10_000).catch(
      () => undefined,
    );
    return r?.status === 0;
  }

  private appendLog(chunk: Buffer): void {
    this.logText += chunk.toString('utf8');
    if (this.logText.length > 1_000_000) this.logText = this.logText.slice(-500_000);
  }
}

/** Lazily unmounts every mount point at or below `dir`, deepest first. */
export async function unmountUnder(dir: string): Promise<void> {
  const mounts = await mountPointsUnder(dir);
  if (mounts.length === 0) return;
  const umount = await requireTool('umount', 'mount');
  for (const target of mounts.sort((a, b) => b.length - a.length)) {
    await runTool(umount, ['-l', target]);
  }
}

/** Mount points at or below `dir`, from /proc/self/mountinfo (octal escapes undone). */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) =>
      p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8))),
    )
    .filter((p) => p === dir || p.startsWith(prefix));
}
