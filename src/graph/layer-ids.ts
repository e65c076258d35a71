/**
 * Layer ids and the names derived from them. A layer id is a device name (device-names.ts
 * in driver/) that leaves room for a suffix, without '~', and not `base`. `<id>~apply` is
 * the scratch snapshot a tar is applied into before it replaces the layer's device; a
 * scratch device found at start-up was cut short by a crash and is removed.
 */

import path from 'node:path';
import { BASE_DEVICE } from '../driver/index.js';
import { BadInputError } from '../util/index.js';

const MAX_ID_BYTES = 200;
const SCRATCH_SUFFIX = '~apply';

export function checkLayerId(id: string): void {
  const problem = idProblem(id);
  if (problem !== undefined) {
    throw new BadInputError(`layer id ${JSON.stringify(id)} ${problem}`, {
      hint: `a layer id is 1 to ${MAX_ID_BYTES} bytes, printable, without '/' or '~', such as a sha256 hex digest`,
    });
  }
}

function idProblem(id: string): string | undefined {
  const bytes = Buffer.byteLength(id, 'utf8');
  if (bytes === 0) return 'is empty';
  if (bytes > MAX_ID_BYTES) return `is ${bytes} bytes long, more than ${MAX_ID_BYTES}`;
  if (id.includes('/') || id.includes('~')) return "contains '/' or '~'";
  if (id === BASE_DEVICE) return 'names the base device';
  if (id.startsWith('.') || id === '..') return "starts with '.'";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
  if (/[\u0000-\u001f\u007f-\u009f]/.test(id)) return 'contains a control character';
  return undefined;
}

export function scratchName(id: string): string {
  return `${id}${SCRATCH_SUFFIX}`;
}

export function isScratchName(name: string): boolean {
  return name.endsWith(SCRATCH_SUFFIX);
}

/** ROOT/mnt/<name>: where device `name` is mounted. */
export function mountpointOf(mountDir: string, name: string): string {
  return path.join(mountDir, name);
}
