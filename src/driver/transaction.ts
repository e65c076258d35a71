/**
 * Device-set transactions, as Docker's devicemapper driver keeps them. Before an operation
 * touches the pool, its intent is written to metadata/transaction-metadata: the pool's
 * transaction id once it commits, the device's name and its thin id. The operation ends
 * by setting the pool's transaction id to that value, which commits everything it did.
 *
 * A transaction is open while `open_transaction_id` is above the pool's transaction id.
 * One found open at start-up was cut short by a crash; it is settled (see `settle` in
 * DeviceSet) and the pool's transaction id moves to it, which closes it. The file itself
 * stays, as in Docker: a closed transaction is harmless.
 */

import path from 'node:path';
import type { ThinPool } from '../pool/index.js';
import { readStateFile, writeStateFile } from './state-files.js';
import {
  decodeTransaction,
  encodeTransaction,
  TRANSACTION_FILE,
  type TransactionRecord,
} from './state-records.js';

export interface OpenTransaction extends TransactionRecord {
  /** The pool's transaction id when the transaction opened. */
  fromTransactionId: number;
}

export class TransactionLog {
  readonly file: string;
  private readonly pool: ThinPool;

  constructor(metadataDir: string, pool: ThinPool) {
    this.file = path.join(metadataDir, TRANSACTION_FILE);
    this.pool = pool;
  }

  /** Records the intent to change device `deviceHash` (thin id `deviceId`). */
  async open(deviceHash: string, deviceId: number): Promise<OpenTransaction> {
    const from = this.pool.metadata.transactionId;
    const t: OpenTransaction = {
      openTransactionId: from + 1,
      deviceHash,
      deviceId,
      fromTransactionId: from,
    };
    await writeStateFile(this.file, encodeTransaction(t));
    return t;
  }

  /** The operation moved to another thin id (the first one was taken). */
  async refresh(t: OpenTransaction, deviceId: number): Promise<void> {
    t.deviceId = deviceId;
    await writeStateFile(this.file, encodeTransaction(t));
  }

  /** Commits the pool with the transaction's id: the operation is done. */
  close(t: OpenTransaction): Promise<void> {
    return this.pool.setTransactionId(t.fromTransactionId, t.openTransactionId);
  }

  /** The transaction left open by a crash, if any. */
  async pending(): Promise<OpenTransaction | undefined> {
    const json = await readStateFile(this.file);
    if (json === undefined) return undefined;
    const record = decodeTransaction(this.file, json);
    const current = this.pool.metadata.transactionId;
    if (record.openTransactionId <= current) return undefined;
    return { ...record, fromTransactionId: current };
  }
}
