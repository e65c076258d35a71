/**
 * Property: for random trees and random changes to a copy of them, the diff of the copy
 * against the original, applied to another copy of the original, reproduces the changed
 * copy exactly: content, modes, owners, link targets, hard links, xattrs, device numbers,
 * and mtimes of non-directories (whole seconds, as a tar carries them). Along the way,
 * listChanges and diffSize agree with references computed from flat snapshots of the two
 * trees (an independent statement of Docker's rules, DOCKER.md §1.6).
 *
 * The operations run in this process, as the worker runs them (with umask 0), to keep the
 * test fast; test/unit/archive/worker.test.ts covers the worker around them.
 *
 * The changes stay within what Docker's naive diff can see (it compares stat fields, not
 * contents): each change moves the mtime of what it touches to a later second, as real
 * writes do, and never touches the root itself.
 */

import assert from 'node:assert/strict';
import type { Stats } from 'node:fs';
import {
  chmodSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Change } from '../../../src/archive/index.js';
import { fsOps } from '../../../src/archive/native.js';
import {
  applyLayerHere,
  changesHere,
  exportHere,
  sizeHere,
} from '../../../src/archive/operations.js';
import { textOf } from '../../../src/archive/raw-name.js';
import { tempDir } from '../../support/temp.js';
import { assertSameTree, snapshotTree, type TreeSnapshot } from '../../support/tree-snapshot.js';

const base = await tempDir('thinp-archive-roundtrip-');

const NAMES = ['a', 'b', 'c', 'dir', 'x.y', 'ünï', 'n'.repeat(120)];
const IDS = [0, 1000, 65534, 3_000_000];
/** Valid security.capability values (VFS_CAP_REVISION_2): cap_net_raw+ep, cap_chown+p. */
const CAPABILITIES = [
  '0100000200200000000000000000000000000000',
  '0000000201000000000000000000000000000000',
];

type Op =
  | { op: 'mkdir'; at: number; name: string; mode: number; uid: number }
  | {
      op: 'file';
      at: number;
      name: string;
      content: string;
      mode: number;
      uid: number;
      xattr: number;
    }
  | { op: 'symlink'; at: number; name: string; target: string }
  | { op: 'device'; at: number; name: string; block: boolean; major: number; minor: number }
  | { op: 'fifo'; at: number; name: string }
  | { op: 'hardlink'; from: number; at: number; name: string }
  | { op: 'remove'; at: number }
  | { op: 'rewrite'; at: number; content: string }
  | { op: 'chmod'; at: number; mode: number }
  | { op: 'chown'; at: number; uid: number; gid: number }
  | { op: 'xattr'; at: number; which: number }
  | { op: 'touch'; at: number }
  | { op: 'capability'; at: number; which: number };

const pick = fc.nat(1000);
const name = fc.constantFrom(...NAMES);
const mode = fc.constantFrom(0o755, 0o700, 0o644, 0o600, 0o4755, 0o2711, 0o1777, 0o000);
const id = fc.constantFrom(...IDS);
const content = fc.string({ maxLength: 40 });

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('mkdir' as const), at: pick, name, mode, uid: id }),
  fc.record({
    op: fc.constant('file' as const),
    at: pick,
    name,
    content,
    mode,
    uid: id,
    xattr: fc.nat(3),
  }),
  fc.record({
    op: fc.constant('symlink' as const),
    at: pick,
    name,
    target: fc.constantFrom('a', 'd/../b', '/etc/passwd', 'x/y/z', 't'.repeat(150)),
  }),
  fc.record({
    op: fc.constant('device' as const),
    at: pick,
    name,
    block: fc.boolean(),
    major: fc.nat(300),
    minor: fc.nat(70000),
  }),
  fc.record({ op: fc.constant('fifo' as const), at: pick, name }),
  fc.record({ op: fc.constant('hardlink' as const), from: pick, at: pick, name }),
  fc.record({ op: fc.constant('remove' as const), at: pick }),
  fc.record({ op: fc.constant('rewrite' as const), at: pick, content }),
  fc.record({ op: fc.constant('chmod' as const), at: pick, mode }),
  fc.record({ op: fc.constant('chown' as const), at: pick, uid: id, gid: id }),
  fc.record({ op: fc.constant('xattr' as const), at: pick, which: fc.nat(3) }),
  fc.record({ op: fc.constant('touch' as const), at: pick }),
  fc.record({ op: fc.constant('capability' as const), at: pick, which: fc.nat(1) }),
);

/** Replays ops on a tree: deterministic, so that two copies built alike are alike. */
class TreeBuilder {
  private clock: number;

  constructor(
    private readonly root: string,
    firstSecond: number,
  ) {
    this.clock = firstSecond;
  }

  /** Every path below the root ('' is the root), sorted. */
  private entries(filter: (stats: Stats) => boolean): string[] {
    const found: string[] = [];
    const walk = (rel: string) => {
      for (const entry of readdirSync(path.join(this.root, rel)).sort()) {
        const child = rel === '' ? entry : `${rel}/${entry}`;
        const stats = lstatSync(path.join(this.root, child));
        if (filter(stats)) found.push(child);
        if (stats.isDirectory()) walk(child);
      }
    };
    walk('');
    return found;
  }

  private choose(
    n: number,
    filter: (stats: Stats) => boolean,
    withRoot = false,
  ): string | undefined {
    const all = [...(withRoot ? [''] : []), ...this.entries(filter)];
    return all.length === 0 ? undefined : all[n % all.length];
  }

  /** A new, later second for each change, with a varying nanosecond part (sometimes 0). */
  private stamp(target: string): void {
    this.clock += 1;
    const nsec = (this.clock * 7919) % 3 === 0 ? 0 : (this.clock * 104729) % 1_000_000_000;
    fsOps().lutimes(Buffer.from(target), this.clock, nsec, this.clock, nsec);
  }

  /** Makes room for a new entry `name` in the directory picked by `at`. */
  private place(at: number, entryName: string): string {
    const dir = this.choose(at, (s) => s.isDirectory(), true) as string;
    const target = path.join(this.root, dir, entryName);
    rmSync(target, { recursive: true, force: true });
    return target;
  }

  apply(op: Op): void {
    switch (op.op) {
      case 'mkdir': {
        const target = this.place(op.at, op.name);
        mkdirSync(target);
        lchownSync(target, op.uid, op.uid);
        chmodSync(target, op.mode);
        break;
      }
      case 'file': {
        const target = this.place(op.at, op.name);
        writeFileSync(target, op.content);
        lchownSync(target, op.uid, op.uid);
        chmodSync(target, op.mode);
        if (op.xattr > 0) this.setXattr(target, op.xattr);
        this.stamp(target);
        break;
      }
      case 'symlink': {
        const target = this.place(op.at, op.name);
        symlinkSync(op.target, target);
        this.stamp(target);
        break;
      }
      case 'device': {
        const target = this.place(op.at, op.name);
        fsOps().mknod(
          Buffer.from(target),
          (op.block ? 0o060000 : 0o020000) | 0o640,
          op.major,
          op.minor,
        );
        this.stamp(target);
        break;
      }
      case 'fifo': {
        const target = this.place(op.at, op.name);
        fsOps().mknod(Buffer.from(target), 0o010620, 0, 0);
        this.stamp(target);
        break;
      }
      case 'hardlink': {
        const from = this.choose(op.from, (s) => s.isFile());
        if (from === undefined) break;
        const target = this.place(op.at, op.name);
        if (
          path.join(this.root, from) === target ||
          lstatSync(path.join(this.root, from), { throwIfNoEntry: false }) === undefined
        )
          break;
        linkSync(path.join(this.root, from), target);
        this.stamp(target); // a real link changes ctime only: Docker would not see the inode's new name
        break;
      }
      case 'remove': {
        const target = this.choose(op.at, () => true);
        if (target !== undefined) rmSync(path.join(this.root, target), { recursive: true });
        break;
      }
      case 'rewrite': {
        const target = this.choose(op.at, (s) => s.isFile());
        if (target === undefined) break;
        writeFileSync(path.join(this.root, target), op.content);
        this.stamp(path.join(this.root, target));
        break;
      }
      case 'chmod': {
        const target = this.choose(op.at, (s) => !s.isSymbolicLink());
        if (target !== undefined) chmodSync(path.join(this.root, target), op.mode);
        break;
      }
      case 'chown': {
        const target = this.choose(op.at, () => true);
        if (target !== undefined) lchownSync(path.join(this.root, target), op.uid, op.gid);
        break;
      }
      case 'xattr': {
        const target = this.choose(op.at, (s) => s.isFile());
        if (target === undefined) break;
        this.setXattr(path.join(this.root, target), op.which);
        this.stamp(path.join(this.root, target));
        break;
      }
      case 'capability': {
        // Docker compares security.capability itself: no new mtime needed.
        const target = this.choose(op.at, (s) => s.isFile());
        if (target === undefined) break;
        const value = Buffer.from(CAPABILITIES[op.which] as string, 'hex');
        fsOps().lsetxattr(
          Buffer.from(path.join(this.root, target)),
          Buffer.from('security.capability'),
          value,
        );
        break;
      }
      case 'touch': {
        const target = this.choose(op.at, (s) => !s.isDirectory());
        if (target !== undefined) this.stamp(path.join(this.root, target));
        break;
      }
    }
  }

  private setXattr(target: string, which: number): void {
    const ops = fsOps();
    if (which === 1)
      ops.lsetxattr(Buffer.from(target), Buffer.from('user.k'), Buffer.from([which, 0xff, 0]));
    if (which === 2)
      ops.lsetxattr(
        Buffer.from(target),
        Buffer.from('security.capability'),
        Buffer.from(CAPABILITIES[0] as string, 'hex'),
      );
    if (which === 3)
      ops.lsetxattr(Buffer.from(target), Buffer.from('trusted.t'), Buffer.from(`v${this.clock}`));
    if (which === 3)
      ops.lsetxattr(
        Buffer.from(target),
        Buffer.from('security.capability'),
        Buffer.from(CAPABILITIES[1] as string, 'hex'),
      );
  }
}

/** Docker's ChangesDirs over two flat snapshots (the reference for listChanges). */
function referenceChanges(old: TreeSnapshot, next: TreeSnapshot): Change[] {
  const kinds = new Map<string, 0 | 1 | 2>();
  const parentOf = (p: string) => path.posix.dirname(p);
  for (const [p, entry] of next) {
    if (p === '/') continue;
    const before = old.get(p);
    if (before === undefined) kinds.set(p, 1);
    else if (statDifferent(before, entry)) kinds.set(p, 0);
  }
  for (const p of old.keys()) {
    if (p !== '/' && !next.has(p) && next.get(parentOf(p))?.type === 'dir') kinds.set(p, 2);
  }
  for (const [p, entry] of next) {
    if (p === '/' || entry.type !== 'dir' || kinds.has(p)) continue;
    if ([...kinds.keys()].some((changed) => changed.startsWith(`${p}/`))) kinds.set(p, 0);
  }
  return [...kinds].map(([p, kind]) => ({ path: p, kind })).sort((a, b) => byBytes(a.path, b.path));
}

function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

type Entry = NonNullable<ReturnType<TreeSnapshot['get']>>;

function statDifferent(old: Entry, next: Entry): boolean {
  if (
    old.type !== next.type ||
    old.mode !== next.mode ||
    old.uid !== next.uid ||
    old.gid !== next.gid
  )
    return true;
  if (JSON.stringify(old.rdev) !== JSON.stringify(next.rdev)) return true;
  if (old.xattrs['security.capability'] !== next.xattrs['security.capability']) return true;
  if (old.type === 'dir') return false;
  if (sizeOf(old) !== sizeOf(next)) return true;
  const [oldSec, oldNsec] = (old.mtime as string).split('.');
  const [nextSec, nextNsec] = (next.mtime as string).split('.');
  return (
    oldSec !== nextSec || !(oldNsec === nextNsec || Number(oldNsec) === 0 || Number(nextNsec) === 0)
  );
}

function sizeOf(entry: Entry): number {
  return entry.type === 'symlink' ? Buffer.byteLength(entry.target as string) : entry.size;
}

/** Docker's ChangesSize from the snapshot: added and modified non-directories, links once. */
function referenceSize(changes: Change[], next: TreeSnapshot): number {
  const counted = new Set<string>();
  let size = 0;
  for (const change of changes) {
    const entry = next.get(change.path);
    if (change.kind === 2 || entry === undefined || entry.type === 'dir') continue;
    if (entry.links !== undefined) {
      const inode = [change.path, ...entry.links].sort()[0] as string;
      if (counted.has(inode)) continue;
      counted.add(inode);
    }
    size += sizeOf(entry);
  }
  return size;
}

let run = 0;

describe('archive: diff then apply reproduces the tree', () => {
  process.umask(0);
  it('for random trees and random changes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { maxLength: 30 }),
        fc.array(opArb, { minLength: 1, maxLength: 15 }),
        async (build, change) => {
          const dir = path.join(base, String(run++));
          const [parent, child, rebuilt] = ['parent', 'child', 'rebuilt'].map((d) =>
            path.join(dir, d),
          ) as [string, string, string];
          for (const root of [parent, child, rebuilt]) {
            mkdirSync(root, { recursive: true });
            const builder = new TreeBuilder(root, 1_500_000_000);
            for (const op of build) builder.apply(op);
          }
          const changer = new TreeBuilder(child, 2_000_000_000);
          for (const op of change) changer.apply(op);

          const options = { mtime: 'ns', dirMtimes: false } as const;
          const [oldSnap, nextSnap] = [
            await snapshotTree(parent, options),
            await snapshotTree(child, options),
          ];
          const changes = (await changesHere(child, parent)).map(({ path: p, kind }) => ({
            path: textOf(p),
            kind,
          }));
          assert.deepEqual(changes, referenceChanges(oldSnap, nextSnap));
          assert.equal(await sizeHere(child, parent), referenceSize(changes, nextSnap));

          const tar = new PassThrough();
          await Promise.all([
            exportHere(child, parent, tar).then(() => tar.end()),
            applyLayerHere(rebuilt, tar),
          ]);
          const compare = { mtime: 'seconds', dirMtimes: false } as const;
          assertSameTree(
            await snapshotTree(rebuilt, compare),
            await snapshotTree(child, compare),
            'diff applied to the parent',
          );
          rmSync(dir, { recursive: true });
        },
      ),
      { numRuns: 150 },
    );
  });
});
