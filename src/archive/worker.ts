/**
 * The archive worker: a child process that does one archive operation on directories and
 * exits (protocol: worker-protocol.ts). All filesystem work of the archive layer happens
 * here, so that a daemon whose own NBD exports back these directories never blocks its
 * event loop or thread pool on them. Its umask is 0: modes come from the tar alone.
 */

import { writeSync } from 'node:fs';
import { encodeError } from './errors.js';
import { applyLayerHere, changesHere, exportHere, sizeHere } from './operations.js';
import { textOf } from './raw-name.js';
import { REPLY_FD, type Reply, type Request } from './worker-protocol.js';

async function run(request: Request): Promise<Reply> {
  switch (request.op) {
    case 'apply': {
      const { size, warnings } = await applyLayerHere(request.root, process.stdin);
      return { ok: true, size, warnings };
    }
    case 'export':
      await exportHere(request.root, request.parent, process.stdout);
      return { ok: true };
    case 'changes': {
      const changes = await changesHere(request.root, request.parent);
      return { ok: true, changes: changes.map(({ path, kind }) => ({ path: textOf(path), kind })) };
    }
    case 'size':
      return { ok: true, size: await sizeHere(request.root, request.parent) };
  }
}

/** How often the worker looks whether the process that started it is still there. */
const PARENT_CHECK_MS = 200;

/**
 * Ends the worker when its parent dies (the daemon killed with -9): an orphan would go on
 * writing into a mounted layer, keeping it busy for the restarted daemon that cleans it up.
 */
function exitWithParent(): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(1);
  }, PARENT_CHECK_MS).unref();
}

async function main(): Promise<void> {
  exitWithParent();
  process.umask(0);
  let reply: Reply;
  const request = JSON.parse(process.argv[2] ?? '{}') as Request;
  try {
    reply = await run(request);
  } catch (err) {
    reply = { ok: false, error: encodeError(err, `layer root ${request.root}`) };
  }
  writeSync(REPLY_FD, `${JSON.stringify(reply)}\n`);
  // Stop reading a tar the operation gave up on, so that the process can exit.
  process.stdin.destroy();
}

await main();
