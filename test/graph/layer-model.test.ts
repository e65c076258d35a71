/**
 * The model test of the storage driver's layers: seeded random sequences of layer create
 * (on the base device or on any live layer), apply (files added and changed, whiteouts of
 * what is there, opaque directories, symlinks, hard links, modes, owners) and remove, run
 * through the control API of a daemon process. After every step, every live layer, mounted,
 * equals its reference: a plain directory built from the same tars by the same apply, a
 * parent's reference copied for a child (`cp -a`). Compared: types, modes, owners, sizes
 * and contents, link targets, hard links, xattrs, device numbers, mtimes (whole seconds, as
 * tar carries them). thin_check is clean at the end, and nothing is left mounted.
 */

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, it } from 'node:test';
import { ApiClient } from '../../src/api/index.js';
import { applyLayer } from '../../src/archive/index.js';
import { DAEMON_POOL_OPTS, DaemonProcess, requireTool, runToolOk } from '../support/daemon.js';
import { buildTar, streamOf, type TarSpec } from '../support/layer-tar.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';
import { assertSameTree, snapshotTree } from '../support/tree-snapshot.js';

const STEPS = Number(process.env.THINP_MODEL_STEPS ?? 14);
const SEED = Number(process.env.THINP_MODEL_SEED ?? 20261201);
const dir = await tempDir('thinp-graph-model-');
const root = path.join(dir, 'root');
const refs = path.join(dir, 'refs');
let daemon: DaemonProcess | undefined;

after(async () => {
  if (daemon === undefined) return;
  const client = new ApiClient(daemon.controlSocket);
  for (const l of await client.listLayers().catch(() => [])) {
    for (let i = 0; i < l.mounts; i++) await client.unmountLayer(l.id).catch(() => undefined);
  }
  await daemon.stop();
});

/** A small seeded generator (mulberry32), so a failing sequence can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMES = ['a', 'b', 'c'];
const DIRS = ['', 'd1/', 'd2/', 'd1/e/'];

/** A layer tar of a few entries over a small set of names, so whiteouts hit. */
function randomTar(rnd: () => number, step: number): TarSpec[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const specs: TarSpec[] = [];
  const mtime = 1_600_000_000 + step * 100;
  for (const d of ['d1/', 'd2/', 'd1/e/']) {
    if (rnd() < 0.5) specs.push({ name: d, type: 'directory', mode: pick([0o755, 0o700]), mtime });
  }
  const count = 1 + Math.floor(rnd() * 5);
  for (let i = 0; i < count; i++) {
    const where = pick(DIRS);
    const name = `${where}${pick(NAMES)}`;
    const roll = rnd();
    if (roll < 0.45) {
      const content = `step ${step} entry ${i} ${'x'.repeat(Math.floor(rnd() * 3000))}`;
      specs.push({ name, content, mode: pick([0o644, 0o600, 0o755]), uid: pick([0, 1000]), mtime });
    } else if (roll < 0.6) {
      specs.push({ name: `${where}.wh.${pick(NAMES)}`, mtime });
    } else if (roll < 0.7) {
      specs.push({ name, type: 'symlink', linkname: pick(['a', '../b', '/etc/passwd']), mtime });
    } else if (roll < 0.8) {
      specs.push({ name: `${where}.wh..wh..opq`, mtime });
    } else if (roll < 0.9) {
      const target = `${where}${pick(NAMES)}x`;
      specs.push({ name: target, content: `target ${step}`, mtime });
      specs.push({ name, type: 'link', linkname: target, mtime });
    } else {
      specs.push({ name, type: 'fifo', mode: 0o644, mtime });
    }
  }
  return dedupeParents(specs);
}

/** Directories for every entry's parent come first (a tar from docker save has them). */
function dedupeParents(specs: TarSpec[]): TarSpec[] {
  const out: TarSpec[] = [];
  const dirs = new Set<string>();
  for (const s of specs) {
    const parts = s.name.replace(/\/$/, '').split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = `${parts.slice(0, i).join('/')}/`;
      if (!dirs.has(d) && !specs.some((x) => x.name === d)) {
        dirs.add(d);
        out.push({ name: d, type: 'directory', mode: 0o755, mtime: s.mtime ?? 1_600_000_000 });
      }
    }
    out.push(s);
  }
  return out;
}

const SNAPSHOT = { root: false, mtime: 'seconds', dirMtimes: false } as const;

it(`random layer create/apply/remove sequences equal plain-directory references (seed ${SEED})`, {
  timeout: 900_000,
}, async () => {
  await mkdir(refs, { recursive: true });
  daemon = await DaemonProcess.start(root, [...DAEMON_POOL_OPTS, 'dm.basesize=512M']);
  const client = new ApiClient(daemon.controlSocket);
  const cp = await requireTool('cp', 'coreutils');
  const rnd = random(SEED);
  const live: string[] = [];
  let made = 0;
  const log: string[] = [];
  for (let step = 0; step < STEPS; step++) {
    const roll = rnd();
    if (live.length === 0 || (roll < 0.35 && live.length < 4)) {
      const id = `layer${made++}`;
      const parent =
        live.length > 0 && rnd() < 0.7 ? live[Math.floor(rnd() * live.length)] : undefined;
      await client.createLayer(id, parent === undefined ? {} : { parent });
      const ref = path.join(refs, id);
      if (parent === undefined) await mkdir(ref);
      else await runToolOk(cp, ['-a', path.join(refs, parent), ref]);
      live.push(id);
      log.push(`create ${id} on ${parent ?? 'base'}`);
    } else if (roll < 0.85 || live.length === 1) {
      const id = live[Math.floor(rnd() * live.length)] as string;
      const tar = await buildTar(randomTar(rnd, step));
      const size = await client.applyLayer(id, streamOf(tar));
      const refSize = (await applyLayer(path.join(refs, id), streamOf(tar))).size;
      assert.equal(size, refSize, `apply to ${id}: the size`);
      log.push(`apply to ${id}`);
    } else {
      const id = live.splice(Math.floor(rnd() * live.length), 1)[0] as string;
      assert.equal(await client.removeLayer(id), 'removed');
      log.push(`remove ${id}`);
    }
    for (const id of live) {
      const rootfs = await client.mountLayer(id);
      try {
        assertSameTree(
          await snapshotTree(rootfs, SNAPSHOT),
          await snapshotTree(path.join(refs, id), SNAPSHOT),
          `layer ${id} after: ${log.join('; ')}`,
        );
      } finally {
        await client.unmountLayer(id);
      }
    }
  }
  for (const id of live) await client.removeLayer(id);
  await daemon.stop();
  daemon = undefined;
  const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
  assert.equal(check.status, 0, check.stderr);
  await assertNoLeaks(dir);
});
