/**
 * The pool transaction id the device set's JSON state (ROOT/metadata) has seen: the highest
 * of the open transaction's id and every device record's. Repair uses it when the pool's
 * superblock, which holds the real one, is lost: a transaction id below the state's would make
 * the device set roll back operations that did complete.
 */

import path from 'node:path';
import { listStateFiles, readStateFile } from './state-files.js';
import {
  DEVICE_SET_FILE,
  decodeDevice,
  decodeTransaction,
  TRANSACTION_FILE,
} from './state-records.js';

/** The highest transaction id recorded under `metadataDir`, or undefined when none is. */
export async function recordedTransactionId(metadataDir: string): Promise<number | undefined> {
  let highest: number | undefined;
  const see = (id: number) => {
    highest = Math.max(highest ?? 0, id);
  };
  for (const name of await listStateFiles(metadataDir)) {
    if (name === DEVICE_SET_FILE) continue;
    const file = path.join(metadataDir, name);
    const json = await readStateFile(file);
    if (json === undefined) continue;
    if (name === TRANSACTION_FILE) see(decodeTransaction(file, json).openTransactionId);
    else see(decodeDevice(file, json).transactionId);
  }
  return highest;
}
