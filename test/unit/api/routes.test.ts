import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  type ApiContext,
  type ApiResponse,
  CommitStats,
  EventHub,
  route,
  type StampedEvent,
} from '../../../src/api/index.js';
import { loadConfig } from '../../../src/config/index.js';
import { DeviceSet } from '../../../src/driver/index.js';
import { BadInputError, ExistsError, NotFoundError } from '../../../src/util/index.js';
import { tempDir } from '../../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-api-routes-');
const config = await loadConfig({
  root: path.join(dir, 'root'),
  storageOpts: ['dm.loopdatasize=64M', 'dm.loopmetadatasize=8M', 'dm.min_free_space=0%'],
  env: { PATH: '' },
});
await mkdir(config.root, { recursive: true });
const set = await DeviceSet.create(config);
after(() => set.close());
const events = new EventHub();
const seen: StampedEvent[] = [];
events.subscribe((e) => seen.push(e));
const ctx: ApiContext = { config, set, events, commits: new CommitStats() };

function json(r: ApiResponse): unknown {
  assert.ok('json' in r);
  return r.json;
}

const call = (method: string, p: string, body?: unknown) => route(ctx, { method, path: p, body });

describe('routes', () => {
  it('GET /pool is the pool status JSON', async () => {
    const r = await call('GET', '/pool');
    assert.equal(r.status, 200);
    const status = json(r) as Record<string, unknown>;
    assert.deepEqual(Object.keys(status), [
      'transactionId',
      'mode',
      'needsCheck',
      'heldRoot',
      'data',
      'metadata',
    ]);
  });

  it('POST /devices creates devices and snapshots, and publishes events', async () => {
    const r = await call('POST', '/devices', { name: 'one', size: '4M' });
    assert.equal(r.status, 201);
    assert.deepEqual(json(r), { name: 'one', id: 1, size: 4 * MiB, origin: null });
    const s = await call('POST', '/devices', { name: 'snap', origin: 'one' });
    assert.equal((json(s) as { origin: string }).origin, 'one');
    assert.deepEqual(
      seen.map((e) => [e.type, 'name' in e ? e.name : '']),
      [
        ['deviceCreated', 'one'],
        ['deviceCreated', 'snap'],
      ],
    );
    await assert.rejects(call('POST', '/devices', { name: 'one', size: MiB }), ExistsError);
  });

  it('GET /devices lists them as device list --json', async () => {
    const list = json(await call('GET', '/devices')) as Array<{ name: string }>;
    assert.deepEqual(
      list.map((d) => d.name),
      ['one', 'snap'],
    );
    assert.deepEqual(Object.keys(list[0] ?? {}), [
      'name',
      'id',
      'size',
      'mappedBytes',
      'exclusiveBytes',
      'sharedBytes',
      'origin',
    ]);
  });

  it('DELETE /devices/NAME removes it', async () => {
    const r = await call('DELETE', '/devices/snap');
    assert.deepEqual(json(r), { name: 'snap', outcome: 'removed' });
    await assert.rejects(call('DELETE', '/devices/snap'), NotFoundError);
    assert.equal(seen.at(-1)?.type, 'deviceRemoved');
  });

  it('bad bodies, paths and methods are user errors', async () => {
    await assert.rejects(call('POST', '/devices', undefined), BadInputError);
    await assert.rejects(call('POST', '/devices', { name: 'x' }), /exactly one of/);
    await assert.rejects(call('POST', '/devices', { name: 'x', size: -1 }), BadInputError);
    await assert.rejects(
      call('POST', '/devices', { name: 'x', size: 1, origin: 'one' }),
      BadInputError,
    );
    await assert.rejects(call('GET', '/nope'), NotFoundError);
    await assert.rejects(call('PUT', '/pool'), /PUT is not allowed on \/pool/);
  });

  it('POST /pool/resize grows the data space', async () => {
    const r = await call('POST', '/pool/resize', { dataSize: 128 * MiB });
    const status = json(r) as { data: { totalBlocks: number; blockSize: number } };
    assert.equal(status.data.totalBlocks * status.data.blockSize, 128 * MiB);
    await assert.rejects(call('POST', '/pool/resize', {}), BadInputError);
  });

  it('GET /info is the devicemapper section', async () => {
    const info = json(await call('GET', '/info')) as { driver: string };
    assert.equal(info.driver, 'devicemapper');
  });

  it('GET /metrics is Prometheus text', async () => {
    const r = await call('GET', '/metrics');
    assert.ok('text' in r);
    assert.match(r.contentType, /^text\/plain; version=0\.0\.4/);
    assert.match(r.text, /^thinp_device_mapped_bytes\{device="one"\} 0$/m);
  });
});
