/**
 * File work on a mounted thin device, done in a child process. A daemon that runs in the
 * test's own process serves the device; file calls made here would take this process's
 * libuv threads, which the daemon needs to serve them: a few parallel reads of uncached
 * data and nothing moves. So tests write and check mounted files through these helpers.
 */

import { execFile } from 'node:child_process';

/** Writes `count` random files into argv[1], reading each back at once; prints name → sha256. */
const WRITER = `
const { createHash, randomBytes, randomInt } = require('node:crypto');
const { readFileSync, writeFileSync } = require('node:fs');
const path = require('node:path');
const [dir, count] = process.argv.slice(1);
const sums = {};
for (let i = 0; i < Number(count); i++) {
  const data = randomBytes(i % 5 === 0 ? randomInt(1 << 20, 4 << 20) : randomInt(1, 300000));
  const file = path.join(dir, 'file-' + i + '.bin');
  writeFileSync(file, data);
  const sum = createHash('sha256').update(data).digest('hex');
  const back = createHash('sha256').update(readFileSync(file)).digest('hex');
  if (back !== sum) throw new Error(file + ' read back differently');
  sums['file-' + i + '.bin'] = sum;
}
process.stdout.write(JSON.stringify(sums));
`;

/** Prints name → sha256 of every regular file in argv[1]. */
const SUMMER = `
const { createHash } = require('node:crypto');
const { readFileSync, readdirSync } = require('node:fs');
const path = require('node:path');
const dir = process.argv[1];
const sums = {};
for (const e of readdirSync(dir, { withFileTypes: true })) {
  if (e.isFile()) sums[e.name] = createHash('sha256').update(readFileSync(path.join(dir, e.name))).digest('hex');
}
process.stdout.write(JSON.stringify(sums));
`;

function runNode(source: string, args: string[]): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['-e', source, ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 300_000 },
      (err, stdout, stderr) => {
        if (err !== null) reject(new Error(`${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as Record<string, string>);
      },
    );
  });
}

/** Writes `count` files into `dir` (each read back and checked there); their sha256 sums. */
export async function writeFilesInChild(dir: string, count: number): Promise<Map<string, string>> {
  return new Map(Object.entries(await runNode(WRITER, [dir, String(count)])));
}

/** The sha256 of every regular file in `dir`, read in a child process. */
export async function checksumsInChild(dir: string): Promise<Map<string, string>> {
  return new Map(Object.entries(await runNode(SUMMER, [dir])));
}
