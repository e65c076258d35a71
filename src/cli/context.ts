/** What every command shares: the global options, the configuration, output helpers. */

import type { Command } from 'commander';
import { type Config, loadConfig } from '../config/index.js';
import { UsageError } from '../util/index.js';
import type { CliIo } from './io.js';

export const DEFAULT_ROOT = './var/lib/thinp';

interface GlobalOptions {
  root?: string;
  config?: string;
  storageOpt?: string[];
}

/** The checked configuration for `command`: defaults, then --config, then --storage-opt. */
export function commandConfig(command: Command, io: CliIo): Promise<Config> {
  const options = command.optsWithGlobals<GlobalOptions>();
  return loadConfig({
    root: options.root ?? io.env.THINP_ROOT ?? DEFAULT_ROOT,
    configFile: options.config,
    storageOpts: options.storageOpt,
    cwd: io.cwd,
    env: io.env,
  });
}

export function writeJson(io: CliIo, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** `thinp device create`, for messages. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Fails with a usage error unless exactly one of `names` (camelCase option keys) is given. */
export function requireOneOf(command: Command, names: readonly string[]): void {
  const options = command.opts();
  const given = names.filter((name) => options[name] !== undefined);
  if (given.length !== 1) {
    const flags = names.map((name) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    const problem = given.length === 0 ? 'needs one of' : 'takes only one of';
    throw new UsageError(`'${commandPath(command)}' ${problem} ${flags.join(', ')}`, {
      hint: `see '${commandPath(command)} --help'`,
    });
  }
}

/** Rows as columns padded to their widest cell, two spaces apart; the first row is the header. */
export function formatTable(rows: readonly string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map(
      (r) =>
        `${r
          .map((cell, i) => cell.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd()}\n`,
    )
    .join('');
}
