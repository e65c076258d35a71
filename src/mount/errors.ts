/** The mount layer's failures: a program that failed, and a program that is not installed. */

import { type ErrorDetails, IoError, NotFoundError } from '../util/index.js';

/** An external program (mount, losetup, nbdfuse…) failed on `device`; says which and why. */
export class MountError extends IoError {
  constructor(device: string, op: string, message: string, details: ErrorDetails = {}) {
    super(device, op, message, details);
  }
}

/** A program the mount layer needs is missing; the hint names its Debian package. */
export class MissingToolError extends NotFoundError {
  readonly program: string;

  constructor(program: string, debianPackage: string) {
    super(`${program} is not installed`, {
      hint: `install the Debian package ${debianPackage} (apt-get install ${debianPackage})`,
    });
    this.program = program;
  }
}
