/**
 * The addon thinp_sender (native/reply-sender.c): a connection's replies sent from native
 * threads, read replies read there from the data files too, so that the copies of a busy
 * connection run beside the event loop rather than on it. See the C file for the contract
 * of each call. Loading never throws: without the addon `senderAddon` is undefined and
 * every reply goes through the socket's own writes.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The opaque handle of one sender. */
export type SenderHandle = { readonly __sender: unique symbol };

export interface SenderAddon {
  /** dup()s the socket `fd`; `onDone` gets (tag, result) pairs of queued replies. */
  open(fd: number, onDone: (results: Float64Array) => void): SenderHandle;
  /** 0: on the socket; 1: queued, reported later; 3: corked; negative: the sender is gone. */
  send(sender: SenderHandle, bytes: Uint8Array, tag: number): number;
  /**
   * 0: on the socket; 1: queued for a reader thread (keep the files open until reported);
   * 2: read, queued for the socket (reported later); 3: read and corked; negative: an
   * errno, nothing queued.
   */
  sendRead(
    sender: SenderHandle,
    header: Uint8Array,
    pieces: Float64Array,
    count: number,
    tag: number,
    atOnce: boolean,
  ): number;
  /** true: gather; false: write what gathered (returns how many still wait, or -errno). */
  cork(sender: SenderHandle, on: boolean): number;
  close(sender: SenderHandle, abort: boolean): void;
  /** Polls for input, without sleeping, for up to `budgetUs`: bytes read, 0 at EOF, -errno. */
  awaitInput(sender: SenderHandle, buf: Uint8Array, budgetUs: number): number;
  /** The socket's send buffer (SO_SNDBUF), which `open` widens for a UNIX socket; or -errno. */
  sendBuffer(sender: SenderHandle): number;
}

// src/nbd/sender-native.ts under tsx and dist/nbd/sender-native.js after the build both sit
// two levels below the package root.
const addonPath = fileURLToPath(new URL('../../build/Release/thinp_sender.node', import.meta.url));

function load(): SenderAddon | undefined {
  try {
    const binding = createRequire(import.meta.url)(addonPath) as Partial<SenderAddon> | null;
    const complete =
      typeof binding?.open === 'function' &&
      typeof binding.send === 'function' &&
      typeof binding.sendRead === 'function' &&
      typeof binding.cork === 'function' &&
      typeof binding.close === 'function' &&
      typeof binding.awaitInput === 'function' &&
      typeof binding.sendBuffer === 'function';
    return complete ? (binding as SenderAddon) : undefined;
  } catch {
    return undefined;
  }
}

/** The addon, or undefined when it is not built. */
export const senderAddon: SenderAddon | undefined = load();
