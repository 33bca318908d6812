/**
 * The packets of the BitTorrent UDP tracker protocol (BEP 15), with the BEP 41 options that
 * may trail an announce, and the compact peer entries of BEP 23 (6 bytes over IPv4, 18 over
 * IPv6). Every field is big-endian.
 *
 * Parsing never throws: whatever the network sends comes back as a request or as a
 * {@linkcode RequestError} naming what was wrong, with the header fields when there were enough
 * bytes to read them (so a tracker can still answer a client it knows). The byte fields of a
 * parsed request are views into the datagram, not copies: a tracker reads them before the next
 * datagram overwrites the receive buffer (copy what must outlive that). In Deno a view made with
 * `new Uint8Array(buffer, offset, length)` costs ~50 ns where `slice` or `subarray` cost
 * 0.5–1 µs, a good part of the work per announce. The response encoders can write into a
 * caller's buffer for the same reason. The request encoders are for clients (the announcer,
 * tests, the load bench).
 *
 * @module
 */

/** The magic `connection_id` of a connect request, 0x41727101980. */
export const PROTOCOL_ID = 0x41727101980n;

/** Bytes of a connect request and of a connect response. */
export const CONNECT_SIZE = 16;
/** Bytes of an announce request before its BEP 41 options. */
export const ANNOUNCE_REQUEST_SIZE = 98;
/** Bytes of the fixed part of an announce response (the peers follow). */
export const ANNOUNCE_RESPONSE_HEADER = 20;
/** Bytes of the header of a scrape request (the info-hashes follow). */
export const SCRAPE_REQUEST_HEADER = 16;
/** Bytes of an info-hash. */
export const INFO_HASH_SIZE = 20;
/**
 * Most info-hashes one scrape may ask about: BEP 15's "up to about 74", which keeps the request
 * (16 + 74 × 20 = 1496 bytes) within a 1500-byte Ethernet frame's IPv4 payload.
 */
export const MAX_SCRAPE_HASHES = 74;
/**
 * Largest request worth reading: a full scrape with an authentication option is 1514 bytes,
 * an announce with a few BEP 41 URL-data options a few hundred. Anything longer is dropped.
 */
export const MAX_REQUEST_SIZE = 2048;

/** Bytes of a compact IPv4 peer (address, port) and of a compact IPv6 peer. */
export const COMPACT_PEER_SIZE = { ipv4: 6, ipv6: 18 } as const;

/**
 * The option type of udpget's authentication option (`--secret-file`): BEP 41 assigns 0x0
 * (EndOfOptions), 0x1 (NOP) and 0x2 (URLData); 0x80 is unassigned. Its body is 16 bytes, a
 * truncated HMAC-SHA256 (see `request_auth.ts`).
 */
export const AUTH_OPTION_TYPE = 0x80;
/** Bytes of the tag in the authentication option. */
export const AUTH_TAG_SIZE = 16;
/** Bytes of the whole authentication option: type, length, tag. */
export const AUTH_OPTION_SIZE = 2 + AUTH_TAG_SIZE;

/** The `action` field. */
export const Action = { Connect: 0, Announce: 1, Scrape: 2, Error: 3 } as const;

/** The announce `event` field, by name; its number is the index. */
export const ANNOUNCE_EVENTS = ["none", "completed", "started", "stopped"] as const;

/** What an announce says happened: nothing, completed, started or stopped. */
export type AnnounceEvent = typeof ANNOUNCE_EVENTS[number];

/** Address family of a socket, and so of the compact peers it carries. */
export type Family = "ipv4" | "ipv6";

/** An authentication option found at the end of a request. */
export interface AuthOption {
  /** Where the option starts: the tag covers every byte before it. */
  readonly offset: number;
  /** The 16-byte tag. */
  readonly tag: Uint8Array;
}

/** `connect`: asks for a connection id. */
export interface ConnectRequest {
  readonly action: "connect";
  readonly transactionId: number;
}

/** `announce`: a peer says it is in a swarm (or leaves it) and asks for peers. */
export interface AnnounceRequest {
  readonly action: "announce";
  /** 8 bytes, as issued by the tracker. */
  readonly connectionId: Uint8Array;
  readonly transactionId: number;
  /** 20 bytes. */
  readonly infoHash: Uint8Array;
  /** 20 bytes. */
  readonly peerId: Uint8Array;
  readonly downloaded: bigint;
  /** Bytes the peer still lacks: 0 means a seeder. */
  readonly left: bigint;
  readonly uploaded: bigint;
  readonly event: AnnounceEvent;
  /** The IPv4 address the peer claims (0: its source address), as an unsigned 32-bit number. */
  readonly ip: number;
  /** A random number the client keeps for its session (unsigned 32-bit). */
  readonly key: number;
  /** Peers wanted; negative (-1) means the tracker's default. */
  readonly numWant: number;
  /** The port the peer accepts connections on. */
  readonly port: number;
  /** BEP 41 URLData options (the tracker URL's path and query), concatenated. */
  readonly urlData: Uint8Array;
  /** udpget's authentication option, when it is the last thing in the datagram. */
  readonly auth?: AuthOption;
}

/** `scrape`: asks for the counts of up to 74 swarms. */
export interface ScrapeRequest {
  readonly action: "scrape";
  readonly connectionId: Uint8Array;
  readonly transactionId: number;
  /** 20 bytes each, at least one. */
  readonly infoHashes: Uint8Array[];
  /** udpget's authentication option, when it ends the datagram. */
  readonly auth?: AuthOption;
}

/** A request a tracker receives. */
export type TrackerRequest = ConnectRequest | AnnounceRequest | ScrapeRequest;

/** Why a datagram is not a request. */
export type RequestFault =
  /** Shorter than any request (or than its action needs). */
  | "short"
  /** A connect request without the magic protocol id. */
  | "protocol_id"
  /** An action number a client does not send (a reply's, or an unknown one). */
  | "action"
  /** An announce event beyond 3. */
  | "event"
  /** A scrape whose info-hashes are not a whole number of 20-byte entries, or none. */
  | "length"
  /** A scrape of more than {@linkcode MAX_SCRAPE_HASHES} info-hashes. */
  | "too_many_hashes";

/** The header of a datagram of at least 16 bytes, read as a request's. */
export interface RequestHeader {
  readonly connectionId: Uint8Array;
  readonly action: number;
  readonly transactionId: number;
}

/** A datagram that is not a request: why, and its header when it had one. */
export interface RequestError {
  readonly fault: RequestFault;
  readonly header?: RequestHeader;
}

/** What {@linkcode parseRequest} found. */
export type ParsedRequest =
  | { readonly ok: true; readonly request: TrackerRequest }
  | { readonly ok: false; readonly error: RequestError };

/** One swarm's counts in a scrape response. */
export interface ScrapeEntry {
  readonly seeders: number;
  readonly completed: number;
  readonly leechers: number;
}

/** A response a client receives. */
export type TrackerResponse =
  | {
    readonly action: "connect";
    readonly transactionId: number;
    readonly connectionId: Uint8Array;
  }
  | {
    readonly action: "announce";
    readonly transactionId: number;
    readonly interval: number;
    readonly leechers: number;
    readonly seeders: number;
    /** Compact peers, 6 or 18 bytes each (the family the response was parsed for). */
    readonly peers: Uint8Array[];
  }
  | { readonly action: "scrape"; readonly transactionId: number; readonly entries: ScrapeEntry[] }
  | { readonly action: "error"; readonly transactionId: number; readonly message: string };

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** `length` bytes of `bytes` from `at`, as a view (see the module comment for why not subarray). */
function part(bytes: Uint8Array, at: number, length: number): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset + at, length);
}

/** Reads the request header of a datagram of at least 16 bytes. */
function readHeader(bytes: Uint8Array, view: DataView): RequestHeader {
  return {
    connectionId: part(bytes, 0, 8),
    action: view.getUint32(8),
    transactionId: view.getUint32(12),
  };
}

/** Parses a datagram a tracker received (see the module comment: never throws). */
export function parseRequest(bytes: Uint8Array): ParsedRequest {
  if (bytes.length < CONNECT_SIZE) return fail("short");
  const view = viewOf(bytes);
  const header = readHeader(bytes, view);
  switch (header.action) {
    case Action.Connect:
      // bytes after the 16 are tolerated, as BEP 41 asks of announces
      if (view.getBigUint64(0) !== PROTOCOL_ID) return fail("protocol_id", header);
      return { ok: true, request: { action: "connect", transactionId: header.transactionId } };
    case Action.Announce:
      return parseAnnounce(bytes, view, header);
    case Action.Scrape:
      return parseScrape(bytes, header);
    default:
      return fail("action", header);
  }
}

function fail(fault: RequestFault, header?: RequestHeader): ParsedRequest {
  return { ok: false, error: { fault, header } };
}

function parseAnnounce(bytes: Uint8Array, view: DataView, header: RequestHeader): ParsedRequest {
  if (bytes.length < ANNOUNCE_REQUEST_SIZE) return fail("short", header);
  const eventNumber = view.getUint32(80);
  if (eventNumber >= ANNOUNCE_EVENTS.length) return fail("event", header);
  const options = parseOptions(bytes, ANNOUNCE_REQUEST_SIZE);
  return {
    ok: true,
    request: {
      action: "announce",
      connectionId: header.connectionId,
      transactionId: header.transactionId,
      infoHash: part(bytes, 16, INFO_HASH_SIZE),
      peerId: part(bytes, 36, 20),
      downloaded: view.getBigUint64(56),
      left: view.getBigUint64(64),
      uploaded: view.getBigUint64(72),
      event: ANNOUNCE_EVENTS[eventNumber],
      ip: view.getUint32(84),
      key: view.getUint32(88),
      numWant: view.getInt32(92),
      port: view.getUint16(96),
      urlData: options.urlData,
      auth: options.auth,
    },
  };
}

/**
 * Walks the BEP 41 options from `at`: EndOfOptions (0x0) ends them, NOP (0x1) is one byte,
 * every other type has a length byte and that many bytes of body. URLData (0x2) bodies are
 * kept; the authentication option is kept only when it ends the datagram (so its tag covers
 * everything else); unknown types are skipped. An option running past the end stops the walk
 * and the announce is still served: BEP 41 asks trackers to tolerate what they do not know.
 */
function parseOptions(bytes: Uint8Array, at: number): { urlData: Uint8Array; auth?: AuthOption } {
  const parts: Uint8Array[] = [];
  let auth: AuthOption | undefined;
  while (at < bytes.length) {
    const type = bytes[at];
    if (type === 0x0) break;
    if (type === 0x1) {
      at++;
      continue;
    }
    if (at + 2 > bytes.length) break;
    const end = at + 2 + bytes[at + 1];
    if (end > bytes.length) break;
    if (type === 0x2) parts.push(part(bytes, at + 2, end - at - 2));
    else if (
      type === AUTH_OPTION_TYPE && end - at === AUTH_OPTION_SIZE && end === bytes.length
    ) auth = { offset: at, tag: part(bytes, at + 2, AUTH_TAG_SIZE) };
    at = end;
  }
  return { urlData: concat(parts), auth };
}

function parseScrape(bytes: Uint8Array, header: RequestHeader): ParsedRequest {
  let end = bytes.length;
  let auth: AuthOption | undefined;
  // 18 is not a multiple of 20, so a trailing authentication option cannot be mistaken for
  // (part of) an info-hash
  const rest = end - SCRAPE_REQUEST_HEADER;
  if (
    rest % INFO_HASH_SIZE === AUTH_OPTION_SIZE &&
    bytes[end - AUTH_OPTION_SIZE] === AUTH_OPTION_TYPE &&
    bytes[end - AUTH_OPTION_SIZE + 1] === AUTH_TAG_SIZE
  ) {
    auth = { offset: end - AUTH_OPTION_SIZE, tag: part(bytes, end - AUTH_TAG_SIZE, AUTH_TAG_SIZE) };
    end -= AUTH_OPTION_SIZE;
  }
  const hashBytes = end - SCRAPE_REQUEST_HEADER;
  if (hashBytes <= 0 || hashBytes % INFO_HASH_SIZE !== 0) return fail("length", header);
  const count = hashBytes / INFO_HASH_SIZE;
  if (count > MAX_SCRAPE_HASHES) return fail("too_many_hashes", header);
  const infoHashes: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const at = SCRAPE_REQUEST_HEADER + i * INFO_HASH_SIZE;
    infoHashes.push(part(bytes, at, INFO_HASH_SIZE));
  }
  return {
    ok: true,
    request: {
      action: "scrape",
      connectionId: header.connectionId,
      transactionId: header.transactionId,
      infoHashes,
      auth,
    },
  };
}

const NO_BYTES = new Uint8Array(0);

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 0) return NO_BYTES; // the usual case: no allocation
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Where a response encoder writes: `into` when given (it must be large enough), else a new
 * array. The result is exactly the response's bytes (a view of `into`).
 */
function target(size: number, into?: Uint8Array): Uint8Array {
  return into ? part(into, 0, size) : new Uint8Array(size);
}

/** A connect response carrying `connectionId` (8 bytes), written into `into` if given. */
export function encodeConnectResponse(
  transactionId: number,
  connectionId: Uint8Array,
  into?: Uint8Array,
): Uint8Array {
  const out = target(CONNECT_SIZE, into);
  const view = viewOf(out);
  view.setUint32(0, Action.Connect);
  view.setUint32(4, transactionId);
  for (let i = 0; i < 8; i++) out[8 + i] = connectionId[i];
  return out;
}

/** What an announce response says. */
export interface AnnounceReply {
  readonly transactionId: number;
  /** Seconds until the peer should announce again. */
  readonly interval: number;
  readonly leechers: number;
  readonly seeders: number;
  /** Compact peers of one family, concatenated. */
  readonly peers: Uint8Array;
}

/** An announce response, written into `into` if given. */
export function encodeAnnounceResponse(r: AnnounceReply, into?: Uint8Array): Uint8Array {
  const out = target(ANNOUNCE_RESPONSE_HEADER + r.peers.length, into);
  const view = viewOf(out);
  view.setUint32(0, Action.Announce);
  view.setUint32(4, r.transactionId);
  view.setUint32(8, r.interval);
  view.setUint32(12, r.leechers);
  view.setUint32(16, r.seeders);
  out.set(r.peers, ANNOUNCE_RESPONSE_HEADER);
  return out;
}

/** A scrape response, one entry per info-hash asked about, in order; into `into` if given. */
export function encodeScrapeResponse(
  transactionId: number,
  entries: readonly ScrapeEntry[],
  into?: Uint8Array,
): Uint8Array {
  const out = target(8 + 12 * entries.length, into);
  const view = viewOf(out);
  view.setUint32(0, Action.Scrape);
  view.setUint32(4, transactionId);
  entries.forEach((e, i) => {
    view.setUint32(8 + 12 * i, e.seeders);
    view.setUint32(12 + 12 * i, e.completed);
    view.setUint32(16 + 12 * i, e.leechers);
  });
  return out;
}

/** An error response with `message` (UTF-8, no terminator, as BEP 15 has it). */
export function encodeErrorResponse(
  transactionId: number,
  message: string,
  into?: Uint8Array,
): Uint8Array {
  const text = new TextEncoder().encode(message);
  const out = target(8 + text.length, into);
  const view = viewOf(out);
  view.setUint32(0, Action.Error);
  view.setUint32(4, transactionId);
  out.set(text, 8);
  return out;
}

/**
 * Parses a response as a client received it on a socket of `family` (which decides the size
 * of compact peers, as BEP 15 says); undefined when it is not one. Never throws.
 */
export function parseResponse(bytes: Uint8Array, family: Family): TrackerResponse | undefined {
  if (bytes.length < 8) return undefined;
  const view = viewOf(bytes);
  const transactionId = view.getUint32(4);
  switch (view.getUint32(0)) {
    case Action.Connect:
      if (bytes.length < CONNECT_SIZE) return undefined;
      return { action: "connect", transactionId, connectionId: bytes.slice(8, 16) };
    case Action.Announce:
      return parseAnnounceResponse(bytes, view, family);
    case Action.Scrape: {
      if ((bytes.length - 8) % 12 !== 0) return undefined;
      const entries: ScrapeEntry[] = [];
      for (let at = 8; at < bytes.length; at += 12) {
        entries.push({
          seeders: view.getUint32(at),
          completed: view.getUint32(at + 4),
          leechers: view.getUint32(at + 8),
        });
      }
      return { action: "scrape", transactionId, entries };
    }
    case Action.Error:
      return {
        action: "error",
        transactionId,
        message: new TextDecoder().decode(bytes.subarray(8)),
      };
    default:
      return undefined;
  }
}

function parseAnnounceResponse(
  bytes: Uint8Array,
  view: DataView,
  family: Family,
): TrackerResponse | undefined {
  const size = COMPACT_PEER_SIZE[family];
  if (bytes.length < ANNOUNCE_RESPONSE_HEADER) return undefined;
  if ((bytes.length - ANNOUNCE_RESPONSE_HEADER) % size !== 0) return undefined;
  const peers: Uint8Array[] = [];
  for (let at = ANNOUNCE_RESPONSE_HEADER; at < bytes.length; at += size) {
    peers.push(bytes.slice(at, at + size));
  }
  return {
    action: "announce",
    transactionId: view.getUint32(4),
    interval: view.getUint32(8),
    leechers: view.getUint32(12),
    seeders: view.getUint32(16),
    peers,
  };
}

/** A connect request. */
export function encodeConnectRequest(transactionId: number): Uint8Array {
  const out = new Uint8Array(CONNECT_SIZE);
  const view = viewOf(out);
  view.setBigUint64(0, PROTOCOL_ID);
  view.setUint32(8, Action.Connect);
  view.setUint32(12, transactionId);
  return out;
}

/** The fields of an announce request a client chooses (for {@linkcode encodeAnnounceRequest}). */
export interface AnnounceFields {
  connectionId: Uint8Array;
  transactionId: number;
  infoHash: Uint8Array;
  peerId: Uint8Array;
  downloaded: bigint;
  left: bigint;
  uploaded: bigint;
  event: AnnounceEvent;
  ip: number;
  key: number;
  numWant: number;
  port: number;
  /** Raw BEP 41 options appended after the 98 bytes (none when absent). */
  options?: Uint8Array;
}

/** An announce request. */
export function encodeAnnounceRequest(f: AnnounceFields): Uint8Array {
  const options = f.options ?? new Uint8Array(0);
  const out = new Uint8Array(ANNOUNCE_REQUEST_SIZE + options.length);
  const view = viewOf(out);
  out.set(f.connectionId.subarray(0, 8), 0);
  view.setUint32(8, Action.Announce);
  view.setUint32(12, f.transactionId);
  out.set(f.infoHash.subarray(0, INFO_HASH_SIZE), 16);
  out.set(f.peerId.subarray(0, 20), 36);
  view.setBigUint64(56, f.downloaded);
  view.setBigUint64(64, f.left);
  view.setBigUint64(72, f.uploaded);
  view.setUint32(80, ANNOUNCE_EVENTS.indexOf(f.event));
  view.setUint32(84, f.ip);
  view.setUint32(88, f.key);
  view.setInt32(92, f.numWant);
  view.setUint16(96, f.port);
  out.set(options, ANNOUNCE_REQUEST_SIZE);
  return out;
}

/** A scrape request for `infoHashes` (20 bytes each). */
export function encodeScrapeRequest(
  connectionId: Uint8Array,
  transactionId: number,
  infoHashes: readonly Uint8Array[],
): Uint8Array {
  const out = new Uint8Array(SCRAPE_REQUEST_HEADER + INFO_HASH_SIZE * infoHashes.length);
  const view = viewOf(out);
  out.set(connectionId.subarray(0, 8), 0);
  view.setUint32(8, Action.Scrape);
  view.setUint32(12, transactionId);
  infoHashes.forEach((h, i) => out.set(h.subarray(0, INFO_HASH_SIZE), 16 + i * INFO_HASH_SIZE));
  return out;
}

/** A compact peer: the address's 4 or 16 bytes, then the port. */
export function compactPeer(address: Uint8Array, port: number): Uint8Array {
  const out = new Uint8Array(address.length + 2);
  out.set(address);
  out[address.length] = port >> 8;
  out[address.length + 1] = port & 0xff;
  return out;
}

/** The address bytes and the port of a compact peer (6 or 18 bytes). */
export function splitCompactPeer(peer: Uint8Array): { address: Uint8Array; port: number } {
  const n = peer.length - 2;
  return { address: peer.slice(0, n), port: (peer[n] << 8) | peer[n + 1] };
}
