import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_OPTION_DATA, STATUS, staticRegistry, wire } from '../../../src/nbd/index.js';
import { MemoryExport } from '../../support/nbd-memory-export.js';
import { connectPair, infoData, metaContextData } from './harness.js';

const { OPT, INFO, CLIENT_FLAG, TRANSMISSION_FLAG: F } = wire;

function registry() {
  return staticRegistry([
    new MemoryExport({ name: 'disk', description: 'the first disk', size: 1 << 20 }),
    new MemoryExport({ name: 'ro', size: 1 << 16, readOnly: true, canMultiConn: false }),
  ]);
}

/** A client past the greeting and flags. */
async function haggling(flags = CLIENT_FLAG.fixedNewstyle | CLIENT_FLAG.noZeroes) {
  const pair = connectPair(registry());
  await pair.client.greeting();
  pair.client.send(wire.encodeClientFlags(flags));
  return pair;
}

const types = (replies: Array<{ type: number }>) => replies.map((r) => wire.nameOfRep(r.type));

describe('NBD handshake', () => {
  test('greets with fixed newstyle and no zeroes', async () => {
    const { client, connection } = connectPair(registry());
    assert.equal(
      await client.greeting(),
      wire.HANDSHAKE_FLAG.fixedNewstyle | wire.HANDSHAKE_FLAG.noZeroes,
    );
    connection.destroy();
    await connection.closed;
  });

  test('drops a client that sets unknown client flags', async () => {
    const { client, connection } = await haggling(0x10);
    await client.waitClosed();
    await connection.closed;
    assert.equal(connection.status, STATUS.DEAD);
  });

  test('lists every export with its description', async () => {
    const { client } = await haggling();
    const replies = await client.option(OPT.LIST);
    assert.deepEqual(types(replies), ['NBD_REP_SERVER', 'NBD_REP_SERVER', 'NBD_REP_ACK']);
    assert.deepEqual(replies[0]?.data, wire.encodeServerData('disk', 'the first disk'));
    assert.deepEqual(replies[1]?.data, wire.encodeServerData('ro'));
  });

  test('refuses NBD_OPT_LIST with data as invalid', async () => {
    const { client } = await haggling();
    assert.deepEqual(types(await client.option(OPT.LIST, Buffer.alloc(3))), [
      'NBD_REP_ERR_INVALID',
    ]);
  });

  test('answers unknown options and TLS with ERR_UNSUP and carries on', async () => {
    const { client } = await haggling();
    assert.deepEqual(types(await client.option(0x77, Buffer.from('xyz'))), ['NBD_REP_ERR_UNSUP']);
    assert.deepEqual(types(await client.option(OPT.STARTTLS)), ['NBD_REP_ERR_UNSUP']);
    assert.deepEqual(types(await client.option(OPT.PEEK_EXPORT)), ['NBD_REP_ERR_UNSUP']);
    assert.deepEqual(types(await client.option(OPT.LIST)).at(-1), 'NBD_REP_ACK');
  });

  test('refuses oversized option data as too big, skips it, and carries on', async () => {
    const { client } = await haggling();
    const replies = await client.option(0x1234, Buffer.alloc(MAX_OPTION_DATA + 1, 0x49));
    assert.deepEqual(types(replies), ['NBD_REP_ERR_TOO_BIG']);
    const go = await client.option(OPT.GO, infoData('disk'));
    assert.equal(types(go).at(-1), 'NBD_REP_ACK');
  });

  test('answers NBD_OPT_INFO with export, name, description and block sizes', async () => {
    const { client } = await haggling();
    const replies = await client.option(OPT.INFO, infoData('disk', [INFO.NAME, INFO.DESCRIPTION]));
    assert.deepEqual(types(replies), [
      'NBD_REP_INFO',
      'NBD_REP_INFO',
      'NBD_REP_INFO',
      'NBD_REP_INFO',
      'NBD_REP_ACK',
    ]);
    const flags =
      F.hasFlags |
      F.sendFlush |
      F.sendFua |
      F.sendTrim |
      F.sendWriteZeroes |
      F.sendFastZero |
      F.canMultiConn |
      F.sendCache;
    assert.deepEqual(replies[0]?.data, wire.encodeInfoExport(1 << 20, flags));
    assert.deepEqual(replies[1]?.data, wire.encodeInfoString(INFO.NAME, 'disk'));
    assert.deepEqual(replies[2]?.data, wire.encodeInfoString(INFO.DESCRIPTION, 'the first disk'));
    assert.deepEqual(
      replies[3]?.data,
      wire.encodeInfoBlockSize({ minimum: 512, preferred: 4096, maximum: 1 << 25 }),
    );
    // Still haggling: another option is answered.
    assert.equal(types(await client.option(OPT.LIST)).at(-1), 'NBD_REP_ACK');
  });

  test('advertises read-only exports without write flags or multi-conn', async () => {
    const { client } = await haggling();
    const replies = await client.option(OPT.INFO, infoData('ro'));
    assert.deepEqual(
      replies[0]?.data,
      wire.encodeInfoExport(1 << 16, F.hasFlags | F.readOnly | F.sendFlush | F.sendCache),
    );
  });

  test('answers unknown exports with ERR_UNKNOWN and malformed requests with ERR_INVALID', async () => {
    const { client } = await haggling();
    assert.deepEqual(types(await client.option(OPT.GO, infoData('nope'))), ['NBD_REP_ERR_UNKNOWN']);
    const truncated = infoData('disk', [INFO.NAME]).subarray(0, 9);
    assert.deepEqual(types(await client.option(OPT.INFO, truncated)), ['NBD_REP_ERR_INVALID']);
    const longName = infoData('x'.repeat(5000));
    assert.deepEqual(types(await client.option(OPT.INFO, longName)), ['NBD_REP_ERR_INVALID']);
    const badUtf8 = Buffer.from('00000002c3280000', 'hex');
    assert.deepEqual(types(await client.option(OPT.INFO, badUtf8)), ['NBD_REP_ERR_INVALID']);
  });

  test('the empty name is the default (first) export', async () => {
    const { client } = await haggling();
    const replies = await client.option(OPT.INFO, infoData('', [INFO.NAME]));
    assert.deepEqual(replies[1]?.data, wire.encodeInfoString(INFO.NAME, 'disk'));
  });

  test('NBD_OPT_EXPORT_NAME answers size and flags without zeroes when asked', async () => {
    const { client } = await haggling();
    client.send(wire.encodeOption(OPT.EXPORT_NAME, Buffer.from('ro')));
    const reply = await client.read(10);
    assert.deepEqual(
      reply,
      wire.encodeExportNameReply(
        1 << 16,
        F.hasFlags | F.readOnly | F.sendFlush | F.sendCache,
        true,
      ),
    );
  });

  test('NBD_OPT_EXPORT_NAME sends the 124 zeroes to a client without NO_ZEROES', async () => {
    const { client } = await haggling(CLIENT_FLAG.fixedNewstyle);
    client.send(wire.encodeOption(OPT.EXPORT_NAME, Buffer.from('disk')));
    const reply = await client.read(134);
    assert.equal(wire.readU64BE(reply, 0), 1 << 20);
    assert.ok(reply.subarray(10).every((b) => b === 0));
  });

  test('NBD_OPT_EXPORT_NAME of an unknown export ends the session', async () => {
    const { client, connection } = await haggling();
    client.send(wire.encodeOption(OPT.EXPORT_NAME, Buffer.from('nope')));
    await client.waitClosed();
    await connection.closed;
  });

  test('NBD_OPT_ABORT is acknowledged, then the server closes', async () => {
    const { client, connection } = await haggling();
    assert.deepEqual(types(await client.option(OPT.ABORT)), ['NBD_REP_ACK']);
    await client.waitClosed();
    await connection.closed;
    assert.equal(connection.status, STATUS.DEAD);
  });

  test('structured replies are acknowledged once', async () => {
    const { client } = await haggling();
    assert.deepEqual(types(await client.option(OPT.STRUCTURED_REPLY, Buffer.alloc(1))), [
      'NBD_REP_ERR_INVALID',
    ]);
    assert.deepEqual(types(await client.option(OPT.STRUCTURED_REPLY)), ['NBD_REP_ACK']);
    assert.deepEqual(types(await client.option(OPT.STRUCTURED_REPLY)), ['NBD_REP_ERR_INVALID']);
  });

  test('meta contexts need structured replies first', async () => {
    const { client } = await haggling();
    const data = metaContextData('disk', [wire.BASE_ALLOCATION]);
    assert.deepEqual(types(await client.option(OPT.SET_META_CONTEXT, data)), [
      'NBD_REP_ERR_INVALID',
    ]);
  });

  test('lists base:allocation for no query, the base: wildcard, or its name', async () => {
    const { client } = await haggling();
    await client.option(OPT.STRUCTURED_REPLY);
    const expected = wire.encodeMetaContextData(0, wire.BASE_ALLOCATION);
    for (const queries of [[], ['base:'], [wire.BASE_ALLOCATION], ['qemu:x', 'base:allocation']]) {
      const replies = await client.option(OPT.LIST_META_CONTEXT, metaContextData('disk', queries));
      assert.deepEqual(types(replies), ['NBD_REP_META_CONTEXT', 'NBD_REP_ACK'], queries.join());
      assert.deepEqual(replies[0]?.data, expected);
    }
    const none = await client.option(
      OPT.LIST_META_CONTEXT,
      metaContextData('disk', ['qemu:dirty-bitmap:x']),
    );
    assert.deepEqual(types(none), ['NBD_REP_ACK']);
  });

  test('selects base:allocation, and ignores base: and unknown namespaces', async () => {
    const { client } = await haggling();
    await client.option(OPT.STRUCTURED_REPLY);
    const replies = await client.option(
      OPT.SET_META_CONTEXT,
      metaContextData('disk', ['base:', 'x-y:z', wire.BASE_ALLOCATION]),
    );
    assert.deepEqual(types(replies), ['NBD_REP_META_CONTEXT', 'NBD_REP_ACK']);
    assert.deepEqual(replies[0]?.data, wire.encodeMetaContextData(1, wire.BASE_ALLOCATION));
    const unknown = await client.option(
      OPT.SET_META_CONTEXT,
      metaContextData('nope', [wire.BASE_ALLOCATION]),
    );
    assert.deepEqual(types(unknown), ['NBD_REP_ERR_UNKNOWN']);
  });

  test('NBD_OPT_GO enters transmission with DF once structured replies are on', async () => {
    const { client, connection } = connectPair(registry());
    const { size, flags } = await client.connect('disk', { structured: true, allocation: true });
    assert.equal(size, 1 << 20);
    assert.ok((flags & F.sendDf) !== 0);
    assert.equal(connection.negotiated?.allocationContext, 1);
    assert.equal(connection.negotiated?.export.name, 'disk');
  });

  test('a server shutdown disconnects a client still haggling', async () => {
    const { client, connection } = await haggling();
    await client.option(OPT.LIST);
    await connection.shutdown();
    await client.waitClosed();
    assert.equal(connection.status, STATUS.DEAD);
  });
});
