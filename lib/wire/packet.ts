/**
 * Wire codec for the udpget protocol, version 1.
 *
 * Pure functions over bytes: no I/O, no clocks, no state beyond constant
 * scratch space. PROTOCOL.md is the normative description; this module is its
 * executable form, so the two must change together.
 *
 * @module
 */

/** Magic number opening every datagram: ASCII "UG". */
export const MAGIC = 0x5547;
/** Protocol version implemented by this module. */
export const VERSION = 1;
/** Size in bytes of the common header that starts every packet. */
export const HEADER_SIZE = 10;
/** Size in bytes of an address-validation token (all zero = no token). */
export const TOKEN_SIZE = 16;
/** Size in bytes of a SHA-256 digest, the only digest algorithm of version 1. */
export const DIGEST_SIZE = 32;
/** Largest file name, in UTF-8 bytes (names are never empty). */
export const MAX_NAME_BYTES = 1024;
/** Largest ERROR message in UTF-8 bytes; `encode` truncates longer messages. */
export const MAX_ERROR_MESSAGE_BYTES = 256;
/** Largest number of data bytes carried by one CHUNK_REPLY. */
export const MAX_BLOCK_SIZE = 65000;
/** Size of everything before the data of a CHUNK_REPLY: header + file_id + offset + data_len. */
export const CHUNK_REPLY_HEADER_SIZE = 28;
/** Largest datagram of version 1 (a CHUNK_REPLY with a full block); size receive buffers with it. */
export const MAX_DATAGRAM_SIZE = CHUNK_REPLY_HEADER_SIZE + MAX_BLOCK_SIZE;

/** Size of everything before the hashes of a HASHES_REPLY: header + file_id + first_piece + count. */
const HASHES_REPLY_HEADER_SIZE = HEADER_SIZE + 8 + 4 + 2;

/**
 * Most entry bytes in a HAVE_REPLY: 256 list entries or 8192 pieces of bitfield. The whole
 * reply (34 bytes more, and at most 32 pieces being fetched) then fits IPv6's minimum MTU, so it
 * never depends on IP fragmentation.
 */
export const MAX_HAVE_BYTES = 1024;

/** Most peers in one PEERS_REPLY (a bounded peer set is tens, not the swarm). */
export const MAX_PEERS_PER_REPLY = 50;

/** Most pieces a HAVE_REPLY lists as being fetched from a server. */
export const MAX_FETCHING = 32;

/**
 * Most piece hashes one HASHES_REPLY may carry (2031), so that it never
 * exceeds MAX_DATAGRAM_SIZE; servers return at most this many per request.
 */
export const MAX_HASHES_PER_REPLY = Math.floor(
  (MAX_DATAGRAM_SIZE - HASHES_REPLY_HEADER_SIZE) / DIGEST_SIZE,
);

/**
 * Hashes per HASHES_REPLY that udpget's servers and peers send (40 × 32 B keeps the reply under
 * an Ethernet-sized datagram; the wire allows {@link MAX_HASHES_PER_REPLY}, and a client asks
 * again for the rest of a range a short reply did not bring).
 */
export const HASHES_PER_REPLY = 40;

/** Numeric packet types, as carried in header byte 3. */
export const PacketType = {
  MetaRequest: 1,
  MetaReply: 2,
  ChunkRequest: 3,
  ChunkReply: 4,
  HashesRequest: 5,
  HashesReply: 6,
  Retry: 7,
  Error: 8,
  HaveRequest: 9,
  HaveReply: 10,
  PeersRequest: 11,
  PeersReply: 12,
} as const;

/** Error codes carried by ERROR packets. */
export const ErrorCode = {
  NotFound: 1,
  AccessDenied: 2,
  BadRequest: 3,
  OutOfRange: 4,
  Stale: 5,
  Busy: 6,
  BadVersion: 7,
  Unsupported: 8,
  AuthFailed: 9,
  Internal: 10,
  TooMany: 11,
  TooBig: 12,
  NotHeld: 13,
  GivenOut: 14,
} as const;

/**
 * Header flags bit 1, CHUNK_REQUEST only (PROTOCOL.md §7.4): send this request's replies with the
 * IP don't-fragment bit and never fragment them locally; a reply that cannot leave whole is
 * answered with ERROR TOO_BIG instead. Path MTU probes carry it, so that a probe cannot succeed
 * through fragmentation.
 */
export const UNFRAGMENTED_FLAG = 0x0002;

/**
 * Header flags bit 2, CHUNK_REQUEST and HASHES_REQUEST (PROTOCOL.md §10.6, §10.7): the asker is a
 * swarm fetcher that gets from its peers what another swarm fetcher already got from this server.
 * A server may then answer ERROR GIVEN_OUT instead of sending a piece a second time while pieces
 * it never sent remain, and BUSY instead of sending the piece hashes to a whole crowd, so that
 * its upload (the swarm's floor) carries each piece, and the list, about once. On HAVE_REQUEST
 * (§10.3) the same bit says the poll may wait for news.
 */
export const SWARM_FLAG = 0x0004;

/** The flags a CHUNK_REQUEST may carry (bit 0 is cleared by authentication before decoding). */
const CHUNK_REQUEST_FLAGS = UNFRAGMENTED_FLAG | SWARM_FLAG;
/** The flags a HASHES_REQUEST may carry. */
const HASHES_REQUEST_FLAGS = SWARM_FLAG;
/**
 * The flags a HAVE_REQUEST may carry: bit 2 there means "may wait" (PROTOCOL.md §10.3): a source
 * with nothing new to tell may hold the poll until it verifies a piece.
 */
const HAVE_REQUEST_FLAGS = SWARM_FLAG;

/** One of the defined error code numbers. */
export type ErrorCodeValue = typeof ErrorCode[keyof typeof ErrorCode];

const ERROR_CODE_NAMES: ReadonlyMap<number, string> = new Map([
  [ErrorCode.NotFound, "NOT_FOUND"],
  [ErrorCode.AccessDenied, "ACCESS_DENIED"],
  [ErrorCode.BadRequest, "BAD_REQUEST"],
  [ErrorCode.OutOfRange, "OUT_OF_RANGE"],
  [ErrorCode.Stale, "STALE"],
  [ErrorCode.Busy, "BUSY"],
  [ErrorCode.BadVersion, "BAD_VERSION"],
  [ErrorCode.Unsupported, "UNSUPPORTED"],
  [ErrorCode.AuthFailed, "AUTH_FAILED"],
  [ErrorCode.Internal, "INTERNAL"],
  [ErrorCode.TooMany, "TOO_MANY"],
  [ErrorCode.TooBig, "TOO_BIG"],
  [ErrorCode.NotHeld, "NOT_HELD"],
  [ErrorCode.GivenOut, "GIVEN_OUT"],
]);

/**
 * The protocol name of an error code, e.g. `errorCodeName(1) === "NOT_FOUND"`;
 * codes this version does not define render as `"UNKNOWN(99)"`.
 */
export function errorCodeName(code: number): string {
  return ERROR_CODE_NAMES.get(code) ?? `UNKNOWN(${code})`;
}

/** The all-zero token, meaning "no token". Treat as read-only. */
export const NO_TOKEN: Uint8Array = new Uint8Array(TOKEN_SIZE);

/** Client asks a server what a file is (size, digest...). */
export interface MetaRequest {
  type: "meta_request";
  requestId: number;
  token: Uint8Array;
  name: string;
}

/** Server describes a file; `digest` identifies its content. */
export interface MetaReply {
  type: "meta_reply";
  requestId: number;
  size: number;
  mtimeMs: number;
  pieceSize: number;
  maxBlock: number;
  digest: Uint8Array;
  piecesRoot: Uint8Array;
}

/** What a META_REPLY says of a file, as a server or a peer knows it. */
export type FileDescription = Pick<
  MetaReply,
  "size" | "mtimeMs" | "pieceSize" | "digest" | "piecesRoot"
>;

/** The META_REPLY to request `requestId` describing `m`, with the largest block of version 1. */
export function metaReplyOf(requestId: number, m: FileDescription): MetaReply {
  const { size, mtimeMs, pieceSize, digest, piecesRoot } = m;
  const maxBlock = MAX_BLOCK_SIZE;
  return { type: "meta_reply", requestId, size, mtimeMs, pieceSize, maxBlock, digest, piecesRoot };
}

/** Client asks for `length` bytes at `offset`, delivered in `blockSize`-byte CHUNK_REPLY datagrams. */
export interface ChunkRequest {
  type: "chunk_request";
  requestId: number;
  token: Uint8Array;
  fileId: bigint;
  offset: number;
  length: number;
  blockSize: number;
  name: string;
  /** Flags bit 1: replies unfragmented, or ERROR TOO_BIG (see {@link UNFRAGMENTED_FLAG}). */
  unfragmented?: boolean;
  /** Flags bit 2: a swarm fetcher, which takes GIVEN_OUT for a repeat (see {@link SWARM_FLAG}). */
  swarm?: boolean;
}

/** One block of file data. */
export interface ChunkReply {
  type: "chunk_reply";
  requestId: number;
  fileId: bigint;
  offset: number;
  data: Uint8Array;
}

/** Client asks for the SHA-256 hashes of `count` pieces starting at `firstPiece`. */
export interface HashesRequest {
  type: "hashes_request";
  requestId: number;
  token: Uint8Array;
  fileId: bigint;
  firstPiece: number;
  count: number;
  name: string;
  /** Flags bit 2: a swarm fetcher, which takes BUSY and asks its peers (see {@link SWARM_FLAG}). */
  swarm?: boolean;
}

/** Piece hashes, 32 bytes each, for pieces `firstPiece`, `firstPiece + 1`, ... */
export interface HashesReply {
  type: "hashes_reply";
  requestId: number;
  fileId: bigint;
  firstPiece: number;
  /** count * 32 bytes; count = hashes.length / 32. */
  hashes: Uint8Array;
}

/** Server asks the client to resend its request carrying `token`. */
export interface RetryPacket {
  type: "retry";
  requestId: number;
  token: Uint8Array;
}

/** Server reports why a request failed. */
export interface ErrorPacket {
  type: "error";
  requestId: number;
  code: number;
  message: string;
}

/**
 * Client asks a source which pieces it holds (PROTOCOL.md §10.3): its have-log from position
 * `since` on, or a bitfield page from `firstPiece` when the log would not fit.
 */
export interface HaveRequest {
  type: "have_request";
  requestId: number;
  token: Uint8Array;
  fileId: bigint;
  /** Have-log position the client already knows (0: none). */
  since: number;
  /** First piece of the bitfield page wanted, when a bitfield is sent. */
  firstPiece: number;
  name: string;
  /**
   * Flags bit 2: the asker may wait — a source with nothing past `since` may hold the poll until
   * it verifies a piece, `HAVE_HOLD_MS` at most (PROTOCOL.md §10.3).
   */
  wait?: boolean;
}

/** How a HAVE_REPLY lists pieces. */
export const HaveForm = {
  /** `entries`: have-log positions `first` .. `first + count - 1`, one u32 piece index each. */
  List: 0,
  /** `entries`: a bitfield of pieces `first` .. (high bit of the first byte first). */
  Bitfield: 1,
} as const;

/** A source says which pieces it holds (PROTOCOL.md §10.3). */
export interface HaveReply {
  type: "have_reply";
  requestId: number;
  fileId: bigint;
  /** Pieces of the file. */
  pieces: number;
  /** Pieces the source holds now: also its have-log length. `held === pieces`: all of them. */
  held: number;
  /** {@link HaveForm} of `entries`. */
  form: number;
  /** List: log position of the first entry; bitfield: first piece it covers. */
  first: number;
  /** List: 4 bytes per entry; bitfield: one bit per piece. At most MAX_HAVE_BYTES. */
  entries: Uint8Array;
  /**
   * Pieces the source is fetching from a server right now (4 bytes each, u32; advisory, at
   * most MAX_FETCHING): other fetchers then ask their servers for other pieces.
   */
  fetching: Uint8Array;
}

/** Client asks a source which other peers of the swarm it knows (peer exchange, §10.4). */
export interface PeersRequest {
  type: "peers_request";
  requestId: number;
  token: Uint8Array;
  fileId: bigint;
  name: string;
}

/** A source's known peers, in compact form: 6 bytes an entry for IPv4, 18 for IPv6. */
export interface PeersReply {
  type: "peers_reply";
  requestId: number;
  fileId: bigint;
  /** 4 or 6. */
  family: number;
  /** Compact entries: address then port, big-endian (BEP 23 / BEP 15 form). */
  entries: Uint8Array;
}

/** Any packet of version 1. */
export type Packet =
  | MetaRequest
  | MetaReply
  | ChunkRequest
  | ChunkReply
  | HashesRequest
  | HashesReply
  | RetryPacket
  | ErrorPacket
  | HaveRequest
  | HaveReply
  | PeersRequest
  | PeersReply;

/** The packets a client sends (a server answers them and never answers anything else). */
export type RequestPacket =
  | MetaRequest
  | ChunkRequest
  | HashesRequest
  | HaveRequest
  | PeersRequest;

/** Whether `p` is a request (a server never answers replies: two could ping-pong forever). */
export function isRequestPacket(p: Packet): p is RequestPacket {
  return p.type === "meta_request" || p.type === "chunk_request" ||
    p.type === "hashes_request" || p.type === "have_request" || p.type === "peers_request";
}

/**
 * Why a datagram failed to decode: too few bytes, wrong magic, other version,
 * unknown type, flags set, extra bytes, or a field out of its allowed range.
 */
export type DecodeErrorKind =
  | "short"
  | "bad_magic"
  | "bad_version"
  | "unknown_type"
  | "bad_flags"
  | "bad_length"
  | "bad_field";

/**
 * A decode failure. `requestId`, `version` and `type` are set whenever the
 * header got far enough to read them, so a server can still answer with an
 * ERROR carrying the right request_id.
 */
export interface DecodeError {
  kind: DecodeErrorKind;
  message: string;
  requestId?: number;
  version?: number;
  type?: number;
}

/** Outcome of `decode`: a packet, or the reason there is none. */
export type DecodeResult = { ok: true; packet: Packet } | { ok: false; error: DecodeError };

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
const TWO_POW_32 = 0x1_0000_0000;
/** High 32 bits of Number.MAX_SAFE_INTEGER: a larger high word means an unsafe u64. */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;
/** digest_alg value for SHA-256, the only algorithm defined in version 1. */
const DIGEST_ALG_SHA256 = 1;
const META_REPLY_BODY_SIZE = 8 + 8 + 4 + 2 + 1 + DIGEST_SIZE + DIGEST_SIZE;
/**
 * Name of a token probe (PROTOCOL.md §7.1): a META_REQUEST for `/`, never a servable file,
 * that a server validating addresses answers with RETRY only, whatever its size.
 */
export const TOKEN_PROBE_NAME = "/";
/** Size of a META_REPLY datagram (97 bytes). */
export const META_REPLY_SIZE: number = HEADER_SIZE + META_REPLY_BODY_SIZE;

const utf8Encoder = new TextEncoder();
// fatal: a name that is not valid UTF-8 must be rejected, not silently "repaired"
// into a different name that might exist on the server. ignoreBOM: a leading
// U+FEFF is part of the name, not a marker to strip (stripping it would also
// make two different byte strings decode to the same packet).
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------- decoding

/** Internal signal for a decode failure; `decode` turns it into a DecodeError. */
class DecodeFailure extends Error {
  readonly kind: DecodeErrorKind;

  constructor(kind: DecodeErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** Bounds-checked cursor over one datagram; every read either succeeds or throws DecodeFailure. */
class Reader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #pos: number;

  constructor(bytes: Uint8Array, view: DataView, start: number) {
    this.#bytes = bytes;
    this.#view = view;
    this.#pos = start;
  }

  /** The header's flags (checked against the type by `readHeader`). */
  get flags(): number {
    return this.#view.getUint16(4);
  }

  /** Bytes not yet consumed. */
  get remaining(): number {
    return this.#bytes.length - this.#pos;
  }

  /** Reserves `n` bytes and returns where they start. */
  #take(n: number, field: string): number {
    if (this.remaining < n) {
      throw new DecodeFailure("short", `datagram ends inside ${field}`);
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  u8(field: string): number {
    return this.#view.getUint8(this.#take(1, field));
  }

  u16(field: string): number {
    return this.#view.getUint16(this.#take(2, field));
  }

  u32(field: string): number {
    return this.#view.getUint32(this.#take(4, field));
  }

  /** A u64 that must fit a JS number exactly (sizes, offsets, times). */
  safeU64(field: string): number {
    const at = this.#take(8, field);
    const high = this.#view.getUint32(at);
    if (high > MAX_SAFE_HIGH_WORD) {
      throw new DecodeFailure("bad_field", `${field} exceeds Number.MAX_SAFE_INTEGER`);
    }
    return high * TWO_POW_32 + this.#view.getUint32(at + 4);
  }

  /** A full-range u64 (file ids are opaque, so every bit pattern is kept). */
  bigU64(field: string): bigint {
    return this.#view.getBigUint64(this.#take(8, field));
  }

  /** A view of the next `n` bytes; never a copy, so large payloads cost nothing. */
  view(n: number, field: string): Uint8Array {
    const at = this.#take(n, field);
    return this.#bytes.subarray(at, at + n);
  }

  /** name_len u16 + UTF-8 name, 1..MAX_NAME_BYTES bytes. */
  name(): string {
    const length = this.u16("name_len");
    if (length < 1 || length > MAX_NAME_BYTES) {
      throw new DecodeFailure("bad_field", `name_len ${length} outside 1..${MAX_NAME_BYTES}`);
    }
    return utf8(this.view(length, "name"), "name");
  }

  /** Rejects trailing bytes: a body is exactly as long as its fields. */
  end(): void {
    if (this.remaining !== 0) {
      throw new DecodeFailure("bad_length", `${this.remaining} unexpected trailing byte(s)`);
    }
  }
}

/** Strict UTF-8 decode, reporting malformed input as a bad_field failure. */
function utf8(bytes: Uint8Array, field: string): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw new DecodeFailure("bad_field", `${field} is not valid UTF-8`);
  }
}

/** Throws bad_field unless min <= value <= max. */
function expectRange(field: string, value: number, min: number, max: number): void {
  if (value < min || value > max) {
    throw new DecodeFailure("bad_field", `${field} ${value} outside ${min}..${max}`);
  }
}

/** Throws short/bad_length unless exactly `expected` bytes remain (for length-prefixed tails). */
function expectRemaining(r: Reader, expected: number, field: string): void {
  if (r.remaining < expected) {
    throw new DecodeFailure("short", `${field} needs ${expected} bytes, ${r.remaining} present`);
  }
  if (r.remaining > expected) {
    throw new DecodeFailure("bad_length", `${r.remaining - expected} byte(s) after ${field}`);
  }
}

function decodeMetaRequest(r: Reader, requestId: number): MetaRequest {
  const token = r.view(TOKEN_SIZE, "token");
  const name = r.name();
  r.end();
  return { type: "meta_request", requestId, token, name };
}

function decodeMetaReply(r: Reader, requestId: number): MetaReply {
  const size = r.safeU64("size");
  const mtimeMs = r.safeU64("mtime_ms");
  const pieceSize = r.u32("piece_size");
  expectRange("piece_size", pieceSize, 1, U32_MAX);
  const maxBlock = r.u16("max_block");
  expectRange("max_block", maxBlock, 1, MAX_BLOCK_SIZE);
  const digestAlg = r.u8("digest_alg");
  expectRange("digest_alg", digestAlg, DIGEST_ALG_SHA256, DIGEST_ALG_SHA256);
  const digest = r.view(DIGEST_SIZE, "digest");
  const piecesRoot = r.view(DIGEST_SIZE, "pieces_root");
  r.end();
  return { type: "meta_reply", requestId, size, mtimeMs, pieceSize, maxBlock, digest, piecesRoot };
}

function decodeChunkRequest(r: Reader, requestId: number): ChunkRequest {
  const token = r.view(TOKEN_SIZE, "token");
  const fileId = r.bigU64("file_id");
  const offset = r.safeU64("offset");
  const length = r.u32("length");
  expectRange("length", length, 1, U32_MAX);
  // Keeps offset + length exact in JS arithmetic on the receiving side.
  expectRange("offset + length", offset + length, 1, Number.MAX_SAFE_INTEGER);
  const blockSize = r.u16("block_size");
  expectRange("block_size", blockSize, 1, U16_MAX);
  const name = r.name();
  r.end();
  const p: ChunkRequest = {
    type: "chunk_request",
    requestId,
    token,
    fileId,
    offset,
    length,
    blockSize,
    name,
  };
  if (r.flags & UNFRAGMENTED_FLAG) p.unfragmented = true;
  if (r.flags & SWARM_FLAG) p.swarm = true;
  return p;
}

function decodeChunkReply(r: Reader, requestId: number): ChunkReply {
  const fileId = r.bigU64("file_id");
  const offset = r.safeU64("offset");
  const dataLen = r.u16("data_len");
  expectRange("data_len", dataLen, 1, MAX_BLOCK_SIZE);
  expectRange("offset + data_len", offset + dataLen, 1, Number.MAX_SAFE_INTEGER);
  expectRemaining(r, dataLen, "data");
  const data = r.view(dataLen, "data");
  return { type: "chunk_reply", requestId, fileId, offset, data };
}

/** The header flags a request of `type` may carry (0 for every other type). */
function allowedFlags(type: number): number {
  if (type === PacketType.ChunkRequest) return CHUNK_REQUEST_FLAGS;
  if (type === PacketType.HaveRequest) return HAVE_REQUEST_FLAGS;
  return type === PacketType.HashesRequest ? HASHES_REQUEST_FLAGS : 0;
}

function decodeHashesRequest(r: Reader, requestId: number): HashesRequest {
  const token = r.view(TOKEN_SIZE, "token");
  const fileId = r.bigU64("file_id");
  const firstPiece = r.u32("first_piece");
  const count = r.u16("count");
  expectRange("count", count, 1, U16_MAX);
  const name = r.name();
  r.end();
  const p: HashesRequest = {
    type: "hashes_request",
    requestId,
    token,
    fileId,
    firstPiece,
    count,
    name,
  };
  if (r.flags & SWARM_FLAG) p.swarm = true;
  return p;
}

function decodeHashesReply(r: Reader, requestId: number): HashesReply {
  const fileId = r.bigU64("file_id");
  const firstPiece = r.u32("first_piece");
  const count = r.u16("count");
  expectRange("count", count, 1, MAX_HASHES_PER_REPLY);
  expectRemaining(r, count * DIGEST_SIZE, "hashes");
  const hashes = r.view(count * DIGEST_SIZE, "hashes");
  return { type: "hashes_reply", requestId, fileId, firstPiece, hashes };
}

function decodeRetry(r: Reader, requestId: number): RetryPacket {
  const token = r.view(TOKEN_SIZE, "token");
  r.end();
  return { type: "retry", requestId, token };
}

function decodeError(r: Reader, requestId: number): ErrorPacket {
  const code = r.u16("code");
  const messageLength = r.u16("msg_len");
  expectRange("msg_len", messageLength, 0, MAX_ERROR_MESSAGE_BYTES);
  const message = utf8(r.view(messageLength, "msg"), "msg");
  r.end();
  return { type: "error", requestId, code, message };
}

function decodeHaveRequest(r: Reader, requestId: number): HaveRequest {
  const token = r.view(TOKEN_SIZE, "token");
  const fileId = r.bigU64("file_id");
  const since = r.u32("since");
  const firstPiece = r.u32("first_piece");
  const name = r.name();
  r.end();
  const p: HaveRequest = {
    type: "have_request",
    requestId,
    token,
    fileId,
    since,
    firstPiece,
    name,
  };
  if (r.flags & SWARM_FLAG) p.wait = true;
  return p;
}

function decodeHaveReply(r: Reader, requestId: number): HaveReply {
  const fileId = r.bigU64("file_id");
  const pieces = r.u32("pieces");
  const held = r.u32("held");
  expectRange("held", held, 0, pieces);
  const form = r.u8("form");
  expectRange("form", form, HaveForm.List, HaveForm.Bitfield);
  const first = r.u32("first");
  const count = r.u16("count");
  const bytes = form === HaveForm.List ? 4 * count : count;
  expectRange("entry bytes", bytes, 0, MAX_HAVE_BYTES);
  const entries = r.view(bytes, "entries");
  const fetchingCount = r.u8("fetching_count");
  expectRange("fetching_count", fetchingCount, 0, MAX_FETCHING);
  expectRemaining(r, 4 * fetchingCount, "fetching");
  const fetching = r.view(4 * fetchingCount, "fetching");
  return { type: "have_reply", requestId, fileId, pieces, held, form, first, entries, fetching };
}

function decodePeersRequest(r: Reader, requestId: number): PeersRequest {
  const token = r.view(TOKEN_SIZE, "token");
  const fileId = r.bigU64("file_id");
  const name = r.name();
  r.end();
  return { type: "peers_request", requestId, token, fileId, name };
}

function decodePeersReply(r: Reader, requestId: number): PeersReply {
  const fileId = r.bigU64("file_id");
  const family = r.u8("family");
  if (family !== 4 && family !== 6) {
    throw new DecodeFailure("bad_field", `family ${family} is neither 4 nor 6`);
  }
  const count = r.u8("count");
  expectRange("count", count, 0, MAX_PEERS_PER_REPLY);
  const size = compactPeerSize(family);
  expectRemaining(r, count * size, "peers");
  const entries = r.view(count * size, "peers");
  return { type: "peers_reply", requestId, fileId, family, entries };
}

/** Bytes of one compact peer entry: address and port. */
export function compactPeerSize(family: 4 | 6 | number): number {
  return family === 4 ? 6 : 18;
}

type BodyDecoder = (r: Reader, requestId: number) => Packet;

const BODY_DECODERS: ReadonlyMap<number, BodyDecoder> = new Map<number, BodyDecoder>([
  [PacketType.MetaRequest, decodeMetaRequest],
  [PacketType.MetaReply, decodeMetaReply],
  [PacketType.ChunkRequest, decodeChunkRequest],
  [PacketType.ChunkReply, decodeChunkReply],
  [PacketType.HashesRequest, decodeHashesRequest],
  [PacketType.HashesReply, decodeHashesReply],
  [PacketType.Retry, decodeRetry],
  [PacketType.Error, decodeError],
  [PacketType.HaveRequest, decodeHaveRequest],
  [PacketType.HaveReply, decodeHaveReply],
  [PacketType.PeersRequest, decodePeersRequest],
  [PacketType.PeersReply, decodePeersReply],
]);

/** What decode needs from a valid header. */
interface Header {
  type: number;
  requestId: number;
  decodeBody: BodyDecoder;
}

/**
 * Reads and checks the common header. Magic and version are checked before
 * the length so that a short datagram of another version still reports
 * bad_version; request_id is reported whenever present, because every version
 * keeps it at bytes 6..9 precisely so that a BAD_VERSION reply can echo it.
 */
function readHeader(bytes: Uint8Array, view: DataView): Header | DecodeError {
  if (bytes.length < 2) return { kind: "short", message: "datagram shorter than magic" };
  if (view.getUint16(0) !== MAGIC) return { kind: "bad_magic", message: "not a udpget datagram" };
  if (bytes.length < 3) return { kind: "short", message: "datagram ends before version" };
  const version = view.getUint8(2);
  const requestId = bytes.length >= HEADER_SIZE ? view.getUint32(6) : undefined;
  if (version !== VERSION) {
    const message = `version ${version}, expected ${VERSION}`;
    return { kind: "bad_version", message, version, requestId };
  }
  if (requestId === undefined) return { kind: "short", message: "datagram shorter than header" };
  const type = view.getUint8(3);
  const decodeBody = BODY_DECODERS.get(type);
  if (decodeBody === undefined) {
    return { kind: "unknown_type", message: `unknown type ${type}`, requestId, version, type };
  }
  // Checked before the body because a set flag (e.g. bit 0, HMAC trailer) changes its layout.
  const flags = view.getUint16(4);
  if (flags !== 0 && (flags & ~allowedFlags(type)) !== 0) {
    const message = `unsupported flags 0x${flags.toString(16)}`;
    return { kind: "bad_flags", message, requestId, version, type };
  }
  return { type, requestId, decodeBody };
}

/**
 * The request id of a datagram that claims to be a version-1 request (META, CHUNK or HASHES
 * request), without decoding its body; `undefined` for anything else. A server must never answer
 * a reply type: two servers could then be made to bounce errors at each other forever.
 */
export function requestIdOfRequest(bytes: Uint8Array): number | undefined {
  if (bytes.length < HEADER_SIZE) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(0) !== MAGIC || bytes[2] !== VERSION) return undefined;
  const t = bytes[3];
  const isRequest = t === PacketType.MetaRequest || t === PacketType.ChunkRequest ||
    t === PacketType.HashesRequest || t === PacketType.HaveRequest ||
    t === PacketType.PeersRequest;
  return isRequest ? view.getUint32(6) : undefined;
}

/**
 * Decodes one datagram. Never throws, for any input. Byte-array fields of the
 * result (`token`, `digest`, `piecesRoot`, `data`, `hashes`) are views into
 * `bytes`, not copies: copy them before `bytes` is reused.
 */
export function decode(bytes: Uint8Array): DecodeResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header = readHeader(bytes, view);
  if ("kind" in header) return { ok: false, error: header };
  const { type, requestId, decodeBody } = header;
  try {
    return { ok: true, packet: decodeBody(new Reader(bytes, view, HEADER_SIZE), requestId) };
  } catch (e) {
    // Only our own signal is expected; anything else is a codec bug and must surface.
    if (!(e instanceof DecodeFailure)) throw e;
    const error = { kind: e.kind, message: e.message, requestId, version: VERSION, type };
    return { ok: false, error };
  }
}

// ---------------------------------------------------------------- encoding

/** Throws RangeError unless `value` is an integer in min..max. */
function checkInt(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${field} must be an integer in ${min}..${max}, got ${value}`);
  }
}

/** Throws RangeError unless `value` is a bigint that fits in a u64. */
function checkU64(field: string, value: bigint): void {
  if (typeof value !== "bigint" || value < 0n || value > U64_MAX) {
    throw new RangeError(`${field} must be a bigint in 0..2^64-1, got ${value}`);
  }
}

/** Throws RangeError unless `bytes` is a Uint8Array of exactly `size` bytes. */
function checkBytes(field: string, bytes: Uint8Array, size: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== size) {
    throw new RangeError(`${field} must be ${size} bytes, got ${bytes?.length}`);
  }
}

/** UTF-8 bytes of a name, refusing what the wire cannot carry faithfully. */
function nameBytes(name: string): Uint8Array {
  // TextEncoder would silently turn lone surrogates into U+FFFD: a different name.
  if (typeof name !== "string" || !name.isWellFormed()) {
    throw new RangeError("name must be a well-formed string");
  }
  const bytes = utf8Encoder.encode(name);
  if (bytes.length < 1 || bytes.length > MAX_NAME_BYTES) {
    throw new RangeError(`name must be 1..${MAX_NAME_BYTES} UTF-8 bytes, got ${bytes.length}`);
  }
  return bytes;
}

/** UTF-8 bytes of an error message, cut at a character boundary to fit the limit. */
function messageBytes(message: string): Uint8Array {
  const bytes = utf8Encoder.encode(message);
  if (bytes.length <= MAX_ERROR_MESSAGE_BYTES) return bytes;
  let cut = MAX_ERROR_MESSAGE_BYTES;
  // Continuation bytes look like 10xxxxxx; back up to the start of that character.
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--;
  return bytes.subarray(0, cut);
}

/** Sequential big-endian writer over a freshly allocated datagram that starts with its header. */
class Writer {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  constructor(type: number, requestId: number, bodySize: number, flags = 0) {
    checkInt("requestId", requestId, 0, U32_MAX);
    this.#bytes = new Uint8Array(HEADER_SIZE + bodySize);
    this.#view = new DataView(this.#bytes.buffer);
    this.u16(MAGIC).u8(VERSION).u8(type).u16(flags).u32(requestId);
  }

  u8(value: number): this {
    this.#view.setUint8(this.#pos, value);
    this.#pos += 1;
    return this;
  }

  u16(value: number): this {
    this.#view.setUint16(this.#pos, value);
    this.#pos += 2;
    return this;
  }

  u32(value: number): this {
    this.#view.setUint32(this.#pos, value);
    this.#pos += 4;
    return this;
  }

  /** A safe non-negative integer as u64, without going through BigInt. */
  u64(value: number): this {
    return this.u32(Math.floor(value / TWO_POW_32)).u32(value >>> 0);
  }

  big64(value: bigint): this {
    this.#view.setBigUint64(this.#pos, value);
    this.#pos += 8;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.#bytes.set(bytes, this.#pos);
    this.#pos += bytes.length;
    return this;
  }

  name(bytes: Uint8Array): this {
    return this.u16(bytes.length).raw(bytes);
  }

  /** The datagram; the size check catches a body size that disagrees with the fields written. */
  finish(): Uint8Array {
    if (this.#pos !== this.#bytes.length) {
      throw new Error(`codec bug: wrote ${this.#pos} of ${this.#bytes.length} bytes`);
    }
    return this.#bytes;
  }
}

function encodeMetaRequest(p: MetaRequest): Uint8Array {
  checkBytes("token", p.token, TOKEN_SIZE);
  const name = nameBytes(p.name);
  return new Writer(PacketType.MetaRequest, p.requestId, TOKEN_SIZE + 2 + name.length)
    .raw(p.token).name(name).finish();
}

function encodeMetaReply(p: MetaReply): Uint8Array {
  checkInt("size", p.size, 0, Number.MAX_SAFE_INTEGER);
  checkInt("mtimeMs", p.mtimeMs, 0, Number.MAX_SAFE_INTEGER);
  checkInt("pieceSize", p.pieceSize, 1, U32_MAX);
  checkInt("maxBlock", p.maxBlock, 1, MAX_BLOCK_SIZE);
  checkBytes("digest", p.digest, DIGEST_SIZE);
  checkBytes("piecesRoot", p.piecesRoot, DIGEST_SIZE);
  return new Writer(PacketType.MetaReply, p.requestId, META_REPLY_BODY_SIZE)
    .u64(p.size).u64(p.mtimeMs).u32(p.pieceSize).u16(p.maxBlock).u8(DIGEST_ALG_SHA256)
    .raw(p.digest).raw(p.piecesRoot).finish();
}

function encodeChunkRequest(p: ChunkRequest): Uint8Array {
  checkBytes("token", p.token, TOKEN_SIZE);
  checkU64("fileId", p.fileId);
  checkInt("length", p.length, 1, U32_MAX);
  checkInt("offset", p.offset, 0, Number.MAX_SAFE_INTEGER - p.length);
  checkInt("blockSize", p.blockSize, 1, U16_MAX);
  const name = nameBytes(p.name);
  const bodySize = TOKEN_SIZE + 8 + 8 + 4 + 2 + 2 + name.length;
  return new Writer(
    PacketType.ChunkRequest,
    p.requestId,
    bodySize,
    (p.unfragmented ? UNFRAGMENTED_FLAG : 0) | (p.swarm ? SWARM_FLAG : 0),
  )
    .raw(p.token).big64(p.fileId).u64(p.offset).u32(p.length).u16(p.blockSize).name(name)
    .finish();
}

function encodeChunkReply(p: ChunkReply): Uint8Array {
  checkInt("data length", p.data?.length, 1, MAX_BLOCK_SIZE);
  const out = new Uint8Array(CHUNK_REPLY_HEADER_SIZE + p.data.length);
  out.set(p.data, CHUNK_REPLY_HEADER_SIZE);
  // Shares the server hot path so both are exercised by the same tests.
  writeChunkReplyHeader(out, p.requestId, p.fileId, p.offset, p.data.length);
  return out;
}

function encodeHashesRequest(p: HashesRequest): Uint8Array {
  checkBytes("token", p.token, TOKEN_SIZE);
  checkU64("fileId", p.fileId);
  checkInt("firstPiece", p.firstPiece, 0, U32_MAX);
  checkInt("count", p.count, 1, U16_MAX);
  const name = nameBytes(p.name);
  const bodySize = TOKEN_SIZE + 8 + 4 + 2 + 2 + name.length;
  return new Writer(PacketType.HashesRequest, p.requestId, bodySize, p.swarm ? SWARM_FLAG : 0)
    .raw(p.token).big64(p.fileId).u32(p.firstPiece).u16(p.count).name(name).finish();
}

function encodeHashesReply(p: HashesReply): Uint8Array {
  checkU64("fileId", p.fileId);
  checkInt("firstPiece", p.firstPiece, 0, U32_MAX);
  const count = p.hashes.length / DIGEST_SIZE;
  checkInt("hashes.length / 32", count, 1, MAX_HASHES_PER_REPLY);
  return new Writer(PacketType.HashesReply, p.requestId, 8 + 4 + 2 + p.hashes.length)
    .big64(p.fileId).u32(p.firstPiece).u16(count).raw(p.hashes).finish();
}

function encodeRetry(p: RetryPacket): Uint8Array {
  checkBytes("token", p.token, TOKEN_SIZE);
  return new Writer(PacketType.Retry, p.requestId, TOKEN_SIZE).raw(p.token).finish();
}

function encodeError(p: ErrorPacket): Uint8Array {
  checkInt("code", p.code, 0, U16_MAX);
  const message = messageBytes(p.message);
  return new Writer(PacketType.Error, p.requestId, 2 + 2 + message.length)
    .u16(p.code).u16(message.length).raw(message).finish();
}

function encodeHaveRequest(p: HaveRequest): Uint8Array {
  checkBytes("token", p.token, TOKEN_SIZE);
  checkU64("fileId", p.fileId);
  checkInt("since", p.since, 0, U32_MAX);
  checkInt("firstPiece", p.firstPiece, 0, U32_MAX);
  const name = nameBytes(p.name);
  const flags = p.wait ? SWARM_FLAG : 0;
  return new Writer(
    PacketType.HaveRequest,
    p.requestId,
    TOKEN_SIZE + 8 + 4 + 4 + 2 + name.length,
    flags,
  )
    .raw(p.token).big64(p.fileId).u32(p.since).u32(p.firstPiece).name(name).finish();
}

function encodeHaveReply(p: HaveReply): Uint8Array {
  checkU64("fileId", p.fileId);
  checkInt("pieces", p.pieces, 0, U32_MAX);
  checkInt("held", p.held, 0, p.pieces);
  checkInt("form", p.form, HaveForm.List, HaveForm.Bitfield);
  checkInt("first", p.first, 0, U32_MAX);
  checkInt("entries.length", p.entries.length, 0, MAX_HAVE_BYTES);
  const count = p.form === HaveForm.List ? p.entries.length / 4 : p.entries.length;
  checkInt("list entries", count, 0, U16_MAX);
  const fetching = p.fetching.length / 4;
  checkInt("fetching entries", fetching, 0, MAX_FETCHING);
  const size = 8 + 4 + 4 + 1 + 4 + 2 + p.entries.length + 1 + p.fetching.length;
  return new Writer(PacketType.HaveReply, p.requestId, size)
    .big64(p.fileId).u32(p.pieces).u32(p.held).u8(p.form).u32(p.first).u16(count)
    .raw(p.entries).u8(fetching).raw(p.fetching).finish();
}

function encodePeersRequest(p: PeersRequest): Uint8Array {
  checkBytes("token", p.token, TOKEN_SIZE);
  checkU64("fileId", p.fileId);
  const name = nameBytes(p.name);
  return new Writer(PacketType.PeersRequest, p.requestId, TOKEN_SIZE + 8 + 2 + name.length)
    .raw(p.token).big64(p.fileId).name(name).finish();
}

function encodePeersReply(p: PeersReply): Uint8Array {
  checkU64("fileId", p.fileId);
  if (p.family !== 4 && p.family !== 6) throw new RangeError(`family must be 4 or 6`);
  const count = p.entries.length / compactPeerSize(p.family);
  checkInt("peer entries", count, 0, MAX_PEERS_PER_REPLY);
  return new Writer(PacketType.PeersReply, p.requestId, 8 + 1 + 1 + p.entries.length)
    .big64(p.fileId).u8(p.family).u8(count).raw(p.entries).finish();
}

/** Reached only when a caller bypasses the type system with an unknown `type`. */
function unknownPacket(packet: never): never {
  throw new RangeError(`unknown packet type ${(packet as { type?: unknown }).type}`);
}

/**
 * Encodes a packet into a freshly allocated Uint8Array. Throws RangeError for
 * values the wire cannot carry: empty or over-long (> 1024 bytes) or
 * ill-formed names, negative or unsafe integers, offset + length beyond
 * 2^53 - 1, wrong token/digest sizes, empty data or data longer than
 * MAX_BLOCK_SIZE, hash lists that are empty, not a multiple of 32 bytes or
 * longer than MAX_HASHES_PER_REPLY. ERROR messages longer than
 * MAX_ERROR_MESSAGE_BYTES are truncated at a character boundary, never refused.
 */
export function encode(packet: Packet): Uint8Array {
  switch (packet.type) {
    case "meta_request":
      return encodeMetaRequest(packet);
    case "meta_reply":
      return encodeMetaReply(packet);
    case "chunk_request":
      return encodeChunkRequest(packet);
    case "chunk_reply":
      return encodeChunkReply(packet);
    case "hashes_request":
      return encodeHashesRequest(packet);
    case "hashes_reply":
      return encodeHashesReply(packet);
    case "retry":
      return encodeRetry(packet);
    case "error":
      return encodeError(packet);
    case "have_request":
      return encodeHaveRequest(packet);
    case "have_reply":
      return encodeHaveReply(packet);
    case "peers_request":
      return encodePeersRequest(packet);
    case "peers_reply":
      return encodePeersReply(packet);
    default:
      return unknownPacket(packet);
  }
}

/**
 * The file identity used in requests: the first 8 bytes of the SHA-256
 * digest of the file content, read as a big-endian u64. Throws RangeError
 * unless `digest` is DIGEST_SIZE bytes.
 */
export function fileIdOf(digest: Uint8Array): bigint {
  checkBytes("digest", digest, DIGEST_SIZE);
  return new DataView(digest.buffer, digest.byteOffset, 8).getBigUint64(0);
}

// Fixed scratch space so writeChunkReplyHeader can split a bigint into bytes without allocating.
const fileIdScratch = new Uint8Array(8);
const fileIdScratchView = new DataView(fileIdScratch.buffer);

/** Stores a u32 big-endian at `at` byte by byte (no DataView needed over a caller's buffer). */
function putU32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = (value >>> 16) & 0xff;
  buf[at + 2] = (value >>> 8) & 0xff;
  buf[at + 3] = value & 0xff;
}

/**
 * Hot path for servers: writes a CHUNK_REPLY header into
 * `buf[0..CHUNK_REPLY_HEADER_SIZE)` for `dataLen` bytes the caller has already
 * placed at `buf[28..28 + dataLen)` (e.g. read straight from the file), and
 * returns the datagram length `28 + dataLen`. Allocates nothing. Throws
 * RangeError for out-of-range values or a buffer that is too small (with `headerOnly`, the data
 * lives elsewhere and `buf` only needs room for the header).
 */
export function writeChunkReplyHeader(
  buf: Uint8Array,
  requestId: number,
  fileId: bigint,
  offset: number,
  dataLen: number,
  headerOnly = false,
): number {
  checkInt("requestId", requestId, 0, U32_MAX);
  checkU64("fileId", fileId);
  checkInt("dataLen", dataLen, 1, MAX_BLOCK_SIZE);
  checkInt("offset", offset, 0, Number.MAX_SAFE_INTEGER - dataLen);
  const total = CHUNK_REPLY_HEADER_SIZE + dataLen;
  if (buf.length < (headerOnly ? CHUNK_REPLY_HEADER_SIZE : total)) {
    throw new RangeError(`buffer holds ${buf.length} bytes, datagram needs ${total}`);
  }
  buf[0] = MAGIC >>> 8;
  buf[1] = MAGIC & 0xff;
  buf[2] = VERSION;
  buf[3] = PacketType.ChunkReply;
  buf[4] = 0; // flags
  buf[5] = 0;
  putU32(buf, 6, requestId);
  fileIdScratchView.setBigUint64(0, fileId);
  buf.set(fileIdScratch, HEADER_SIZE);
  putU32(buf, 18, Math.floor(offset / TWO_POW_32));
  putU32(buf, 22, offset >>> 0);
  buf[26] = dataLen >>> 8;
  buf[27] = dataLen & 0xff;
  return total;
}

/** The fields of a CHUNK_REPLY header, filled in place by {@link readChunkReplyHeader}. */
export interface ChunkReplyHeader {
  requestId: number;
  /** file_id as two 32-bit halves (no BigInt on the hot path). */
  fileIdHigh: number;
  fileIdLow: number;
  offset: number;
  /** Where the data starts in the buffer, and its length. */
  dataAt: number;
  dataLen: number;
}

/** A header for {@link readChunkReplyHeader} to fill (one per receive loop, reused). */
export function emptyChunkReplyHeader(): ChunkReplyHeader {
  return { requestId: 0, fileIdHigh: 0, fileIdLow: 0, offset: 0, dataAt: 0, dataLen: 0 };
}

/**
 * Hot path for receivers: if `buf[at, at + len)` is a well-formed version-1 CHUNK_REPLY, fills
 * `out` with its fields and returns true; false for anything else (decode it with `decode`).
 * Checks exactly what `decode` checks of a CHUNK_REPLY, and allocates nothing: `view` is a
 * DataView over `buf`'s whole buffer.
 */
export function readChunkReplyHeader(
  buf: Uint8Array,
  view: DataView,
  at: number,
  len: number,
  out: ChunkReplyHeader,
): boolean {
  if (len <= CHUNK_REPLY_HEADER_SIZE || buf[at + 3] !== PacketType.ChunkReply) return false;
  if (buf[at] !== MAGIC >>> 8 || buf[at + 1] !== (MAGIC & 0xff) || buf[at + 2] !== VERSION) {
    return false;
  }
  if (buf[at + 4] !== 0 || buf[at + 5] !== 0) return false;
  const v = buf.byteOffset + at;
  const dataLen = view.getUint16(v + 26);
  if (dataLen !== len - CHUNK_REPLY_HEADER_SIZE || dataLen > MAX_BLOCK_SIZE) return false;
  const high = view.getUint32(v + 18);
  // offset + data_len must stay an exact JS number (as decode requires)
  if (high > 0x1f_ffff) return false;
  const offset = high * TWO_POW_32 + view.getUint32(v + 22);
  if (offset + dataLen > Number.MAX_SAFE_INTEGER) return false;
  out.requestId = view.getUint32(v + 6);
  out.fileIdHigh = view.getUint32(v + 10);
  out.fileIdLow = view.getUint32(v + 14);
  out.offset = offset;
  out.dataAt = at + CHUNK_REPLY_HEADER_SIZE;
  out.dataLen = dataLen;
  return true;
}

/**
 * Hot path for servers: writes the CHUNK_REPLY headers of a run of `count` blocks back to back
 * into `out` (28 bytes each): block `k` is at `offset + k * blockSize`, `blockSize` long except
 * the last, which holds what is left of `total` bytes. The data goes beside them (see
 * `SendRun`). Checks the run once, then allocates and checks nothing per block.
 */
export function writeChunkReplyHeaders(
  out: Uint8Array,
  requestId: number,
  fileId: bigint,
  offset: number,
  blockSize: number,
  total: number,
): number {
  checkInt("blockSize", blockSize, 1, MAX_BLOCK_SIZE);
  checkInt("total", total, 1, Number.MAX_SAFE_INTEGER - offset);
  const count = Math.ceil(total / blockSize);
  if (out.length < count * CHUNK_REPLY_HEADER_SIZE) {
    throw new RangeError(`header buffer holds ${out.length} bytes, ${count} headers need more`);
  }
  // the first header is written (and checked) in full; the others copy it and change the tail
  writeChunkReplyHeader(out, requestId, fileId, offset, Math.min(blockSize, total), true);
  for (let k = 1; k < count; k++) {
    const at = k * CHUNK_REPLY_HEADER_SIZE;
    out.copyWithin(at, 0, 18);
    const off = offset + k * blockSize;
    const len = Math.min(blockSize, total - k * blockSize);
    putU32(out, at + 18, Math.floor(off / TWO_POW_32));
    putU32(out, at + 22, off >>> 0);
    out[at + 26] = len >>> 8;
    out[at + 27] = len & 0xff;
  }
  return count;
}
