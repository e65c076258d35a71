import type { Command } from 'commander';
import { type DockerInfo, dockerInfo, formatDockerInfo, poolPresent } from '../../driver/index.js';
import { commandConfig, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { daemonClient, rootExists, useDeviceSet, withRootLock } from '../session.js';

export function addInfoCommand(program: Command, io: CliIo): void {
  program
    .command('info')
    .description(`Docker's "Storage Driver: devicemapper" section, field for field`)
    .option('--json', 'machine-readable output (sizes in bytes)')
    .action(async (options: { json?: boolean }, self: Command) => {
      const config = await commandConfig(self, io);
      let info: DockerInfo;
      const client = await daemonClient(config);
      if (client !== undefined) {
        info = await client.info();
      } else if (await rootExists(config)) {
        info = await withRootLock(self, io, config, async () =>
          (await poolPresent(config))
            ? useDeviceSet(io, config, (set) => dockerInfo(config, set))
            : dockerInfo(config),
        );
      } else {
        info = await dockerInfo(config);
      }
      if (options.json) writeJson(io, info);
      else io.stdout.write(formatDockerInfo(info));
    });
}
