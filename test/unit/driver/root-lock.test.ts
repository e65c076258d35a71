import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { LOCK_FILE, RootLock } from '../../../src/driver/index.js';
import { BusyError } from '../../../src/util/index.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-lock-');
let roots = 0;

async function freshRoot(): Promise<string> {
  const root = path.join(dir, `root-${++roots}`);
  await mkdir(root);
  return root;
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await once(child, 'exit');
  assert.ok(child.pid !== undefined);
  return child.pid;
}

const gone = (file: string) =>
  access(file).then(
    () => false,
    () => true,
  );

describe('RootLock', () => {
  it('holds ROOT/thinp.lock with its pid, command and start, until released', async () => {
    const root = await freshRoot();
    const lock = await RootLock.acquire(root, 'thinp device list');
    const file = path.join(root, LOCK_FILE);
    const held = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(held.pid, process.pid);
    assert.equal(held.command, 'thinp device list');
    assert.ok(!Number.isNaN(Date.parse(held.started)));
    assert.equal(lock.tookOverFrom, undefined);
    await lock.release();
    assert.ok(await gone(file));
    await lock.release();
    const again = await RootLock.acquire(root, 'thinp pool status');
    await again.release();
  });

  it('refuses a second holder while the first is alive, naming it', async () => {
    const root = await freshRoot();
    const first = await RootLock.acquire(root, 'thinp device write scratch');
    await assert.rejects(RootLock.acquire(root, 'thinp device list'), (err: unknown) => {
      assert.ok(err instanceof BusyError);
      assert.equal(
        err.describe(),
        `${root} is in use by pid ${process.pid} ('thinp device write scratch' since ` +
          `${first.holder.started}); wait for it or stop it`,
      );
      return true;
    });
    await first.release();
  });

  it('takes over the lock of a process that died, saying whose it was', async () => {
    const root = await freshRoot();
    const pid = await deadPid();
    const stale = { pid, command: 'thinp device create x', started: '2020-01-01T00:00:00.000Z' };
    await writeFile(path.join(root, LOCK_FILE), JSON.stringify(stale));
    const lock = await RootLock.acquire(root, 'thinp pool status');
    assert.deepEqual(lock.tookOverFrom, stale);
    const held = JSON.parse(await readFile(path.join(root, LOCK_FILE), 'utf8'));
    assert.equal(held.pid, process.pid);
    await lock.release();
  });

  it('waits out a lock file still being written, then takes it over when old', async () => {
    const root = await freshRoot();
    const file = path.join(root, LOCK_FILE);
    await writeFile(file, '');
    await assert.rejects(RootLock.acquire(root, 'thinp info'), (err: unknown) => {
      assert.ok(err instanceof BusyError);
      assert.match(err.describe(), /in use by another thinp process; wait for it or stop it/);
      return true;
    });
    const old = new Date(Date.now() - 60_000);
    await utimes(file, old, old);
    const lock = await RootLock.acquire(root, 'thinp info');
    assert.equal(lock.tookOverFrom, undefined);
    await lock.release();
  });

  it('releases at process exit a lock that was not released', async () => {
    const root = await freshRoot();
    const script = `
      const { RootLock } = await import(${JSON.stringify(path.resolve('src/driver/index.ts'))});
      await RootLock.acquire(${JSON.stringify(root)}, 'thinp test');
      process.exit(0);`;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        stdio: 'inherit',
      },
    );
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.ok(await gone(path.join(root, LOCK_FILE)));
  });
});
