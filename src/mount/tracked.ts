/**
 * The objects callers hold: an `Attachment` and a `MountedFs` over one shared record and its
 * state file. Both are also rebuilt from a record by `findMounts`, so a restarted daemon
 * unmounts an adopted filesystem exactly as it would one it made itself.
 */

import { BusyError } from '../util/index.js';
import { teardown } from './teardown.js';
import type { Attachment, AttachmentRecord, FsType, Lingering, MountedFs } from './types.js';

export class TrackedAttachment implements Attachment {
  constructor(
    readonly record: AttachmentRecord,
    readonly stateFile: string,
    readonly searchPath: string | undefined,
  ) {}

  get devicePath(): string {
    return this.record.devicePath;
  }

  get exportName(): string {
    return this.record.exportName;
  }

  get readOnly(): boolean {
    return this.record.readOnly;
  }

  /** Refuses while a filesystem of ours is mounted on it: unmount that first. */
  async detach(): Promise<Lingering | undefined> {
    if (this.record.target !== undefined) {
      throw new BusyError(
        `${this.record.devicePath} (export ${this.exportName}) is mounted at ${this.record.target}`,
        { hint: 'unmount the filesystem first (MountedFs.unmount)' },
      );
    }
    return teardown(this.record, this.stateFile, { searchPath: this.searchPath });
  }
}

export class TrackedMount implements MountedFs {
  constructor(
    readonly attachment: TrackedAttachment,
    readonly target: string,
    readonly type: FsType,
    /** The `-o` list it was mounted with, to mount it again the same way. */
    readonly options: readonly string[],
  ) {}

  async unmount(): Promise<Lingering | undefined> {
    const a = this.attachment;
    return teardown(a.record, a.stateFile, { searchPath: a.searchPath });
  }
}
