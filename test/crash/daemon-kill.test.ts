/**
 * `kill -9` of the daemon process in the middle of a verified write workload. A client on
 * ROOT/nbd.sock keeps 8 writes of 4 KiB in flight, each a recognisable version of its slot,
 * some with FUA, and flushes every 16 writes, recording which writes were acknowledged
 * before each flush was sent. At a random moment after a few flushes the daemon gets
 * SIGKILL. Then, with no daemon running, `thin_check` must find the metadata clean; a new
 * daemon must start on the root, and every slot must read back as the last write that a
 * completed flush (or FUA) covered, or as a write sent after it: never older, never torn.
 * A few rounds on one root, then a clean stop and both checkers again.
 */

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { ApiClient } from '../../src/api/index.js';
import { wire } from '../../src/nbd/index.js';
import type { Problem } from '../../src/tools/index.js';
import { runThinp } from '../support/cli-process.js';
import { DaemonProcess, NbdClient, requireTool, runTool } from '../support/daemon.js';
import { tempDir } from '../support/temp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SLOT = 4 * KiB;
const DEVICE_SIZE = 16 * MiB;
const SLOTS = DEVICE_SIZE / SLOT;
const IN_FLIGHT = 8;
const FLUSH_EVERY = 16;
const ROUNDS = 5;

const dir = await tempDir('thinp-daemon-kill-');
let thinCheck: string;

before(async () => {
  thinCheck = await requireTool('thin_check', 'thin-provisioning-tools');
});

/** Version `v` of a slot: v and the byte position, in every 8 bytes; 0 is all zeros. */
function versionData(v: number): Buffer {
  const buf = Buffer.alloc(SLOT);
  if (v === 0) return buf;
  for (let at = 0; at < SLOT; at += 8) {
    buf.writeUInt32LE(v, at);
    buf.writeUInt32LE(at ^ 0x5a5a5a5a, at + 4);
  }
  return buf;
}

/** The version `data` holds, or undefined if it is no version at all (torn, garbage). */
function versionOf(data: Buffer): number | undefined {
  const v = data.readUInt32LE(0);
  return versionData(v).equals(data) ? v : undefined;
}

/**
 * What the client knows of each slot. Writes to one slot never overlap in flight, so the
 * slot holds, after a crash, its last write covered by a completed flush (or its durable
 * version from before the round) or any write sent after that one.
 */
class Model {
  /** The version each slot surely holds since the last restart. */
  private readonly durable = new Map<number, number>();
  /** Versions written to each slot this round, in order. */
  private readonly history = new Map<number, number[]>();
  /** Per slot, the index in `history` of the last write a completed flush or FUA covered. */
  private readonly covered = new Map<number, number>();
  private nextVersion = 1;
  /** Writes acknowledged and flushes completed this round. */
  acknowledged = 0;
  flushes = 0;

  newVersion(slot: number): number {
    const v = this.nextVersion++;
    const list = this.history.get(slot) ?? [];
    list.push(v);
    this.history.set(slot, list);
    return v;
  }

  /** `version` of `slot` is durable (acknowledged before a completed flush, or FUA). */
  cover(slot: number, version: number): void {
    const index = this.history.get(slot)?.indexOf(version) ?? -1;
    assert.ok(index >= 0);
    if (index > (this.covered.get(slot) ?? -1)) this.covered.set(slot, index);
  }

  slots(): number[] {
    return [...new Set([...this.durable.keys(), ...this.history.keys()])].sort((a, b) => a - b);
  }

  /** The versions `slot` may hold after a crash. */
  allowed(slot: number): number[] {
    const list = this.history.get(slot) ?? [];
    const index = this.covered.get(slot);
    if (index !== undefined) return list.slice(index);
    return [this.durable.get(slot) ?? 0, ...list];
  }

  /** Whether `slot` must hold exactly one version (covered, with nothing sent after it). */
  isExact(slot: number): boolean {
    return this.allowed(slot).length === 1;
  }

  /** After a restart: what was read is what the slot holds from now on. */
  settle(slot: number, version: number): void {
    this.durable.set(slot, version);
  }

  startRound(): void {
    this.history.clear();
    this.covered.clear();
    this.acknowledged = 0;
    this.flushes = 0;
  }
}

/**
 * Writes until the connection dies: IN_FLIGHT writes at a time to free slots, a FLUSH every
 * FLUSH_EVERY writes covering the writes acknowledged before it was sent. Calls `onFlush`
 * after each completed flush.
 */
async function workload(client: NbdClient, model: Model, onFlush: () => void): Promise<void> {
  const busy = new Set<number>();
  const acknowledged: Array<{ slot: number; version: number }> = [];
  const fua = (client.flags & wire.TRANSMISSION_FLAG.sendFua) !== 0;
  let sent = 0;
  let flushing: Promise<void> = Promise.resolve();

  const writeOne = async (): Promise<void> => {
    let slot = randomInt(SLOTS);
    while (busy.has(slot)) slot = randomInt(SLOTS);
    busy.add(slot);
    const version = model.newVersion(slot);
    const withFua = fua && randomInt(10) === 0;
    sent++;
    await client.write(slot * SLOT, versionData(version), { fua: withFua });
    busy.delete(slot);
    model.acknowledged++;
    if (withFua) model.cover(slot, version);
    else acknowledged.push({ slot, version });
  };

  const flushNow = (): void => {
    const covered = acknowledged.splice(0);
    const previous = flushing;
    flushing = client.flush().then(async () => {
      await previous;
      for (const w of covered) model.cover(w.slot, w.version);
      model.flushes++;
      onFlush();
    });
    flushing.catch(() => {});
  };

  const lanes = Array.from({ length: IN_FLIGHT }, async () => {
    while (client.ended === undefined) {
      await writeOne();
      if (sent % FLUSH_EVERY === 0) flushNow();
    }
  });
  await Promise.allSettled(lanes);
  await flushing.catch(() => {});
}

/** Reads every slot the model knows and checks it against what it allows. */
async function verify(client: NbdClient, model: Model): Promise<{ exact: number; slots: number }> {
  const slots = model.slots();
  let exact = 0;
  const problems: string[] = [];
  let next = 0;
  const lanes = Array.from({ length: 16 }, async () => {
    while (next < slots.length) {
      const slot = slots[next++] as number;
      const data = await client.read(slot * SLOT, SLOT);
      const version = versionOf(data);
      const allowed = model.allowed(slot);
      if (version === undefined || !allowed.includes(version)) {
        problems.push(
          `slot ${slot} holds ${version === undefined ? 'no version (torn or garbage)' : `version ${version}`}; allowed: ${allowed.join(', ')}`,
        );
        continue;
      }
      if (model.isExact(slot)) exact++;
      model.settle(slot, version);
    }
  });
  await Promise.all(lanes);
  assert.deepEqual(problems.slice(0, 20), [], `${problems.length} slots read back wrong`);
  return { exact, slots: slots.length };
}

/** `thin_check` on the pool's metadata: must be clean. */
async function thinCheckClean(root: string, when: string): Promise<void> {
  const check = await runTool(thinCheck, [path.join(root, 'devicemapper', 'metadata')]);
  assert.equal(check.status, 0, `thin_check ${when}:\n${check.stdout}${check.stderr}`);
}

/**
 * `thinp check --json` finds nothing, not even a leaked data block: a commit never runs
 * between a block's allocation and its mapping, so a kill cannot leave one counted and
 * unmapped.
 */
async function checkClean(root: string, when: string): Promise<void> {
  const result = await runThinp(['--root', root, 'check', '--json'], { cwd: dir });
  const report = JSON.parse(result.stdout) as { problems: Problem[] };
  assert.deepEqual(report.problems, [], `thinp check ${when}:\n${result.stdout}${result.stderr}`);
  assert.equal(result.status, 0, result.stderr);
}

describe('kill -9 of the daemon under a flushing write workload', () => {
  test('every write acknowledged before the last completed flush survives each kill', async (t) => {
    const root = path.join(dir, 'root');
    const model = new Model();
    let daemon = await DaemonProcess.start(root);
    await new ApiClient(daemon.controlSocket).createDevice('vol', { size: DEVICE_SIZE });
    try {
      for (let round = 1; round <= ROUNDS; round++) {
        model.startRound();
        const client = await NbdClient.connect(daemon.nbdSocket, 'vol');
        assert.equal(client.size, DEVICE_SIZE);
        // Kill after 3 to 12 completed flushes and a random extra moment.
        const flushesBeforeKill = randomInt(3, 13);
        let killing: Promise<unknown> | undefined;
        const victim = daemon;
        const running = workload(client, model, () => {
          if (killing === undefined && model.flushes >= flushesBeforeKill) {
            killing = new Promise((r) => setTimeout(r, randomInt(0, 150))).then(() =>
              victim.kill9(),
            );
          }
        });
        await running;
        assert.ok(killing !== undefined, `the workload ended before the kill: ${client.ended}`);
        const exit = await killing;
        assert.notEqual((exit as { code: number | null }).code, 0, 'the daemon was killed');

        await thinCheckClean(root, `after kill ${round}`);
        await checkClean(root, `after kill ${round}`);
        daemon = await DaemonProcess.start(root);
        assert.match(daemon.stderr, /"event":"started"/);
        const reader = await NbdClient.connect(daemon.nbdSocket, 'vol');
        const { exact, slots } = await verify(reader, model);
        await reader.close();
        assert.ok(exact > 0, `round ${round}: no write was covered by a completed flush`);
        t.diagnostic(
          `round ${round}: ${model.acknowledged} writes acknowledged, ${model.flushes} flushes, ` +
            `${slots} slots read back, ${exact} of them exactly covered`,
        );
      }
    } finally {
      const exit = await daemon.stop();
      assert.equal(exit.code, 0, `the daemon did not stop cleanly:\n${daemon.stderr}`);
    }
    await thinCheckClean(root, 'after the clean stop');
    await checkClean(root, 'after the clean stop');
  });
});
