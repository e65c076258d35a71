import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { buildProgram } from '../../../src/cli/program.js';
import { THINP_VERSION } from '../../../src/util/index.js';
import { type CliResult, commandPaths, thinp } from '../../support/cli.js';
import { tempDir } from '../../support/temp.js';

const cwd = await tempDir();

const cli = (...args: string[]) => thinp(args, { cwd });

function assertUsageError(result: CliResult, message: RegExp): void {
  assert.equal(result.status, 2, result.stderr);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^thinp: /);
  assert.match(result.stderr, message);
}

function assertUserError(result: CliResult, message: RegExp): void {
  assert.equal(result.status, 1, result.stderr);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^thinp: /);
  assert.match(result.stderr, message);
  assert.equal(result.stderr.trimEnd().split('\n').length, 1, 'one line on stderr');
}

describe('help and version', () => {
  test('--version prints the version and exits 0', async () => {
    const result = await cli('--version');
    assert.deepEqual(result, { status: 0, stdout: `${THINP_VERSION}\n`, stderr: '' });
  });

  test('--help lists the commands and the global options', async () => {
    const result = await cli('--help');
    assert.equal(result.status, 0);
    for (const word of [
      'pool',
      'device',
      'layer',
      'image',
      'container',
      'daemon',
      'info',
      'config',
      '--root',
      '--config',
      '--storage-opt',
    ]) {
      assert.match(result.stdout, new RegExp(`\\s${word}\\b`));
    }
  });

  const paths = commandPaths(
    buildProgram({ stdout: { write() {} }, stderr: { write() {} }, env: {}, cwd: '/' }),
  );
  test('covers every command of the design', () => {
    const names = paths.map((p) => p.join(' '));
    for (const expected of [
      'pool create',
      'pool status',
      'pool resize',
      'info',
      'check',
      'dump',
      'restore',
      'repair',
      'device create',
      'device remove',
      'device list',
      'device read',
      'device write',
      'layer create',
      'layer remove',
      'layer mount',
      'layer unmount',
      'layer list',
      'layer apply',
      'layer diff',
      'image load',
      'image list',
      'image remove',
      'container create',
      'container mount',
      'container unmount',
      'container remove',
      'container list',
      'daemon',
      'config',
    ]) {
      assert.ok(names.includes(expected), `missing command: ${expected}`);
    }
  });

  for (const commandPath of paths) {
    test(`thinp ${commandPath.join(' ')} --help exits 0 with its usage`, async () => {
      const result = await cli(...commandPath, '--help');
      assert.equal(result.status, 0);
      assert.match(result.stdout, new RegExp(`^Usage: thinp ${commandPath.join(' ')}\\b`));
      assert.equal(result.stderr, '');
    });
  }

  test('thinp help COMMAND shows that command', async () => {
    const result = await cli('help', 'device');
    assert.equal(result.status, 0);
    assert.match(result.stdout, /^Usage: thinp device/);
  });

  test('config --help lists every storage option with its default', async () => {
    const result = await cli('config', '--help');
    assert.match(result.stdout, /dm\.basesize\s+size of the base device .*\(default: 10G\)/);
    assert.match(result.stdout, /dm\.fs\s+.*\(default: xfs if mkfs\.xfs is installed, else ext4\)/);
    assert.match(result.stdout, /dm\.min_free_space\s+.*\(default: 10%\)/);
  });
});

describe('usage errors exit 2', () => {
  test('no command shows the usage on stderr', async () => {
    const result = await cli();
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^Usage: thinp/);
  });

  test('a group without its subcommand shows the group usage', async () => {
    const result = await cli('device');
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^Usage: thinp device/);
  });

  test('an unknown command, with a suggestion', async () => {
    assertUsageError(
      await cli('devise'),
      /^thinp: unknown command 'devise' \(Did you mean device\?\); see 'thinp --help'\n$/,
    );
  });

  test('an unknown option points at the right help', async () => {
    assertUsageError(
      await cli('info', '--bogus'),
      /unknown option '--bogus'; see 'thinp info --help'/,
    );
  });

  test('a missing argument', async () => {
    assertUsageError(
      await cli('device', 'remove'),
      /missing required argument 'name'; see 'thinp device remove --help'/,
    );
  });

  test('an argument too many', async () => {
    assertUsageError(await cli('info', 'extra'), /too many arguments/);
  });

  test('a missing required option', async () => {
    assertUsageError(await cli('restore'), /required option '-i, --input <file>' not specified/);
    assertUsageError(await cli('container', 'create'), /required option '--image <ref>'/);
  });

  test('a size that is not a size', async () => {
    assertUsageError(
      await cli('device', 'create', 'base', '--size', '10Q'),
      /argument '10Q' is invalid\. '10Q' is not a size; give bytes .*; see 'thinp device create --help'/,
    );
    assertUsageError(
      await cli('device', 'read', 'base', '--offset', '-1'),
      /size '-1' is negative/,
    );
  });

  test('neither or both of --size and --origin', async () => {
    assertUsageError(
      await cli('device', 'create', 'x'),
      /'thinp device create' needs one of --size, --origin/,
    );
    assertUsageError(
      await cli('device', 'create', 'x', '--size', '1G', '--origin', 'y'),
      /takes only one of --size, --origin/,
    );
  });

  test('pool resize without what to resize', async () => {
    assertUsageError(
      await cli('pool', 'resize'),
      /needs one of --data-size, --metadata-size, --add-device/,
    );
  });

  test('a listener that is not an address', async () => {
    assertUsageError(
      await cli('daemon', '--nbd', 'localhost:10809'),
      /'localhost:10809' is not an address; give unix:PATH or tcp:HOST:PORT/,
    );
    assertUsageError(await cli('daemon', '--nbd', 'tcp:127.0.0.1:70000'), /not an address/);
  });
});

describe('user errors exit 1', () => {
  test('a bad storage option names the option and the fix', async () => {
    assertUserError(
      await cli('--storage-opt', 'dm.basesize=lots', 'info'),
      /^thinp: --storage-opt: dm\.basesize: 'lots' is not a size; give bytes \(4096\)/,
    );
  });

  test('a missing configuration file', async () => {
    assertUserError(
      await cli('--config', 'nope.json', 'info'),
      /configuration file .*nope\.json does not exist; check the path given with --config/,
    );
  });

  test('the configuration is checked before anything else', async () => {
    assertUserError(
      await cli('--storage-opt', 'dm.fs=zfs', 'pool', 'create'),
      /dm\.fs: 'zfs' is not one of the choices/,
    );
  });

  test('info refuses a pool it cannot open, saying why', async () => {
    const root = path.join(cwd, 'existing');
    await mkdir(root, { recursive: true });
    await writeFile(path.join(root, 'thinp.json'), '{}');
    assertUserError(
      await cli('--root', root, 'info'),
      /existing\/thinp\.json: "mode" must be 'loop', 'devices' or 'direct-lvm'; restore the file from a backup/,
    );
  });

  test('device commands on a root without a pool say how to make one', async () => {
    assertUserError(
      await cli('--root', path.join(cwd, 'nowhere'), 'device', 'list'),
      /^thinp: there is no pool at .*nowhere; create one with 'thinp pool create'/,
    );
  });
});

describe('info', () => {
  test("prints Docker's devicemapper section for the configured pool", async () => {
    const result = await cli('--storage-opt', 'dm.basesize=20G', 'info');
    assert.equal(result.status, 0, result.stderr);
    const root = path.join(cwd, 'var/lib/thinp');
    assert.equal(
      result.stdout,
      [
        'Storage Driver: devicemapper',
        ' Pool Blocksize: 65.54kB',
        ' Base Device Size: 21.47GB',
        ' Backing Filesystem: ext4',
        ` Data file: ${root}/devicemapper/data`,
        ` Metadata file: ${root}/devicemapper/metadata`,
        ' Udev Sync Supported: false',
        ' Deferred Removal Enabled: true',
        ' Deferred Deletion Enabled: true',
        ` Data loop file: ${root}/devicemapper/data`,
        ` Metadata loop file: ${root}/devicemapper/metadata`,
        ` Library Version: thinp ${THINP_VERSION}`,
        ' Pool Status: not created',
        '',
      ].join('\n'),
    );
  });

  test('--json gives sizes in bytes', async () => {
    const result = await cli('info', '--json', '--storage-opt', 'dm.blocksize=128K');
    const info = JSON.parse(result.stdout);
    assert.equal(info.poolBlocksize, 131072);
    assert.equal(info.baseDeviceSize, 10737418240);
    assert.equal(info.driver, 'devicemapper');
  });

  test('direct mode shows the devices and no loop files', async () => {
    const result = await cli(
      '--storage-opt',
      'dm.datadev=/dev/vdb',
      '--storage-opt',
      'dm.metadatadev=/dev/vdc',
      'info',
    );
    assert.match(result.stdout, / Data file: \/dev\/vdb\n Metadata file: \/dev\/vdc\n/);
    assert.doesNotMatch(result.stdout, /loop file/);
  });

  test('the root comes from --root, else THINP_ROOT, else ./var/lib/thinp', async () => {
    const fromEnv = await thinp(['info', '--json'], { cwd, env: { THINP_ROOT: '/srv/thinp' } });
    assert.equal(JSON.parse(fromEnv.stdout).dataLoopFile, '/srv/thinp/devicemapper/data');
    const fromFlag = await thinp(['info', '--json', '--root', 'here'], {
      cwd,
      env: { THINP_ROOT: '/srv/thinp' },
    });
    assert.equal(
      JSON.parse(fromFlag.stdout).dataLoopFile,
      path.join(cwd, 'here/devicemapper/data'),
    );
  });
});

describe('config', () => {
  test('shows each option with where it came from', async () => {
    const file = path.join(cwd, 'daemon.json');
    await writeFile(file, '{"storage-opts": ["dm.blocksize=512K"]}');
    const result = await cli('--config', file, '--storage-opt', 'dm.basesize=20G', 'config');
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^dm\.basesize=20G\s+--storage-opt$/m);
    assert.match(result.stdout, new RegExp(`^dm\\.blocksize=512K\\s+${file}:1:19$`, 'm'));
    assert.match(result.stdout, /^dm\.loopdatasize=100G\s+default$/m);
    assert.match(result.stdout, /^dm\.datadev \(not set\)\s+default$/m);
    assert.match(result.stdout, /^pool: loop mode, data file /m);
  });

  test('--json lists every option', async () => {
    const result = await cli('config', '--json');
    const config = JSON.parse(result.stdout);
    assert.equal(Object.keys(config.options).length, 26);
    assert.deepEqual(config.options['dm.uncached_write_min'], { value: '256K', origin: 'default' });
    assert.deepEqual(config.options['dm.min_free_space'], { value: '10%', origin: 'default' });
    assert.deepEqual(config.options['dm.mkfsarg'], { value: null, origin: 'default' });
    assert.equal(config.backing.kind, 'loop');
  });
});
