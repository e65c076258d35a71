/**
 * The command line of the relay process (relay-main), for nbdfuse's `--command`: node on
 * the compiled file from dist/, or on the TypeScript source through tsx when thinp itself
 * runs from src/ (tests).
 */

import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function relayCommand(nbdSocket: string, exportName: string): string[] {
  const here = fileURLToPath(import.meta.url);
  const main = path.join(path.dirname(here), `relay-main${path.extname(here)}`);
  if (main.endsWith('.ts')) {
    return [process.execPath, '--import', import.meta.resolve('tsx'), main, nbdSocket, exportName];
  }
  return [process.execPath, main, nbdSocket, exportName];
}
