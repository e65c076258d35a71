/**
 * A private containerd for tests (Debian's containerd 1.6): its own root, state, socket and
 * config under a test folder, CRI disabled, with thinp's snapshotter as a `[proxy_plugins]`
 * entry; started by the test and always stopped, with its mounts undone. `ctr(...)` runs the
 * real `ctr` against it. Also containerd's snapshotter conformance suite, built offline from
 * Debian's Go packages by ../shared/tools/snapshotter-conformance/build.sh into a writable
 * folder (CONFORMANCE_BIN_DIR, by default under the system temp folder).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { requireTool, runTool, type ToolResult } from './daemon.js';
import { unmountUnder } from './dockerd.js';

/** The suite's sources: shared/ beside the repository (THINP_SHARED_DIR overrides it). */
export const CONFORMANCE_DIR = path.join(
  process.env.THINP_SHARED_DIR ?? path.resolve('..', 'shared'),
  'tools',
  'snapshotter-conformance',
);

export class PrivateContainerd {
  readonly socket: string;
  /**
   * Its containerd namespace, unique to the instance: runc keeps container state in
   * /run/containerd/runc/<namespace> whatever containerd's root, so a shared name would
   * collide with a run that was killed.
   */
  readonly namespace: string;
  private child: ChildProcess | undefined;
  private output = '';

  constructor(
    readonly dir: string,
    /** Proxy snapshotters: name → socket. */
    readonly snapshotters: Record<string, string>,
  ) {
    this.socket = path.join(dir, 'containerd.sock');
    this.namespace = `thinp-test-${path.basename(path.dirname(dir)).replace(/[^A-Za-z0-9-]/g, '')}`;
  }

  get log(): string {
    return this.output;
  }

  async start(): Promise<void> {
    const containerd = await requireTool('containerd', 'containerd');
    await mkdir(this.dir, { recursive: true });
    const config = path.join(this.dir, 'config.toml');
    const proxies = Object.entries(this.snapshotters)
      .map(
        ([name, socket]) => `[proxy_plugins.${name}]\n  type = "snapshot"\n  address = "${socket}"`,
      )
      .join('\n');
    await writeFile(
      config,
      [
        'version = 2',
        `root = "${path.join(this.dir, 'root')}"`,
        `state = "${path.join(this.dir, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${this.socket}"`,
        '[ttrpc]',
        `  address = "${this.socket}.ttrpc"`,
        proxies,
        '',
      ].join('\n'),
    );
    this.child = spawn(containerd, ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.on('data', (c: Buffer) => this.append(c));
    this.child.stderr?.on('data', (c: Buffer) => this.append(c));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const up = await access(this.socket).then(
        async () => (await this.ctr(['version'], 10_000)).status === 0,
        () => false,
      );
      if (up) return;
      if (this.child.exitCode !== null) {
        throw new Error(`containerd exited at start:\n${this.output.slice(-3000)}`);
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`containerd did not answer:\n${this.output.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** `ctr -a SOCKET -n NAMESPACE ARGS`; resolves whatever its status. */
  async ctr(args: readonly string[], timeoutMs = 120_000): Promise<ToolResult> {
    const ctr = await requireTool('ctr', 'containerd');
    return runTool(ctr, ['-a', this.socket, '-n', this.namespace, ...args], { timeoutMs });
  }

  async ctrOk(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.ctr(args, timeoutMs);
    if (r.status !== 0) throw new Error(`ctr ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  }

  /** SIGTERM (SIGKILL after 20 s); running shims are left, as after a containerd restart. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    this.child = undefined;
  }

  /** Stops containerd, kills the shims it started, undoes mounts, removes its folder. */
  async destroy(): Promise<void> {
    await this.stop();
    const pkill = await requireTool('pkill', 'procps');
    await runTool(pkill, ['-KILL', '-f', `containerd-shim.*${this.socket}`]);
    await unmountUnder(this.dir);
    await rm(path.join('/run/containerd/runc', this.namespace), { recursive: true, force: true });
    await rm(this.dir, { recursive: true, force: true });
  }

  private append(chunk: Buffer): void {
    this.output += chunk.toString('utf8');
    if (this.output.length > 1_000_000) this.output = this.output.slice(-500_000);
  }
}

/** Where the conformance binary is built: CONFORMANCE_BIN_DIR, else a temp folder. */
export function conformanceBinDir(): string {
  return process.env.CONFORMANCE_BIN_DIR ?? path.join(os.tmpdir(), 'thinp-snapshotter-conformance');
}

/** Builds the suite when its binary is missing (about 2 minutes cold, offline). */
export async function buildConformance(): Promise<void> {
  await access(path.join(CONFORMANCE_DIR, 'build.sh')).catch(() => {
    throw new Error(
      `containerd's conformance harness is not at ${CONFORMANCE_DIR}: it comes with shared/ ` +
        'beside the repository; set THINP_SHARED_DIR to the folder that holds tools/',
    );
  });
  const bin = path.join(conformanceBinDir(), 'snapshotter-conformance.test');
  if (
    await access(bin).then(
      () => true,
      () => false,
    )
  )
    return;
  await mkdir(conformanceBinDir(), { recursive: true });
  const r = await runScript(path.join(CONFORMANCE_DIR, 'build.sh'), [], 900_000);
  if (r.status !== 0) throw new Error(`the conformance suite did not build:\n${r.stderr}`);
}

/** Runs the suite against `socket` as snapshotter `name`; returns its summary line. */
export async function runConformance(
  socket: string,
  name: string,
  extra: readonly string[] = [],
): Promise<{ summary: string; output: string }> {
  const r = await runScript(
    path.join(CONFORMANCE_DIR, 'run.sh'),
    [socket, name, ...extra],
    1_500_000,
  );
  const lines = r.stdout.trim().split('\n');
  return { summary: lines.at(-1) ?? '', output: `${r.stdout}\n${r.stderr}` };
}

async function runScript(
  script: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<ToolResult> {
  const bash = await requireTool('bash', 'bash');
  const child = spawn(bash, [script, ...args], {
    env: { ...process.env, CONFORMANCE_BIN_DIR: conformanceBinDir() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { status: code ?? 1, stdout, stderr };
}
