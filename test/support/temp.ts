import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

/**
 * A fresh directory under the system's temp folder, removed after the test file's tests.
 * Call it at the top level of a test file: an `after` registered inside a `before` hook
 * would run as soon as that hook ends.
 */
export async function tempDir(prefix = 'thinp-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
