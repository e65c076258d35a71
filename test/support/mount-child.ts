/**
 * A process that mounts an export and exits without unmounting it, like a daemon that
 * stops or crashes with layers mounted: `mount-child.ts SOCKET STATE_DIR EXPORT TARGET`.
 * With THINP_CRASH_AT naming one of the mount layer's crash points, it dies there instead.
 */

import { chooseAttacher, mountDevice } from '../../src/mount/index.js';
import { relayCommand } from '../../src/nbd/index.js';

const [nbdSocket, stateDir, exportName, target] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
];
const attacher = await chooseAttacher({
  nbdSocket,
  stateDir,
  relay: relayCommand,
  prefer: 'nbdfuse',
});
await mountDevice(attacher, exportName, target, { type: 'ext4', options: [] });
process.stdout.write('mounted\n');
