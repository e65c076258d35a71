/**
 * The attacher for kernels without the nbd module (this machine): nbdfuse shows the export
 * as a file in a FUSE mount, and `losetup` makes a loop device of that file.
 *
 * nbdfuse runs detached (its own session, its output in a log file, no pipe to us), so it
 * outlives the daemon that started it. With a `relay` command, nbdfuse talks NBD over the
 * relay's stdin/stdout and the relay talks to the daemon's socket, reconnecting and replaying
 * when the daemon restarts; the relay is nbdfuse's child and ends with it. Without one,
 * nbdfuse connects to the socket itself and the attachment dies with the daemon.
 *
 * Steps, each recorded in the state file before it is taken: FUSE directory, nbdfuse (pid),
 * the FUSE file appears, loop device. A failure at any step tears down what was made.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { BusyError, crashPoint } from '../util/index.js';
import { MountError } from './errors.js';
import { exportLock } from './export-lock.js';
import { locate, runOk } from './programs.js';
import { keyOf, readRecord, stateFileOf, writeRecord } from './state-file.js';
import { childrenOf, processStart, waitFor } from './system.js';
import { teardown } from './teardown.js';
import { TrackedAttachment } from './tracked.js';
import type { Attacher, AttacherOptions, AttachmentRecord, AttachOptions } from './types.js';

/** How long nbdfuse (and the relay's first connection) may take to show the file. */
const START_TIMEOUT_MS = 30_000;

export class NbdfuseAttacher implements Attacher {
  readonly kind = 'nbdfuse' as const;

  constructor(private readonly options: AttacherOptions) {}

  attach(exportName: string, o: AttachOptions = {}): Promise<TrackedAttachment> {
    const stateFile = stateFileOf(this.options.stateDir, exportName);
    return exportLock.run(stateFile, () => this.attachLocked(exportName, stateFile, o));
  }

  private async attachLocked(
    exportName: string,
    stateFile: string,
    o: AttachOptions,
  ): Promise<TrackedAttachment> {
    const { stateDir } = this.options;
    const existing = await readRecord(stateFile);
    if (existing !== undefined) {
      throw new BusyError(`export ${exportName} is already attached (${existing.devicePath})`, {
        hint: `detach it first; after a crash, clean it with findMounts/cleanupStale (${stateFile})`,
      });
    }
    const key = keyOf(exportName);
    const fuseDir = path.join(stateDir, `${key}.fuse`);
    const record: AttachmentRecord = {
      version: 1,
      kind: 'nbdfuse',
      exportName,
      readOnly: o.readOnly === true,
      devicePath: '',
      fuseDir,
      fuseFile: path.join(fuseDir, 'nbd'),
      logFile: path.join(stateDir, `${key}.log`),
    };
    await writeRecord(stateFile, record);
    try {
      await this.startNbdfuse(record, stateFile);
      crashPoint('mount-nbdfuse-started');
      await this.attachLoop(record, stateFile);
    } catch (err) {
      await teardown(record, stateFile, { searchPath: this.options.searchPath }).catch((e) => {
        throw new AggregateError([err, e], `attaching ${exportName} failed, and so did cleanup`);
      });
      throw err;
    }
    return new TrackedAttachment(record, stateFile, this.options.searchPath);
  }

  /** nbdfuse's arguments: through the relay when there is one, else straight to the socket. */
  private nbdfuseArgs(record: AttachmentRecord): string[] {
    const ro = record.readOnly ? ['-r'] : [];
    const file = record.fuseFile as string;
    const relay = this.options.relay;
    if (relay === undefined) {
      return [
        ...ro,
        file,
        `nbd+unix:///${encodeURIComponent(record.exportName)}?socket=${this.options.nbdSocket}`,
      ];
    }
    return [...ro, file, '--command', ...relay(this.options.nbdSocket, record.exportName)];
  }

  private async startNbdfuse(record: AttachmentRecord, stateFile: string): Promise<void> {
    const fuseDir = record.fuseDir as string;
    const fuseFile = record.fuseFile as string;
    await mkdir(fuseDir, { recursive: true });
    const program = await locate('nbdfuse', this.options.searchPath);
    const log = await open(record.logFile as string, 'a');
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(program, this.nbdfuseArgs(record), {
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
        cwd: '/',
      });
      await once(child, 'spawn');
    } finally {
      await log.close();
    }
    child.unref();
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    record.pid = child.pid as number;
    record.pidStart = await processStart(record.pid);
    await writeRecord(stateFile, record);
    crashPoint('mount-nbdfuse-spawned');
    const shown = await waitFor(
      async () =>
        exited ||
        (await stat(fuseFile).then(
          () => true,
          () => false,
        )),
      START_TIMEOUT_MS,
    );
    if (exited || !shown) {
      const words = (await readFile(record.logFile as string, 'utf8').catch(() => '')).trim();
      throw new MountError(
        record.exportName,
        'nbdfuse',
        `${exited ? 'nbdfuse exited' : 'nbdfuse did not show the device'}: ${words.split('\n').slice(-3).join(' ')}`,
        { hint: 'check that the daemon runs and serves this device (thinp device list)' },
      );
    }
    const relay = (await childrenOf(record.pid))[0];
    if (relay !== undefined) {
      record.relayPid = relay;
      record.relayStart = await processStart(relay);
    }
    await writeRecord(stateFile, record);
  }

  private async attachLoop(record: AttachmentRecord, stateFile: string): Promise<void> {
    const ro = record.readOnly ? ['--read-only'] : [];
    const args = [...ro, '--find', '--show', record.fuseFile as string];
    const loop = (await runOk('losetup', args, record.exportName, this.options)).trim();
    if (!/^\/dev\/loop\d+$/.test(loop)) {
      throw new MountError(record.exportName, 'losetup', `unexpected output '${loop}'`);
    }
    crashPoint('mount-loop-attached');
    record.devicePath = loop;
    await writeRecord(stateFile, record);
  }
}
