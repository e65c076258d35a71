/**
 * The smoke test's NBD check: a client connecting to the socket gets the newstyle greeting
 * (`NBDMAGIC` then `IHAVEOPT`), after which it aborts politely.
 */

import net from 'node:net';
import { InternalError } from '../util/index.js';

const GREETING = Buffer.from('NBDMAGICIHAVEOPT', 'latin1');
const TIMEOUT_MS = 5000;

/** Resolves once `socketPath` greets like an NBD server; rejects otherwise. */
export function checkNbdGreeting(socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let got = Buffer.alloc(0);
    const fail = (why: string) => {
      socket.destroy();
      reject(new InternalError(`the NBD socket ${socketPath} ${why}`, { hint: 'see the log' }));
    };
    socket.setTimeout(TIMEOUT_MS, () => fail('did not greet in time'));
    socket.on('error', (err) => fail(`failed: ${err.message}`));
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < GREETING.length) return;
      if (!got.subarray(0, GREETING.length).equals(GREETING)) {
        fail('sent something other than the NBD greeting');
        return;
      }
      socket.removeAllListeners('error');
      socket.on('error', () => {});
      socket.end();
      resolve();
    });
  });
}
