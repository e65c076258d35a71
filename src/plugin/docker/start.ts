/**
 * `startDockerPlugin`: the graphdriver plugin for a running daemon: the driver over the
 * daemon's layer store, dockerd's options applied through `applyDockerOptions` and the base
 * device made (or checked and grown) at Init, as Docker's driver does it, and Init's
 * request kept in ROOT/plugins/docker-init.json so that a thinp restarted under a running
 * dockerd (which never sends Init again) serves at once, with the same options.
 */

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config/index.js';
import { readStateFile, writeStateFile } from '../../driver/index.js';
import type { ThinLayerStore } from '../../graph/index.js';
import { DockerGraphDriver } from './graph-driver.js';
import type { InitRequest } from './protocol.js';
import { DockerPluginServer } from './server.js';
import { applyDockerOptions } from './storage-options.js';

export type PluginLog = (
  event: string,
  fields: Record<string, unknown>,
  level?: 'info' | 'warn' | 'error',
) => void;

export interface DockerPluginStart {
  config: Config;
  layers: ThinLayerStore;
  socket: string;
  log: PluginLog;
}

export function initRecordFile(config: Config): string {
  return path.join(config.root, 'plugins', 'docker-init.json');
}

/** Serves the plugin on `socket`; resolves once it listens. */
export async function startDockerPlugin(start: DockerPluginStart): Promise<DockerPluginServer> {
  const { config, layers, log } = start;
  const file = initRecordFile(config);
  const apply = async (opts: readonly string[]) => {
    const changes = await applyDockerOptions(config, opts);
    for (const c of changes) log('docker-option-applied', { ...c });
    await layers.refreshBase();
  };
  const recordedInit = await readInit(file, apply, log);
  const driver = new DockerGraphDriver({
    layers,
    applyStorageOptions: apply,
    recordedInit,
    recordInit: async (request) => {
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await writeStateFile(file, request);
    },
  });
  const server = new DockerPluginServer(driver, {
    onCall: (method, ms, err) => {
      if (err === undefined) log('docker-call', { method, ms });
      else log('docker-call-failed', { method, ms, error: err }, 'warn');
    },
  });
  await server.listen(start.socket);
  log('listening', { dockerPlugin: start.socket, initialised: recordedInit !== undefined });
  return server;
}

/** The Init an earlier run recorded, with its options applied again; undefined if none. */
async function readInit(
  file: string,
  apply: (opts: readonly string[]) => Promise<void>,
  log: PluginLog,
): Promise<InitRequest | undefined> {
  const recorded = (await readStateFile(file)) as InitRequest | undefined;
  if (recorded === undefined) return undefined;
  try {
    await apply(recorded.opts);
    return recorded;
  } catch (err) {
    log('docker-init-stale', { file, error: err }, 'warn');
    return undefined;
  }
}
