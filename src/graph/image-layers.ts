/**
 * What images and containers need of the layer store (layer-store.ts): create and remove
 * snapshots, mount them, and the diff family. Images name their layers by chain ID (hex);
 * a container is two read-write layers, `<id>-init` and `<id>`.
 */

import type { Change } from '../archive/index.js';
import type { LayerStore } from './layer-store.js';

export type LayerChange = Change;

export type ImageLayers = Pick<
  LayerStore,
  | 'create'
  | 'createReadWrite'
  | 'remove'
  | 'exists'
  | 'get'
  | 'put'
  | 'applyDiff'
  | 'diff'
  | 'changes'
  | 'diffSize'
>;
