/**
 * Private to the network layer: the C library calls the fast datagram path
 * makes through Deno FFI (`Deno.dlopen("libc.so.6")`), the constants and
 * struct layouts they need, and `errno`. Only x86_64 Linux is described here:
 * {@linkcode fastPathProblem} refuses anything else, and callers fall back to
 * `Deno.listenDatagram`.
 *
 * Memory rules every caller follows (see `media_loop.ts`):
 * - every buffer handed to a call is a view of an `ArrayBuffer` created with
 *   `new ArrayBuffer(n)` (its memory lives outside the garbage-collected heap
 *   and never moves), held by the caller for as long as a pointer into it can
 *   be used, and never transferred or resized;
 * - pointers written into structs (`msghdr.msg_name`, `iovec.iov_base`, ...)
 *   point into such buffers, and every length written beside them is at most
 *   the room left in the buffer;
 * - the one call that runs on another thread (the parked `epoll_wait`) writes
 *   into memory from `calloc`, not into a JavaScript buffer, so that nothing
 *   the garbage collector or a terminated worker frees can be written to.
 *
 * Layouts (x86_64 Linux, glibc and the kernel UAPI headers; all little-endian,
 * pointers and `size_t` 8 bytes, `socklen_t` 4):
 * - `sockaddr_in` (16 bytes): `sin_family` u16 @0, `sin_port` u16 big-endian @2,
 *   `sin_addr` 4 bytes @4, zero @8..16;
 * - `sockaddr_in6` (28 bytes): `sin6_family` u16 @0, `sin6_port` u16 big-endian
 *   @2, `sin6_flowinfo` u32 @4, `sin6_addr` 16 bytes @8, `sin6_scope_id` u32 @24;
 * - `iovec` (16): `iov_base` pointer @0, `iov_len` u64 @8;
 * - `msghdr` (56): `msg_name` pointer @0, `msg_namelen` u32 @8, `msg_iov`
 *   pointer @16, `msg_iovlen` u64 @24, `msg_control` pointer @32,
 *   `msg_controllen` u64 @40, `msg_flags` i32 @48;
 * - `mmsghdr` (64): `msg_hdr` @0, `msg_len` u32 @56;
 * - `epoll_event` (12, packed on x86_64): `events` u32 @0, `data` u64 @4;
 * - `cmsghdr` (16): `cmsg_len` u64 @0, `cmsg_level` i32 @8, `cmsg_type` i32 @12,
 *   data @16, each header aligned to 8;
 * - `sock_extended_err` (16): `ee_errno` u32 @0, `ee_origin` u8 @4, `ee_type`
 *   u8 @5, `ee_code` u8 @6, `ee_info` u32 @8, `ee_data` u32 @12;
 * - `timespec` (16): `tv_sec` i64 @0, `tv_nsec` i64 @8; `itimerspec` (32):
 *   `it_interval` @0, `it_value` @16.
 *
 * @module
 */

/** Address families, socket types and flags (`<sys/socket.h>`, `<fcntl.h>`). */
export const AF_INET = 2, AF_INET6 = 10, SOCK_DGRAM = 2, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
/** Socket option levels and names (`<asm-generic/socket.h>`, `<netinet/in.h>`, `<linux/in6.h>`). */
export const SOL_SOCKET = 1, SO_SNDBUF = 7, SO_RCVBUF = 8;
/** IP-level options: `IP_RECVERR` queues ICMP errors on the socket's error queue. */
export const SOL_IP = 0, IP_RECVERR = 11;
/** IPv6-level options. */
export const SOL_IPV6 = 41, IPV6_RECVERR = 25, IPV6_V6ONLY = 26;
/** `send`/`recv` flags. */
export const MSG_CTRUNC = 0x8, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, MSG_ERRQUEUE = 0x2000;
/** epoll (`<sys/epoll.h>`). */
export const EPOLL_CLOEXEC = 0o2000000, EPOLLIN = 0x1, EPOLLOUT = 0x4, EPOLLERR = 0x8, EPOLLHUP = 0x10;
/** `epoll_ctl` operations. */
export const EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
/** Clocks, timerfd flags and the `prctl` option for timer slack (`<time.h>`, `<sys/timerfd.h>`, `<linux/prctl.h>`). */
export const CLOCK_MONOTONIC = 1,
  PR_SET_TIMERSLACK = 29,
  TFD_NONBLOCK = 0o4000,
  TFD_CLOEXEC = 0o2000000,
  TFD_TIMER_ABSTIME = 1;
/** `sock_extended_err.ee_origin` values (`<linux/errqueue.h>`). */
export const SO_EE_ORIGIN_LOCAL = 1, SO_EE_ORIGIN_ICMP = 2, SO_EE_ORIGIN_ICMP6 = 3;

/** Struct sizes and offsets used by the callers (see the module comment). */
export const SOCKADDR_IN_SIZE = 16, SOCKADDR_IN6_SIZE = 28, IOVEC_SIZE = 16, MSGHDR_SIZE = 56, MMSGHDR_SIZE = 64;
/** `msghdr` field offsets. */
export const MSG_NAME = 0, MSG_NAMELEN = 8, MSG_IOV = 16, MSG_IOVLEN = 24, MSG_CONTROL = 32, MSG_CONTROLLEN = 40;
/** More `msghdr`/`mmsghdr` field offsets. */
export const MSG_FLAGS = 48, MSG_LEN = 56;
/** `epoll_event` size and field offsets (packed on x86_64). */
export const EPOLL_EVENT_SIZE = 12, EV_EVENTS = 0, EV_DATA = 4;

/** errno values (`<asm-generic/errno*.h>`). */
export const Errno = {
  EPERM: 1,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EINVAL: 22,
  ENOSYS: 38,
  ENFILE: 23,
  EMFILE: 24,
  EMSGSIZE: 90,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ENOBUFS: 105,
  ECONNREFUSED: 111,
  EHOSTDOWN: 112,
  EHOSTUNREACH: 113,
} as const;

const ERRNO_TEXT: Record<number, string> = {
  1: "EPERM: operation not permitted",
  4: "EINTR: interrupted",
  9: "EBADF: bad file descriptor",
  11: "EAGAIN: would block",
  12: "ENOMEM: out of memory",
  13: "EACCES: permission denied",
  22: "EINVAL: invalid argument",
  23: "ENFILE: too many open files in the system",
  24: "EMFILE: too many open files (raise the limit: ulimit -n)",
  90: "EMSGSIZE: datagram too long",
  97: "EAFNOSUPPORT: address family not supported by the socket (an IPv4 socket cannot send to IPv6)",
  98: "EADDRINUSE: address already in use",
  99: "EADDRNOTAVAIL: address not available",
  100: "ENETDOWN: network is down",
  101: "ENETUNREACH: network unreachable",
  105: "ENOBUFS: no buffer space available",
  111: "ECONNREFUSED: connection refused",
  112: "EHOSTDOWN: host is down",
  113: "EHOSTUNREACH: no route to host",
};

/** `EXXX: text` for an errno value. */
export function errnoText(errno: number): string {
  return ERRNO_TEXT[errno] ?? `errno ${errno}`;
}

/** A failed C library call: the call, its errno, and what it was for. */
export class SysError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** The function that failed. */
  readonly call: string;

  /**
   * Creates the error.
   * @param call the function that failed
   * @param errno its errno
   * @param what what the call was doing, for the message
   */
  constructor(call: string, errno: number, what?: string) {
    super(`${what ? `${what}: ` : ""}${call}() failed: ${errnoText(errno)}`);
    this.name = "SysError";
    this.errno = errno;
    this.call = call;
  }
}

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  /** The same `epoll_wait`, run on a thread of Deno's blocking pool: the promise settles when it returns. */
  epoll_wait_parked: {
    name: "epoll_wait",
    parameters: ["i32", "pointer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /**
   * `epoll_wait` with a `timespec` timeout (glibc 2.35, Linux 5.11): a fine wait in one call, where the `timerfd`
   * takes three (arm, wait, read). Null when the C library lacks it; ENOSYS when the kernel does.
   */
  epoll_pwait2: { parameters: ["i32", "buffer", "i32", "buffer", "pointer"], result: "i32", optional: true },
  /** `prctl`: the loop sets its thread's timer slack (`PR_SET_TIMERSLACK`), the lateness the kernel may add to a timed wait. */
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  timerfd_create: { parameters: ["i32", "i32"], result: "i32" },
  timerfd_settime: { parameters: ["i32", "i32", "buffer", "pointer"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  calloc: { parameters: ["usize", "usize"], result: "pointer" },
  free: { parameters: ["pointer"], result: "void" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The bound C library functions. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The platform facts {@linkcode platformProblem} decides on. */
export interface PlatformFacts {
  /** `Deno.build.os`. */
  os: string;
  /** `Deno.build.arch`: the architecture of this Deno binary, hence of the C library it loads. */
  arch: string;
}

/** Why the struct layouts of this module do not fit `platform`, or undefined when they do (x86_64 Linux). */
export function platformProblem(platform: PlatformFacts): string | undefined {
  if (platform.os === "linux" && platform.arch === "x86_64") return undefined;
  return `the FFI datagram path is written for x86_64 Linux only (struct layouts differ elsewhere); ` +
    `this is ${platform.arch} ${platform.os}`;
}

/**
 * Why the FFI datagram path cannot run in this process, or undefined when it
 * can: the platform is not x86_64 Linux, the `ffi` permission is not granted,
 * or the C library does not load. Never prompts.
 */
export function fastPathProblem(): string | undefined {
  const p = platformProblem({ os: Deno.build.os, arch: Deno.build.arch });
  if (p) return p;
  let state: Deno.PermissionState;
  try {
    state = Deno.permissions.querySync({ name: "ffi" }).state;
  } catch (e) {
    return `cannot query the ffi permission: ${(e as Error).message}`;
  }
  if (state !== "granted") return "the ffi permission is not granted (run with --allow-ffi, or -A)";
  try {
    loadLibc();
  } catch (e) {
    return `cannot load the C library through FFI: ${(e as Error).message}`;
  }
  return undefined;
}

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

/** The C library, loaded on first use (once per thread: each worker has its own module instance). */
export function loadLibc(): LibcSymbols {
  if (!lib) {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
    const p = lib.symbols.__errno_location();
    if (p === null) throw new Error("__errno_location() returned NULL");
    // errno is per thread; this module instance only ever runs on the thread that loaded it.
    errnoView = new Deno.UnsafePointerView(p);
  }
  return lib.symbols;
}

/** The calling thread's errno: read it right after a call that returned -1. */
export function errno(): number {
  return errnoView!.getInt32(0);
}

/** A buffer handed to the C library: its bytes, a DataView, and its address (as a bigint, and as two u32 halves). */
export interface CBuffer {
  /** The bytes. */
  bytes: Uint8Array;
  /** A DataView of the same bytes. */
  view: DataView;
  /** The address of byte 0. */
  address: bigint;
  /** Low 32 bits of the address. */
  lo: number;
  /** High 32 bits of the address. */
  hi: number;
}

/** A zeroed `ArrayBuffer` of `size` bytes (outside the garbage-collected heap, never moved) and its address. */
export function cBuffer(size: number): CBuffer {
  const buf = new ArrayBuffer(size);
  const bytes = new Uint8Array(buf);
  const ptr = Deno.UnsafePointer.of(bytes);
  if (ptr === null) throw new Error(`could not take the address of a ${size}-byte buffer`);
  const address = BigInt(Deno.UnsafePointer.value(ptr));
  return { bytes, view: new DataView(buf), address, lo: Number(address & 0xffffffffn), hi: Number(address >> 32n) };
}

/**
 * Writes the address `buf + offset` as a little-endian u64 at `at` in `view`,
 * without allocating (`offset` at most the buffer's size).
 */
export function setPointer(view: DataView, at: number, buf: CBuffer, offset: number): void {
  const lo = buf.lo + offset; // < 2^33: exact
  const carry = lo >= 0x100000000 ? 1 : 0;
  view.setUint32(at, lo - carry * 0x100000000, true);
  view.setUint32(at + 4, buf.hi + carry, true);
}

/** Writes a length (a non-negative integer below 2^32) as a little-endian u64, without allocating. */
export function setLength(view: DataView, at: number, length: number): void {
  view.setUint32(at, length, true);
  view.setUint32(at + 4, 0, true);
}
