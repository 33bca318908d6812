/**
 * The few libc calls the batched datagram layer needs, bound with `Deno.dlopen`, and the Linux
 * constants and x86_64 struct layouts that go with them. Loading fails soft: `loadLibc()` says
 * why the layer is unavailable (no `--allow-ffi`, another OS or architecture, no glibc) and the
 * caller falls back to `Deno.listenDatagram`.
 *
 * Layouts are those of x86_64 glibc Linux, the only platform this layer was verified on; other
 * platforms are refused rather than guessed.
 *
 * @module
 */

/** Linux constants (x86_64 values; see socket(7), udp(7), poll(2), errno(3)). */
export const C = {
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_DGRAM: 2,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_SNDBUFFORCE: 32,
  SO_RCVBUFFORCE: 33,
  IPPROTO_IP: 0,
  IP_MTU_DISCOVER: 10,
  IP_PMTUDISC_DO: 2,
  IP_PMTUDISC_PROBE: 3,
  IPPROTO_IPV6: 41,
  IPV6_V6ONLY: 26,
  IPV6_MTU_DISCOVER: 23,
  IPV6_PMTUDISC_DO: 2,
  IPV6_PMTUDISC_PROBE: 3,
  SOL_UDP: 17,
  UDP_SEGMENT: 103,
  UDP_GRO: 104,
  MSG_TRUNC: 0x20,
  MSG_DONTWAIT: 0x40,
  POLLIN: 0x1,
  POLLOUT: 0x4,
  POLLERR: 0x8,
  POLLHUP: 0x10,
  POLLNVAL: 0x20,
  EPOLL_CLOEXEC: 0o2000000,
  EPOLL_CTL_ADD: 1,
  EPOLL_CTL_DEL: 2,
  EPOLL_CTL_MOD: 3,
  EPOLLIN: 0x1,
  EPOLLOUT: 0x4,
  EPOLLERR: 0x8,
  EPOLLHUP: 0x10,
  EPOLLONESHOT: 1 << 30,
  EFD_NONBLOCK: 0o4000,
  EFD_CLOEXEC: 0o2000000,
  O_WRONLY: 1,
  O_NOFOLLOW: 0o400000,
  O_CLOEXEC: 0o2000000,
  IOV_MAX: 1024,
  EINTR: 4,
  EIO: 5,
  EAGAIN: 11,
  EFBIG: 27,
  ENOSPC: 28,
  EINVAL: 22,
  ENOSYS: 38,
  EDQUOT: 122,
  EMSGSIZE: 90,
  ENOPROTOOPT: 92,
  EOPNOTSUPP: 95,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  ENETUNREACH: 101,
} as const;

/** Sizes and offsets of the structs handed to the kernel (x86_64). */
export const LAYOUT = {
  IOVEC: 16,
  MSGHDR: 56,
  MSG_NAME: 0,
  MSG_NAMELEN: 8,
  MSG_IOV: 16,
  MSG_IOVLEN: 24,
  MSG_CONTROL: 32,
  MSG_CONTROLLEN: 40,
  MSG_FLAGS: 48,
  MMSGHDR: 64,
  MMSG_LEN: 56,
  CMSGHDR: 16,
  /** CMSG_SPACE of a 4-byte payload (and of a 2-byte one): header + payload, 8-aligned. */
  CMSG_SPACE_INT: 24,
  /** Room for sockaddr_in6, the largest address. */
  SOCKADDR: 28,
  POLLFD: 8,
  /** struct epoll_event is packed on x86_64: u32 events, u64 data. */
  EPOLL_EVENT: 12,
} as const;

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /**
   * Waits on one of Deno's blocking-pool threads (32 in all): the event loop (and its timers)
   * runs meanwhile. The process has one such wait at a time (`poller.ts`).
   */
  epollWait: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  /** (variadic in C; called without the mode argument, which only O_CREAT reads) */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  pwritev: { parameters: ["i32", "buffer", "i32", "i64"], result: "isize" },
  /** Linux fallocate(2), not posix_fallocate: that one writes zeros where the file system cannot. */
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

/** The bound libc symbols. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** libc, with errno read the only safe way: right after a synchronous call returned −1. */
export interface Libc {
  readonly sym: LibcSymbols;
  /** errno of the last failed synchronous call on this thread. */
  errno(): number;
  /** The system's message for `errno`, e.g. "Connection refused". */
  describe(errno: number): string;
  /**
   * The address of `buf`'s first byte, for pointers stored inside structs. A number: user-space
   * addresses on x86_64 fit in 47 bits, so number arithmetic is exact and needs no BigInt.
   */
  address(buf: Uint8Array): number;
}

let loaded: Libc | string | undefined;

/**
 * libc, or why the batched layer cannot be used here. Checked once per process: the FFI
 * permission (queried, never prompted), the platform the layouts were verified on, glibc.
 */
export function loadLibc(): Libc | string {
  if (loaded === undefined) loaded = open();
  return loaded;
}

function open(): Libc | string {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    return `not verified on ${Deno.build.os}/${Deno.build.arch} (x86_64 Linux only)`;
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return "no --allow-ffi";
  }
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (e) {
    return `cannot load libc.so.6 (${e instanceof Error ? e.message.split("\n")[0] : e})`;
  }
  const sym = lib.symbols;
  const errnoPtr = sym.__errno_location();
  if (errnoPtr === null) return "no errno location";
  const errnoView = new Deno.UnsafePointerView(errnoPtr);
  const messages = new Map<number, string>();
  return {
    sym,
    errno: () => errnoView.getInt32(),
    describe: (errno) => {
      let m = messages.get(errno);
      if (m === undefined) {
        const p = sym.strerror(errno);
        m = p === null ? `errno ${errno}` : Deno.UnsafePointerView.getCString(p);
        messages.set(errno, m);
      }
      return m;
    },
    address: (buf) => Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))),
  };
}
