/** Small questions about paths, asked without throwing. */

import { access } from 'node:fs/promises';

/** Whether `file` exists (and can be looked at). */
export async function pathExists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
