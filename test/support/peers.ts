/**
 * The real thin-provisioning-tools, the reference for the metadata format. Tests that need
 * one call `requirePeer()` and fail loudly when it is missing; they never skip.
 */

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { findOnPath } from '../../src/util/index.js';

const run = promisify(execFile);

/** Enough for a `thin_dump` of any metadata a test makes. */
const MAX_BUFFER = 256 * 1024 * 1024;

/**
 * Where to look: PATH, then the sbin folders where Debian installs thin-provisioning-tools
 * and which a non-root PATH often lacks.
 */
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);

const found = new Map<string, Promise<string>>();

/**
 * The absolute path of `program`, or an Error saying how to install it. Every test that
 * runs a peer calls this first, so that a missing tool fails the test instead of skipping it.
 */
export function requirePeer(program: string): Promise<string> {
  let location = found.get(program);
  if (location === undefined) {
    location = findOnPath(program, SEARCH_PATH).then((where) => {
      if (where !== undefined) return where;
      throw new Error(
        `${program} is not installed: it comes with the Debian package ` +
          "thin-provisioning-tools; run 'npm run deps:test'",
      );
    });
    found.set(program, location);
  }
  return location;
}

export interface PeerResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `program args`, resolving with its exit status whatever it is. */
async function runPeer(program: string, args: readonly string[]): Promise<PeerResult> {
  const file = await requirePeer(program);
  try {
    const { stdout, stderr } = await run(file, args, { encoding: 'utf8', maxBuffer: MAX_BUFFER });
    return { status: 0, stdout, stderr };
  } catch (err) {
    const failure = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number') throw err;
    return { status: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

/** Runs `program args` and returns its stdout; throws with its stderr unless it exits 0. */
async function runPeerOk(program: string, args: readonly string[]): Promise<string> {
  const result = await runPeer(program, args);
  if (result.status !== 0) {
    throw new Error(
      `${program} ${args.join(' ')} exited with status ${result.status}: ${result.stderr.trim()}`,
    );
  }
  return result.stdout;
}

/** `thin_check args metaFile`; never throws on a non-zero exit status. */
export function thinCheck(metaFile: string, args: readonly string[] = []): Promise<PeerResult> {
  return runPeer('thin_check', [...args, metaFile]);
}

/** The XML (or other format, with `-f`) that `thin_dump args metaFile` prints. */
export function thinDump(metaFile: string, args: readonly string[] = []): Promise<string> {
  return runPeerOk('thin_dump', [...args, metaFile]);
}

/**
 * `thin_restore -i xmlFile -o metaFile`. The metadata file must exist and be big enough
 * for the result: the caller truncates it to size first.
 */
export async function thinRestore(xmlFile: string, metaFile: string): Promise<void> {
  await runPeerOk('thin_restore', ['-i', xmlFile, '-o', metaFile]);
}

/**
 * `thin_repair -i input -o output args`; never throws on a non-zero exit status. The output
 * file must exist and be big enough: the caller truncates it to size first.
 */
export async function thinRepair(
  input: string,
  output: string,
  args: readonly string[] = [],
): Promise<PeerResult> {
  const file = await requirePeer('thin_repair');
  try {
    const { stdout, stderr } = await run(file, ['-i', input, '-o', output, ...args], {
      encoding: 'utf8',
    });
    return { status: 0, stdout, stderr };
  } catch (err) {
    // thin_repair 0.9.0 aborts (SIGABRT) on some damage: that is a failure like any other.
    const failure = err as { code?: unknown; signal?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number' && typeof failure.signal !== 'string') throw err;
    const status = typeof failure.code === 'number' ? failure.code : 128;
    return { status, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}
