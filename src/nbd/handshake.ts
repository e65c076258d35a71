/**
 * The fixed newstyle handshake as an explicit state machine:
 *
 *     greeting sent ─► clientFlags ─► optionHeader ─► optionData ─► optionHeader …
 *                                          │               │
 *                                          └─► skipping ───┘   (oversized or refused data)
 *
 * and out of it into transmission (NBD_OPT_GO acknowledged, NBD_OPT_EXPORT_NAME answered),
 * a soft disconnect (NBD_OPT_ABORT), or a hard disconnect (bad magic, unknown client flags,
 * an NBD_OPT_EXPORT_NAME that cannot be satisfied). Each NBD_OPT_* has one handler; an option
 * without one gets NBD_REP_ERR_UNSUP and the handshake carries on.
 *
 * Handlers are synchronous: export lookup is a map lookup, and replies are queued on the
 * connection's `ReplyWriter`, which keeps them in order.
 */

import type { Export, ExportRegistry } from './export.js';
import { blockSizes, transmissionFlags } from './flags.js';
import type { FrameSink, Need } from './framer.js';
import type { NbdLog } from './log.js';
import { parseExportName, parseInfoRequest, parseMetaContextRequest } from './option-data.js';
import type { ReplyWriter } from './reply-writer.js';
import {
  BASE_ALLOCATION,
  CLIENT_FLAG,
  CLIENT_FLAGS,
  decodeClientFlags,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContextData,
  encodeOptionReply,
  encodeServerData,
  HANDSHAKE_FLAG,
  INFO,
  MAX_STRING_LENGTH,
  nameOfOpt,
  nameOfRep,
  OPT,
  OPTION,
  REP,
} from './wire.js';

/** Option data larger than this is refused with NBD_REP_ERR_TOO_BIG and skipped unread. */
export const MAX_OPTION_DATA = 64 * 1024;

/** The context id this server gives `base:allocation` in NBD_OPT_SET_META_CONTEXT. */
export const ALLOCATION_CONTEXT_ID = 1;

/** What the handshake settled on, handed to the transmission phase. */
export interface Negotiated {
  export: Export;
  structuredReplies: boolean;
  /** The id of `base:allocation` if the client selected it for this export. */
  allocationContext: number | undefined;
  /** The transmission flags the client was sent. */
  flags: number;
}

/** How the handshake ends, besides carrying on. */
export interface HandshakeExits {
  /** Transmission begins; returns the framer's next need. */
  transmission(negotiated: Negotiated): Need;
  /** The session ends: 'soft' after NBD_OPT_ABORT, 'hard' on a protocol violation. */
  end(kind: 'soft' | 'hard', reason: string): 'stop';
}

export interface HandshakeContext {
  registry: ExportRegistry;
  writer: ReplyWriter;
  log: NbdLog;
}

type State = 'clientFlags' | 'optionHeader' | 'optionData' | 'skipping';

/** What an option handler decided. */
type Outcome = 'next' | { go: Negotiated } | { end: 'soft' | 'hard'; reason: string };

type OptionHandler = (h: Handshake, data: Buffer) => Outcome;

const SERVER_HANDSHAKE_FLAGS = HANDSHAKE_FLAG.fixedNewstyle | HANDSHAKE_FLAG.noZeroes;
const KNOWN_CLIENT_FLAGS = CLIENT_FLAG.fixedNewstyle | CLIENT_FLAG.noZeroes;

export class Handshake implements FrameSink {
  private state: State = 'clientFlags';
  private option = 0;
  private noZeroes = false;
  structuredReplies = false;
  /**
   * The name of the export the last NBD_OPT_SET_META_CONTEXT was for, if it selected
   * base:allocation. By name: a registry may hand out a new Export object on every lookup.
   */
  private metaExportName: string | undefined;

  constructor(
    readonly ctx: HandshakeContext,
    private readonly exits: HandshakeExits,
  ) {}

  /** Sends the greeting; returns the first need (the client flags). */
  start(): Need {
    void this.ctx.writer.send(encodeGreeting(SERVER_HANDSHAKE_FLAGS));
    return { take: CLIENT_FLAGS.size };
  }

  frame(data: Buffer, lent = false): Need {
    switch (this.state) {
      case 'clientFlags':
        return this.onClientFlags(decodeClientFlags(data));
      case 'optionHeader':
        return this.onOptionHeader(data);
      case 'optionData':
        // An option's handler may keep what it parsed as views of its data.
        return this.onOptionData(lent ? Buffer.from(data) : data);
      case 'skipping':
        throw new Error('a frame arrived while skipping');
    }
  }

  skipped(): Need {
    this.state = 'optionHeader';
    return { take: OPTION.size };
  }

  /** Queues an option reply to the option being handled. */
  reply(type: number, data?: Buffer): void {
    void this.ctx.writer.send(encodeOptionReply(this.option, type, data));
  }

  /** Queues an error reply with a message, and logs it. */
  refuse(type: number, message: string): 'next' {
    this.ctx.log('debug', 'option-refused', {
      opt: nameOfOpt(this.option),
      rep: nameOfRep(type),
      message,
    });
    this.reply(type, Buffer.from(message, 'utf8'));
    return 'next';
  }

  /** Builds what transmission needs, for `e`. */
  negotiated(e: Export): Negotiated {
    return {
      export: e,
      structuredReplies: this.structuredReplies,
      allocationContext: this.metaExportName === e.name ? ALLOCATION_CONTEXT_ID : undefined,
      flags: transmissionFlags(e, this.structuredReplies),
    };
  }

  /** Replaces the metadata context selection (NBD_OPT_SET_META_CONTEXT). */
  selectMeta(e: Export | undefined): void {
    this.metaExportName = e?.name;
  }

  get zeroesOmitted(): boolean {
    return this.noZeroes;
  }

  private onClientFlags(flags: number): Need {
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
      return this.exits.end('hard', `unknown client flags 0x${flags.toString(16)}`);
    }
    this.noZeroes = (flags & CLIENT_FLAG.noZeroes) !== 0;
    this.state = 'optionHeader';
    return { take: OPTION.size };
  }

  private onOptionHeader(data: Buffer): Need {
    const header = decodeOptionHeader(data);
    this.option = header.option;
    const refusal = this.refusal(header.option, header.length);
    if (refusal === undefined) {
      this.state = 'optionData';
      return { take: header.length };
    }
    if (refusal === 'hard') return this.exits.end('hard', `oversized ${nameOfOpt(header.option)}`);
    this.state = 'skipping';
    return { skip: header.length };
  }

  /** Why an option is refused before its data is read: a reply was queued, or 'hard'. */
  private refusal(option: number, length: number): 'replied' | 'hard' | undefined {
    if (option === OPT.EXPORT_NAME && length > MAX_STRING_LENGTH) return 'hard';
    if (length > MAX_OPTION_DATA) {
      this.refuse(REP.ERR_TOO_BIG, `option data of ${length} bytes is over ${MAX_OPTION_DATA}`);
      return 'replied';
    }
    return undefined;
  }

  private onOptionData(data: Buffer): Need {
    const handler = OPTION_HANDLERS[this.option] ?? unsupported;
    const outcome = handler(this, data);
    if (outcome === 'next') {
      this.state = 'optionHeader';
      return { take: OPTION.size };
    }
    if ('go' in outcome) return this.exits.transmission(outcome.go);
    return this.exits.end(outcome.end, outcome.reason);
  }
}

// ---------------------------------------------------------------------------------------------
// One handler per NBD_OPT_*
// ---------------------------------------------------------------------------------------------

const unsupported: OptionHandler = (h) =>
  h.refuse(REP.ERR_UNSUP, 'this server does not support that option');

/** Ends option haggling without a chance to report errors: unknown names end the session. */
const exportName: OptionHandler = (h, data) => {
  const name = parseExportName(data);
  const e = name.ok ? h.ctx.registry.get(name.value) : undefined;
  if (e === undefined) {
    return { end: 'hard', reason: name.ok ? `no export named '${name.value}'` : name.message };
  }
  const negotiated = h.negotiated(e);
  void h.ctx.writer.send(encodeExportNameReply(e.size, negotiated.flags, h.zeroesOmitted));
  return { go: negotiated };
};

const abort: OptionHandler = (h) => {
  h.reply(REP.ACK);
  return { end: 'soft', reason: 'the client sent NBD_OPT_ABORT' };
};

const list: OptionHandler = (h, data) => {
  if (data.length > 0) return h.refuse(REP.ERR_INVALID, 'NBD_OPT_LIST takes no data');
  for (const e of h.ctx.registry.list())
    h.reply(REP.SERVER, encodeServerData(e.name, e.description));
  h.reply(REP.ACK);
  return 'next';
};

const startTls: OptionHandler = (h) => h.refuse(REP.ERR_UNSUP, 'this server does not offer TLS');

const structuredReply: OptionHandler = (h, data) => {
  if (data.length > 0) return h.refuse(REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
  if (h.structuredReplies) return h.refuse(REP.ERR_INVALID, 'structured replies are already on');
  h.structuredReplies = true;
  h.reply(REP.ACK);
  return 'next';
};

/** NBD_OPT_INFO and NBD_OPT_GO share everything but the ending. */
function infoOrGo(enter: boolean): OptionHandler {
  return (h, data) => {
    const request = parseInfoRequest(data);
    if (!request.ok) return h.refuse(REP.ERR_INVALID, request.message);
    const e = h.ctx.registry.get(request.value.name);
    if (e === undefined)
      return h.refuse(REP.ERR_UNKNOWN, `no export named '${request.value.name}'`);
    const negotiated = h.negotiated(e);
    h.reply(REP.INFO, encodeInfoExport(e.size, negotiated.flags));
    sendRequestedInfo(h, e, request.value.infos);
    h.reply(REP.INFO, encodeInfoBlockSize(blockSizes(e)));
    h.reply(REP.ACK);
    return enter ? { go: negotiated } : 'next';
  };
}

function sendRequestedInfo(h: Handshake, e: Export, infos: readonly number[]): void {
  if (infos.includes(INFO.NAME)) h.reply(REP.INFO, encodeInfoString(INFO.NAME, e.name));
  if (infos.includes(INFO.DESCRIPTION) && e.description !== undefined) {
    h.reply(REP.INFO, encodeInfoString(INFO.DESCRIPTION, e.description));
  }
}

/** Whether `query` selects base:allocation; `listing` also accepts the "base:" wildcard. */
function matchesAllocation(query: string, listing: boolean): boolean {
  return query === BASE_ALLOCATION || (listing && query === 'base:');
}

function metaContext(listing: boolean): OptionHandler {
  return (h, data) => {
    if (!listing) h.selectMeta(undefined);
    if (!h.structuredReplies) {
      return h.refuse(REP.ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
    }
    const request = parseMetaContextRequest(data);
    if (!request.ok) return h.refuse(REP.ERR_INVALID, request.message);
    const e = h.ctx.registry.get(request.value.name);
    if (e === undefined)
      return h.refuse(REP.ERR_UNKNOWN, `no export named '${request.value.name}'`);
    const { queries } = request.value;
    const selected =
      listing && queries.length === 0 ? true : queries.some((q) => matchesAllocation(q, listing));
    if (selected) {
      h.reply(
        REP.META_CONTEXT,
        encodeMetaContextData(listing ? 0 : ALLOCATION_CONTEXT_ID, BASE_ALLOCATION),
      );
    }
    if (!listing && selected) h.selectMeta(e);
    h.reply(REP.ACK);
    return 'next';
  };
}

const OPTION_HANDLERS: Readonly<Record<number, OptionHandler>> = {
  [OPT.EXPORT_NAME]: exportName,
  [OPT.ABORT]: abort,
  [OPT.LIST]: list,
  [OPT.STARTTLS]: startTls,
  [OPT.INFO]: infoOrGo(false),
  [OPT.GO]: infoOrGo(true),
  [OPT.STRUCTURED_REPLY]: structuredReply,
  [OPT.LIST_META_CONTEXT]: metaContext(true),
  [OPT.SET_META_CONTEXT]: metaContext(false),
};
