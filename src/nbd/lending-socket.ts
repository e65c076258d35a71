/**
 * A served socket whose input is read into one reusable buffer and lent, chunk by chunk, to
 * its connection (Node's `onread` option), instead of arriving as 'data' events: no buffer
 * is allocated per read, and no chunk goes through the Readable stream's queue and events.
 * At a deep queue of small requests that machinery was a good part of the event loop's work
 * per request (a buffer made and collected per read, `push`, `addChunk`, `emit`).
 *
 * Node offers `onread` only when a socket is made, not on sockets a server accepts, so the
 * server accepts them paused (`pauseOnConnect`) and this makes a new socket over the same
 * handle, with `onread`; the accepted socket is let go without its handle (it closes nothing
 * and the server stops counting it). A socket without a handle is served as it is.
 *
 * The contract: `lend(receive)` is called once, at once; `receive(chunk)` gets each read's
 * bytes, a view of the buffer that is only valid until it returns (framer.ts, "lent").
 * End, errors and `pause()`/`resume()` are the socket's own, as for any socket.
 */

import net from 'node:net';

/** One read takes at most this: a burst of requests, or a good part of a large write. */
export const INPUT_BUFFER_SIZE = 256 * 1024;

export interface LendingSocket {
  readonly socket: net.Socket;
  /** Set where the input goes; undefined when the socket delivers 'data' events instead. */
  readonly lend: ((receive: (chunk: Buffer) => void) => void) | undefined;
}

type WithHandle = { _handle?: object | null };

/** The options `new net.Socket` takes, including those its typings leave out. */
interface SocketOptions extends net.SocketConstructorOpts {
  handle: object;
  onread: { buffer: Uint8Array; callback: (bytes: number, buf: Uint8Array) => boolean | undefined };
}

/** Takes over `accepted` (accepted paused); see the module comment. */
export function lendingSocket(accepted: net.Socket): LendingSocket {
  const handle = (accepted as WithHandle)._handle;
  if (handle === undefined || handle === null) {
    accepted.resume();
    return { socket: accepted, lend: undefined };
  }
  const buffer = Buffer.allocUnsafeSlow(INPUT_BUFFER_SIZE);
  let receive: ((chunk: Buffer) => void) | undefined;
  const early: Buffer[] = [];
  const options: SocketOptions = {
    handle,
    allowHalfOpen: true,
    onread: {
      buffer,
      callback: (bytes) => {
        const chunk = buffer.subarray(0, bytes);
        if (receive === undefined) early.push(Buffer.from(chunk));
        else receive(chunk);
        return undefined;
      },
    },
  };
  const socket = new net.Socket(options);
  (accepted as WithHandle)._handle = null;
  accepted.destroy();
  return {
    socket,
    lend: (to) => {
      receive = to;
      for (const chunk of early.splice(0)) to(chunk);
    },
  };
}
