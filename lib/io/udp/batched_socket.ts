/**
 * The batched datagram layer: a UDP socket created and driven through libc (`Deno.dlopen`),
 * because Deno's `DatagramConn` exposes no descriptor. Receives with `recvmmsg` (many datagrams
 * per system call) and UDP GRO (many same-sized datagrams per message, split here by the
 * segment size the kernel reports); sends runs with `sendmmsg` and UDP GSO (one message, many
 * datagrams: the kernel cuts it). Receive buffers are raised with `SO_RCVBUFFORCE` where the
 * process may, else `SO_RCVBUF`.
 *
 * The socket is non-blocking. A receive loop drains it synchronously until EAGAIN, then waits for
 * readiness through the process's one epoll set (`poller.ts`: one `epoll_wait` on another
 * thread for all sockets), so the event loop, and with it pacing and loss-detection timers, keeps
 * running. Between two drains it yields to the event loop (a `MessageChannel` round trip), so a
 * busy socket cannot starve timers either. `close()` takes the socket out of the set, which ends
 * its pending waits, before the descriptor is closed.
 *
 * @module
 */

import { C, LAYOUT, type Libc } from "./libc.ts";
import { PeerAddress } from "./peer_address.ts";
import { Poller, type Readiness } from "./poller.ts";
import {
  type DatagramSocket,
  type ReceivedBatch,
  SEND_TOO_BIG,
  type SendRun,
} from "./datagram_socket.ts";

/** Options of {@link BatchedSocket.open}. */
export interface BatchedSocketOptions {
  /** Address to bind (numeric). */
  hostname: string;
  /** Port to bind; 0 picks one. */
  port: number;
  /** Connect to this peer: the kernel drops datagrams from anyone else and reports ICMP errors. */
  connect?: PeerAddress;
  /** Largest datagram expected; larger ones are dropped as truncated. */
  maxDatagram: number;
  /** Receive buffer to ask for (bytes). */
  receiveBuffer?: number;
  /** Send buffer to ask for (bytes). */
  sendBuffer?: number;
  /** Use UDP GRO on receive where the kernel has it (default true). */
  gro?: boolean;
  /** Use UDP GSO on send where the kernel has it (default true). */
  gso?: boolean;
  /** Messages per `recvmmsg` (default 8 with GRO, 64 without). */
  slots?: number;
}

/** Counters of one batched socket. */
export interface BatchedSocketStats {
  /** `recvmmsg` calls that returned datagrams. */
  receiveCalls: number;
  /** Datagrams received (GRO segments counted one by one). */
  datagrams: number;
  /** Datagrams dropped because they were larger than the slot (MSG_TRUNC). */
  truncated: number;
  /** Waits for readiness. */
  waits: number;
  /** `sendmmsg` calls, and how many of them found the send buffer full (EAGAIN). */
  sendCalls: number;
  sendBlocked: number;
}

/** Largest UDP payload of one message (IPv4: 65535 − 20 − 8); GSO messages stay within it. */
const MAX_UDP_PAYLOAD = 65507;
/** Segments per GSO message (the kernel's UDP_MAX_SEGMENTS was 64 before 5.x raised it). */
const MAX_GSO_SEGMENTS = 64;
/** Messages per `sendmmsg` call. */
const SEND_MESSAGES = 64;
/**
 * A GRO message is at most 64 KiB. The kernel merges at most 64 segments (UDP_GRO_CNT_MAX), but
 * a GSO message sent on this host reaches the socket whole, with up to 128 (UDP_MAX_SEGMENTS).
 */
const GRO_SLOT = 65536;
const MAX_GRO_SEGMENTS = 128;
const DEFAULT_BUFFER = 8 << 20;
/**
 * GSO sends refused with EINVAL in a row, none accepted between, before GSO is turned off. One
 * such refusal is usually a run whose datagrams exceed the path MTU (GSO never fragments): that
 * run goes datagram by datagram, and GSO stays on for the socket's other peers.
 */
const GSO_INVALID_LIMIT = 8;

/** A socket option that decides fragmentation, its default value, and the unfragmented one. */
interface MtuOption {
  level: number;
  opt: number;
  normal: number;
  probe: number;
}

/** A UDP socket on the batched layer (see the module comment). */
export class BatchedSocket implements DatagramSocket {
  readonly layer = "batched" as const;
  readonly features: string[] = [];
  readonly receiveBuffer: number;
  readonly localAddr: Deno.NetAddr;
  readonly unfragmented: boolean;
  readonly stats: BatchedSocketStats = {
    receiveCalls: 0,
    datagrams: 0,
    truncated: 0,
    waits: 0,
    sendCalls: 0,
    sendBlocked: 0,
  };
  #libc: Libc;
  #fd: number;
  #poller: Poller;
  #connected: boolean;
  #gso: boolean;
  #gsoInvalid = 0;
  #mtuOptions: MtuOption[];
  #unfragmentedNow = false;
  #closed = false;
  #recv: ReceiveArea;
  #send: SendArea;
  #wake = new EventLoopYield();

  private constructor(
    libc: Libc,
    fd: number,
    poller: Poller,
    o: BatchedSocketOptions,
    gro: boolean,
    mtuOptions: MtuOption[],
  ) {
    this.#libc = libc;
    this.#fd = fd;
    this.#poller = poller;
    this.#mtuOptions = mtuOptions;
    this.unfragmented = mtuOptions.length > 0;
    this.#connected = o.connect !== undefined;
    this.#gso = o.gso !== false && trySetInt(libc, fd, C.SOL_UDP, C.UDP_SEGMENT, 0);
    if (this.#gso) this.features.push("gso");
    if (gro) this.features.push("gro");
    this.receiveBuffer = getInt(libc, fd, C.SOL_SOCKET, C.SO_RCVBUF);
    this.localAddr = localAddress(libc, fd);
    const slots = o.slots ?? (gro ? 8 : 64);
    this.#recv = new ReceiveArea(libc, slots, gro ? GRO_SLOT : o.maxDatagram, gro);
    this.#send = new SendArea(libc);
  }

  /** Creates, configures and binds a socket; throws an Error saying which step failed. */
  static open(libc: Libc, o: BatchedSocketOptions): BatchedSocket {
    // (the one name `--host` accepts; anything else is a numeric address)
    const local = PeerAddress.of(o.hostname === "localhost" ? "127.0.0.1" : o.hostname, o.port);
    const family = local.family === "ipv4" ? C.AF_INET : C.AF_INET6;
    const fd = libc.sym.socket(family, C.SOCK_DGRAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0);
    if (fd < 0) throw new Error(`socket: ${libc.describe(libc.errno())}`);
    try {
      raiseBuffer(libc, fd, C.SO_RCVBUFFORCE, C.SO_RCVBUF, o.receiveBuffer ?? DEFAULT_BUFFER);
      raiseBuffer(libc, fd, C.SO_SNDBUFFORCE, C.SO_SNDBUF, o.sendBuffer ?? DEFAULT_BUFFER);
      const gro = o.gro !== false && trySetInt(libc, fd, C.SOL_UDP, C.UDP_GRO, 1);
      check(libc, libc.sym.bind(fd, local.sockaddr, local.sockaddr.length), "bind");
      if (o.connect) {
        const to = o.connect.sockaddr;
        check(libc, libc.sym.connect(fd, to, to.length), `connect ${o.connect.hostname}`);
      }
      const poller = Poller.of(libc);
      return new BatchedSocket(libc, fd, poller, o, gro, mtuOptions(libc, fd, family));
    } catch (e) {
      libc.sym.close(fd);
      throw e;
    }
  }

  async *batches(): AsyncIterableIterator<ReceivedBatch> {
    const batch = this.#recv.batch;
    while (!this.#closed) {
      const got = this.#drain();
      if (got > 0 || batch.dropped > 0 || batch.softError !== undefined) {
        yield batch;
        // (closed while the consumer held the batch: a new channel would keep the process alive)
        if (this.#closed) return;
        // timers due meanwhile run before the next drain, however busy the socket is
        await this.#wake.next();
        continue;
      }
      await this.#waitFor("in");
    }
  }

  async send(to: PeerAddress | undefined, run: SendRun): Promise<string | undefined> {
    if (this.#closed) return "socket closed";
    const name = this.#connected ? undefined : to?.sockaddr;
    if (!this.#connected && name === undefined) return "no destination";
    const unfragmented = run.unfragmented === true;
    if (unfragmented && !this.unfragmented) return "cannot send unfragmented here";
    let gso = this.#gso;
    let next = 0;
    while (next < run.count) {
      const a = this.#send;
      const msgs = a.build(run, next, name, gso);
      // (set right before the call: no other send can run in between)
      if (unfragmented !== this.#unfragmentedNow) this.#setUnfragmented(unfragmented);
      this.stats.sendCalls++;
      const sent = this.#libc.sym.sendmmsg(this.#fd, a.mmsg, msgs.messages, 0);
      if (sent > 0) {
        if (msgs.segmented) this.#gsoInvalid = 0;
        next = msgs.firstOf[sent] ?? run.count;
        continue;
      }
      const errno = this.#libc.errno();
      if (errno === C.EINTR) continue;
      if (errno === C.EAGAIN) {
        this.stats.sendBlocked++;
        await this.#waitFor("out");
        if (this.#closed) return "socket closed";
        continue;
      }
      if (errno === C.EMSGSIZE && unfragmented) return SEND_TOO_BIG;
      if (gso && msgs.segmented && (errno === C.EIO || errno === C.EINVAL)) {
        gso = false; // this run, datagram by datagram
        // EIO: the device cannot checksum segments; EINVAL, again and again: the kernel refuses
        if (errno === C.EIO || ++this.#gsoInvalid >= GSO_INVALID_LIMIT) this.#gsoOff();
        continue;
      }
      return this.#libc.describe(errno);
    }
    return undefined;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // out of the epoll set first (its waits end): the number may be reused once closed
    this.#poller.cancel(this.#fd);
    this.#wake.close();
    this.#libc.sym.close(this.#fd);
  }

  #gsoOff(): void {
    if (!this.#gso) return;
    this.#gso = false;
    this.features.splice(this.features.indexOf("gso"), 1);
  }

  /** Turns don't-fragment without local fragmentation on (path MTU probes) or back off. */
  #setUnfragmented(on: boolean): void {
    for (const m of this.#mtuOptions) {
      trySetInt(this.#libc, this.#fd, m.level, m.opt, on ? m.probe : m.normal);
    }
    this.#unfragmentedNow = on;
  }

  /** One `recvmmsg` into the slab; the number of datagrams, or 0 when nothing was waiting. */
  #drain(): number {
    const r = this.#recv;
    r.batch.softError = undefined;
    r.batch.count = 0;
    r.batch.dropped = 0;
    r.reset();
    for (;;) {
      const n = this.#libc.sym.recvmmsg(this.#fd, r.mmsg, r.slots, C.MSG_DONTWAIT, null);
      if (n >= 0) {
        if (n > 0) this.stats.receiveCalls++;
        const count = r.collect(n);
        this.stats.datagrams += count;
        this.stats.truncated += r.truncated;
        return count;
      }
      const errno = this.#libc.errno();
      if (errno === C.EINTR) continue;
      if (errno === C.EAGAIN) return 0;
      if (isSoft(errno)) {
        r.batch.softError = this.#libc.describe(errno);
        return 0;
      }
      throw new Error(`recvmmsg: ${this.#libc.describe(errno)}`);
    }
  }

  /** Until the socket is ready as asked, or closed. */
  #waitFor(readiness: Readiness): Promise<void> {
    this.stats.waits++;
    return this.#poller.wait(this.#fd, readiness);
  }
}

/** Errors that report on a datagram exchange (mostly ICMP), not on the socket itself. */
function isSoft(errno: number): boolean {
  return errno === C.ECONNREFUSED || errno === C.EHOSTUNREACH || errno === C.ENETUNREACH ||
    errno === C.EMSGSIZE;
}

function check(libc: Libc, rc: number, what: string): void {
  if (rc < 0) throw new Error(`${what}: ${libc.describe(libc.errno())}`);
}

function trySetInt(libc: Libc, fd: number, level: number, opt: number, value: number): boolean {
  const v = new Uint8Array(new Int32Array([value]).buffer);
  return libc.sym.setsockopt(fd, level, opt, v, 4) === 0;
}

function getInt(libc: Libc, fd: number, level: number, opt: number): number {
  return readInt(libc, fd, level, opt) ?? 0;
}

function readInt(libc: Libc, fd: number, level: number, opt: number): number | undefined {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  const rc = libc.sym.getsockopt(
    fd,
    level,
    opt,
    new Uint8Array(v.buffer),
    new Uint8Array(len.buffer),
  );
  return rc === 0 ? v[0] : undefined;
}

/**
 * The options that decide fragmentation on this socket, where the kernel lets them be read and
 * switched to "probe" (IP_PMTUDISC_PROBE: don't-fragment set, no local fragmentation, the PMTU
 * cache ignored, as RFC 8899 wants) and back; none when that fails. An IPv6 socket also carries
 * IPv4-mapped traffic, which follows the IPv4 option.
 */
function mtuOptions(libc: Libc, fd: number, family: number): MtuOption[] {
  const wanted: Omit<MtuOption, "normal">[] = [{
    level: C.IPPROTO_IP,
    opt: C.IP_MTU_DISCOVER,
    probe: C.IP_PMTUDISC_PROBE,
  }];
  if (family === C.AF_INET6) {
    wanted.unshift({
      level: C.IPPROTO_IPV6,
      opt: C.IPV6_MTU_DISCOVER,
      probe: C.IPV6_PMTUDISC_PROBE,
    });
  }
  const options: MtuOption[] = [];
  for (const w of wanted) {
    const normal = readInt(libc, fd, w.level, w.opt);
    const switchable = normal !== undefined && trySetInt(libc, fd, w.level, w.opt, w.probe) &&
      trySetInt(libc, fd, w.level, w.opt, normal);
    if (switchable) options.push({ ...w, normal });
    else if (options.length === 0) return []; // the family's own option is required
  }
  return options;
}

/** The FORCE variant passes rmem_max/wmem_max when the process may (CAP_NET_ADMIN). */
function raiseBuffer(libc: Libc, fd: number, force: number, plain: number, bytes: number): void {
  if (!trySetInt(libc, fd, C.SOL_SOCKET, force, bytes)) {
    trySetInt(libc, fd, C.SOL_SOCKET, plain, bytes);
  }
}

function localAddress(libc: Libc, fd: number): Deno.NetAddr {
  const sa = new Uint8Array(LAYOUT.SOCKADDR);
  const len = new Uint32Array([LAYOUT.SOCKADDR]);
  check(libc, libc.sym.getsockname(fd, sa, new Uint8Array(len.buffer)), "getsockname");
  const p = PeerAddress.fromSockaddr(sa.subarray(0, len[0]));
  if (!p) throw new Error("getsockname: unknown address family");
  return p.netAddr;
}

/** Writes a pointer (an exact number below 2^53) as a little-endian u64 into `u32` at `i`. */
function putPointer(u32: Uint32Array, i: number, address: number): void {
  u32[i] = address >>> 0;
  u32[i + 1] = Math.floor(address / 4294967296);
}

/** The structures `recvmmsg` fills, set up once; per call only lengths are reset. */
class ReceiveArea {
  readonly slots: number;
  readonly mmsg: Uint8Array;
  readonly batch: SlabBatch;
  truncated = 0;
  #u32: Uint32Array;
  #i32: Int32Array;
  #slotSize: number;
  #ctrl: Uint8Array;
  #ctrlI32: Int32Array;
  #gro: boolean;

  constructor(libc: Libc, slots: number, slotSize: number, gro: boolean) {
    this.slots = slots;
    this.#slotSize = slotSize;
    this.#gro = gro;
    const data = new Uint8Array(slots * slotSize);
    this.mmsg = new Uint8Array(slots * LAYOUT.MMSGHDR);
    const names = new Uint8Array(slots * 32);
    const iovs = new Uint8Array(Math.max(64, slots * LAYOUT.IOVEC));
    this.#ctrl = new Uint8Array(Math.max(64, slots * 32));
    this.#ctrlI32 = new Int32Array(this.#ctrl.buffer);
    this.#u32 = new Uint32Array(this.mmsg.buffer);
    this.#i32 = new Int32Array(this.mmsg.buffer);
    const iov32 = new Uint32Array(iovs.buffer);
    const dataAt = libc.address(data);
    const namesAt = libc.address(names);
    const iovsAt = libc.address(iovs);
    const ctrlAt = libc.address(this.#ctrl);
    for (let j = 0; j < slots; j++) {
      putPointer(iov32, j * 4, dataAt + j * slotSize);
      iov32[j * 4 + 2] = slotSize;
      const m = (j * LAYOUT.MMSGHDR) / 4;
      putPointer(this.#u32, m, namesAt + j * 32);
      putPointer(this.#u32, m + LAYOUT.MSG_IOV / 4, iovsAt + j * LAYOUT.IOVEC);
      this.#u32[m + LAYOUT.MSG_IOVLEN / 4] = 1;
      putPointer(this.#u32, m + LAYOUT.MSG_CONTROL / 4, ctrlAt + j * 32);
    }
    const max = slots * (gro ? MAX_GRO_SEGMENTS : 1);
    this.batch = new SlabBatch(data, names, max);
    // (kept alive by the fields: the kernel holds their addresses)
    this.#keep = [iovs];
  }
  #keep: Uint8Array[];

  /** The kernel overwrites name and control lengths: restore them before every call. */
  reset(): void {
    const ctrl = this.#gro ? LAYOUT.CMSG_SPACE_INT : 0;
    for (let j = 0; j < this.slots; j++) {
      const m = (j * LAYOUT.MMSGHDR) / 4;
      this.#u32[m + LAYOUT.MSG_NAMELEN / 4] = 32;
      this.#u32[m + LAYOUT.MSG_CONTROLLEN / 4] = ctrl;
      this.#u32[m + LAYOUT.MSG_CONTROLLEN / 4 + 1] = 0;
      this.#i32[m + LAYOUT.MSG_FLAGS / 4] = 0;
    }
  }

  /** Lays out the datagrams of `n` messages in the batch (GRO messages split); their count. */
  collect(n: number): number {
    const b = this.batch;
    this.truncated = 0;
    let count = 0;
    for (let j = 0; j < n; j++) {
      const m = (j * LAYOUT.MMSGHDR) / 4;
      const len = this.#u32[m + LAYOUT.MMSG_LEN / 4];
      if ((this.#i32[m + LAYOUT.MSG_FLAGS / 4] & C.MSG_TRUNC) !== 0) {
        this.truncated++;
        continue;
      }
      const seg = this.#segmentSize(j, m);
      const start = j * this.#slotSize;
      if (seg <= 0 || seg >= len) {
        if (count === b.offsets.length) {
          this.truncated++;
          continue;
        }
        b.offsets[count] = start;
        b.lengths[count] = len;
        b.message[count++] = j;
        continue;
      }
      for (let off = 0; off < len; off += seg) {
        if (count === b.offsets.length) {
          this.truncated++; // more segments than any kernel sends: dropped, and counted
          continue;
        }
        b.offsets[count] = start + off;
        b.lengths[count] = Math.min(seg, len - off);
        b.message[count++] = j;
      }
    }
    b.count = count;
    b.dropped = this.truncated;
    return count;
  }

  /** The UDP_GRO segment size of message `j`, or 0 when it carries one datagram. */
  #segmentSize(j: number, m: number): number {
    if (!this.#gro) return 0;
    const controlLen = this.#u32[m + LAYOUT.MSG_CONTROLLEN / 4];
    if (controlLen < LAYOUT.CMSGHDR + 4) return 0;
    const c = (j * 32) / 4;
    if (this.#ctrlI32[c + 2] !== C.SOL_UDP || this.#ctrlI32[c + 3] !== C.UDP_GRO) return 0;
    return this.#ctrlI32[c + 4];
  }
}

/** A batch over the receive slab; senders decoded from the per-message address slots. */
class SlabBatch implements ReceivedBatch {
  count = 0;
  dropped = 0;
  softError: string | undefined = undefined;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  /** Message (and so address slot) of each datagram. */
  readonly message: Uint16Array;
  #names: Uint8Array;

  constructor(readonly data: Uint8Array, names: Uint8Array, max: number) {
    this.#names = names;
    this.offsets = new Uint32Array(max);
    this.lengths = new Uint32Array(max);
    this.message = new Uint16Array(max);
  }

  peer(i: number): PeerAddress | undefined {
    const j = this.message[i];
    return PeerAddress.fromSockaddr(this.#names.subarray(j * 32, j * 32 + LAYOUT.SOCKADDR));
  }

  samePeer(i: number, j: number): boolean {
    const a = this.message[i] * 32;
    const b = this.message[j] * 32;
    if (a === b) return true;
    for (let k = 0; k < LAYOUT.SOCKADDR; k++) {
      if (this.#names[a + k] !== this.#names[b + k]) return false;
    }
    return true;
  }
}

/** What `SendArea.build` laid out for one `sendmmsg` call. */
interface BuiltSend {
  messages: number;
  /** `firstOf[k]`: the datagram index message `k` starts at (so a partial send resumes). */
  firstOf: number[];
  /** Whether some message carries several segments (GSO). */
  segmented: boolean;
}

/** The structures `sendmmsg` reads, reused by every send of the socket. */
class SendArea {
  readonly mmsg = new Uint8Array(SEND_MESSAGES * LAYOUT.MMSGHDR);
  #libc: Libc;
  #u32 = new Uint32Array(this.mmsg.buffer);
  #iovs = new Uint8Array(SEND_MESSAGES * MAX_GSO_SEGMENTS * 2 * LAYOUT.IOVEC);
  #iov32 = new Uint32Array(this.#iovs.buffer);
  #ctrl = new Uint8Array(SEND_MESSAGES * LAYOUT.CMSG_SPACE_INT);
  #ctrlDv = new DataView(this.#ctrl.buffer);
  #name = new Uint8Array(64);
  #iovsAt: number;
  #ctrlAt: number;
  #nameAt: number;
  #built: BuiltSend = { messages: 0, firstOf: [], segmented: false };

  constructor(libc: Libc) {
    this.#libc = libc;
    this.#iovsAt = libc.address(this.#iovs);
    this.#ctrlAt = libc.address(this.#ctrl);
    this.#nameAt = libc.address(this.#name);
  }

  /** Lays out datagrams `from`.. of `run` as at most SEND_MESSAGES messages. */
  build(run: SendRun, from: number, name: Uint8Array | undefined, gso: boolean): BuiltSend {
    const out = this.#built;
    out.firstOf.length = 0;
    out.segmented = false;
    if (name) this.#name.set(name);
    const prefixAt = run.prefixLength > 0 ? this.#libc.address(run.prefixes) : 0;
    const payloadAt = run.payload.length > 0 ? this.#libc.address(run.payload) : 0;
    const datagram = run.prefixLength + run.segment;
    const perMessage = gso && datagram > 0
      ? Math.max(1, Math.min(MAX_GSO_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / datagram)))
      : 1;
    let iov = 0;
    let k = 0;
    let i = from;
    while (i < run.count && k < SEND_MESSAGES) {
      const segs = Math.min(perMessage, run.count - i);
      out.firstOf.push(i);
      const firstIov = iov;
      for (let s = 0; s < segs; s++, i++) {
        if (run.prefixLength > 0) {
          putPointer(this.#iov32, iov * 4, prefixAt + i * run.prefixLength);
          this.#iov32[iov * 4 + 2] = run.prefixLength;
          this.#iov32[iov * 4 + 3] = 0;
          iov++;
        }
        const off = i * run.segment;
        const len = Math.max(0, Math.min(run.segment, run.payload.length - off));
        if (len > 0) {
          putPointer(this.#iov32, iov * 4, payloadAt + off);
          this.#iov32[iov * 4 + 2] = len;
          this.#iov32[iov * 4 + 3] = 0;
          iov++;
        }
      }
      this.#message(k, name, firstIov, iov - firstIov, segs > 1 ? datagram : 0);
      if (segs > 1) out.segmented = true;
      k++;
    }
    out.firstOf.push(i);
    out.messages = k;
    return out;
  }

  #message(k: number, name: Uint8Array | undefined, iov: number, iovs: number, gso: number): void {
    const m = (k * LAYOUT.MMSGHDR) / 4;
    const u = this.#u32;
    putPointer(u, m, name ? this.#nameAt : 0);
    u[m + LAYOUT.MSG_NAMELEN / 4] = name ? name.length : 0;
    putPointer(u, m + LAYOUT.MSG_IOV / 4, this.#iovsAt + iov * LAYOUT.IOVEC);
    u[m + LAYOUT.MSG_IOVLEN / 4] = iovs;
    u[m + LAYOUT.MSG_IOVLEN / 4 + 1] = 0;
    if (gso > 0) {
      // UDP_SEGMENT: a u16 payload, cmsg_len = CMSG_LEN(2) = 18 exactly (the kernel checks)
      const c = k * LAYOUT.CMSG_SPACE_INT;
      this.#ctrlDv.setUint32(c, 18, true);
      this.#ctrlDv.setUint32(c + 4, 0, true);
      this.#ctrlDv.setInt32(c + 8, C.SOL_UDP, true);
      this.#ctrlDv.setInt32(c + 12, C.UDP_SEGMENT, true);
      this.#ctrlDv.setUint16(c + 16, gso, true);
      putPointer(u, m + LAYOUT.MSG_CONTROL / 4, this.#ctrlAt + c);
      u[m + LAYOUT.MSG_CONTROLLEN / 4] = LAYOUT.CMSG_SPACE_INT;
    } else {
      putPointer(u, m + LAYOUT.MSG_CONTROL / 4, 0);
      u[m + LAYOUT.MSG_CONTROLLEN / 4] = 0;
    }
    u[m + LAYOUT.MSG_CONTROLLEN / 4 + 1] = 0;
    u[m + LAYOUT.MSG_FLAGS / 4] = 0;
  }
}

/**
 * A macrotask boundary: resolves after one trip through the event loop, where due timers run
 * (a `MessageChannel` round trip costs microseconds; `setTimeout(0)` costs milliseconds). The
 * channel keeps the process alive, so it is closed with its socket.
 */
class EventLoopYield {
  #channel: MessageChannel | undefined;
  #waiters: (() => void)[] = [];
  #closed = false;

  next(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (!this.#channel) {
      this.#channel = new MessageChannel();
      this.#channel.port1.onmessage = () => this.#waiters.shift()?.();
    }
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#channel!.port2.postMessage(0);
    });
  }

  close(): void {
    this.#closed = true;
    this.#channel?.port1.close();
    this.#channel?.port2.close();
    this.#channel = undefined;
    for (const w of this.#waiters.splice(0)) w();
  }
}
