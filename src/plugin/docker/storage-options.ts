/**
 * dockerd's `--storage-opt` list (GraphDriver.Init's `Opts`) against the running thinp.
 *
 * thinp's daemon starts before dockerd (dockerd looks for its plugin at start), so the pool
 * already exists when Init arrives. Each of dockerd's options is checked with thinp's own
 * rules and messages (the same loader as `--storage-opt`); then, option by option:
 * - equal to what thinp runs with: nothing to do;
 * - an option that can change while the pool is open (free-space floor, deferred removal
 *   and deletion, mount options, autoextend, a larger dm.basesize): applied, the way
 *   devicemapper applies them at every dockerd start;
 * - anything the pool was made with (block size, backing, loop sizes, filesystem...): refused,
 *   naming the option, both values and the fix, so dockerd does not start on a pool that is
 *   not what its configuration says.
 * Nothing is applied unless every option passes.
 */

import { type Config, loadConfig, OPTIONS, type OptionField } from '../../config/index.js';
import { ConfigError } from '../../util/index.js';

/** Options a running pool can take on. */
const LIVE_FIELDS: ReadonlySet<OptionField> = new Set<OptionField>([
  'minFreeSpace',
  'useDeferredRemoval',
  'useDeferredDeletion',
  'mountOpt',
  'autoextendThreshold',
  'autoextendPercent',
  'xfsNospaceMaxRetries',
  'blkdiscard',
  'overrideUdevSyncCheck',
  'libdmLogLevel',
  'baseSize',
]);

export interface OptionChange {
  field: OptionField;
  key: string;
  from: string;
  to: string;
}

/**
 * The changes dockerd's `opts` ask of `running`; throws a ConfigError for a bad option or
 * one the pool cannot take on. `running` is not touched.
 */
export async function planDockerOptions(
  running: Config,
  opts: readonly string[],
): Promise<OptionChange[]> {
  const asked = await loadConfig({ root: running.root, storageOpts: opts });
  const changes: OptionChange[] = [];
  for (const field of Object.keys(asked.origins) as OptionField[]) {
    if (asked.origins[field].kind === 'default') continue;
    const key = OPTIONS[field].key;
    const from = show(field, running.storage[field]);
    const to = show(field, asked.storage[field]);
    if (from === to) continue;
    if (!LIVE_FIELDS.has(field)) {
      throw new ConfigError(
        `dockerd's storage option ${key}=${to} differs from the pool's ${key}=${from}, which the pool was made with`,
        {
          hint: `drop it from dockerd's storage-opts, or make a new thinp root with --storage-opt ${key}=${to}`,
        },
      );
    }
    if (field === 'baseSize' && (asked.storage.baseSize as number) < running.storage.baseSize) {
      throw new ConfigError(`Base device size cannot be smaller than ${from}`, {
        hint: `give dm.basesize=${from} or more in dockerd's storage-opts: the base device only grows`,
      });
    }
    changes.push({ field, key, from, to });
  }
  return changes;
}

/** Applies planned changes to the running configuration, which the pool and layers read. */
export async function applyDockerOptions(
  running: Config,
  opts: readonly string[],
): Promise<OptionChange[]> {
  const asked = await loadConfig({ root: running.root, storageOpts: opts });
  const changes = await planDockerOptions(running, opts);
  const storage = running.storage as unknown as Record<string, unknown>;
  const origins = running.origins as unknown as Record<string, unknown>;
  for (const c of changes) {
    storage[c.field] = asked.storage[c.field];
    origins[c.field] = { kind: 'flag' };
  }
  return changes;
}

function show(field: OptionField, value: unknown): string {
  if (value === undefined) return '';
  const spec = OPTIONS[field] as { format?: (v: unknown) => string };
  return spec.format === undefined ? String(value) : spec.format(value);
}
