/**
 * The shape of an entry of the operation table (operation-table.ts): how one operation of
 * StorageOperations travels, what the client puts on the wire and what the server hands
 * the operation's decoder.
 */

import type { Readable } from 'node:stream';
import type { OperationName, StorageOperations } from './operations.js';

/** What a call puts on the wire. */
export interface WireCall {
  params?: string[];
  query?: Record<string, string>;
  json?: unknown;
  /** A raw body: bytes, or a stream sent as it comes (chunked). */
  raw?: Readable | Uint8Array;
}

/** What the server hands an operation's decoder. */
export interface WireRequest {
  params: string[];
  query: URLSearchParams;
  /** The JSON body (`body: 'json'`), undefined when empty. */
  json: unknown;
  /** The body as a stream (`body: 'raw'`). */
  raw: Readable;
  /** The body read whole (`body: 'bytes'`, at most MAX_DATA_REQUEST). */
  bytes: Buffer;
}

export type Args<K extends OperationName> = Parameters<StorageOperations[K]>;
export type Result<K extends OperationName> = Awaited<ReturnType<StorageOperations[K]>>;

export interface OperationSpec<K extends OperationName> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** `{}` stands for one path parameter. */
  path: string;
  body: 'none' | 'json' | 'raw' | 'bytes';
  reply: 'json' | 'bytes' | 'stream' | 'none';
  /** The success status of a JSON reply (200 unless given). */
  status?: number;
  encode(...args: Args<K>): WireCall;
  decode(req: WireRequest): Args<K>;
  /** The result as sent (the client undoes it with `fromJson`); as is unless given. */
  toJson?(result: Result<K>, args: Args<K>): unknown;
  fromJson?(json: unknown): Result<K>;
}
