/**
 * The records of a Docker devicemapper root, parsed from the texts Docker 20.10 writes:
 * device records, layer directories, repositories.json, image configs and container
 * configs; malformed ones fail naming the file; references resolve by name, tag, id and
 * unique prefix, and an ambiguous or unknown one fails with its fix.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  AmbiguousRefError,
  type LegacyCatalog,
  LegacyRecordError,
  parseContainerConfig,
  parseDeviceRecord,
  parseImageDiffIds,
  parseLayerRecord,
  parseRepositories,
  parseTransaction,
  resolveRef,
  UnknownRefError,
} from '../../../src/rescue/index.js';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'c'.repeat(64)}`;

describe('legacy Docker records', () => {
  it('parses a device record in the Go field names', () => {
    const r = parseDeviceRecord(
      '{"device_id":7,"size":10737418240,"transaction_id":9,"initialized":false,"deleted":true}',
      'metadata/x',
    );
    assert.deepEqual(r, {
      deviceId: 7,
      size: 10737418240,
      transactionId: 9,
      initialized: false,
      deleted: true,
    });
  });

  it('refuses a device record without a device id, naming the file', () => {
    assert.throws(
      () => parseDeviceRecord('{"size":1,"transaction_id":1}', '/r/devicemapper/metadata/x'),
      (e: unknown) =>
        e instanceof LegacyRecordError &&
        /\/r\/devicemapper\/metadata\/x has no whole number "device_id"/.test(e.message) &&
        /move that file aside/.test(e.hint ?? ''),
    );
    assert.throws(() => parseDeviceRecord('{not json', 'f'), /f is not valid JSON/);
    assert.throws(() => parseDeviceRecord('[1]', 'f'), /f is not a JSON object/);
  });

  it('parses the driver transaction record', () => {
    assert.deepEqual(
      parseTransaction('{"open_transaction_id":9,"device_hash":"abc","device_id":7}', 't'),
      { openTransactionId: 9, deviceHash: 'abc', deviceId: 7 },
    );
    assert.throws(
      () => parseTransaction('{"device_id":7}', 't'),
      /t has no whole number "open_transaction_id"/,
    );
  });

  it('parses a layer directory, with and without a parent', () => {
    const top = parseLayerRecord(
      B,
      { diff: `${C}\n`, parent: A, 'cache-id': 'abc123\n', size: '4096' },
      'layerdb/sha256/b',
    );
    assert.deepEqual(top, { chainId: B, diffId: C, parent: A, cacheId: 'abc123', size: 4096 });
    const bottom = parseLayerRecord(A, { diff: A, 'cache-id': 'x' }, 'd');
    assert.equal(bottom.parent, undefined);
    assert.throws(
      () => parseLayerRecord(A, { diff: 'sha256:zz', 'cache-id': 'x' }, 'd'),
      /d\/diff does not hold a sha256 digest/,
    );
    assert.throws(
      () => parseLayerRecord(A, { diff: A, 'cache-id': '../etc' }, 'd'),
      /d\/cache-id does not hold a graphdriver id/,
    );
  });

  it('takes the tags of repositories.json and leaves digest references out', () => {
    const tags = parseRepositories(
      JSON.stringify({
        Repositories: {
          busybox: { 'busybox:latest': A, [`busybox@${B}`]: A },
          'reg.example/app': { 'reg.example/app:1': B },
        },
      }),
      'repositories.json',
    );
    assert.deepEqual(
      [...tags],
      [
        ['busybox:latest', A],
        ['reg.example/app:1', B],
      ],
    );
    assert.deepEqual([...parseRepositories('{}', 'r')], []);
  });

  it("reads an image config's diff ids and a container config's name and image", () => {
    const config = JSON.stringify({
      architecture: 'amd64',
      rootfs: { type: 'layers', diff_ids: [A, B] },
    });
    assert.deepEqual(parseImageDiffIds(config, 'img'), [A, B]);
    assert.throws(() => parseImageDiffIds('{"rootfs":{}}', 'img'), /img has no rootfs.diff_ids/);
    const ctr = parseContainerConfig(
      JSON.stringify({ ID: 'c1', Name: '/web', Image: A, Driver: 'devicemapper', Config: {} }),
      'config.v2.json',
    );
    assert.deepEqual(ctr, { id: 'c1', name: 'web', image: A, driver: 'devicemapper', created: '' });
    assert.throws(
      () => parseContainerConfig('{"ID":"c1","Name":"/x"}', 'config.v2.json'),
      /config.v2.json has no "Image"/,
    );
  });
});

describe('references into a legacy root', () => {
  const catalog = {
    paths: { root: '/var/lib/docker' },
    devices: new Map(),
    layers: new Map(),
    images: [
      {
        id: `sha256:ab${'1'.repeat(62)}`,
        config: Buffer.from(''),
        diffIds: [],
        chain: [],
        tags: ['app:latest', 'app:1', 'reg.example:5000/app:latest'],
      },
      {
        id: `sha256:ab${'2'.repeat(62)}`,
        config: Buffer.from(''),
        diffIds: [],
        chain: [],
        tags: [],
      },
    ],
    containers: [
      {
        id: `cd${'3'.repeat(62)}`,
        name: 'web',
        image: A,
        driver: 'devicemapper',
        mount: undefined,
      },
    ],
  } as unknown as LegacyCatalog;

  it('resolves a container name, a tag, a repository alone (latest) and an id prefix', () => {
    assert.equal(resolveRef(catalog, 'web').kind, 'container');
    assert.equal(resolveRef(catalog, '/web').kind, 'container');
    const tagged = resolveRef(catalog, 'app:1');
    assert.ok(tagged.kind === 'image' && tagged.image.tags.includes('app:1'));
    const latest = resolveRef(catalog, 'app');
    assert.ok(latest.kind === 'image' && latest.image.tags.includes('app:latest'));
    const registry = resolveRef(catalog, 'reg.example:5000/app');
    assert.ok(registry.kind === 'image' && registry.image.tags.includes('app:1'));
    const byPrefix = resolveRef(catalog, 'ab2');
    assert.ok(byPrefix.kind === 'image' && byPrefix.image.id.startsWith('sha256:ab2'));
    const ctr = resolveRef(catalog, 'cd3');
    assert.equal(ctr.kind, 'container');
  });

  it('refuses an ambiguous prefix and an unknown name, with the fix', () => {
    assert.throws(
      () => resolveRef(catalog, 'ab'),
      (e: unknown) =>
        e instanceof AmbiguousRefError && /ab names 2 images or containers/.test(e.message),
    );
    assert.throws(
      () => resolveRef(catalog, 'nosuch'),
      (e: unknown) =>
        e instanceof UnknownRefError &&
        e.describe() ===
          "no image or container of /var/lib/docker is named nosuch; see 'thinp rescue docker list' for the names, tags and ids",
    );
  });
});
