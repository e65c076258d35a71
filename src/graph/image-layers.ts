/**
 * What images and containers need of the layer store (layer-store.ts): create and remove
 * snapshots, mount them, and the diff family. Images name their layers by chain ID (hex);
 * a container is two read-write layers, `<id>-init` and `<id>`.
 */

export interface LayerChange {
  path: string;
  kind: 0 | 1 | 2;
}

export interface ImageLayers {
  create(id: string, parent: string | undefined, o?: { size?: number }): Promise<void>;
  createReadWrite(id: string, parent: string | undefined, o?: { size?: number }): Promise<void>;
  remove(id: string): Promise<'removed' | 'deferred' | 'absent'>;
  exists(id: string): boolean;
  get(id: string): Promise<string>;
  put(id: string): Promise<void>;
  applyDiff(
    id: string,
    parent: string | undefined,
    tar: NodeJS.ReadableStream,
    o?: { onProgress?: (bytesRead: number) => void },
  ): Promise<number>;
  diff(id: string, parent: string | undefined): Promise<NodeJS.ReadableStream>;
  changes(id: string, parent: string | undefined): Promise<LayerChange[]>;
  diffSize(id: string, parent: string | undefined): Promise<number>;
}
