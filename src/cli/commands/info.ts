import type { Command } from 'commander';
import { dockerInfo, formatDockerInfo } from '../../driver/index.js';
import { commandConfig, writeJson } from '../context.js';
import type { CliIo } from '../io.js';

export function addInfoCommand(program: Command, io: CliIo): void {
  program
    .command('info')
    .description(`Docker's "Storage Driver: devicemapper" section, field for field`)
    .option('--json', 'machine-readable output (sizes in bytes)')
    .action(async (options: { json?: boolean }, self: Command) => {
      const info = await dockerInfo(await commandConfig(self, io));
      if (options.json) {
        writeJson(io, info);
      } else {
        io.stdout.write(formatDockerInfo(info));
      }
    });
}
