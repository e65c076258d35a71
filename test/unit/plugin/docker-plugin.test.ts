/**
 * The graphdriver plugin's wire, spoken as dockerd speaks it (POST /<Method> on a UNIX
 * socket, JSON or raw tar bodies, odd Host headers), against a small in-memory layer backend
 * that records what reached it. The real storage driver under a real dockerd is tested in
 * test/peers/docker-plugin.test.ts; this file pins the protocol: shapes, error answers, and
 * that a refused request reaches nothing.
 */

import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { Change, LayerListing, LayerStore } from '../../../src/graph/index.js';
import {
  DockerGraphDriver,
  DockerPluginServer,
  storageOptions,
} from '../../../src/plugin/index.js';
import { ConfigError } from '../../../src/util/index.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-plugin-');
const socket = path.join(dir, 'plugins', 'thinp-unit.sock');

/** Layers as a map; every call is recorded so a refused request can be shown to reach nothing. */
class RecordingBackend implements LayerStore {
  readonly calls: string[] = [];
  readonly layers = new Map<string, { parent?: string; size?: number; data: Buffer }>();
  readonly counts = new Map<string, number>();

  async create(id: string, parent: string | undefined, o?: { size?: number }) {
    this.calls.push(`create ${id} ${parent ?? ''} ${o?.size ?? ''}`);
    this.layers.set(id, { parent, size: o?.size, data: Buffer.alloc(0) });
  }
  async createReadWrite(id: string, parent: string | undefined, o?: { size?: number }) {
    this.calls.push(`createReadWrite ${id} ${parent ?? ''} ${o?.size ?? ''}`);
    this.layers.set(id, { parent, size: o?.size, data: Buffer.alloc(0) });
  }
  async remove(id: string) {
    this.calls.push(`remove ${id}`);
    return this.layers.delete(id) ? ('removed' as const) : ('absent' as const);
  }
  exists(id: string) {
    return this.layers.has(id);
  }
  async get(id: string) {
    this.calls.push(`get ${id}`);
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    return `/mnt/${id}/rootfs`;
  }
  async put(id: string) {
    this.calls.push(`put ${id}`);
  }
  metadata(id: string) {
    return { DeviceId: '7', DeviceSize: '10737418240', DeviceName: `thinp-${id}` };
  }
  async applyDiff(id: string, _parent: string | undefined, tar: NodeJS.ReadableStream) {
    const chunks: Buffer[] = [];
    for await (const c of tar) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    const layer = this.layers.get(id);
    if (layer !== undefined) layer.data = data;
    this.calls.push(`applyDiff ${id} ${data.length}`);
    return data.length;
  }
  async diff(id: string) {
    return Readable.from([this.layers.get(id)?.data ?? Buffer.alloc(0)]);
  }
  async changes(): Promise<Change[]> {
    return [
      { path: '/etc', kind: 0 },
      { path: '/etc/new', kind: 1 },
    ];
  }
  async diffSize() {
    return 42;
  }
  async list(): Promise<LayerListing[]> {
    return [];
  }
  async status(): Promise<Array<[string, string]>> {
    return [
      ['Pool Name', 'thinp-pool'],
      ['Pool Blocksize', '65.54kB'],
    ];
  }
  async cleanup() {
    this.calls.push('cleanup');
  }
}

const backend = new RecordingBackend();
const appliedOpts: string[][] = [];
const driver = new DockerGraphDriver({
  layers: backend,
  async applyStorageOptions(opts) {
    for (const o of opts) {
      if (!o.startsWith('dm.')) {
        throw new ConfigError(`unknown storage option ${o.split('=')[0]}`, {
          hint: 'see thinp config --help',
        });
      }
    }
    appliedOpts.push([...opts]);
  },
});
const server = new DockerPluginServer(driver);

before(() => server.listen(socket));
after(() => server.close());

interface Answer {
  status: number;
  body: string;
  json: Record<string, unknown> | undefined;
}

/** One call the way dockerd makes it: POST, v1.2 Accept, the socket path as Host. */
function call(
  target: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  method = 'POST',
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        path: target,
        method,
        headers: {
          host: socket,
          accept: 'application/vnd.docker.plugins.v1.2+json',
          ...headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const json = (v: unknown) => `${JSON.stringify(v)}\n`;

describe('before Init', () => {
  test('Plugin.Activate with no body lists GraphDriver', async () => {
    const a = await call('/Plugin.Activate');
    assert.equal(a.status, 200);
    assert.deepEqual(a.json, { Implements: ['GraphDriver'] });
  });

  test('a layer call before Init is refused with the start order as the fix', async () => {
    const a = await call('/GraphDriver.Create', json({ ID: 'a' }));
    assert.equal(a.status, 500);
    assert.match(String(a.json?.Err), /has not been initialised.*GraphDriver\.Init first/);
    assert.deepEqual(backend.calls, []);
  });

  test('Init with a bad storage option fails with thinp message and applies nothing', async () => {
    const a = await call(
      '/GraphDriver.Init',
      json({ Home: path.join(dir, 'home'), Opts: ['size=1G'], UIDMaps: null, GIDMaps: null }),
    );
    assert.equal(a.status, 500);
    assert.match(
      String(a.json?.Err),
      /^thinp: unknown storage option size; see thinp config --help$/,
    );
    assert.deepEqual(appliedOpts, []);
  });

  test('Init with user namespace maps is refused', async () => {
    const a = await call(
      '/GraphDriver.Init',
      json({
        Home: path.join(dir, 'home'),
        Opts: [],
        UIDMaps: [{ container_id: 0, host_id: 100000, size: 65536 }],
        GIDMaps: null,
      }),
    );
    assert.equal(a.status, 500);
    assert.match(String(a.json?.Err), /user namespace remapping is not supported/);
  });
});

describe('after Init', () => {
  before(async () => {
    const a = await call(
      '/GraphDriver.Init',
      json({
        Home: path.join(dir, 'home'),
        Opts: ['dm.basesize=20G'],
        UIDMaps: null,
        GIDMaps: null,
      }),
    );
    assert.equal(a.status, 200, a.body);
    assert.deepEqual(a.json, {});
    assert.deepEqual(appliedOpts, [['dm.basesize=20G']]);
  });

  test('Capabilities wraps ReproducesExactDiffs', async () => {
    const a = await call('/GraphDriver.Capabilities', json({}));
    assert.deepEqual(a.json, { Capabilities: { ReproducesExactDiffs: false } });
  });

  test('Create, CreateReadWrite with a size, Exists, Get, Put, GetMetadata, Remove', async () => {
    assert.equal((await call('/GraphDriver.Create', json({ ID: 'l1' }))).status, 200);
    const rw = await call(
      '/GraphDriver.CreateReadWrite',
      json({ ID: 'c1-init', Parent: 'l1', StorageOpt: { Size: '20G' } }),
    );
    assert.equal(rw.status, 200, rw.body);
    assert.deepEqual((await call('/GraphDriver.Exists', json({ ID: 'c1-init' }))).json, {
      Exists: true,
    });
    assert.deepEqual((await call('/GraphDriver.Get', json({ ID: 'l1' }))).json, {
      Dir: '/mnt/l1/rootfs',
    });
    assert.equal((await call('/GraphDriver.Put', json({ ID: 'l1' }))).status, 200);
    assert.deepEqual((await call('/GraphDriver.GetMetadata', json({ ID: 'l1' }))).json, {
      Metadata: { DeviceId: '7', DeviceSize: '10737418240', DeviceName: 'thinp-l1' },
    });
    assert.equal((await call('/GraphDriver.Remove', json({ ID: 'c1-init' }))).status, 200);
    assert.deepEqual(backend.calls.slice(-5), [
      'create l1  ',
      `createReadWrite c1-init l1 ${20 * 1024 ** 3}`,
      'get l1',
      'put l1',
      'remove c1-init',
    ]);
  });

  test('an unknown storage option is refused before anything is created', async () => {
    const before = backend.calls.length;
    const a = await call(
      '/GraphDriver.CreateReadWrite',
      json({ ID: 'x', StorageOpt: { foo: '1' } }),
    );
    assert.equal(a.status, 500);
    assert.match(String(a.json?.Err), /Unknown option foo/);
    assert.equal(backend.calls.length, before);
  });

  test('ApplyDiff reads raw tar from a chunked body; Diff answers raw bytes', async () => {
    await call('/GraphDriver.Create', json({ ID: 'l2', Parent: 'l1' }));
    const payload = Buffer.alloc(3 * 65536 + 17, 0x5a);
    const a = await call('/GraphDriver.ApplyDiff?id=l2&parent=l1', payload, {
      'transfer-encoding': 'chunked',
    });
    assert.equal(a.status, 200, a.body);
    assert.deepEqual(a.json, { Size: payload.length });
    const d = await call('/GraphDriver.Diff', json({ ID: 'l2', Parent: 'l1' }));
    assert.equal(d.status, 200);
    assert.equal(d.body, payload.toString('utf8'));
  });

  test('Changes, DiffSize and Status keep the wire field names', async () => {
    assert.deepEqual((await call('/GraphDriver.Changes', json({ ID: 'l2', Parent: 'l1' }))).json, {
      Changes: [
        { Path: '/etc', Kind: 0 },
        { Path: '/etc/new', Kind: 1 },
      ],
    });
    assert.deepEqual((await call('/GraphDriver.DiffSize', json({ ID: 'l2' }))).json, { Size: 42 });
    assert.deepEqual((await call('/GraphDriver.Status', json({}))).json, {
      Status: [
        ['Pool Name', 'thinp-pool'],
        ['Pool Blocksize', '65.54kB'],
      ],
    });
  });

  test('bad requests get {"Err"} and reach nothing', async () => {
    const before = backend.calls.length;
    const cases: Array<[string, string | undefined, RegExp]> = [
      ['/GraphDriver.Create', '{"ID": ', /not JSON/],
      ['/GraphDriver.Create', '[1,2]', /not a JSON object/],
      ['/GraphDriver.Create', json({ ID: 7 }), /ID must be a string/],
      ['/GraphDriver.Create', json({}), /ID is missing/],
      ['/GraphDriver.Create', json({ ID: '../../etc' }), /is not a layer id/],
      ['/GraphDriver.Get', json({ ID: 'x', Parent: '/abs' }), /Parent "\/abs" is not a layer id/],
      ['/GraphDriver.ApplyDiff?parent=l1', 'tar', /id is missing/],
      [
        '/GraphDriver.CreateReadWrite',
        json({ ID: 'y', StorageOpt: { size: 'lots' } }),
        /size=lots is not a size/,
      ],
    ];
    for (const [target, body, expected] of cases) {
      const a = await call(target, body);
      assert.equal(a.status, 500, `${target} ${body}`);
      assert.match(String(a.json?.Err), expected, `${target} ${body}`);
      assert.match(String(a.json?.Err), /^thinp: /);
    }
    assert.equal(backend.calls.length, before);
  });

  test('an unknown endpoint is 404 with Err; a GET is refused', async () => {
    const a = await call('/GraphDriver.Frobnicate', json({}));
    assert.equal(a.status, 404);
    assert.match(String(a.json?.Err), /no plugin endpoint \/GraphDriver.Frobnicate/);
    const g = await call('/GraphDriver.Status', undefined, {}, 'GET');
    assert.equal(g.status, 500);
    assert.match(String(g.json?.Err), /takes POST/);
  });

  test('any Host header is accepted (dockerd sends the socket path or a dummy name)', async () => {
    for (const host of ['plugin.moby.localhost', '%2Frun%2Fdocker%2Fplugins%2Fthinp.sock']) {
      const a = await call('/Plugin.Activate', undefined, { host });
      assert.equal(a.status, 200);
    }
  });

  test('Cleanup reaches the store', async () => {
    assert.equal((await call('/GraphDriver.Cleanup', json({}))).status, 200);
    assert.equal(backend.calls.at(-1), 'cleanup');
  });
});

test('storageOptions: size in binary units, any case; other keys refused', () => {
  assert.deepEqual(storageOptions({ SIZE: '1G' }), { size: 1024 ** 3 });
  assert.deepEqual(storageOptions({}), {});
  assert.throws(() => storageOptions({ zize: '1G' }), /Unknown option zize/);
});
