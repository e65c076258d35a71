import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig, OPTIONS, type OptionField } from '../../../src/config/index.js';
import { ConfigError } from '../../../src/util/index.js';
import { tempDir } from '../../support/temp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

interface OptionCases {
  /** Other options the valid cases need (a percentage of dm.directlvm_device needs the device). */
  with?: string[];
  valid: [text: string, expected: unknown][];
  invalid: [text: string, message: RegExp][];
}

const LVM = ['dm.directlvm_device=/dev/vdb'];

/** Every option, with values it takes and values it refuses; the type demands all of them. */
const CASES: Record<OptionField, OptionCases> = {
  baseSize: {
    valid: [
      ['20G', 20 * GiB],
      ['1M', MiB],
      ['1.5T', 1.5 * 1024 * GiB],
    ],
    invalid: [
      ['garbage', /'garbage' is not a size; give bytes/],
      ['-10G', /is negative/],
      ['512K', /size 512K is out of range; give a multiple of 512 from 1M/],
      ['1048577', /not a multiple of 512/],
      ['', /the size is empty/],
    ],
  },
  loopDataSize: {
    valid: [
      ['1T', 1024 * GiB],
      ['200M', 200 * MiB],
    ],
    invalid: [
      ['1.1K', /not a whole number of bytes/],
      ['9E', /too large/],
    ],
  },
  loopMetadataSize: {
    valid: [
      ['4G', 4 * GiB],
      ['1M', MiB],
      ['16646400K', 16646400 * KiB],
    ],
    invalid: [
      ['16G', /size 16G is out of range; give a multiple of 4K from 1M to 16646400K/],
      ['1052672.5', /not a whole number/],
      ['1050624', /not a multiple of 4K/],
    ],
  },
  blockSize: {
    valid: [
      ['64K', 64 * KiB],
      ['512K', 512 * KiB],
      ['1G', GiB],
    ],
    invalid: [
      ['32K', /out of range; give a multiple of 64K from 64K to 1G/],
      ['2G', /out of range/],
      ['96K', /not a multiple of 64K/],
    ],
  },
  fs: {
    valid: [
      ['ext4', 'ext4'],
      ['xfs', 'xfs'],
    ],
    invalid: [
      ['btrfs', /'btrfs' is not one of the choices; give ext4 or xfs/],
      ['EXT4', /not one of the choices/],
    ],
  },
  mkfsArgs: {
    valid: [['-m 0', ['-m 0']]],
    invalid: [['', /the value is empty; give a value after the =/]],
  },
  mountOpt: {
    valid: [['nodiscard', 'nodiscard']],
    invalid: [['', /the value is empty/]],
  },
  dataDev: {
    with: ['dm.metadatadev=/dev/vdc'],
    valid: [['/dev/vdb', '/dev/vdb']],
    invalid: [['vdb', /'vdb' is not an absolute path; give the full path of the device/]],
  },
  metadataDev: {
    with: ['dm.datadev=/dev/vdb'],
    valid: [['/dev/vdc', '/dev/vdc']],
    invalid: [['dev/vdc', /is not an absolute path/]],
  },
  thinPoolDev: {
    valid: [
      ['thinpool', 'thinpool'],
      ['/dev/mapper/docker-thinpool', '/dev/mapper/docker-thinpool'],
    ],
    invalid: [['my pool', /'my pool' is not a name; give a name without spaces/]],
  },
  directLvmDevice: {
    valid: [['/dev/xvdf', '/dev/xvdf']],
    invalid: [['xvdf', /is not an absolute path/]],
  },
  directLvmDeviceForce: {
    with: LVM,
    valid: [
      ['true', true],
      ['1', true],
      ['T', true],
      ['False', false],
      ['0', false],
      ['f', false],
    ],
    invalid: [
      ['yes', /'yes' is not a boolean; give true or false/],
      ['tRUE', /not a boolean/],
    ],
  },
  thinpPercent: {
    with: LVM,
    valid: [
      ['90', 90],
      ['90%', 90],
      ['1', 1],
      ['99%', 99],
    ],
    invalid: [
      ['100', /percentage '100' is out of range; give a whole percentage from 1% to 99%/],
      ['0', /out of range/],
      ['9.5', /not a whole percentage/],
      ['-5', /is negative/],
    ],
  },
  thinpMetaPercent: {
    with: LVM,
    valid: [
      ['2', 2],
      ['4%', 4],
    ],
    invalid: [
      ['x%', /'x%' is not a percentage/],
      ['100%', /out of range/],
    ],
  },
  autoextendThreshold: {
    valid: [
      ['80', 80],
      ['100%', 100],
      ['1', 1],
    ],
    invalid: [
      ['0', /out of range; give a whole percentage from 1% to 100%/],
      ['101', /out of range/],
    ],
  },
  autoextendPercent: {
    valid: [
      ['20', 20],
      ['100%', 100],
    ],
    invalid: [
      ['0%', /out of range/],
      ['1000', /out of range/],
    ],
  },
  minFreeSpace: {
    valid: [
      ['10%', 10],
      ['0%', 0],
      ['99%', 99],
    ],
    invalid: [
      ['10', /percentage '10' lacks its % sign; write 10%/],
      ['100%', /out of range; give a whole percentage from 0% to 99%/],
    ],
  },
  useDeferredRemoval: {
    valid: [
      ['true', true],
      ['false', false],
    ],
    invalid: [['on', /not a boolean/]],
  },
  useDeferredDeletion: {
    valid: [
      ['true', true],
      ['false', false],
    ],
    invalid: [['off', /not a boolean/]],
  },
  blkdiscard: {
    valid: [
      ['false', false],
      ['true', true],
    ],
    invalid: [['no', /not a boolean/]],
  },
  zeroBlocks: {
    valid: [
      ['false', false],
      ['TRUE', true],
    ],
    invalid: [['2', /not a boolean/]],
  },
  noSpacePolicy: {
    valid: [
      ['queue', 'queue'],
      ['error', 'error'],
    ],
    invalid: [['wait', /'wait' is not one of the choices; give error or queue/]],
  },
  uncachedWriteMin: {
    valid: [
      ['0', 0],
      ['256K', 256 * KiB],
      ['1M', 1024 * KiB],
    ],
    invalid: [
      ['2G', /out of range; give a multiple of 4K from 0 to 1G/],
      ['6000', /not a multiple of 4K/],
    ],
  },
  overrideUdevSyncCheck: {
    valid: [['true', true]],
    invalid: [['maybe', /not a boolean/]],
  },
  libdmLogLevel: {
    valid: [
      ['2', 2],
      ['7', 7],
    ],
    invalid: [
      ['8', /8 is out of range; give a whole number from 2 to 7/],
      ['debug', /'debug' is not a whole number/],
    ],
  },
  xfsNospaceMaxRetries: {
    valid: [
      ['0', 0],
      ['10', 10],
    ],
    invalid: [
      ['-1', /out of range; give a whole number from 0/],
      ['1.5', /not a whole number/],
    ],
  },
};

const root = await tempDir();

function load(storageOpts: string[]) {
  return loadConfig({ root, storageOpts, cwd: root, env: { PATH: '' } });
}

for (const [field, cases] of Object.entries(CASES) as [OptionField, OptionCases][]) {
  const key = OPTIONS[field].key;
  describe(key, () => {
    for (const [text, expected] of cases.valid) {
      test(`takes ${key}=${text}`, async () => {
        const config = await load([...(cases.with ?? []), `${key}=${text}`]);
        assert.deepEqual(config.storage[field], expected);
        assert.equal(config.origins[field].kind, 'flag');
      });
    }
    for (const [text, message] of cases.invalid) {
      test(`refuses ${key}=${text}, naming the option and the fix`, async () => {
        await assert.rejects(load([...(cases.with ?? []), `${key}=${text}`]), (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.match(error.message, new RegExp(`^--storage-opt: ${key.replace('.', '\\.')}: `));
          assert.match(error.describe(), message);
          assert.ok(error.hint, 'a hint names the fix');
          return true;
        });
      });
    }
    test('prints a value it reads back', async () => {
      const [text] = cases.valid[0] ?? [];
      const config = await load([...(cases.with ?? []), `${key}=${text}`]);
      const printed = (OPTIONS[field] as { format(v: unknown): string }).format(
        config.storage[field],
      );
      const again = await load([...(cases.with ?? []), `${key}=${printed}`]);
      assert.deepEqual(again.storage[field], config.storage[field]);
    });
  });
}
