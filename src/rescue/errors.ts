/**
 * The failures of rescue: a directory that is not a Docker devicemapper root, a record of
 * one that cannot be read, and a reference that names no image or container, or several.
 * Each message names the problem; the hint names the fix.
 */

import { BadInputError, NotFoundError } from '../util/index.js';

/** The given root lacks what every devicemapper root has. */
export class NotDockerRootError extends BadInputError {
  override readonly code = 'NOT_DOCKER_ROOT';

  constructor(root: string, missing: string) {
    super(`${root} is not a Docker devicemapper root (no ${missing})`, {
      hint: 'pass --docker-root DIR (the directory holding devicemapper/ and image/devicemapper/), or --data DEV --metadata DEV for a direct-lvm pool',
    });
  }
}

/** A JSON or text record of the legacy root that is malformed. */
export class LegacyRecordError extends BadInputError {
  override readonly code = 'BAD_LEGACY_RECORD';

  constructor(file: string, problem: string, cause?: unknown) {
    super(`${file} ${problem}`, {
      hint: 'the Docker root is damaged there; move that file aside to rescue the rest, or restore it from a backup',
      cause,
    });
  }
}

/** A reference that names no image or container of the root. */
export class UnknownRefError extends NotFoundError {
  constructor(ref: string, root: string) {
    super(`no image or container of ${root} is named ${ref}`, {
      hint: "see 'thinp rescue docker list' for the names, tags and ids",
    });
  }
}

/** A reference (id prefix) that several images or containers share. */
export class AmbiguousRefError extends BadInputError {
  override readonly code = 'AMBIGUOUS_REF';

  constructor(ref: string, matches: readonly string[]) {
    super(`${ref} names ${matches.length} images or containers (${matches.join(', ')})`, {
      hint: 'give a longer id prefix, a full id, a container name or a tag',
    });
  }
}
