import type { Command } from 'commander';
import {
  type Config,
  describeDefault,
  describeOrigin,
  OPTION_FIELDS,
  OPTIONS,
  type OptionSpec,
  type PoolBacking,
} from '../../config/index.js';
import { commandConfig, writeJson } from '../context.js';
import type { CliIo } from '../io.js';

export function addConfigCommand(program: Command, io: CliIo): void {
  program
    .command('config')
    .description('show the configuration in effect: every storage option and where it came from')
    .option('--json', 'machine-readable output')
    .addHelpText('after', optionsHelp)
    .action(async (options: { json?: boolean }, self: Command) => {
      const config = await commandConfig(self, io);
      if (options.json) {
        writeJson(io, configJson(config));
      } else {
        io.stdout.write(configText(config));
      }
    });
}

interface OptionLine {
  key: string;
  value: string | null;
  origin: string;
}

function optionLines(config: Config): OptionLine[] {
  return OPTION_FIELDS.map((field) => {
    const spec = OPTIONS[field] as OptionSpec<unknown>;
    const value: unknown = config.storage[field];
    const unset = value === undefined || (Array.isArray(value) && value.length === 0);
    return {
      key: spec.key,
      value: unset ? null : spec.format(value),
      origin: describeOrigin(config.origins[field]),
    };
  });
}

function configJson(config: Config): unknown {
  return {
    root: config.root,
    configFile: config.configFile ?? null,
    backing: config.backing,
    options: Object.fromEntries(
      optionLines(config).map(({ key, value, origin }) => [key, { value, origin }]),
    ),
  };
}

function configText(config: Config): string {
  const lines = optionLines(config).map(({ key, value, origin }) => {
    const setting = value === null ? `${key} (not set)` : `${key}=${value}`;
    return `${setting.padEnd(44)} ${origin}`;
  });
  return [
    `root: ${config.root}`,
    `configuration file: ${config.configFile ?? '(none)'}`,
    `pool: ${describeBacking(config.backing)}`,
    '',
    ...lines,
    '',
  ].join('\n');
}

export function describeBacking(backing: PoolBacking): string {
  switch (backing.kind) {
    case 'loop':
      return `loop mode, data file ${backing.dataFile}, metadata file ${backing.metadataFile}`;
    case 'devices':
      return `direct mode, data device ${backing.dataDevice}, metadata device ${backing.metadataDevice}`;
    case 'existing-pool':
      return `direct mode on the existing pool ${backing.poolName}`;
    case 'direct-lvm':
      return `direct mode, thinp divides ${backing.device}`;
  }
}

function optionsHelp(): string {
  const rows = OPTION_FIELDS.map(
    (field) =>
      `  ${OPTIONS[field].key.padEnd(32)} ${OPTIONS[field].summary} (default: ${describeDefault(field)})`,
  );
  return [
    '',
    'Storage options (--storage-opt KEY=VALUE, or "storage-opts" in the --config file):',
    ...rows,
    '',
    'Sizes: 4096, 64K, 10G, 1.5T (binary units). Later sources win: defaults, file, flags.',
  ].join('\n');
}
