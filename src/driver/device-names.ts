/**
 * Device names. Each names a file under ROOT/metadata (as Docker's layer hashes do), so a
 * name is a file name: not empty, at most 255 bytes of UTF-8, printable, without '/', not
 * '.' or '..', not starting with '.' (kept for temporary files), and not one of the device
 * set's own files.
 */

import { BadInputError } from '../util/index.js';
import { OWN_FILES } from './state-records.js';

export const MAX_NAME_BYTES = 255;

const RULES = "a name is 1 to 255 bytes, printable, without '/', and not '.' or '..'";

/** Throws a BadInputError naming the rule `name` breaks. */
export function checkDeviceName(name: string): void {
  const problem = nameProblem(name);
  if (problem !== undefined) {
    throw new BadInputError(`device name ${JSON.stringify(name)} ${problem}`, { hint: RULES });
  }
}

function nameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) return 'is empty';
  if (bytes > MAX_NAME_BYTES) return `is ${bytes} bytes long, more than ${MAX_NAME_BYTES}`;
  if (name.includes('/')) return "contains '/'";
  if (name === '.' || name === '..') return 'is a folder name';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return 'contains a control character';
  if (name.startsWith('.')) return "starts with '.' (kept for thinp's temporary files)";
  if (OWN_FILES.includes(name)) return "is one of thinp's own files";
  return undefined;
}
