/**
 * The one lock of this layer. `exportLock`, keyed by an export's state file, protects that
 * file and the pieces it records from two attaches of the same export in this process at
 * once (each would find no record and go on). It is held for a whole attach; nothing else
 * is taken while it is held. Between processes the state file itself refuses a second attach.
 */

import { KeyedLock } from '../util/index.js';

export const exportLock = new KeyedLock<string>();
