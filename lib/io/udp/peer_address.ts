/**
 * A datagram peer's address in the two forms the socket layers need: `Deno.NetAddr` for
 * `Deno.listenDatagram`, and the kernel's `sockaddr_in` / `sockaddr_in6` bytes for the batched
 * layer. Encoded once per peer, so sending a run of datagrams does no address work.
 *
 * @module
 */

import { C, LAYOUT } from "./libc.ts";

/** A UDP peer: a numeric IP address and a port. */
export class PeerAddress {
  /** `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes), as the kernel takes it. */
  readonly sockaddr: Uint8Array;
  /** The same address for `Deno.DatagramConn.send`. */
  readonly netAddr: Deno.NetAddr;

  private constructor(readonly hostname: string, readonly port: number, sockaddr: Uint8Array) {
    this.sockaddr = sockaddr;
    this.netAddr = { transport: "udp", hostname, port };
  }

  /** "ipv4" or "ipv6". */
  get family(): "ipv4" | "ipv6" {
    return this.sockaddr.length === 16 ? "ipv4" : "ipv6";
  }

  /**
   * The peer at `hostname` (a numeric IPv4 or IPv6 address, no zone id) and `port`; throws a
   * TypeError for anything else.
   */
  static of(hostname: string, port: number): PeerAddress {
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new TypeError(`bad port ${port}`);
    }
    const v4 = parseIpv4(hostname);
    if (v4) {
      const sa = new Uint8Array(16);
      const dv = new DataView(sa.buffer);
      dv.setUint16(0, C.AF_INET, true);
      dv.setUint16(2, port, false);
      sa.set(v4, 4);
      return new PeerAddress(hostname, port, sa);
    }
    const v6 = parseIpv6(hostname);
    if (!v6) throw new TypeError(`not a numeric IP address: ${hostname}`);
    const sa = new Uint8Array(LAYOUT.SOCKADDR);
    const dv = new DataView(sa.buffer);
    dv.setUint16(0, C.AF_INET6, true);
    dv.setUint16(2, port, false);
    sa.set(v6, 8);
    return new PeerAddress(hostname, port, sa);
  }

  /** Decodes a `sockaddr` the kernel wrote; undefined for a family other than IPv4/IPv6. */
  static fromSockaddr(bytes: Uint8Array): PeerAddress | undefined {
    if (bytes.length < 16) return undefined;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const family = dv.getUint16(0, true);
    const port = dv.getUint16(2, false);
    if (family === C.AF_INET) {
      const host = `${bytes[4]}.${bytes[5]}.${bytes[6]}.${bytes[7]}`;
      return new PeerAddress(host, port, bytes.slice(0, 16));
    }
    if (family !== C.AF_INET6 || bytes.length < LAYOUT.SOCKADDR) return undefined;
    const host = formatIpv6(bytes.subarray(8, 24));
    return new PeerAddress(host, port, bytes.slice(0, LAYOUT.SOCKADDR));
  }

  /** True when `other` is the same address and port (whatever the spelling of the address). */
  equals(other: PeerAddress): boolean {
    if (this.port !== other.port || this.sockaddr.length !== other.sockaddr.length) return false;
    const from = this.sockaddr.length === 16 ? 4 : 8;
    for (let i = from; i < from + (this.sockaddr.length === 16 ? 4 : 16); i++) {
      if (this.sockaddr[i] !== other.sockaddr[i]) return false;
    }
    return true;
  }
}

/** The four bytes of a dotted-quad IPv4 address, or undefined. */
export function parseIpv4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

/** The sixteen bytes of an IPv6 address (with `::` and a trailing dotted quad), or undefined. */
export function parseIpv6(s: string): Uint8Array | undefined {
  if (!s.includes(":") || s.includes("%")) return undefined;
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      if (i === items.length - 1 && it.includes(".")) {
        const v4 = parseIpv4(it);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(it)) out.push(parseInt(it, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** The canonical text form of an IPv6 address (RFC 5952, as `URL` renders it). */
export function formatIpv6(b: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i] << 8) | b[i + 1]).toString(16));
  return new URL(`http://[${g.join(":")}]/`).hostname.slice(1, -1);
}
