/** Finding programs the way a shell does, for choices that depend on what is installed. */

import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import path from 'node:path';

/** The full path of the first executable `name` on `searchPath` (PATH syntax), if any. */
export async function findOnPath(
  name: string,
  searchPath: string | undefined,
): Promise<string | undefined> {
  for (const dir of (searchPath ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here: keep looking
    }
  }
  return undefined;
}
