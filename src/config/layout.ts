/**
 * Where things live under the root directory. It mirrors /var/lib/docker/devicemapper, so a
 * user who knows one knows the other.
 */

import path from 'node:path';

export interface RootLayout {
  root: string;
  /** Loop mode: the sparse data file ("Data loop file"). */
  dataLoopFile: string;
  /** Loop mode: the sparse metadata file ("Metadata loop file"). */
  metadataLoopFile: string;
  /** JSON state of the device set: one file per device, plus the set's own. */
  metadataDir: string;
  /** Mount points of layers and containers. */
  mountDir: string;
  /** Records of the attachments under mounts, so a restarted daemon finds them. */
  mountStateDir: string;
  /** Pool configuration as created: mode, block size, devices, options. */
  poolConfigFile: string;
  /** Control API socket, while the daemon runs. */
  controlSocket: string;
  /** NBD socket, while the daemon runs. */
  nbdSocket: string;
}

export function rootLayout(root: string): RootLayout {
  return {
    root,
    dataLoopFile: path.join(root, 'devicemapper', 'data'),
    metadataLoopFile: path.join(root, 'devicemapper', 'metadata'),
    metadataDir: path.join(root, 'metadata'),
    mountDir: path.join(root, 'mnt'),
    mountStateDir: path.join(root, 'run', 'mounts'),
    poolConfigFile: path.join(root, 'thinp.json'),
    controlSocket: path.join(root, 'thinp.sock'),
    nbdSocket: path.join(root, 'nbd.sock'),
  };
}
