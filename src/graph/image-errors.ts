/**
 * The failures of image archives: a file that is missing, malformed or whose content does not
 * match its digest. Each message names the file inside the archive; the hint names the fix.
 */

import { BadInputError, type ErrorDetails } from '../util/index.js';

/** An image archive (docker save or OCI layout) that thinp cannot read as an image. */
export class BadImageArchiveError extends BadInputError {
  override readonly code: string = 'BAD_IMAGE_ARCHIVE';
}

/** A blob, config or layer whose content does not hash to the digest that names it. */
export class DigestMismatchError extends BadImageArchiveError {
  override readonly code = 'DIGEST_MISMATCH';

  constructor(file: string, what: string, expected: string, actual: string, d: ErrorDetails = {}) {
    super(`${file} in the image archive: ${what} is ${actual}, but the archive says ${expected}`, {
      hint: 'the archive is damaged or was edited; make it again (docker save, or skopeo copy)',
      ...d,
    });
  }
}

/** The archive lacks a file its manifest names. */
export function missingFile(file: string, namedBy: string): BadImageArchiveError {
  return new BadImageArchiveError(`${namedBy} names ${file}, which is not in the image archive`, {
    hint: 'the archive is incomplete; make it again with docker save or an OCI image tool',
  });
}
