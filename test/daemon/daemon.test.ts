import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ApiClient, isDaemonRunning, type StampedEvent } from '../../src/api/index.js';
import { loadConfig } from '../../src/config/index.js';
import { type DaemonHandle, startDaemon } from '../../src/daemon/index.js';
import { pathExists } from '../../src/util/index.js';
import { thinp } from '../support/cli.js';
import { requirePeer } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const OPTS = ['dm.loopdatasize=64M', 'dm.loopmetadatasize=8M', 'dm.min_free_space=0%'];
const dir = await tempDir('thinp-daemon-');
const repo = path.resolve(import.meta.dirname, '../..');

/** `thinp daemon` on `root` as a process, once it says where it serves. */
async function startDaemonProcess(root: string) {
  const args = [path.join(repo, 'dist/cli/main.js'), '--root', root];
  for (const o of OPTS) args.push('--storage-opt', o);
  const child = spawn(process.execPath, [...args, 'daemon'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    out += s;
  });
  child.stderr.resume();
  const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  for (let i = 0; i < 100 && !out.includes('Serving the control API'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, out, closed };
}

describe('startDaemon in process', () => {
  const root = path.join(dir, 'in-process');
  const logs: string[] = [];
  let daemon: DaemonHandle;
  let client: ApiClient;

  before(async () => {
    const config = await loadConfig({ root, storageOpts: OPTS, env: { PATH: '' } });
    daemon = await startDaemon(config, { log: (line) => logs.push(line) });
    client = new ApiClient(daemon.controlSocket);
  });
  after(() => daemon.stop());

  it('serves the API on a 0600 socket and logs JSON lines', async () => {
    assert.equal(await isDaemonRunning(daemon.controlSocket), true);
    const { stat } = await import('node:fs/promises');
    assert.equal((await stat(daemon.controlSocket)).mode & 0o777, 0o600);
    const events = logs.map((l) => (JSON.parse(l) as { event: string }).event);
    for (const e of ['pool-created', 'nbd-listening', 'listening', 'started']) {
      assert.ok(events.includes(e), `no ${e} in ${events.join(', ')}`);
    }
  });

  it('creates, lists and removes devices through the API, with events', async () => {
    const seen: StampedEvent[] = [];
    const stream = await client.events((e) => seen.push(e));
    await client.createDevice('vol', { size: 8 * MiB });
    await client.createDevice('snap', { origin: 'vol' });
    const names = (await client.listDevices()).map((d) => d.name);
    assert.deepEqual(names, ['snap', 'vol']);
    assert.equal(await client.removeDevice('snap'), 'removed');
    await new Promise((r) => setTimeout(r, 100));
    stream.close();
    assert.deepEqual(
      seen.map((e) => e.type),
      ['deviceCreated', 'deviceCreated', 'deviceRemoved'],
    );
  });

  it('nbdinfo lists the devices over ROOT/nbd.sock', async () => {
    const nbdinfo = await requirePeer('nbdinfo');
    const uri = `nbd+unix:///?socket=${daemon.config.layout.nbdSocket}`;
    const { stdout } = await run(nbdinfo, ['--list', uri]);
    assert.match(stdout, /export="vol"/);
    assert.match(stdout, /export-size: 8388608/);
  });

  it('nbdinfo --map shows a written block as data and the rest as a hole', async () => {
    const nbdinfo = await requirePeer('nbdinfo');
    const nbdcopy = await requirePeer('nbdcopy');
    const uri = `nbd+unix:///vol?socket=${daemon.config.layout.nbdSocket}`;
    const file = path.join(dir, 'block');
    await writeFile(file, Buffer.alloc(65536, 0x78));
    await run(nbdcopy, [file, uri]);
    const { stdout } = await run(nbdinfo, ['--map', uri]);
    assert.match(stdout, /^\s*0\s+65536\s+0\s+data$/m);
    assert.match(stdout, /65536\s+8323072\s+3\s+hole,zero/);
  });

  it('keeps a device busy while a client is connected, and finishes its removal after', async () => {
    const qemuIo = await requirePeer('qemu-io');
    await client.createDevice('held', { size: 4 * MiB });
    const uri = `nbd+unix:///held?socket=${daemon.config.layout.nbdSocket}`;
    const child = spawn(qemuIo, ['-f', 'raw', uri], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.write('write -P 0x5a 0 4k\n');
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    for (let i = 0; i < 200 && !/wrote 4096/.test(out); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.match(out, /wrote 4096/);
    assert.equal(await client.removeDevice('held'), 'deferred', 'busy while connected');
    child.stdin.end('quit\n');
    await new Promise((r) => child.once('close', r));
    let names: string[] = [];
    for (let i = 0; i < 100; i++) {
      names = (await client.listDevices()).map((d) => d.name);
      if (!names.includes('held')) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(!names.includes('held'), 'the deferred removal finished when the client left');
  });

  it('device write and read move raw bytes through the daemon', async () => {
    await client.createDevice('bytes', { size: 8 * MiB });
    const data = Buffer.alloc(3 * MiB + 777);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
    const { runThinp } = await import('../support/cli-process.js');
    const write = await runThinp(['--root', root, 'device', 'write', 'bytes', '--offset', '4097'], {
      cwd: dir,
      input: data,
    });
    assert.equal(write.status, 0, write.stderr);
    const read = await runThinp(
      [
        '--root',
        root,
        'device',
        'read',
        'bytes',
        '--offset',
        '4097',
        '--length',
        String(data.length),
      ],
      { cwd: dir },
    );
    assert.equal(read.status, 0, read.stderr);
    assert.ok(read.bytes.equals(data), 'the bytes came back through the daemon');
    const past = await runThinp(
      ['--root', root, 'device', 'read', 'bytes', '--offset', String(9 * MiB)],
      {
        cwd: dir,
      },
    );
    assert.equal(past.status, 1);
    assert.match(past.stderr, /runs past the end of device bytes/);
    assert.equal(await client.removeDevice('bytes'), 'removed', 'nothing is left busy');
  });

  it('GET /metrics shows space, devices and counters', async () => {
    const text = await client.metrics();
    assert.match(text, /^thinp_data_total_blocks 1024$/m);
    assert.match(text, /^thinp_device_mapped_bytes\{device="vol"\} 65536$/m);
    assert.match(text, /^thinp_commits_total [1-9]\d*$/m);
  });

  it('the CLI goes through the API while the daemon runs', async () => {
    const cwd = dir;
    const list = await thinp(['--root', root, 'device', 'list', '--json'], { cwd });
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as Array<{ name: string }>).map((d) => d.name),
      ['vol'],
    );
    const create = await thinp(['--root', root, 'device', 'create', 'cli', '--size', '1M'], {
      cwd,
    });
    assert.equal(create.status, 0, create.stderr);
    const status = await thinp(['--root', root, 'pool', 'status', '--json'], { cwd });
    assert.equal(status.status, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { mode: string }).mode, 'rw');
    const info = await thinp(['--root', root, 'info'], { cwd });
    assert.match(info.stdout, /^Storage Driver: devicemapper$/m);
    const busy = await thinp(['--root', root, 'device', 'remove', 'vol'], { cwd });
    assert.notEqual(busy.status, 2);
    const remove = await thinp(['--root', root, 'device', 'remove', 'cli'], { cwd });
    assert.equal(remove.status, 0, remove.stderr);
    const missing = await thinp(['--root', root, 'device', 'remove', 'nope'], { cwd });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /nope/);
  });

  it('a second daemon on the root is refused', async () => {
    await assert.rejects(startDaemon(daemon.config, { log: () => {} }), /in use/);
  });
});

describe('the daemon process', () => {
  it('stops cleanly when the thinp daemon command that launched it is killed with -9', async () => {
    const root = path.join(dir, 'orphaned');
    const { child } = await startDaemonProcess(root);
    const control = path.join(root, 'thinp.sock');
    assert.equal(await isDaemonRunning(control), true);
    child.kill('SIGKILL');
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 100));
      gone = !(await pathExists(path.join(root, 'thinp.lock')));
    }
    assert.ok(gone, 'the daemon outlived the command that started it');
    assert.equal(await pathExists(control), false);
    const check = await thinp(['--root', root, 'check'], { cwd: dir });
    assert.equal(check.status, 0, check.stderr + check.stdout);
  });

  it('stops on SIGTERM, removes its sockets and leaves the metadata clean', async () => {
    const root = path.join(dir, 'spawned');
    const { child, out, closed } = await startDaemonProcess(root);
    assert.match(out, /^Serving NBD on unix:.*nbd\.sock$/m);
    const sockets = [path.join(root, 'thinp.sock'), path.join(root, 'nbd.sock')];
    assert.equal(await isDaemonRunning(sockets[0] as string), true);
    const t0 = Date.now();
    child.kill('SIGTERM');
    assert.equal(await closed, 0);
    assert.ok(Date.now() - t0 < 5000, 'took too long to stop');
    for (const s of sockets) assert.equal(await pathExists(s), false, `${s} is left`);
    assert.equal(await pathExists(path.join(root, 'thinp.lock')), false);
    const check = await thinp(['--root', root, 'check'], { cwd: dir });
    assert.equal(check.status, 0, check.stderr + check.stdout);
  });
});
