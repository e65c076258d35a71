import type { Command } from 'commander';
import { type DockerInfo, dockerInfo, formatDockerInfo, poolPresent } from '../../driver/index.js';
import { commandConfig, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { daemonClient, withOperations } from '../session.js';

export function addInfoCommand(program: Command, io: CliIo): void {
  program
    .command('info')
    .description(`Docker's "Storage Driver: devicemapper" section, field for field`)
    .option('--json', 'machine-readable output (sizes in bytes)')
    .action(async (options: { json?: boolean }, self: Command) => {
      const config = await commandConfig(self, io);
      const pooled = (await daemonClient(config)) !== undefined || (await poolPresent(config));
      const info: DockerInfo = pooled
        ? await withOperations(self, io, (ops) => ops.info())
        : await dockerInfo(config);
      if (options.json) writeJson(io, info);
      else io.stdout.write(formatDockerInfo(info));
    });
}
