/**
 * Parser for the servers file given to `udpget fetch <servers.txt> ...`.
 *
 * Pure: no I/O and no DNS. Hostnames are only checked for shape here; the
 * caller resolves them later.
 *
 * @module
 */

import { formatServer } from "../base/format.ts";

/** One server entry as written in the file. */
export interface ServerSpec {
  /** Host as written, without brackets (IPv6 keeps its original spelling). */
  host: string;
  /** UDP port, 1..65535. */
  port: number;
  /** 1-based line number in the file. */
  line: number;
  /** What kind of host this is, so the caller knows whether to resolve it. */
  family: "ipv4" | "ipv6" | "name";
}

/** A problem with one line: 1-based line number and a one-line message. */
export interface ServerLineError {
  /** 1-based line number in the file. */
  line: number;
  /** Short, single-line description of what is wrong. */
  message: string;
}

/** Result of parsing a servers file: the good entries and one error per bad line. */
export interface ServerList {
  /** Valid, non-duplicate entries in file order. */
  servers: ServerSpec[];
  /** Problems in file order; a line with an error contributes no server. */
  errors: ServerLineError[];
  /** Lines that are fine but add nothing (a duplicate): said, then skipped. */
  warnings: ServerLineError[];
}

/** Either a parsed value or a message explaining why parsing failed. */
type Result<T> = { ok: true; value: T } | { ok: false; message: string };

/** Host part of an entry once its family is known. */
interface Host {
  host: string;
  family: ServerSpec["family"];
  /** Normalised form used to detect duplicates. */
  key: string;
}

/** An entry split into its textual pieces, before validation. */
interface RawEntry {
  host: string;
  port: string;
  /** True when the host was written inside `[...]`. */
  bracketed: boolean;
  /** Tokens left over after host and port. */
  extra: string[];
}

const FORMS_MESSAGE = 'expected "host port", "host:port" or "[v6addr]:port"';

/** Longest piece of user text quoted in a message, so messages stay one short line. */
const MAX_QUOTED = 60;

/** Builds a successful result. */
function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

/** Builds a failed result. */
function fail<T>(message: string): Result<T> {
  return { ok: false, message };
}

/**
 * Quotes user text for a message. JSON escaping keeps control characters
 * from breaking the "one line" promise; truncation keeps messages short.
 */
function quote(text: string): string {
  const short = text.length > MAX_QUOTED ? text.slice(0, MAX_QUOTED) + "…" : text;
  return JSON.stringify(short).replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/**
 * Parses the text of a servers file.
 *
 * Never throws: every problem becomes a {@link ServerLineError} so the caller
 * can report all bad lines at once instead of one per run.
 */
export function parseServerList(text: string): ServerList {
  const servers: ServerSpec[] = [];
  const errors: ServerLineError[] = [];
  const warnings: ServerLineError[] = [];
  // Key -> line of first occurrence, to name the original in duplicate errors.
  const seen = new Map<string, number>();
  const lines = splitLines(text);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = stripLine(lines[i]);
    if (content === "") continue;
    const parsed = parseEntry(content);
    if (!parsed.ok) {
      errors.push({ line, message: parsed.message });
      continue;
    }
    const { host, port } = parsed.value;
    const key = `${host.family} ${host.key} ${port}`;
    const first = seen.get(key);
    if (first !== undefined) {
      // the same server twice asks for nothing new: said, and used once
      const message = `duplicate of line ${first} (${formatServer(host.host, port)}), ignored`;
      warnings.push({ line, message });
      continue;
    }
    seen.set(key, line);
    servers.push({ host: host.host, port, line, family: host.family });
  }
  return { servers, errors, warnings };
}

/** Splits into lines, accepting LF, CRLF and lone CR, and dropping a leading BOM. */
function splitLines(text: string): string[] {
  // Editors on Windows like to prepend a BOM; it is not part of the first host.
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  // CRLF must come first in the alternation so it counts as one line break.
  return body.split(/\r\n|\r|\n/);
}

/** Removes a `#` comment and surrounding spaces/tabs. */
function stripLine(line: string): string {
  const hash = line.indexOf("#");
  const code = hash === -1 ? line : line.slice(0, hash);
  return code.replace(/^[ \t]+|[ \t]+$/g, "");
}

/**
 * Parses one non-empty, comment-free line into a validated host and port. A `udp://` prefix
 * (and a trailing "/") is accepted, as users paste URLs; any other scheme is not ours.
 */
function parseEntry(line: string): Result<{ host: Host; port: number }> {
  const scheme = line.match(/^([A-Za-z][A-Za-z0-9+.-]*):\/\//);
  if (scheme && scheme[1].toLowerCase() !== "udp") {
    return fail(`${quote(scheme[0])} is not a udpget server: write "host port" or udp://host:port`);
  }
  const content = scheme ? line.slice(scheme[0].length).replace(/\/$/, "") : line;
  const raw = splitEntry(content.split(/[ \t]+/));
  if (!raw.ok) return raw;
  const { extra } = raw.value;
  // Reported before host/port problems: with extra words the line is most
  // likely not a server entry at all, and "bad port" would mislead.
  if (extra.length > 0) {
    return fail(`unexpected extra text ${quote(extra.join(" "))} after the port`);
  }
  const host = raw.value.bracketed ? parseBracketedHost(raw.value.host) : parseHost(raw.value.host);
  if (!host.ok) return host;
  const port = parsePort(raw.value.port);
  if (!port.ok) return port;
  return ok({ host: host.value, port: port.value });
}

/** Works out which text is the host and which is the port, without validating them. */
function splitEntry(tokens: string[]): Result<RawEntry> {
  const first = tokens[0];
  if (first.startsWith("[")) return splitBracketed(tokens);
  const colons = first.split(":").length - 1;
  if (colons === 1) return splitHostColonPort(tokens);
  if (colons > 1 && tokens.length < 2) return fail(unbracketedV6Message(first));
  // No colon, or a bare IPv6 address followed by a separate port token.
  if (tokens.length < 2) return fail(FORMS_MESSAGE);
  return ok({ host: first, port: tokens[1], bracketed: false, extra: tokens.slice(2) });
}

/** Handles `[addr]:port` and `[addr] port`. */
function splitBracketed(tokens: string[]): Result<RawEntry> {
  const first = tokens[0];
  const close = first.indexOf("]");
  if (close === -1) return fail(`missing "]" in ${quote(first)}`);
  const host = first.slice(1, close);
  const after = first.slice(close + 1);
  if (after === "") {
    if (tokens.length < 2) return fail(FORMS_MESSAGE);
    return ok({ host, port: tokens[1], bracketed: true, extra: tokens.slice(2) });
  }
  if (!after.startsWith(":")) {
    return fail(`expected ":port" after ${quote(first.slice(0, close + 1))}`);
  }
  if (after === ":") return fail(`missing port in ${quote(first)}`);
  return ok({ host, port: after.slice(1), bracketed: true, extra: tokens.slice(1) });
}

/** Handles `host:port` (exactly one colon). */
function splitHostColonPort(tokens: string[]): Result<RawEntry> {
  const first = tokens[0];
  const colon = first.indexOf(":");
  const host = first.slice(0, colon);
  const port = first.slice(colon + 1);
  if (host === "") return fail(`missing host in ${quote(first)}`);
  // Checked here so "host: 9000" says what is wrong instead of "extra text".
  if (port === "") return fail(`missing port in ${quote(first)}`);
  return ok({ host, port, bracketed: false, extra: tokens.slice(1) });
}

/**
 * Message for a lone token with several colons. If it ends in digits we
 * cannot tell the port from the last address group, hence "ambiguous".
 */
function unbracketedV6Message(token: string): string {
  const last = token.slice(token.lastIndexOf(":") + 1);
  if (/^[0-9]+$/.test(last)) {
    return `${quote(token)} is ambiguous: write IPv6 addresses as [addr]:port`;
  }
  return `missing port after ${quote(token)}: write IPv6 addresses as [addr]:port`;
}

/** Validates a host written inside brackets, which must be IPv6. */
function parseBracketedHost(text: string): Result<Host> {
  if (!text.includes(":")) {
    return fail(`brackets are only for IPv6 addresses: ${quote(`[${text}]`)}`);
  }
  return parseIPv6Host(text);
}

/** Validates an unbracketed host and decides its family. */
function parseHost(text: string): Result<Host> {
  if (text.includes(":")) return parseIPv6Host(text);
  // All digits and dots can only be meant as an IPv4 address, so "1.2.3"
  // or "1.2.3.256" is a bad address, not a hostname to send to DNS.
  if (/^[0-9.]+$/.test(text)) return parseIPv4Host(text);
  return parseHostname(text);
}

/** Validates a dotted-quad IPv4 address. */
function parseIPv4Host(text: string): Result<Host> {
  if (parseIPv4(text) === null) return fail(`invalid IPv4 address ${quote(text)}`);
  return ok({ host: text, family: "ipv4", key: text });
}

/** Validates an IPv6 address; the key is its expanded form so `::1` equals `0::1`. */
function parseIPv6Host(text: string): Result<Host> {
  const groups = parseIPv6(text);
  if (groups === null) return fail(`invalid IPv6 address ${quote(text)}`);
  return ok({ host: text, family: "ipv6", key: groups.join(":") });
}

/** Validates a DNS hostname's shape (RFC 1123 letters, digits, hyphens). */
function parseHostname(text: string): Result<Host> {
  const valid = text.length <= 253 && text.split(".").every(isHostnameLabel);
  if (!valid) return fail(`invalid hostname ${quote(text)}`);
  // DNS names are case-insensitive, so "Example.COM" duplicates "example.com".
  return ok({ host: text, family: "name", key: text.toLowerCase() });
}

/** True for a 1..63 character label that does not start or end with a hyphen. */
function isHostnameLabel(label: string): boolean {
  return /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label);
}

/**
 * The family of an IP address literal (`127.0.0.1`, `::`, `fe80::1`), or undefined for
 * anything else (names, brackets, zone ids). Shared with `serve --host`, which must be checked
 * before binding so a typo is a usage error rather than a failed bind.
 */
export function ipLiteralFamily(text: string): "ipv4" | "ipv6" | undefined {
  if (parseIPv4(text) !== null) return "ipv4";
  return text.includes(":") && parseIPv6(text) !== null ? "ipv6" : undefined;
}

/**
 * Parses a dotted quad into its four octets, or null.
 *
 * Leading zeros are rejected because some resolvers read "010" as octal,
 * so the address the user meant would be unclear.
 */
function parseIPv4(text: string): number[] | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const octets: number[] = [];
  for (const part of parts) {
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const value = Number(part);
    if (value > 255) return null;
    octets.push(value);
  }
  return octets;
}

/** Parses an IPv6 address (with optional `::` and trailing dotted quad) into 8 groups, or null. */
function parseIPv6(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const compressed = halves.length === 2;
  const left = parseIPv6Groups(halves[0], !compressed);
  const right = compressed ? parseIPv6Groups(halves[1], true) : [];
  if (left === null || right === null) return null;
  const explicit = left.length + right.length;
  // "::" stands for at least one zero group; without it all 8 must be written.
  if (compressed ? explicit > 7 : explicit !== 8) return null;
  const zeros = new Array<number>(8 - explicit).fill(0);
  return [...left, ...zeros, ...right];
}

/**
 * Parses colon-separated hex groups; an empty string is zero groups (one
 * side of "::"). A dotted quad is allowed only where the address ends.
 */
function parseIPv6Groups(text: string, endsAddress: boolean): number[] | null {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (endsAddress && i === parts.length - 1 && part.includes(".")) {
      const octets = parseIPv4(part);
      if (octets === null) return null;
      groups.push(octets[0] * 256 + octets[1], octets[2] * 256 + octets[3]);
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return null;
    }
  }
  return groups;
}

/** Validates a port: decimal digits only, value 1..65535. */
function parsePort(text: string): Result<number> {
  if (!/^[0-9]+$/.test(text)) return fail(`port ${quote(text)} is not a decimal number`);
  const value = Number(text);
  if (value < 1 || value > 65535) return fail(`port ${quote(text)} is not in 1..65535`);
  return ok(value);
}
