import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { type LoadRequest, loadConfig, STATIC_DEFAULTS } from '../../../src/config/index.js';
import { ConfigError, findOnPath } from '../../../src/util/index.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir();

function load(request: Partial<LoadRequest> = {}) {
  return loadConfig({ root: 'root', cwd: dir, env: { PATH: '' }, ...request });
}

async function configFile(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

/** Asserts that `promise` fails with a ConfigError whose text matches `pattern`. */
async function refuses(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    assert.match(error.describe(), pattern);
    assert.ok(error.hint, 'every configuration error names a fix');
    return true;
  });
}

describe('defaults', () => {
  test('fill every option when nothing is given', async () => {
    const config = await load();
    const { fs, blkdiscard, useDeferredDeletion, ...rest } = config.storage;
    assert.deepEqual(rest, STATIC_DEFAULTS);
    assert.equal(fs, 'ext4');
    assert.equal(blkdiscard, true);
    assert.equal(useDeferredDeletion, true);
    assert.ok(Object.values(config.origins).every((origin) => origin.kind === 'default'));
  });

  test('put the pool in loop mode under the root, resolved against the working folder', async () => {
    const config = await load();
    assert.equal(config.root, path.join(dir, 'root'));
    assert.deepEqual(config.backing, {
      kind: 'loop',
      dataFile: path.join(dir, 'root/devicemapper/data'),
      metadataFile: path.join(dir, 'root/devicemapper/metadata'),
    });
    assert.equal(config.layout.poolConfigFile, path.join(dir, 'root/thinp.json'));
  });

  test('choose xfs when mkfs.xfs is installed', async () => {
    const mkfsXfs = await findOnPath('mkfs.xfs', process.env.PATH);
    assert.ok(
      mkfsXfs,
      'mkfs.xfs is missing: npm test installs xfsprogs first (scripts/debian-deps.ts)',
    );
    assert.equal((await load({ env: process.env })).storage.fs, 'xfs');
  });

  test('choose ext4 when mkfs.xfs is not on the PATH', async () => {
    const empty = path.join(dir, 'empty-bin');
    await mkdir(empty, { recursive: true });
    assert.equal((await load({ env: { PATH: empty } })).storage.fs, 'ext4');
  });

  test('leave blocks undiscarded in direct mode unless asked, as Docker', async () => {
    const direct = ['dm.datadev=/dev/vdb', 'dm.metadatadev=/dev/vdc'];
    assert.equal((await load({ storageOpts: direct })).storage.blkdiscard, false);
    assert.equal(
      (await load({ storageOpts: [...direct, 'dm.blkdiscard=true'] })).storage.blkdiscard,
      true,
    );
  });

  test('let deferred deletion follow deferred removal unless it is given', async () => {
    const off = await load({ storageOpts: ['dm.use_deferred_removal=false'] });
    assert.equal(off.storage.useDeferredDeletion, false);
  });

  test('refuse an empty root', async () => {
    await refuses(
      load({ root: '  ' }),
      /the root directory is empty; give --root DIR or set THINP_ROOT/,
    );
  });
});

describe('storage options', () => {
  test('take keys in any case and trim spaces around key and value, as Docker', async () => {
    const config = await load({ storageOpts: [' DM.BaseSize = 20G '] });
    assert.equal(config.storage.baseSize, 20 * 1024 ** 3);
  });

  test('keep the last value of an option given twice', async () => {
    const config = await load({ storageOpts: ['dm.basesize=20G', 'dm.basesize=30G'] });
    assert.equal(config.storage.baseSize, 30 * 1024 ** 3);
  });

  test('append dm.mkfsarg and join dm.mountopt with commas', async () => {
    const config = await load({
      storageOpts: [
        'dm.mkfsarg=-m 0',
        'dm.mkfsarg=-E lazy_itable_init=0',
        'dm.mountopt=noatime',
        'dm.mountopt=nodiscard',
      ],
    });
    assert.deepEqual(config.storage.mkfsArgs, ['-m 0', '-E lazy_itable_init=0']);
    assert.equal(config.storage.mountOpt, 'noatime,nodiscard');
  });

  test('refuse text that is not KEY=VALUE', async () => {
    await refuses(
      load({ storageOpts: ['dm.basesize'] }),
      /^--storage-opt: 'dm.basesize' is not KEY=VALUE; write/,
    );
    await refuses(load({ storageOpts: ['=20G'] }), /'=20G' is not KEY=VALUE/);
  });

  test('refuse an unknown option by name, suggesting a near one', async () => {
    await refuses(
      load({ storageOpts: ['dm.basesise=20G'] }),
      /unknown option dm\.basesise; did you mean dm\.basesize\?/,
    );
    await refuses(
      load({ storageOpts: ['dm.thinp_autoextend=80'] }),
      /unknown option dm\.thinp_autoextend; /,
    );
    await refuses(
      load({ storageOpts: ['overlay2.size=1G'] }),
      /unknown option overlay2\.size; 'thinp config --help' lists every option/,
    );
  });
});

describe('the configuration file', () => {
  test("is Docker's daemon.json shape", async () => {
    const file = await configFile(
      'daemon.json',
      '{\n  "storage-driver": "devicemapper",\n  "storage-opts": ["dm.basesize=20G", "dm.fs=xfs"]\n}\n',
    );
    const config = await load({ configFile: file });
    assert.equal(config.configFile, file);
    assert.equal(config.storage.baseSize, 20 * 1024 ** 3);
    assert.equal(config.storage.fs, 'xfs');
    assert.deepEqual(config.origins.baseSize, { kind: 'file', file, at: { line: 3, column: 20 } });
  });

  test('is overridden by flags, option by option', async () => {
    const file = await configFile(
      'layered.json',
      '{"storage-opts": ["dm.basesize=20G", "dm.blocksize=128K", "dm.mkfsarg=-m 0", "dm.mkfsarg=-q"]}',
    );
    const config = await load({
      configFile: file,
      storageOpts: ['dm.basesize=40G', 'dm.mkfsarg=-K'],
    });
    assert.equal(config.storage.baseSize, 40 * 1024 ** 3);
    assert.equal(config.storage.blockSize, 128 * 1024);
    assert.deepEqual(config.storage.mkfsArgs, ['-K']);
    assert.equal(config.origins.baseSize.kind, 'flag');
    assert.equal(config.origins.blockSize.kind, 'file');
  });

  test('may be empty of options', async () => {
    const config = await load({ configFile: await configFile('empty.json', '{}') });
    assert.equal(config.storage.baseSize, STATIC_DEFAULTS.baseSize);
  });

  test('names the place of a bad option in it', async () => {
    const file = await configFile(
      'bad-value.json',
      '{\n  "storage-opts": [\n    "dm.basesize=huge"\n  ]\n}',
    );
    await refuses(
      load({ configFile: file }),
      new RegExp(`^${file}:3:5: dm\\.basesize: 'huge' is not a size; give bytes`),
    );
  });

  test('reports malformed JSON with line and column', async () => {
    const file = await configFile(
      'malformed.json',
      '{\n  "storage-opts": [\n    "dm.basesize=20G",\n  ]\n}',
    );
    await refuses(
      load({ configFile: file }),
      new RegExp(`^${file}:4:3: malformed JSON: trailing comma before '\\]'; correct the JSON`),
    );
  });

  test('must hold an object', async () => {
    const file = await configFile('array.json', '["dm.basesize=20G"]');
    await refuses(
      load({ configFile: file }),
      /1:1: the file holds an array, not an object; write \{"storage-driver"/,
    );
  });

  test('refuses properties other than storage-driver and storage-opts, by name', async () => {
    const file = await configFile('unknown.json', '{"storage-opts": [], "debug": true}');
    await refuses(
      load({ configFile: file }),
      /1:22: unknown property "debug"; a thinp configuration file holds only "storage-driver" and "storage-opts"/,
    );
  });

  test('refuses another storage driver', async () => {
    const overlay = await configFile('overlay.json', '{"storage-driver": "overlay2"}');
    await refuses(
      load({ configFile: overlay }),
      /1:20: "storage-driver" is "overlay2", but thinp is the devicemapper driver; set it to "devicemapper"/,
    );
    const numeric = await configFile('numeric.json', '{"storage-driver": 7}');
    await refuses(load({ configFile: numeric }), /"storage-driver" is a number, but thinp/);
    const nothing = await configFile('null.json', '{"storage-opts": null}');
    await refuses(load({ configFile: nothing }), /"storage-opts" is null, not an array/);
  });

  test('wants storage-opts as a list of strings', async () => {
    const text = await configFile('opts-string.json', '{"storage-opts": "dm.basesize=20G"}');
    await refuses(
      load({ configFile: text }),
      /1:18: "storage-opts" is a string, not an array; "storage-opts" is a list of "KEY=VALUE" strings/,
    );
    const item = await configFile(
      'opts-item.json',
      '{"storage-opts": ["dm.fs=xfs", {"dm.basesize": "20G"}]}',
    );
    await refuses(load({ configFile: item }), /1:32: a storage option is an object, not a string/);
  });

  test('that does not exist, or is a folder, is named', async () => {
    await refuses(
      load({ configFile: 'missing.json' }),
      new RegExp(
        `configuration file ${dir}/missing.json does not exist; check the path given with --config`,
      ),
    );
    await refuses(load({ configFile: '.' }), /is a directory; check the path/);
  });
});

describe('combinations', () => {
  test('choose direct mode on two devices', async () => {
    const config = await load({ storageOpts: ['dm.datadev=/dev/vdb', 'dm.metadatadev=/dev/vdc'] });
    assert.deepEqual(config.backing, {
      kind: 'devices',
      dataDevice: '/dev/vdb',
      metadataDevice: '/dev/vdc',
    });
  });

  test('choose direct mode on an existing pool, or on one divided device', async () => {
    assert.deepEqual((await load({ storageOpts: ['dm.thinpooldev=thinpool'] })).backing, {
      kind: 'existing-pool',
      poolName: 'thinpool',
    });
    assert.deepEqual((await load({ storageOpts: ['dm.directlvm_device=/dev/vdb'] })).backing, {
      kind: 'direct-lvm',
      device: '/dev/vdb',
    });
  });

  test('refuse a data device without a metadata device, and the reverse', async () => {
    await refuses(
      load({ storageOpts: ['dm.datadev=/dev/vdb'] }),
      /dm\.datadev \(--storage-opt\) needs dm\.metadatadev; direct mode takes a data device and a metadata device/,
    );
    await refuses(
      load({ storageOpts: ['dm.metadatadev=/dev/vdc'] }),
      /dm\.metadatadev \(--storage-opt\) needs dm\.datadev/,
    );
  });

  test('refuse one device for both data and metadata', async () => {
    await refuses(
      load({ storageOpts: ['dm.datadev=/dev/vdb', 'dm.metadatadev=/dev/vdb'] }),
      /are the same device \/dev\/vdb; give two different devices/,
    );
  });

  test('refuse two ways of choosing direct-mode devices, naming where each came from', async () => {
    const file = await configFile('lvm.json', '{"storage-opts": ["dm.directlvm_device=/dev/vdd"]}');
    await refuses(
      load({ configFile: file, storageOpts: ['dm.datadev=/dev/vdb', 'dm.metadatadev=/dev/vdc'] }),
      new RegExp(
        `dm\\.datadev \\(--storage-opt\\) and dm\\.directlvm_device \\(${file}:1:19\\) conflict: each chooses the devices of direct mode; give only one of them`,
      ),
    );
    await refuses(
      load({ storageOpts: ['dm.thinpooldev=pool', 'dm.directlvm_device=/dev/vdb'] }),
      /dm\.thinpooldev \(--storage-opt\) and dm\.directlvm_device \(--storage-opt\) conflict/,
    );
  });

  test('refuse loop-mode sizes in direct mode', async () => {
    await refuses(
      load({ storageOpts: ['dm.thinpooldev=pool', 'dm.loopdatasize=1T'] }),
      /dm\.loopdatasize \(--storage-opt\) and dm\.thinpooldev \(--storage-opt\) conflict: loop-mode sizes do not apply in direct mode; drop dm\.loopdatasize/,
    );
    await refuses(
      load({ storageOpts: ['dm.directlvm_device=/dev/vdb', 'dm.loopmetadatasize=4G'] }),
      /dm\.loopmetadatasize .* conflict/,
    );
  });

  test('refuse options of dm.directlvm_device without it', async () => {
    await refuses(
      load({ storageOpts: ['dm.thinp_percent=90'] }),
      /dm\.thinp_percent \(--storage-opt\) configures dm\.directlvm_device, which is not given; give dm\.directlvm_device=/,
    );
    await refuses(
      load({ storageOpts: ['dm.thinp_metapercent=2'] }),
      /dm\.thinp_metapercent .* configures dm\.directlvm_device/,
    );
    await refuses(
      load({ storageOpts: ['dm.directlvm_device_force=true'] }),
      /dm\.directlvm_device_force .* configures/,
    );
  });

  test('refuse data and metadata shares above 100% together', async () => {
    await refuses(
      load({
        storageOpts: [
          'dm.directlvm_device=/dev/vdb',
          'dm.thinp_percent=95',
          'dm.thinp_metapercent=10',
        ],
      }),
      /dm\.thinp_percent \(--storage-opt\) and dm\.thinp_metapercent \(--storage-opt\) conflict: together they take 105% of the device; make their sum at most 100%/,
    );
    await refuses(
      load({ storageOpts: ['dm.directlvm_device=/dev/vdb', 'dm.thinp_metapercent=6'] }),
      /dm\.thinp_percent \(default\) and dm\.thinp_metapercent \(--storage-opt\) conflict: together they take 101%/,
    );
  });

  test('refuse deferred deletion without deferred removal', async () => {
    await refuses(
      load({ storageOpts: ['dm.use_deferred_removal=false', 'dm.use_deferred_deletion=true'] }),
      /dm\.use_deferred_deletion \(--storage-opt\) and dm\.use_deferred_removal \(--storage-opt\) conflict: deferred deletion needs deferred removal/,
    );
  });

  test('refuse a data file smaller than one block', async () => {
    await refuses(
      load({ storageOpts: ['dm.loopdatasize=1M', 'dm.blocksize=2M'] }),
      /a 1M data file cannot hold one 2M block; give a larger dm\.loopdatasize/,
    );
  });
});
