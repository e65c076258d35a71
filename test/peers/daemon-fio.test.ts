/**
 * fio's nbd engine (libnbd) against the daemon: random 4 KiB and 1 MiB reads and writes at
 * queue depth 32 over a thin device, every block written verified by its crc32c. The
 * replies go through the native sender: the 4 KiB reads of a burst are read on the event loop
 * and gathered, the 1 MiB ones read on the sender's threads. The daemon runs in this
 * process; fio is spawned. A fio without the nbd engine fails the test, saying so.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { senderAddon } from '../../src/nbd/sender-native.js';
import {
  type InProcessDaemon,
  requireTool,
  runTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-daemon-fio-');
let daemon: InProcessDaemon;
let fio: string;

before(async () => {
  fio = await requireTool('fio', 'fio');
  daemon = await startInProcess(path.join(dir, 'root'));
  await daemon.handle.deviceSet.createDevice('fio', 64 * MiB);
});

after(() => daemon?.stop());

/** Every `err=` fio printed (one per job and per verify phase). */
function errorsIn(output: string): number[] {
  return [...output.matchAll(/\berr=\s*(-?\d+)/g)].map((m) => Number(m[1]));
}

describe('fio through the nbd engine', () => {
  test('this fio has the nbd engine', async () => {
    const engines = await runToolOk(fio, ['--enghelp']);
    assert.match(
      engines,
      /^\s*nbd\s*$/m,
      "this fio was built without the nbd engine (libnbd): the daemon cannot be tested with fio's --ioengine=nbd",
    );
  });

  test('the native reply sender is built, so the tests below go through it', () => {
    assert.ok(senderAddon, 'build/Release/thinp_sender.node is missing: run npm install');
  });

  for (const [bs, least] of [
    ['4k', 1000],
    ['1m', 10],
  ] as const) {
    test(`random ${bs} reads and writes at queue depth 32 verify by crc32c without an error`, async () => {
      await verifiedRandomIo(bs, least);
    });
  }
});

async function verifiedRandomIo(bs: string, least: number): Promise<void> {
  const result = await runTool(
    fio,
    [
      '--name=thinp',
      '--ioengine=nbd',
      `--uri=${daemon.uri('fio')}`,
      '--rw=randrw',
      `--bs=${bs}`,
      '--iodepth=32',
      '--size=64M',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--randrepeat=0',
      '--verify_state_save=0',
    ],
    { timeoutMs: 90_000 },
  );
  const output = result.stdout + result.stderr;
  assert.equal(result.status, 0, `fio exited with status ${result.status}:\n${output}`);
  const errors = errorsIn(result.stdout);
  assert.ok(errors.length > 0, `no err= in fio's report:\n${output}`);
  assert.deepEqual(
    errors.filter((e) => e !== 0),
    [],
    `fio reported errors:\n${output}`,
  );
  assert.doesNotMatch(output, /verify: bad|crc32c: verify failed|fio: io_u error/i, output);
  // Both directions ran, and the verify phase read back every block written: the reads
  // issued are the random ones plus one per write.
  const issued = /issued rwts: total=(\d+),(\d+),/.exec(result.stdout);
  assert.ok(issued !== null, `no issued counts in fio's report:\n${output}`);
  const [reads, writes] = [Number(issued[1]), Number(issued[2])];
  assert.ok(writes > least, `only ${writes} writes`);
  assert.ok(reads > writes, `${reads} reads cannot have verified ${writes} writes`);
  // The writes landed in the pool: a thin device maps what was written, no more.
  const mapped = daemon.handle.deviceSet.status().data.usedBlocks;
  assert.ok(mapped > 0, 'nothing was written to the pool');
}
