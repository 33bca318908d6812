/**
 * TFTP packet codec (RFC 1350, with the OACK packet of RFC 2347): bytes ↔ typed packets. Pure:
 * no I/O, never throws on input from the network.
 *
 * Decoding is strict where the protocol needs it (a request's file name and mode must be
 * NUL-terminated, an ACK is 4 bytes long at least) and lenient where old clients are sloppy: a
 * request's trailing option bytes that do not form a complete `name NUL value NUL` pair are
 * ignored, as tftpd-hpa does.
 *
 * The hot path of a transfer does not go through `decode`: `writeDataHeader` fills the 4-byte
 * header of a DATA packet in place, and `ackBlockOf` reads an ACK's block number without
 * allocating.
 *
 * @module
 */

/** TFTP opcodes (RFC 1350 §5, RFC 2347 for OACK). */
export const Opcode = {
  /** Read request. */
  Rrq: 1,
  /** Write request. */
  Wrq: 2,
  /** A block of file data. */
  Data: 3,
  /** Acknowledgment of a block (or of an OACK, as block 0). */
  Ack: 4,
  /** Error: ends the transfer. */
  Error: 5,
  /** Option acknowledgment (RFC 2347). */
  Oack: 6,
} as const;

/** TFTP error codes (RFC 1350 appendix, RFC 2347 for 8). */
export const TftpErrorCode = {
  /** Not defined, see the message. */
  NotDefined: 0,
  /** File not found. */
  FileNotFound: 1,
  /** Access violation. */
  AccessViolation: 2,
  /** Disk full or allocation exceeded. */
  DiskFull: 3,
  /** Illegal TFTP operation. */
  IllegalOperation: 4,
  /** Unknown transfer ID. */
  UnknownTid: 5,
  /** File already exists. */
  FileExists: 6,
  /** No such user. */
  NoSuchUser: 7,
  /** The option negotiation was refused. */
  OptionRefused: 8,
} as const;

/** One `name NUL value NUL` pair of a request or an OACK, as the peer spelled it. */
export interface TftpOption {
  /** Option name (case-insensitive by RFC 2347; kept as received). */
  name: string;
  /** Option value, as text. */
  value: string;
}

/** A read or write request. */
export interface RequestPacket {
  /** `rrq` (read) or `wrq` (write). */
  op: "rrq" | "wrq";
  /** The file name, as sent (UTF-8). */
  filename: string;
  /** The transfer mode as sent (`octet`, `netascii`, `mail`...; case-insensitive). */
  mode: string;
  /** The options that followed the mode, in order (RFC 2347). */
  options: TftpOption[];
}

/** A DATA packet. */
export interface DataPacket {
  /** `data`. */
  op: "data";
  /** Block number, 0..65535 (on the wire, numbers roll over). */
  block: number;
  /** The payload: a view into the decoded datagram. */
  data: Uint8Array;
}

/** An ACK packet. */
export interface AckPacket {
  /** `ack`. */
  op: "ack";
  /** Block number acknowledged, 0..65535. */
  block: number;
}

/** An ERROR packet. */
export interface ErrorPacket {
  /** `error`. */
  op: "error";
  /** Error code (see `TftpErrorCode`), 0..65535. */
  code: number;
  /** The message, as text. */
  message: string;
}

/** An OACK packet (RFC 2347). */
export interface OackPacket {
  /** `oack`. */
  op: "oack";
  /** The options acknowledged, in order. */
  options: TftpOption[];
}

/** Any TFTP packet. */
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

/** Why a datagram could not be decoded. */
export type TftpDecodeError =
  | "short"
  | "unknown_opcode"
  | "unterminated"
  | "bad_filename"
  | "too_many_options";

/** The result of `decode`: a packet, or why not (with the opcode when it could be read). */
export type TftpDecodeResult =
  | { ok: true; packet: TftpPacket }
  | { ok: false; error: TftpDecodeError; opcode?: number };

/** Size of the DATA header (opcode and block number). */
export const DATA_HEADER_SIZE = 4;

/** Default block size (RFC 1350). */
export const DEFAULT_BLKSIZE = 512;

/** Most options read from one request or OACK; more make the datagram malformed. */
export const MAX_OPTIONS = 64;

/** Longest error message `encodeError` writes (bytes, before the NUL). */
export const MAX_ERROR_MESSAGE = 128;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes bytes as Latin-1 (one char per byte): total, for ASCII protocol fields. */
function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

/** Index of the next NUL at or after `from`, or -1. */
function nul(b: Uint8Array, from: number): number {
  return b.indexOf(0, from);
}

/**
 * Reads `name NUL value NUL` pairs from `from` to the end of `b`; an incomplete pair at the end
 * is ignored; more than `MAX_OPTIONS` pairs is an error.
 */
function readOptions(b: Uint8Array, from: number): TftpOption[] | undefined {
  const options: TftpOption[] = [];
  let at = from;
  for (;;) {
    const nameEnd = nul(b, at);
    if (nameEnd < 0) return options;
    const valueEnd = nul(b, nameEnd + 1);
    if (valueEnd < 0) return options;
    if (options.length === MAX_OPTIONS) return undefined;
    options.push({
      name: latin1(b.subarray(at, nameEnd)),
      value: latin1(b.subarray(nameEnd + 1, valueEnd)),
    });
    at = valueEnd + 1;
  }
}

/** Decodes one datagram. Never throws. */
export function decode(b: Uint8Array): TftpDecodeResult {
  if (b.length < 2) return { ok: false, error: "short" };
  const opcode = (b[0] << 8) | b[1];
  switch (opcode) {
    case Opcode.Rrq:
    case Opcode.Wrq: {
      const nameEnd = nul(b, 2);
      if (nameEnd < 0) return { ok: false, error: "unterminated", opcode };
      const modeEnd = nul(b, nameEnd + 1);
      if (modeEnd < 0) return { ok: false, error: "unterminated", opcode };
      let filename: string;
      try {
        filename = utf8.decode(b.subarray(2, nameEnd));
      } catch {
        return { ok: false, error: "bad_filename", opcode };
      }
      const options = readOptions(b, modeEnd + 1);
      if (!options) return { ok: false, error: "too_many_options", opcode };
      return {
        ok: true,
        packet: {
          op: opcode === Opcode.Rrq ? "rrq" : "wrq",
          filename,
          mode: latin1(b.subarray(nameEnd + 1, modeEnd)),
          options,
        },
      };
    }
    case Opcode.Data:
      if (b.length < 4) return { ok: false, error: "short", opcode };
      return { ok: true, packet: { op: "data", block: (b[2] << 8) | b[3], data: b.subarray(4) } };
    case Opcode.Ack:
      if (b.length < 4) return { ok: false, error: "short", opcode };
      return { ok: true, packet: { op: "ack", block: (b[2] << 8) | b[3] } };
    case Opcode.Error: {
      if (b.length < 4) return { ok: false, error: "short", opcode };
      const end = nul(b, 4);
      const message = latin1(b.subarray(4, end < 0 ? b.length : end)); // NUL is often missing
      return { ok: true, packet: { op: "error", code: (b[2] << 8) | b[3], message } };
    }
    case Opcode.Oack: {
      const options = readOptions(b, 2);
      if (!options) return { ok: false, error: "too_many_options", opcode };
      return { ok: true, packet: { op: "oack", options } };
    }
    default:
      return { ok: false, error: "unknown_opcode", opcode };
  }
}

/** Block number of an ACK datagram, or -1 if `b` is not an ACK. Allocation-free. */
export function ackBlockOf(b: Uint8Array): number {
  if (b.length < 4 || b[0] !== 0 || b[1] !== Opcode.Ack) return -1;
  return (b[2] << 8) | b[3];
}

/** Writes a DATA header for `block` (taken modulo 65536) into `buf[0..4)`. */
export function writeDataHeader(buf: Uint8Array, block: number): void {
  buf[0] = 0;
  buf[1] = Opcode.Data;
  buf[2] = (block >>> 8) & 0xff;
  buf[3] = block & 0xff;
}

const enc = new TextEncoder();

/** `s` and a NUL as bytes; ASCII fields only (a NUL, DEL or non-ASCII character becomes `?`). */
function asciiz(s: string): Uint8Array {
  const out = new Uint8Array(s.length + 1);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    out[i] = c > 0 && c < 0x7f ? c : 0x3f;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function opcodeBytes(op: number, more = 0): Uint8Array {
  const b = new Uint8Array(2 + more);
  b[1] = op;
  return b;
}

function optionBytes(options: readonly TftpOption[]): Uint8Array[] {
  return options.flatMap((o) => [asciiz(o.name), asciiz(o.value)]);
}

/** Encodes a DATA packet (allocates; the server writes DATA in place with `writeDataHeader`). */
export function encodeData(block: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(DATA_HEADER_SIZE + data.length);
  writeDataHeader(out, block);
  out.set(data, DATA_HEADER_SIZE);
  return out;
}

/** Encodes an ACK of `block` (modulo 65536). */
export function encodeAck(block: number): Uint8Array {
  const b = opcodeBytes(Opcode.Ack, 2);
  b[2] = (block >>> 8) & 0xff;
  b[3] = block & 0xff;
  return b;
}

/**
 * Encodes an ERROR packet. The message is cut to `maxMessage` bytes (at most
 * `MAX_ERROR_MESSAGE`), non-ASCII characters become `?`.
 */
export function encodeError(
  code: number,
  message: string,
  maxMessage = MAX_ERROR_MESSAGE,
): Uint8Array {
  const b = opcodeBytes(Opcode.Error, 2);
  b[2] = (code >>> 8) & 0xff;
  b[3] = code & 0xff;
  const cut = Math.max(0, Math.min(maxMessage, MAX_ERROR_MESSAGE));
  return concat([b, asciiz(message.slice(0, cut))]);
}

/** Encodes an OACK with `options` in order. */
export function encodeOack(options: readonly TftpOption[]): Uint8Array {
  return concat([opcodeBytes(Opcode.Oack), ...optionBytes(options)]);
}

/** Encodes a read or write request (what a client sends; used by tests and tools). */
export function encodeRequest(
  op: "rrq" | "wrq",
  filename: string,
  mode: string,
  options: readonly TftpOption[] = [],
): Uint8Array {
  const name = enc.encode(filename);
  return concat([
    opcodeBytes(op === "rrq" ? Opcode.Rrq : Opcode.Wrq),
    name,
    new Uint8Array(1),
    asciiz(mode),
    ...optionBytes(options),
  ]);
}

/** Encodes any packet (`encodeData` and friends, by `op`). */
export function encode(p: TftpPacket): Uint8Array {
  switch (p.op) {
    case "rrq":
    case "wrq":
      return encodeRequest(p.op, p.filename, p.mode, p.options);
    case "data":
      return encodeData(p.block, p.data);
    case "ack":
      return encodeAck(p.block);
    case "error":
      return encodeError(p.code, p.message);
    case "oack":
      return encodeOack(p.options);
  }
}
