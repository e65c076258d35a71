/**
 * The intent of a device replacement (`DeviceSet.replaceDevice`): metadata/replace-metadata
 * says that device `name` is to take the thin device of `replacement`, and which thin id
 * `name` had. It is written before anything changes and removed once the replacement is
 * done, so a crash anywhere in between leaves the file behind, and the next open finishes
 * the replacement (see `DeviceSet.finishReplacement`). The replacement is never undone:
 * its new content is complete before the intent is written.
 */

import path from 'node:path';
import { readStateFile, removeStateFile, writeStateFile } from './state-files.js';
import { decodeReplace, encodeReplace, REPLACE_FILE, type ReplaceRecord } from './state-records.js';

export class ReplaceLog {
  readonly file: string;

  constructor(metadataDir: string) {
    this.file = path.join(metadataDir, REPLACE_FILE);
  }

  open(record: ReplaceRecord): Promise<void> {
    return writeStateFile(this.file, encodeReplace(record));
  }

  close(): Promise<void> {
    return removeStateFile(this.file);
  }

  /** The replacement a crash left unfinished, if any. */
  async pending(): Promise<ReplaceRecord | undefined> {
    const json = await readStateFile(this.file);
    return json === undefined ? undefined : decodeReplace(this.file, json);
  }
}
