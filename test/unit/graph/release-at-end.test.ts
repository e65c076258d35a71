/**
 * releaseAtEnd: the output ends only after the release has finished; an error in the source,
 * or a reader that stops early, still releases (once), and the output fails.
 */

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { releaseAtEnd } from '../../../src/graph/release-at-end.js';

function releaser(ms = 0) {
  const state = { calls: 0, done: false };
  const release = async () => {
    state.calls++;
    await new Promise((resolve) => setTimeout(resolve, ms));
    state.done = true;
  };
  return { state, release };
}

describe('releaseAtEnd', () => {
  it('ends after the release has finished, with every byte', async () => {
    const { state, release } = releaser(50);
    const out = releaseAtEnd(
      Readable.from([Buffer.from('ab'), Buffer.from('cd')]),
      release,
      () => {},
    );
    const chunks: Buffer[] = [];
    for await (const c of out) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'abcd');
    assert.equal(state.done, true, 'released before the end');
    assert.equal(state.calls, 1);
  });

  it('an error in the source fails the output and releases once', async () => {
    const { state, release } = releaser();
    const source = new Readable({ read() {} });
    const out = releaseAtEnd(source, release, () => {});
    source.destroy(new Error('the tree went away'));
    await assert.rejects(finished(out as Readable), /the tree went away/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(state.calls, 1);
  });

  it('a reader that stops early releases, and a failing release is reported', async () => {
    const failures: unknown[] = [];
    let calls = 0;
    const out = releaseAtEnd(
      new Readable({
        read() {
          this.push(Buffer.alloc(1024));
        },
      }),
      async () => {
        calls++;
        throw new Error('umount failed');
      },
      (err) => failures.push(err),
    ) as Readable;
    out.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(calls, 1);
    assert.match(String(failures[0]), /umount failed/);
  });
});
