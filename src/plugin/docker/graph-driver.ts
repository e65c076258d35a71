/**
 * The graphdriver plugin's behaviour: what each `GraphDriver.*` call does to the storage
 * driver, as Docker's devicemapper driver does it (DOCKER.md §1.5–1.8, §2). The wire is
 * elsewhere (server.ts); this file turns decoded requests into calls on a `LayerBackend`
 * and results into answers.
 *
 * Contracts:
 * - `Init` comes first; every other GraphDriver call before it is refused with the fix
 *   (start order), except `Capabilities`, `Status` and `Exists`, which dockerd may ask
 *   at any time and which answer from the live store.
 * - A thinp restart while dockerd runs: dockerd never sends `Init` again, so a driver
 *   started with `initialized` already true (the daemon knows its store is open) answers
 *   at once; Get/Put counts come from the store, which rebuilds them from the mount table.
 * - Requests are checked before any change: a bad field, an unknown storage option or a
 *   size below the parent's is an error and nothing is created.
 */

import { mkdir } from 'node:fs/promises';
import type { LayerStore } from '../../graph/index.js';
import { parseSize } from '../../util/index.js';
import {
  IMPLEMENTS,
  type InitRequest,
  type LayerRequest,
  PluginRequestError,
  type PluginResponse,
  type WireChange,
} from './protocol.js';

export interface DockerDriverOptions {
  layers: LayerStore;
  /**
   * Checks Init's `Opts` (dockerd's --storage-opt list) with the same rules and messages
   * as thinp's own options, and applies what an open pool allows; throws otherwise.
   */
  applyStorageOptions(opts: readonly string[]): Promise<void>;
  /**
   * Init's request as recorded by an earlier run of thinp (dockerd does not send Init again
   * when thinp restarts under it); the driver then starts initialised.
   */
  recordedInit?: InitRequest | undefined;
  /** Keeps Init's request for the next run; called after a successful Init. */
  recordInit?: (request: InitRequest) => Promise<void>;
}

export class DockerGraphDriver {
  private initialized: boolean;
  private home: string | undefined;

  constructor(private readonly options: DockerDriverOptions) {
    this.initialized = options.recordedInit !== undefined;
    this.home = options.recordedInit?.home;
  }

  activate(): PluginResponse {
    return { Implements: IMPLEMENTS };
  }

  async init(request: InitRequest): Promise<PluginResponse> {
    if (request.uidMaps !== null || request.gidMaps !== null) {
      throw new PluginRequestError('GraphDriver.Init: user namespace remapping is not supported', {
        hint: 'start dockerd without --userns-remap',
      });
    }
    await this.options.applyStorageOptions(request.opts);
    // dockerd expects the driver to make its home (where it keeps nothing of its own here:
    // the pool lives in thinp's root), so `docker info`'s Docker Root Dir checks pass.
    await mkdir(request.home, { recursive: true, mode: 0o700 });
    await this.options.recordInit?.(request);
    this.home = request.home;
    this.initialized = true;
    return {};
  }

  /** The home dockerd gave at Init, if it has called it. */
  get driverHome(): string | undefined {
    return this.home;
  }

  capabilities(): PluginResponse {
    // Diff output is not byte-for-byte the tar that was applied, so dockerd keeps tar-split
    // data for image layers and reads files back through Get on export.
    return { Capabilities: { ReproducesExactDiffs: false } };
  }

  async create(r: LayerRequest, readWrite: boolean): Promise<PluginResponse> {
    this.requireInit('Create');
    const options = { ...storageOptions(r.storageOpt), mountLabel: r.mountLabel || undefined };
    const parent = r.parent || undefined;
    if (readWrite) await this.options.layers.createReadWrite(r.id, parent, options);
    else await this.options.layers.create(r.id, parent, options);
    return {};
  }

  async remove(r: LayerRequest): Promise<PluginResponse> {
    this.requireInit('Remove');
    await this.options.layers.remove(r.id);
    return {};
  }

  async get(r: LayerRequest): Promise<PluginResponse> {
    this.requireInit('Get');
    return { Dir: await this.options.layers.get(r.id, r.mountLabel || undefined) };
  }

  async put(r: LayerRequest): Promise<PluginResponse> {
    this.requireInit('Put');
    await this.options.layers.put(r.id);
    return {};
  }

  exists(r: LayerRequest): PluginResponse {
    return { Exists: this.options.layers.exists(r.id) };
  }

  async status(): Promise<PluginResponse> {
    return { Status: await this.options.layers.status() };
  }

  metadata(r: LayerRequest): PluginResponse {
    this.requireInit('GetMetadata');
    return { Metadata: { ...this.options.layers.metadata(r.id) } };
  }

  async cleanup(): Promise<PluginResponse> {
    if (this.initialized) await this.options.layers.cleanup();
    return {};
  }

  diff(r: LayerRequest): Promise<NodeJS.ReadableStream> {
    this.requireInit('Diff');
    return this.options.layers.diff(r.id, r.parent || undefined);
  }

  async changes(r: LayerRequest): Promise<PluginResponse> {
    this.requireInit('Changes');
    const changes = await this.options.layers.changes(r.id, r.parent || undefined);
    return { Changes: changes.map((c): WireChange => ({ Path: c.path, Kind: c.kind })) };
  }

  async applyDiff(r: LayerRequest, tar: NodeJS.ReadableStream): Promise<PluginResponse> {
    this.requireInit('ApplyDiff');
    return { Size: await this.options.layers.applyDiff(r.id, r.parent || undefined, tar) };
  }

  async diffSize(r: LayerRequest): Promise<PluginResponse> {
    this.requireInit('DiffSize');
    return { Size: await this.options.layers.diffSize(r.id, r.parent || undefined) };
  }

  private requireInit(call: string): void {
    if (!this.initialized) {
      throw new PluginRequestError(`GraphDriver.${call}: the driver has not been initialised`, {
        hint: 'dockerd sends GraphDriver.Init first; restart dockerd after thinp',
      });
    }
  }
}

/**
 * Docker's per-layer storage options: only `size` (any case), in binary units, as the
 * devicemapper driver accepts them (`--storage-opt size=20G`).
 */
export function storageOptions(opts: Record<string, string>): { size?: number } {
  const result: { size?: number } = {};
  for (const [key, value] of Object.entries(opts)) {
    if (key.toLowerCase() !== 'size') {
      throw new PluginRequestError(`Unknown option ${key}`, {
        hint: 'the only per-container storage option is size (e.g. --storage-opt size=20G)',
      });
    }
    try {
      result.size = parseSize(value);
    } catch (err) {
      throw new PluginRequestError(`storage option size=${value} is not a size`, {
        hint: 'give a size such as 20G or 512M',
        cause: err,
      });
    }
  }
  return result;
}
