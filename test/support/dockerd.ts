/**
 * A private dockerd for tests (Debian's docker.io): its own data root, exec root, pid file
 * and API socket under a test folder, no iptables, no bridge, the vfs storage driver, so it
 * touches nothing of the machine's Docker. `stop()` ends it (SIGTERM, then SIGKILL) and
 * waits for it and its containerd to go, then unmounts what it left under its folder.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTool, runTool, runToolOk } from './daemon.js';

export class PrivateDockerd {
  log = '';

  private constructor(
    readonly dir: string,
    readonly socket: string,
    private readonly child: ChildProcess,
    private readonly docker: string,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      this.log += s;
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      this.log += s;
    });
  }

  /** Starts dockerd under `dir` and waits (up to 60 s) until it answers. */
  static async start(dir: string): Promise<PrivateDockerd> {
    const dockerd = await requireTool('dockerd', 'docker.io');
    const docker = await requireTool('docker', 'docker.io');
    await mkdir(dir, { recursive: true });
    const socket = path.join(dir, 'docker.sock');
    const args = [
      '--data-root',
      path.join(dir, 'data'),
      '--exec-root',
      path.join(dir, 'exec'),
      '--pidfile',
      path.join(dir, 'docker.pid'),
      '-H',
      `unix://${socket}`,
      '--iptables=false',
      '--bridge=none',
      '-s',
      'vfs',
    ];
    const child = spawn(dockerd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new PrivateDockerd(dir, socket, child, docker);
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(250)) {
      if (child.exitCode !== null) throw new Error(`dockerd exited: ${d.log}`);
      if ((await runTool(docker, ['-H', `unix://${socket}`, 'version'])).status === 0) return d;
    }
    await d.stop();
    throw new Error(`dockerd did not answer within 60 s: ${d.log}`);
  }

  /** `docker -H … args`, which must succeed; its stdout. */
  run(...args: string[]): Promise<string> {
    return runToolOk(this.docker, ['-H', `unix://${this.socket}`, ...args], { timeoutMs: 120_000 });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    await this.unmountLeftovers();
    await rm(path.join(this.dir, 'data'), { recursive: true, force: true });
  }

  /** dockerd bind-mounts its data root onto itself (and may leave more): unmount them. */
  private async unmountLeftovers(): Promise<void> {
    const umount = await requireTool('umount', 'mount');
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .map((line) => line.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(`${this.dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await runToolOk(umount, [m]);
  }
}
