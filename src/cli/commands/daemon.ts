import { type Command, Option } from 'commander';
import { type ListenAddress, listenAddress } from '../arguments.js';
import { planned } from '../context.js';
import type { CliIo } from '../io.js';

export function addDaemonCommand(program: Command, io: CliIo): void {
  planned(
    program
      .command('daemon')
      .description('serve every device over NBD and the control API on ROOT/thinp.sock')
      .addOption(
        new Option(
          '--nbd <address>',
          'NBD listener, repeatable (default: unix:ROOT/nbd.sock)',
        ).argParser((value: string, previous: ListenAddress[] | undefined) => [
          ...(previous ?? []),
          listenAddress(value),
        ]),
      )
      .addOption(
        new Option(
          '--metrics <address>',
          'Prometheus metrics listener, e.g. tcp:127.0.0.1:9323',
        ).argParser(listenAddress),
      ),
    io,
  );
}
