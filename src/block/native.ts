/**
 * The native addon (native/fallocate.c, built by node-gyp into build/Release when npm
 * installs the package): hole punching, which Node's fs lacks. Loading never throws: when
 * the addon is missing or broken, `punchHole` is undefined, `nativeStatus()` says why, and
 * callers fall back to writing zeros.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** What the addon exports; `callback` gets an errno error (`code`, `errno`, `syscall`). */
interface Binding {
  punchHole(
    fd: number,
    offset: number,
    length: number,
    callback: (err: NodeJS.ErrnoException | null) => void,
  ): void;
}

/** Whether the addon loaded, and if not, why. */
export interface NativeStatus {
  available: boolean;
  reason?: string;
}

// src/block/native.ts under tsx and dist/block/native.js after the build both sit two
// levels below the package root.
const addonPath = fileURLToPath(new URL('../../build/Release/thinp_native.node', import.meta.url));

function load(): { binding?: Binding; status: NativeStatus } {
  try {
    const binding: unknown = createRequire(import.meta.url)(addonPath);
    if (typeof (binding as Partial<Binding> | null)?.punchHole !== 'function') {
      return { status: { available: false, reason: `${addonPath} exports no punchHole` } };
    }
    return { binding: binding as Binding, status: { available: true } };
  } catch (err) {
    const reason = `cannot load ${addonPath}: ${err instanceof Error ? err.message : String(err)}`;
    return { status: { available: false, reason: `${reason} (run npm install to build it)` } };
  }
}

const { binding, status } = load();

/** Whether the addon loaded; `reason` names the file and the failure when it did not. */
export function nativeStatus(): NativeStatus {
  return { ...status };
}

/**
 * Deallocates `length` bytes of the open file `fd` from byte `offset`, keeping its size:
 * fallocate(PUNCH_HOLE | KEEP_SIZE) on the libuv threadpool. The range then reads as zeros.
 * Rejects with the addon's errno error (code 'EOPNOTSUPP' where the filesystem cannot punch
 * holes), or a TypeError for an argument that is not a non-negative safe integer. Undefined
 * when the addon is not available.
 */
export const punchHole:
  | ((fd: number, offset: number, length: number) => Promise<void>)
  | undefined = binding === undefined ? undefined : promisify(binding);

function promisify(addon: Binding): (fd: number, offset: number, length: number) => Promise<void> {
  return (fd, offset, length) =>
    new Promise<void>((resolve, reject) => {
      // A TypeError thrown here, before any work is queued, rejects the promise.
      addon.punchHole(fd, offset, length, (err) => (err === null ? resolve() : reject(err)));
    });
}
