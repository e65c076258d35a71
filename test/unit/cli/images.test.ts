import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { thinp } from '../../support/cli.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-cli-images-');

describe('thinp image and container without a daemon', () => {
  for (const args of [
    ['image', 'load', '-i', 'x.tar'],
    ['image', 'list'],
    ['image', 'save', 'busybox', '-o', 'out.tar'],
    ['container', 'create', '--image', 'busybox'],
    ['container', 'mount', 'c1'],
    ['container', 'commit', 'c1', 'mine:1'],
  ]) {
    it(`'thinp ${args.join(' ')}' says it needs the daemon and how to start it`, async () => {
      const r = await thinp(['--root', dir, ...args], { cwd: dir });
      assert.equal(r.status, 1);
      assert.equal(
        r.stderr,
        `thinp: 'thinp ${args.slice(0, 2).join(' ')}' needs the daemon: images and containers live in filesystems it serves; start it with 'thinp daemon' (or 'npm start') and run the command again\n`,
      );
    });
  }

  it('checks its arguments before looking for the daemon', async () => {
    const r = await thinp(['--root', dir, 'container', 'create', '--image', 'b', '--size', '12Q'], {
      cwd: dir,
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--size/);
  });
});
