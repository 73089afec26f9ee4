/**
 * The fast datagram path: plain POSIX UDP sockets driven through Deno FFI,
 * and the event loop that runs them together with a clock, so that one
 * thread (the main thread, or a media worker) hosts many sessions — their
 * sockets, their chains and their pacing — without one Deno op per datagram.
 *
 * - {@linkcode MediaLoop}: one `epoll` instance, one `timerfd`, one timer heap
 *   ({@linkcode LoopClock}), and the sockets bound through its
 *   {@linkcode MediaLoop.network}. Each turn drains every ready socket with
 *   `recvmmsg` (up to `batch` datagrams a call), runs the timers due, and
 *   sends what was posted with `sendmmsg` (one call per socket and turn).
 * - {@linkcode FastUdpSocket}: a {@linkcode DatagramSocket} with the
 *   semantics of `UdpSocket` (ordered sends, `post` with a listener, `listen`
 *   with `maxSize`/`onOversize`/`onError`, IPv4, IPv6 and dual-stack `::`,
 *   `close` freeing the port at once, {@linkcode AddressInUseError}); ICMP
 *   errors are read from the socket's error queue (`IP_RECVERR`,
 *   `IPV6_RECVERR`) and a port-unreachable reaches `onError` as a
 *   {@linkcode PortUnreachableError} naming the destination.
 *
 * **How the loop waits.** When something is ready it runs a turn at once
 * (turns follow each other through `setImmediate`, so promise continuations
 * and other tasks run between them). When nothing is ready:
 * - if the next timer is due within `fineWaitMs` (default 2 ms), it blocks on
 *   its own thread in one `epoll_pwait2` whose timeout is the time left, to
 *   the nanosecond (the `timerfd` armed at the due time and `epoll_wait` where
 *   the C library or the kernel lacks it); the time or any socket wakes it
 *   directly (one thread wake-up, like a GStreamer sink waiting on its clock).
 *   The thread's other tasks (Deno's own I/O, messages) wait meanwhile, at
 *   most `fineWaitMs`. The loop sets its thread's timer slack to 1 µs;
 * - if datagrams arrived within the last `fineWaitMs`, it also waits on its
 *   own thread, for at most `fineWaitMs` (under steady traffic the next one
 *   is near: this saves the park's op and its extra thread wake-up);
 * - otherwise it *parks*: the same `epoll_wait` runs on a thread of Deno's
 *   blocking pool (`nonblocking` FFI) while this thread's event loop sleeps
 *   and serves everything else; the `timerfd`, armed `fineWaitMs` before the
 *   next due time, or a socket ends the park. One Deno op per park, not per
 *   datagram. A timer scheduled earlier, a new listener, or the last live
 *   thing going away re-arms the `timerfd` and so ends a park at once.
 *
 * The loop keeps its thread (or process) alive only while a socket listens,
 * a send waits for room, or a timer is live, like pending `Deno` ops would.
 * It works on the main thread and inside a Web Worker (each worker has its
 * own loop); {@linkcode MediaLoop.close} before terminating a worker, else its
 * sockets stay open.
 *
 * **Memory safety.** Every struct handed to the C library lives in an
 * `ArrayBuffer` the loop allocated once (outside the garbage-collected heap,
 * never moved, kept for the loop's life), written and read with `DataView`
 * at the x86_64 offsets documented in `_libc.ts`; user data is copied into
 * the loop's send buffer, and received data is copied out before a handler
 * sees it, so no pointer to a caller's array ever reaches the kernel. The
 * parked `epoll_wait` writes into `calloc` memory, so a worker terminated
 * while parked frees nothing that thread can still write to. File
 * descriptors are removed from the epoll set before they are closed, and
 * epoll events carry a socket id (never a descriptor), so a reused
 * descriptor number is never mistaken for a closed socket.
 *
 * Use {@linkcode createFastNetwork} (`fast.ts`) to get a network that falls
 * back to `Deno.listenDatagram` where this path cannot run.
 *
 * @module
 */
import { LoopClock } from "../loop_clock.ts";
import { formatHostPort, type HostPort } from "./address.ts";
import {
  AddressInUseError,
  type DatagramSocket,
  type ListenOptions,
  type Network,
  type PacketHandler,
  PortUnreachableError,
  type SendListener,
} from "./datagram.ts";
import {
  AF_INET,
  AF_INET6,
  type CBuffer,
  cBuffer,
  CLOCK_MONOTONIC,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_MOD,
  EPOLL_EVENT_SIZE,
  EPOLLERR,
  EPOLLIN,
  EPOLLOUT,
  Errno,
  errno,
  errnoText,
  EV_DATA,
  EV_EVENTS,
  fastPathProblem,
  IOVEC_SIZE,
  IP_RECVERR,
  IPV6_RECVERR,
  IPV6_V6ONLY,
  type LibcSymbols,
  loadLibc,
  MMSGHDR_SIZE,
  MSG_CONTROL,
  MSG_CONTROLLEN,
  MSG_DONTWAIT,
  MSG_ERRQUEUE,
  MSG_FLAGS,
  MSG_IOV,
  MSG_IOVLEN,
  MSG_LEN,
  MSG_NAME,
  MSG_NAMELEN,
  MSG_TRUNC,
  MSGHDR_SIZE,
  PR_SET_TIMERSLACK,
  setLength,
  setPointer,
  SO_EE_ORIGIN_ICMP,
  SO_EE_ORIGIN_ICMP6,
  SO_RCVBUF,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SysError,
  TFD_CLOEXEC,
  TFD_NONBLOCK,
  TFD_TIMER_ABSTIME,
} from "./_libc.ts";
import { type IpBytes, parseIp, readSockaddr, writeSockaddr } from "./_sockaddr.ts";
import { PacketQueue } from "./packet_queue.ts";
import { NativePacer, type PacerSettings, type PacerStats } from "./_pacer.ts";

export type { PacerSettings, PacerStats };

export { LoopClock } from "../loop_clock.ts";

/** Options of a {@linkcode MediaLoop}. */
export interface MediaLoopOptions {
  /** Datagrams per `recvmmsg`/`sendmmsg` call, 1..1024 (default 64). */
  batch?: number;
  /**
   * How long before a timer's due time the loop stops parking and waits on
   * its own thread, in ms, 0..50 (default 2). Larger: more precise under CPU
   * contention, but the thread's other tasks wait up to that long.
   */
  fineWaitMs?: number;
  /**
   * How a fine wait blocks: `"epoll_pwait2"` (default; one call with the time left as its timeout, where the C
   * library and the kernel have it, else the `timerfd`) or `"timerfd"` (arm the loop's `timerfd` at the due time,
   * `epoll_wait`, read the `timerfd`: three calls).
   */
  fineWaitWith?: "epoll_pwait2" | "timerfd";
  /** `SO_RCVBUF` of each socket in bytes (the kernel doubles it and caps it at `net.core.rmem_max`); default: the kernel's. */
  receiveBufferBytes?: number;
  /** `SO_SNDBUF` of each socket in bytes (capped at `net.core.wmem_max`); default: the kernel's. */
  sendBufferBytes?: number;
  /** `recvmmsg` calls per ready socket and turn, before the loop moves on to the others (default 4). */
  maxBatchesPerSocket?: number;
  /**
   * How long before a timer's due time a fine wait stops sleeping and spins on the clock instead, in ms,
   * 0..`fineWaitMs` (default 0: never spins). A thread that sleeps lets its CPU idle, and on a virtual machine
   * whose host is busy an idle virtual CPU can take milliseconds to run again: a spin keeps it running through the
   * due time. Datagrams that arrive during a spin are read when it ends. Costs the CPU time spun, at most
   * `spinBudget` of a core.
   */
  spinMs?: number;
  /**
   * The most CPU the spins may take, as a share of one core, 0..1 (default 0.5): spinning earns time at that rate
   * (up to a reserve of {@linkcode SPIN_RESERVE_MS}) and a fine wait that finds none left sleeps to its due time.
   */
  spinBudget?: number;
  /**
   * The native pacer (opt-in; `native/pacer.c`, built by `scripts/setup.sh`): a thread of its own that sends the
   * datagrams a paced sink posts with `postAt`, at their due times, so that what this loop's thread is doing at
   * a due time does not move the packet on the wire. The sink hands each packet over `leadMs` early. The loop
   * throws when the library is not built (see {@linkcode FastUdpSocket.timedLeadMs}).
   */
  pacer?: PacerSettings;
}

/** How much unspent spinning time (ms) a {@linkcode MediaLoop} keeps, so its spinning is spread over time. */
export const SPIN_RESERVE_MS = 5;

/** Counters of a {@linkcode MediaLoop}, from {@linkcode MediaLoop.stats}. */
export interface MediaLoopStats {
  /** Sockets open. */
  sockets: number;
  /** Sockets the loop waits on (listening, or waiting for room to send). */
  active: number;
  /** Turns run. */
  turns: number;
  /** Times the loop parked its wait on a thread of Deno's blocking pool. */
  parks: number;
  /** Times it waited on its own thread for a timer due within `fineWaitMs`. */
  fineWaits: number;
  /** Times it waited on its own thread (at most `fineWaitMs`) because datagrams had just arrived. */
  busyWaits: number;
  /** Fine waits that ended in a spin (`spinMs`). */
  spins: number;
  /** Time spent spinning, ms. */
  spunMs: number;
  /** The longest single spin, ms (a spin the thread was preempted in counts the preemption). */
  longestSpinMs: number;
  /** Datagrams received (handed to listeners, dropped for want of one, or oversize). */
  received: number;
  /** `recvmmsg` calls that returned datagrams. */
  receiveCalls: number;
  /** Datagrams sent. */
  sent: number;
  /** `sendmmsg` calls that sent datagrams. */
  sendCalls: number;
  /** Timers run. */
  timers: number;
  /** Errors read from the sockets' error queues (ICMP and local). */
  queuedErrors: number;
  /**
   * `epoll_ctl` calls: its timer added to its epoll set, a socket added, or the events a socket is watched for
   * changed.
   */
  epollChanges: number;
}

const TIMER_ID = 1;
const MAX_EVENTS = 256;
const NAME_SLOT = 32; // room for a sockaddr_in6 (28), 8-aligned
const SEND_ARENA = 256 * 1024;
const MAX_DATAGRAM = 65535;
const MAX_CONSECUTIVE_ERRORS = 100;
/** Never wake a hair early: the timerfd is armed this much after the due time (ms). */
const ARM_SLACK_MS = 0.002;

/** A listener with its resolved size limit. */
interface Listener extends ListenOptions {
  handler: PacketHandler;
  maxSize: number;
}

/** A datagram held while a handler's promise pauses the socket. */
interface Held {
  data: Uint8Array;
  remote: HostPort;
}

/** A socket's state, owned by its loop. */
/** How the sends of one flush went: listener and result (bytes sent, or the error) pairs, kept for reuse. */
class SendResults {
  #listeners: (SendListener | undefined)[] = [];
  #results: (number | Error | undefined)[] = [];
  length = 0;

  add(l: SendListener, r: number | Error): void {
    this.#listeners[this.length] = l;
    this.#results[this.length++] = r;
  }

  listener(i: number): SendListener {
    return this.#listeners[i]!;
  }

  result(i: number): number | Error {
    return this.#results[i]!;
  }

  /** Drops the references; the storage stays. */
  clear(): void {
    for (let i = 0; i < this.length; i++) this.#listeners[i] = this.#results[i] = undefined;
    this.length = 0;
  }
}

class Sock {
  readonly id: number;
  readonly fd: number;
  readonly family: 4 | 6;
  readonly local: HostPort;
  listener: Listener | undefined;
  closed = false;
  paused = false;
  failed = false;
  waitingOut = false;
  dirty = false;
  interest = 0;
  /** In the loop's epoll set (added at its first interest). */
  registered = false;
  /**
   * The events the epoll set watches for it: `interest` or more. Dropping interest changes nothing in the kernel
   * until an event it no longer wants arrives (#dispatch then narrows it): a call's sockets stop listening and close
   * at once, and closing takes them out of the set.
   */
  armed = 0;
  errors = 0;
  held: Held[] = [];
  readonly queue = new PacketQueue<SendListener | undefined>();
  lastTo: HostPort | undefined;
  lastHost = "";
  lastPort = -1;
  lastIp: IpBytes | undefined;

  constructor(id: number, fd: number, family: 4 | 6, local: HostPort) {
    this.id = id;
    this.fd = fd;
    this.family = family;
    this.local = local;
  }

  get backlog(): number {
    return this.queue.length;
  }
}

type CBuf = CBuffer;

/** The loop itself; {@linkcode MediaLoop} is its public face. */
class Core {
  readonly lib: LibcSymbols;
  readonly clock: LoopClock;
  readonly batch: number;
  readonly fineWaitMs: number;
  readonly spinMs: number;
  readonly spinBudget: number;
  /** The native pacer thread, when asked for. */
  pacer: NativePacer | undefined;
  readonly #pacerAddr = new Uint8Array(NAME_SLOT);
  readonly #pacerAddrView = new DataView(this.#pacerAddr.buffer);
  /** Spinning time earned and not spent, ms (negative: a spin overran it, to be earned back first). */
  #spinCredit = SPIN_RESERVE_MS;
  #spinEarnedAt = performance.now();
  readonly rcvbuf: number | undefined;
  readonly sndbuf: number | undefined;
  readonly maxBatches: number;
  readonly ep: number;
  readonly tfd: number;
  readonly sockets = new Map<number, Sock>();
  #nextId = TIMER_ID + 1;
  #active = 0;
  #state: "idle" | "scheduled" | "turn" | "parked" = "idle";
  #closed = false;
  #released = false;
  readonly #owned: Owned;
  #parkDone: (() => void) | undefined;
  #armedAt = Infinity;
  #busyUntil = 0;
  #monoOffsetMs = 0;
  // Sockets with datagrams posted since the last flush, and a second list to swap in while flushing: both keep
  // their storage (an array emptied with length = 0 drops it), so a flush per paced packet allocates nothing.
  #dirty: (Sock | undefined)[] = [];
  #dirtyCount = 0;
  #spare: (Sock | undefined)[] = [];
  /** Results lists of `#send`, reused. */
  readonly #sendResults: SendResults[] = [];
  #flushQueued = false;
  readonly stats: MediaLoopStats = {
    sockets: 0,
    active: 0,
    turns: 0,
    parks: 0,
    fineWaits: 0,
    busyWaits: 0,
    spins: 0,
    spunMs: 0,
    longestSpinMs: 0,
    received: 0,
    receiveCalls: 0,
    sent: 0,
    sendCalls: 0,
    timers: 0,
    queuedErrors: 0,
    epollChanges: 0,
  };

  // Buffers handed to the C library (see the module comment). All allocated here, kept for the loop's life.
  readonly #events = cBuffer(MAX_EVENTS * EPOLL_EVENT_SIZE);
  readonly #parkEvents: Deno.PointerObject; // calloc'd: written by the parked epoll_wait on another thread
  readonly #parkView: Deno.UnsafePointerView;
  readonly #itimer = cBuffer(32);
  readonly #timespec = cBuffer(16);
  /** Fine waits use `epoll_pwait2` (until the kernel says ENOSYS). */
  #pwait2 = true;
  readonly #u64 = cBuffer(8);
  readonly #ctl = cBuffer(EPOLL_EVENT_SIZE);
  readonly #int = cBuffer(4);
  readonly #len = cBuffer(4);
  readonly #addr = cBuffer(NAME_SLOT);
  // receive
  readonly #rxMsgs: CBuf;
  readonly #rxIov: CBuf;
  readonly #rxNames: CBuf;
  #rxData: CBuf;
  #rxStride: number;
  #rxIovLen = -1;
  #rxUsed: number; // slots whose msg_namelen the last call may have changed
  // send
  readonly #txMsgs: CBuf;
  readonly #txIov: CBuf;
  readonly #txNames: CBuf;
  readonly #txData = cBuffer(SEND_ARENA);
  // error queue
  readonly #errMsg = cBuffer(MSGHDR_SIZE);
  readonly #errIov = cBuffer(IOVEC_SIZE);
  readonly #errName = cBuffer(NAME_SLOT);
  readonly #errData = cBuffer(64);
  readonly #errControl = cBuffer(512);

  constructor(opts: MediaLoopOptions) {
    this.lib = loadLibc();
    const batch = opts.batch ?? 64;
    if (!Number.isInteger(batch) || batch < 1 || batch > 1024) {
      throw new RangeError(`MediaLoop batch: expected an integer 1..1024, got ${batch}`);
    }
    const fine = opts.fineWaitMs ?? 2;
    if (!(fine >= 0 && fine <= 50)) throw new RangeError(`MediaLoop fineWaitMs: expected 0..50 ms, got ${fine}`);
    const spin = opts.spinMs ?? 0;
    if (!(spin >= 0 && spin <= fine)) {
      throw new RangeError(`MediaLoop spinMs: expected 0..fineWaitMs (${fine}) ms, got ${spin}`);
    }
    const spinBudget = opts.spinBudget ?? 0.5;
    if (!(spinBudget >= 0 && spinBudget <= 1)) {
      throw new RangeError(`MediaLoop spinBudget: expected a share of one core, 0..1, got ${spinBudget}`);
    }
    const maxBatches = opts.maxBatchesPerSocket ?? 4;
    if (!Number.isInteger(maxBatches) || maxBatches < 1) {
      throw new RangeError(`MediaLoop maxBatchesPerSocket: expected an integer >= 1, got ${maxBatches}`);
    }
    for (
      const [name, v] of [["receiveBufferBytes", opts.receiveBufferBytes], ["sendBufferBytes", opts.sendBufferBytes]]
    ) {
      if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 1024 && (v as number) <= 2 ** 30)) {
        throw new RangeError(`MediaLoop ${name}: expected an integer 1024..2^30, got ${v}`);
      }
    }
    if (opts.fineWaitWith !== undefined && opts.fineWaitWith !== "epoll_pwait2" && opts.fineWaitWith !== "timerfd") {
      throw new RangeError(`MediaLoop fineWaitWith: expected "epoll_pwait2" or "timerfd", got ${opts.fineWaitWith}`);
    }
    this.#pwait2 = opts.fineWaitWith !== "timerfd";
    this.batch = batch;
    this.fineWaitMs = fine;
    this.spinMs = spin;
    this.spinBudget = spinBudget;
    this.maxBatches = maxBatches;
    this.rcvbuf = opts.receiveBufferBytes;
    this.sndbuf = opts.sendBufferBytes;
    this.clock = new LoopClock({
      timersChanged: (due) => this.#timersChanged(due),
      // What a timer posted (a paced packet) leaves before the next timer runs, not after the whole batch.
      afterTimer: () => {
        if (this.#dirtyCount > 0) this.#flush();
      },
    });

    this.#rxMsgs = cBuffer(batch * MMSGHDR_SIZE);
    this.#rxIov = cBuffer(batch * IOVEC_SIZE);
    this.#rxNames = cBuffer(batch * NAME_SLOT);
    this.#rxStride = 2048;
    this.#rxData = cBuffer(batch * this.#rxStride);
    this.#rxUsed = batch;
    this.#txMsgs = cBuffer(batch * MMSGHDR_SIZE);
    this.#txIov = cBuffer(batch * IOVEC_SIZE);
    this.#txNames = cBuffer(batch * NAME_SLOT);
    for (let i = 0; i < batch; i++) {
      for (
        const [msgs, iov, names] of [[this.#rxMsgs, this.#rxIov, this.#rxNames], [
          this.#txMsgs,
          this.#txIov,
          this.#txNames,
        ]]
      ) {
        const m = i * MMSGHDR_SIZE;
        setPointer(msgs.view, m + MSG_NAME, names, i * NAME_SLOT);
        msgs.view.setUint32(m + MSG_NAMELEN, NAME_SLOT, true);
        setPointer(msgs.view, m + MSG_IOV, iov, i * IOVEC_SIZE);
        setLength(msgs.view, m + MSG_IOVLEN, 1);
        // msg_control NULL, msg_controllen 0 (zeroed)
      }
    }
    this.#pointRxIovs();
    {
      const v = this.#errMsg.view;
      setPointer(v, MSG_NAME, this.#errName, 0);
      setPointer(v, MSG_IOV, this.#errIov, 0);
      setLength(v, MSG_IOVLEN, 1);
      setPointer(v, MSG_CONTROL, this.#errControl, 0);
      setPointer(this.#errIov.view, 0, this.#errData, 0);
      setLength(this.#errIov.view, 8, this.#errData.bytes.length);
    }

    const lib = this.lib;
    const parked = lib.calloc(BigInt(MAX_EVENTS), BigInt(EPOLL_EVENT_SIZE));
    if (parked === null) throw new Error("MediaLoop: calloc failed");
    this.#parkEvents = parked;
    this.#parkView = new Deno.UnsafePointerView(parked);
    const ep = lib.epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
      lib.free(parked);
      throw new SysError("epoll_create1", errno(), "MediaLoop");
    }
    const tfd = lib.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
      const e = errno();
      lib.close(ep);
      lib.free(parked);
      throw new SysError("timerfd_create", e, "MediaLoop");
    }
    this.ep = ep;
    this.tfd = tfd;
    this.#owned = { lib, ep, tfd, park: parked, fds: new Set() };
    forgotten.register(this, this.#owned, this);
    this.#ctlSet(EPOLL_CTL_ADD, tfd, TIMER_ID, EPOLLIN, "MediaLoop timerfd");
    // The thread's timed waits end within 1 µs of their time instead of the default 50 µs of slack: the loop paces
    // packets with them. Best effort: a refusal leaves the default.
    lib.prctl(PR_SET_TIMERSLACK, 1000n, 0n, 0n, 0n);
    this.#calibrate();
    if (opts.pacer) {
      try {
        this.pacer = new NativePacer(opts.pacer, this.#monoOffsetMs);
        this.#owned.pacer = this.pacer;
      } catch (e) {
        this.#release();
        throw e;
      }
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- time ------------------------------------------------------------------------------------

  /** CLOCK_MONOTONIC − performance.now(), in ms: the closest of a few paired readings. */
  #calibrate(): void {
    let best = Infinity;
    const v = this.#timespec.view;
    for (let i = 0; i < 7; i++) {
      const a = performance.now();
      this.lib.clock_gettime(CLOCK_MONOTONIC, this.#timespec.bytes);
      const b = performance.now();
      const mono = Number(v.getBigInt64(0, true)) * 1000 + Number(v.getBigInt64(8, true)) / 1e6;
      if (b - a < best) {
        best = b - a;
        this.#monoOffsetMs = mono - (a + b) / 2;
      }
    }
  }

  /** Arms the timerfd to fire at `target` (performance.now() ms); Infinity disarms it. */
  #arm(target: number): void {
    if (target === this.#armedAt) return;
    this.#armedAt = target;
    const v = this.#itimer.view;
    if (target === Infinity) {
      setLength(v, 16, 0); // it_value 0: disarmed
      setLength(v, 24, 0);
    } else {
      // Monotonic ns as a double: exact to the ns for 104 days of uptime, to a few ns after (irrelevant here).
      const ns = Math.max(1, Math.ceil((target + ARM_SLACK_MS + this.#monoOffsetMs) * 1e6));
      const sec = Math.floor(ns / 1e9);
      setLength(v, 16, sec);
      setLength(v, 24, ns - sec * 1e9);
    }
    if (this.lib.timerfd_settime(this.tfd, TFD_TIMER_ABSTIME, this.#itimer.bytes, null) < 0) {
      throw new SysError("timerfd_settime", errno(), "MediaLoop");
    }
  }

  #timersChanged(due: number | undefined): void {
    if (this.#closed) return;
    if (due === undefined) {
      this.#maybeIdle();
      return;
    }
    if (this.#state === "idle") this.#kick();
    else if (this.#state === "parked") {
      const target = due - this.fineWaitMs;
      if (target < this.#armedAt) this.#arm(target); // ends the park when it is past
    }
  }

  // ---- driving ---------------------------------------------------------------------------------

  #live(): boolean {
    return this.#active > 0 || this.clock.live > 0;
  }

  #kick(): void {
    if (this.#closed || this.#state !== "idle") return;
    this.#state = "scheduled";
    setImmediate(this.#turn);
  }

  /** Nothing may be live any more: end a park, so the thread can finish. */
  #maybeIdle(): void {
    if (this.#state === "parked" && !this.#live()) this.#arm(performance.now() - 1);
  }

  /** One turn: a task of its own, so the microtask queue is empty when it may block. */
  #turn = (): void => {
    if (this.#closed) {
      this.#state = "idle";
      this.#release();
      return;
    }
    this.#state = "turn";
    this.stats.turns++;
    let again = true;
    try {
      this.#flush();
      if (!this.#live()) {
        again = false;
        return;
      }
      const now = performance.now();
      const due = this.clock.nextDue();
      let n: number;
      if (due !== undefined && due <= now) {
        n = this.#wait(0);
      } else if (due !== undefined && due - now <= this.fineWaitMs) {
        this.stats.fineWaits++;
        n = this.#waitUntil(due, now);
      } else {
        n = this.#wait(0);
        // Datagrams kept coming: the next one is likely near, so wait for it here (at most fineWaitMs, and never
        // past the start of the next timer's fine wait) rather than pay for a park.
        const ms = n === 0 ? Math.floor(Math.min(this.#busyUntil, (due ?? Infinity) - this.fineWaitMs) - now) : 0;
        if (ms >= 1) {
          this.stats.busyWaits++;
          n = this.#wait(ms);
        }
        if (n === 0) {
          again = false;
          this.#park(due);
          return;
        }
      }
      this.#dispatch(n);
      this.#runTimers();
      this.#flush();
    } finally {
      this.#endTurn(again);
    }
  };

  /** After a turn (unless it parked): the next one, or idle; releases the descriptors of a loop closed meanwhile. */
  #endTurn(again: boolean): void {
    const state: string = this.#state;
    if (state === "parked") return;
    if (again && !this.#closed) {
      this.#state = "scheduled";
      setImmediate(this.#turn);
      return;
    }
    this.#state = "idle";
    if (this.#closed) this.#release();
  }

  #runTimers(): void {
    if (this.#closed) return;
    this.stats.timers += this.clock.runDue(performance.now());
  }

  /** Synchronous `epoll_wait` into the loop's event buffer; -1 blocks until an event. Returns the event count. */
  #wait(timeout: number): number {
    const n = this.lib.epoll_wait(this.ep, this.#events.bytes, MAX_EVENTS, timeout);
    if (n < 0) {
      const e = errno();
      if (e === Errno.EINTR) return 0;
      throw new SysError("epoll_wait", e, "MediaLoop");
    }
    return n;
  }

  /**
   * Waits on this thread until `due` (performance.now() ms) or an event: sleeps ({@linkcode Core.#sleepUntil}),
   * and with `spinMs` sleeps only until that long before `due` and spins the rest, while the budget allows.
   */
  #waitUntil(due: number, now: number): number {
    if (this.spinMs > 0) {
      this.#spinCredit = Math.min(SPIN_RESERVE_MS, this.#spinCredit + (now - this.#spinEarnedAt) * this.spinBudget);
      this.#spinEarnedAt = now;
      if (this.#spinCredit > 0) {
        const from = due - this.spinMs;
        if (from > now) {
          const n = this.#sleepUntil(from, now);
          if (n !== 0) return n; // a datagram (or the timerfd): the turn handles it, the next one waits again
        }
        const start = performance.now();
        let t = start;
        while (t < due) t = performance.now();
        const spun = t - start;
        this.#spinCredit -= spun;
        this.stats.spins++;
        this.stats.spunMs += spun;
        if (spun > this.stats.longestSpinMs) this.stats.longestSpinMs = spun;
        return 0;
      }
    }
    return this.#sleepUntil(due, now);
  }

  /**
   * Blocks on this thread until `due` (performance.now() ms) or an event: one `epoll_pwait2` with the time left
   * where the C library and the kernel have it, else the `timerfd` armed at `due` and `epoll_wait`.
   */
  #sleepUntil(due: number, now: number): number {
    const pwait2 = this.#pwait2 ? this.lib.epoll_pwait2 : null;
    if (pwait2) {
      const ns = Math.max(1, Math.ceil((due - now + ARM_SLACK_MS) * 1e6)); // < 50 ms: exact in a double
      const v = this.#timespec.view;
      const sec = Math.floor(ns / 1e9);
      setLength(v, 0, sec);
      setLength(v, 8, ns - sec * 1e9);
      const n = pwait2(this.ep, this.#events.bytes, MAX_EVENTS, this.#timespec.bytes, null);
      if (n >= 0) return n;
      const e = errno();
      if (e === Errno.EINTR) return 0;
      if (e !== Errno.ENOSYS) throw new SysError("epoll_pwait2", e, "MediaLoop");
      this.#pwait2 = false; // the kernel predates it (Linux < 5.11): the timerfd from now on
    }
    this.#arm(due);
    return this.#wait(-1);
  }

  #park(due: number | undefined): void {
    this.#arm(due === undefined ? Infinity : due - this.fineWaitMs);
    this.#state = "parked";
    this.stats.parks++;
    this.lib.epoll_wait_parked(this.ep, this.#parkEvents, MAX_EVENTS, -1).then(this.#unparked, this.#unparked);
  }

  #unparked = (result: number | unknown): void => {
    if (this.#closed) {
      this.#state = "idle";
      if (this.#parkDone) this.#parkDone(); // close() releases
      else this.#release();
      return;
    }
    this.#state = "turn";
    let n = typeof result === "number" && result > 0 ? result : 0;
    try {
      if (n > 0) {
        n = Math.min(n, MAX_EVENTS);
        this.#parkView.copyInto(this.#events.bytes.subarray(0, n * EPOLL_EVENT_SIZE));
        this.#dispatch(n);
      }
      this.#runTimers();
      this.#flush();
    } finally {
      this.#endTurn(true);
    }
  };

  /** Handles `n` events from the loop's event buffer. */
  #dispatch(n: number): void {
    const v = this.#events.view;
    let busy = false;
    for (let i = 0; i < n && !this.#closed; i++) {
      const off = i * EPOLL_EVENT_SIZE;
      const ev = v.getUint32(off + EV_EVENTS, true);
      const id = v.getUint32(off + EV_DATA, true);
      if (id === TIMER_ID) {
        this.lib.read(this.tfd, this.#u64.bytes, 8n); // clears it (EAGAIN if re-armed meanwhile: fine)
        if (performance.now() >= this.#armedAt) this.#armedAt = Infinity; // it fired: disarmed now
        continue;
      }
      const s = this.sockets.get(id);
      if (!s) continue; // closed since
      busy = true;
      if (ev & ~s.interest & (EPOLLIN | EPOLLOUT)) {
        // Armed for more than it wants now (see Sock.armed): narrowed, and what it no longer wants stays queued.
        this.#ctlSet(EPOLL_CTL_MOD, s.fd, s.id, s.interest, s);
        s.armed = s.interest;
      }
      if (ev & EPOLLERR) this.#drainErrors(s);
      if ((ev & EPOLLIN) && (s.interest & EPOLLIN) && !s.closed) this.#receive(s);
      if ((ev & EPOLLOUT) && !s.closed && s.waitingOut) {
        s.waitingOut = false;
        this.#send(s);
        this.#updateInterest(s);
      }
    }
    if (busy && this.fineWaitMs > 0) this.#busyUntil = performance.now() + this.fineWaitMs;
  }

  // ---- sockets -------------------------------------------------------------------------------

  #ctlSet(op: number, fd: number, id: number, events: number, what: string | Sock): void {
    const v = this.#ctl.view;
    v.setUint32(EV_EVENTS, events, true);
    v.setUint32(EV_DATA, id, true);
    v.setUint32(EV_DATA + 4, 0, true);
    this.stats.epollChanges++;
    if (this.lib.epoll_ctl(this.ep, op, fd, this.#ctl.bytes) < 0) {
      throw new SysError("epoll_ctl", errno(), typeof what === "string" ? what : `UDP ${formatHostPort(what.local)}`);
    }
  }

  #setInt(fd: number, level: number, name: number, value: number, what: string): void {
    this.#int.view.setInt32(0, value, true);
    if (this.lib.setsockopt(fd, level, name, this.#int.bytes, 4) < 0) throw new SysError("setsockopt", errno(), what);
  }

  bind(hostname: string, port: number): Sock {
    if (this.#closed) throw new Error("cannot bind: the media loop is closed");
    const where = formatHostPort({ hostname, port });
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(`cannot bind UDP ${where}: the port must be an integer 0..65535`);
    }
    const ip = parseIp(hostname);
    if (!ip) {
      throw new Error(
        `cannot bind UDP ${where}: "${hostname}" is not an IP address (give a local IP literal, e.g. 0.0.0.0, ::, 127.0.0.1)`,
      );
    }
    const family: 4 | 6 = ip.bytes.length === 16 ? 6 : 4;
    const lib = this.lib;
    const fd = lib.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SysError("socket", errno(), `cannot bind UDP ${where}`);
    let sock: Sock | undefined;
    try {
      const what = `cannot bind UDP ${where}`;
      if (family === 6) {
        this.#setInt(fd, SOL_IPV6, IPV6_V6ONLY, 0, what); // `::` takes IPv4 too (IPv4-mapped)
        this.#setInt(fd, SOL_IPV6, IPV6_RECVERR, 1, what);
      }
      this.#setInt(fd, SOL_IP, IP_RECVERR, 1, what); // ICMP errors (IPv4, and IPv4-mapped on `::`) to the error queue
      if (this.rcvbuf !== undefined) this.#setInt(fd, SOL_SOCKET, SO_RCVBUF, this.rcvbuf, what);
      if (this.sndbuf !== undefined) this.#setInt(fd, SOL_SOCKET, SO_SNDBUF, this.sndbuf, what);
      const len = writeSockaddr(this.#addr.view, 0, ip, port, family);
      if (lib.bind(fd, this.#addr.bytes, len) < 0) {
        const e = errno();
        if (e === Errno.EADDRINUSE) {
          throw new AddressInUseError(`${what}: the port is already in use (choose another port, or 0)`, {
            cause: new SysError("bind", e),
          });
        }
        if (e === Errno.EADDRNOTAVAIL) {
          throw new Error(`${what}: ${hostname} is not an address of this host`, { cause: new SysError("bind", e) });
        }
        throw new SysError("bind", e, what);
      }
      // The address bound is the one given, unless the kernel chose the port (0): only then ask it.
      if (port === 0) {
        this.#len.view.setUint32(0, NAME_SLOT, true);
        this.#addr.bytes.fill(0);
        if (lib.getsockname(fd, this.#addr.bytes, this.#len.bytes) < 0) {
          throw new SysError("getsockname", errno(), what);
        }
      }
      const local = readSockaddr(this.#addr.view, 0);
      if (!local) throw new Error(`${what}: getsockname() returned an unexpected address family`);
      // Registered with the epoll set at its first interest (#updateInterest): a socket that never listens nor waits
      // to send costs no epoll_ctl.
      sock = new Sock(this.#nextId++, fd, family, local);
    } catch (e) {
      lib.close(fd);
      throw e;
    }
    this.sockets.set(sock.id, sock);
    this.#owned.fds.add(sock.fd);
    this.stats.sockets++;
    return sock;
  }

  listen(s: Sock, handler: PacketHandler, opts: ListenOptions): () => void {
    const maxSize = opts.maxSize ?? 1500;
    if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > MAX_DATAGRAM) {
      throw new RangeError(`listen maxSize: expected an integer 1..${MAX_DATAGRAM}, got ${maxSize}`);
    }
    const l: Listener = { ...opts, handler, maxSize };
    if (s.closed) return () => {};
    s.listener = l;
    s.failed = false;
    s.errors = 0;
    this.#updateInterest(s);
    return () => {
      if (s.listener === l) {
        s.listener = undefined;
        s.held.length = 0;
        if (!s.closed) this.#updateInterest(s);
      }
    };
  }

  #updateInterest(s: Sock): void {
    if (s.closed) return;
    const want = (s.listener && !s.paused && !s.failed ? EPOLLIN : 0) | (s.waitingOut ? EPOLLOUT : 0);
    if (want === s.interest) return;
    if (want & ~s.armed) {
      // More than the set watches for it (or not in the set yet): the kernel must know now. Less waits (Sock.armed).
      this.#ctlSet(s.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s.fd, s.id, want, s);
      s.registered = true;
      s.armed = want;
    }
    const was = s.interest;
    s.interest = want;
    if (was === 0) {
      this.#active++;
      this.#kick();
    } else if (want === 0) {
      this.#active--;
      this.#maybeIdle();
    }
    this.stats.active = this.#active;
  }

  closeSocket(s: Sock): void {
    if (s.closed) return;
    s.closed = true;
    s.listener = undefined;
    s.held.length = 0;
    if (s.interest !== 0) {
      this.#active--;
      this.stats.active = this.#active;
    }
    s.interest = 0;
    // No EPOLL_CTL_DEL: closing the descriptor takes it out of the epoll set (nothing else holds it). A child process
    // forked at this moment holds it until its exec (CLOEXEC), and an event meanwhile names an id no longer in
    // `sockets` (ids are never reused): #dispatch skips it.
    this.pacer?.forget(s.fd); // the pacer holds nothing for the descriptor once this returns
    this.lib.close(s.fd);
    this.#owned.fds.delete(s.fd);
    this.sockets.delete(s.id);
    this.stats.sockets--;
    // What was posted and not sent fails, in order.
    const q = s.queue;
    const failures = new SendResults();
    for (let i = 0; i < q.length; i++) {
      const l = q.extra(i);
      if (l) failures.add(l, new Error(`UDP ${formatHostPort(s.local)}: socket closed before the datagram was sent`));
    }
    q.clear();
    this.#notify(failures);
    this.#maybeIdle();
  }

  // ---- receiving -----------------------------------------------------------------------------

  #pointRxIovs(): void {
    const v = this.#rxIov.view;
    for (let i = 0; i < this.batch; i++) setPointer(v, i * IOVEC_SIZE, this.#rxData, i * this.#rxStride);
    this.#rxIovLen = -1;
  }

  /** Makes each receive slot take `size` bytes. */
  #rxSlots(size: number): void {
    if (size > this.#rxStride) {
      this.#rxStride = (size + 63) & ~63;
      this.#rxData = cBuffer(this.batch * this.#rxStride); // the old one is no longer referenced by any struct
      this.#pointRxIovs();
    }
    if (size !== this.#rxIovLen) {
      const v = this.#rxIov.view;
      for (let i = 0; i < this.batch; i++) setLength(v, i * IOVEC_SIZE + 8, size);
      this.#rxIovLen = size;
    }
  }

  #receive(s: Sock): void {
    const lib = this.lib;
    const msgs = this.#rxMsgs.view;
    for (let b = 0; b < this.maxBatches; b++) {
      const l = s.listener;
      if (!l || s.paused || s.closed || s.failed) return;
      this.#rxSlots(l.maxSize + 1);
      for (let i = 0; i < this.#rxUsed; i++) msgs.setUint32(i * MMSGHDR_SIZE + MSG_NAMELEN, NAME_SLOT, true);
      const n = lib.recvmmsg(s.fd, this.#rxMsgs.bytes, this.batch, MSG_DONTWAIT, null);
      if (n < 0) {
        const e = errno();
        this.#rxUsed = 0;
        if (e === Errno.EAGAIN) return;
        if (isIcmpErrno(e) || e === Errno.EINTR) continue; // an ICMP error's echo: its detail comes from the error queue
        if (++s.errors >= MAX_CONSECUTIVE_ERRORS) {
          s.failed = true;
          this.#updateInterest(s);
          this.#call(() => l.onFatal?.(new SysError("recvmmsg", e, `UDP ${formatHostPort(s.local)}`)));
        } else {
          this.#call(() => l.onError?.(new SysError("recvmmsg", e, `UDP ${formatHostPort(s.local)}`)));
        }
        return;
      }
      s.errors = 0;
      this.#rxUsed = n;
      this.stats.receiveCalls++;
      this.stats.received += n;
      this.#deliverBatch(s, n);
      if (n < this.batch) return;
    }
  }

  /** Hands the `n` datagrams of the receive arena to `s`'s listener, in order. */
  #deliverBatch(s: Sock, n: number): void {
    const msgs = this.#rxMsgs.view;
    const names = this.#rxNames.view;
    const data = this.#rxData.bytes;
    const stride = this.#rxStride;
    let failure: { error: unknown } | undefined;
    for (let i = 0; i < n; i++) {
      const l = s.listener;
      if (!l || s.closed) break; // nobody listens any more: the rest is dropped
      const m = i * MMSGHDR_SIZE;
      const len = msgs.getUint32(m + MSG_LEN, true);
      const remote = readSockaddr(names, i * NAME_SLOT);
      if (!remote) continue;
      if (len > l.maxSize || (msgs.getInt32(m + MSG_FLAGS, true) & MSG_TRUNC) !== 0) {
        try {
          l.onOversize?.(remote);
        } catch (error) {
          failure ??= { error };
        }
        continue;
      }
      const bytes = data.slice(i * stride, i * stride + len);
      if (s.paused) {
        s.held.push({ data: bytes, remote });
        continue;
      }
      try {
        const r = l.handler(bytes, remote);
        if (r && typeof (r as Promise<void>).then === "function") this.#pause(s, l, r as Promise<void>);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) reportError(failure.error);
  }

  /** A handler returned a promise: stop reading `s` until it settles. */
  #pause(s: Sock, l: Listener, p: Promise<void>): void {
    s.paused = true;
    this.#updateInterest(s);
    p.then(() => this.#resume(s), (e) => {
      if (s.listener === l) this.#call(() => l.onError?.(e));
      this.#resume(s);
    });
  }

  #resume(s: Sock): void {
    s.paused = false;
    if (s.closed) return;
    while (s.held.length > 0 && !s.paused) {
      const l = s.listener;
      if (!l) {
        s.held.length = 0;
        break;
      }
      const { data, remote } = s.held.shift()!;
      try {
        const r = l.handler(data, remote);
        if (r && typeof (r as Promise<void>).then === "function") {
          this.#pause(s, l, r as Promise<void>);
          return;
        }
      } catch (error) {
        reportError(error);
      }
    }
    this.#updateInterest(s);
    this.#flush();
  }

  /** Reads `s`'s error queue: ICMP errors for datagrams it sent, and local send errors. */
  #drainErrors(s: Sock): void {
    const v = this.#errMsg.view;
    for (let k = 0; k < 64; k++) {
      v.setUint32(MSG_NAMELEN, NAME_SLOT, true);
      setLength(v, MSG_CONTROLLEN, this.#errControl.bytes.length);
      v.setInt32(MSG_FLAGS, 0, true);
      this.#errName.bytes.fill(0);
      const r = this.lib.recvmsg(s.fd, this.#errMsg.bytes, MSG_ERRQUEUE | MSG_DONTWAIT);
      if (r < 0) {
        const e = errno();
        if (e === Errno.EINTR) continue;
        return; // EAGAIN: drained
      }
      this.stats.queuedErrors++;
      const ee = this.#extendedError(Number(v.getBigUint64(MSG_CONTROLLEN, true)));
      if (!ee) continue;
      const to = readSockaddr(this.#errName.view, 0);
      const l = s.listener;
      if (!l?.onError) continue;
      const icmp = ee.origin === SO_EE_ORIGIN_ICMP || ee.origin === SO_EE_ORIGIN_ICMP6;
      const error = icmp && ee.errno === Errno.ECONNREFUSED ? new PortUnreachableError(to) : new Error(
        `datagram${to ? ` to ${formatHostPort(to)}` : ""} failed: ${errnoText(ee.errno)} (${
          icmp ? `ICMP type ${ee.type} code ${ee.code}` : "local error"
        })`,
      );
      this.#call(() => l.onError!(error));
    }
  }

  /** The `sock_extended_err` among the control messages of the last error-queue read. */
  #extendedError(controlLen: number): { errno: number; origin: number; type: number; code: number } | undefined {
    const c = this.#errControl.view;
    const end = Math.min(controlLen, this.#errControl.bytes.length);
    for (let off = 0; off + 16 <= end;) {
      const len = Number(c.getBigUint64(off, true));
      if (len < 16 || off + len > end) return undefined;
      const level = c.getInt32(off + 8, true), type = c.getInt32(off + 12, true);
      if (
        len >= 32 && ((level === SOL_IP && type === IP_RECVERR) || (level === SOL_IPV6 && type === IPV6_RECVERR))
      ) {
        const d = off + 16;
        return {
          errno: c.getUint32(d, true),
          origin: c.getUint8(d + 4),
          type: c.getUint8(d + 5),
          code: c.getUint8(d + 6),
        };
      }
      off += (len + 7) & ~7;
    }
    return undefined;
  }

  // ---- sending -------------------------------------------------------------------------------

  post(s: Sock, data: Uint8Array, to: HostPort, listener: SendListener | undefined): void {
    if (s.closed) {
      listener?.failed(new Error(`UDP ${formatHostPort(s.local)}: socket closed`));
      return;
    }
    s.queue.push(data, to, listener);
    if (s.dirty || s.waitingOut) return;
    s.dirty = true;
    this.#dirty[this.#dirtyCount++] = s;
    if (this.#state !== "turn" && !this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /**
   * Hands one datagram to the native pacer, to leave at `due` (performance.now() ms); `listener` hears `sent` at
   * once (the bytes are copied). Without a pacer, when it is full, or for a datagram it does not take, this is
   * {@linkcode post}: the datagram leaves now.
   */
  postAt(s: Sock, data: Uint8Array, to: HostPort, due: number, listener: SendListener | undefined): void {
    const p = this.pacer;
    if (p && !s.closed) {
      const len = this.#writeTo(s, to, this.#pacerAddrView, 0);
      if (typeof len === "number" && p.post(s.fd, due, data, this.#pacerAddr, len)) {
        listener?.sent(data.length);
        return;
      }
    }
    this.post(s, data, to, listener);
  }

  #flushTask = (): void => {
    this.#flushQueued = false;
    this.#flush();
  };

  /** Sends what every socket has queued. */
  #flush(): void {
    while (this.#dirtyCount > 0) {
      const list = this.#dirty, n = this.#dirtyCount;
      this.#dirty = this.#spare;
      this.#dirtyCount = 0;
      for (let i = 0; i < n; i++) {
        const s = list[i]!;
        list[i] = undefined;
        s.dirty = false;
        if (!s.closed && !s.waitingOut) this.#send(s);
        if (s.waitingOut) this.#updateInterest(s);
      }
      this.#spare = list;
    }
  }

  /** The destination of a queued datagram as a socket address in send slot `slot`: its length, or an error. */
  #encodeTo(s: Sock, to: HostPort, slot: number): number | Error {
    return this.#writeTo(s, to, this.#txNames.view, slot * NAME_SLOT);
  }

  /** Writes `to` as a socket address at `view[at]`: its length, or an error (not an IP, bad port, wrong family). */
  #writeTo(s: Sock, to: HostPort, view: DataView, at: number): number | Error {
    if (to !== s.lastTo || to.hostname !== s.lastHost || to.port !== s.lastPort || !s.lastIp) {
      const ip = parseIp(to.hostname);
      if (!ip) {
        return new Error(
          `cannot send to ${formatHostPort(to)}: "${to.hostname}" is not an IP address (resolve host names first)`,
        );
      }
      if (!Number.isInteger(to.port) || to.port < 1 || to.port > 65535) {
        return new RangeError(`cannot send to ${formatHostPort(to)}: the port must be an integer 1..65535`);
      }
      s.lastTo = to;
      s.lastHost = to.hostname;
      s.lastPort = to.port;
      s.lastIp = ip;
    }
    const len = writeSockaddr(view, at, s.lastIp, to.port, s.family);
    if (len < 0) {
      return new SysError(
        "sendmmsg",
        Errno.EAFNOSUPPORT,
        `cannot send from ${formatHostPort(s.local)} to ${formatHostPort(to)}`,
      );
    }
    return len;
  }

  /** Sends `s`'s queue in order, `batch` datagrams per call, until it is empty or the socket has no room. */
  #send(s: Sock): void {
    const lib = this.lib;
    const msgs = this.#txMsgs.view;
    const iov = this.#txIov.view;
    const arena = this.#txData;
    // The results list is reused from turn to turn; a listener that posts (its send waits for the next flush)
    // does not re-enter here, but if anything did, it gets a list of its own.
    const done = this.#sendResults.length > 0 ? this.#sendResults.pop()! : new SendResults();
    let retried = false;
    const q = s.queue;
    while (q.length > 0 && !s.closed) {
      // Fill the send slots from the head of the queue.
      let count = 0, used = 0, bad: Error | undefined;
      for (let i = 0; i < q.length && count < this.batch; i++) {
        const data = q.data(i), to = q.to(i);
        let len: number | Error;
        if (data.length > MAX_DATAGRAM) {
          len = new SysError("sendmmsg", Errno.EMSGSIZE, `cannot send ${data.length} bytes to ${formatHostPort(to)}`);
        } else {
          if (used + data.length > arena.bytes.length) break;
          len = this.#encodeTo(s, to, count);
        }
        if (len instanceof Error) {
          if (count === 0) bad = len; // a bad one at the head fails alone; one later waits for its turn
          break;
        }
        arena.bytes.set(data, used);
        setPointer(iov, count * IOVEC_SIZE, arena, used);
        setLength(iov, count * IOVEC_SIZE + 8, data.length);
        msgs.setUint32(count * MMSGHDR_SIZE + MSG_NAMELEN, len, true);
        used += data.length;
        count++;
      }
      if (bad) {
        const l = q.extra(0);
        q.shift();
        if (l) done.add(l, bad);
        continue;
      }
      const r = lib.sendmmsg(s.fd, this.#txMsgs.bytes, count, MSG_DONTWAIT);
      if (r === 0) {
        s.waitingOut = true;
        break;
      }
      if (r > 0) {
        retried = false;
        this.stats.sendCalls++;
        this.stats.sent += r;
        for (let k = 0; k < r; k++) {
          const l = q.extra(0);
          if (l) done.add(l, q.data(0).length);
          q.shift();
        }
        continue;
      }
      const e = errno();
      if (e === Errno.EINTR) continue;
      if (e === Errno.EAGAIN) {
        s.waitingOut = true; // the socket's send buffer is full: EPOLLOUT resumes
        break;
      }
      if (!retried) {
        // With IP_RECVERR an ICMP error for an earlier datagram also sets the socket's pending error, which the
        // next send returns once (and clears): try once more before blaming this datagram.
        retried = true;
        continue;
      }
      retried = false;
      const l = q.extra(0);
      if (l) done.add(l, new SysError("sendmmsg", e, `send to ${formatHostPort(q.to(0))}`));
      q.shift();
    }
    try {
      this.#notify(done);
    } finally {
      done.clear();
      this.#sendResults.push(done);
    }
  }

  /** Tells send listeners how their datagrams went, after the socket's state is consistent. */
  #notify(done: SendResults): void {
    let failure: { error: unknown } | undefined;
    for (let i = 0; i < done.length; i++) {
      const l = done.listener(i), r = done.result(i);
      try {
        if (typeof r === "number") l.sent(r);
        else l.failed(r);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) reportError(failure.error);
  }

  /** Runs a listener callback; an exception is reported as uncaught, after the loop's state is consistent. */
  #call(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      queueMicrotask(() => reportError(error));
    }
  }

  // ---- closing -------------------------------------------------------------------------------

  async closeLoop(): Promise<void> {
    if (this.#closed) return;
    for (const s of [...this.sockets.values()]) this.closeSocket(s);
    this.#closed = true;
    this.pacer?.close();
    if (this.#state === "parked") {
      const done = new Promise<void>((r) => this.#parkDone = r);
      this.#arm(performance.now() - 1); // ends the park
      await done;
    }
    // Closed from a handler or timer inside a turn: the turn still holds the descriptors; it releases them.
    if (this.#state !== "turn") this.#release();
  }

  /** Closes the epoll instance and the timerfd, frees the park buffer. Only once no call can use them. */
  #release(): void {
    if (this.#released) return;
    this.#released = true;
    forgotten.unregister(this);
    this.lib.close(this.tfd);
    this.lib.close(this.ep);
    this.lib.free(this.#parkEvents);
  }
}

/** What a loop holds outside the JavaScript heap, for {@linkcode forgotten}. */
interface Owned {
  lib: LibcSymbols;
  ep: number;
  tfd: number;
  park: Deno.PointerObject;
  /** Open socket descriptors. */
  fds: Set<number>;
  /** The native pacer, if any: stopped before the descriptors it may still send on are closed. */
  pacer?: NativePacer;
}

/**
 * A loop that became garbage without {@linkcode MediaLoop.close} (nothing of it
 * is reachable: no socket, no pending park) still held descriptors and ports:
 * close them then, so a forgotten loop does not keep its ports bound forever.
 */
const forgotten = new FinalizationRegistry<Owned>((o) => {
  o.pacer?.close();
  for (const fd of o.fds) o.lib.close(fd);
  o.lib.close(o.tfd);
  o.lib.close(o.ep);
  o.lib.free(o.park);
});

/** errno values an ICMP error leaves pending on a socket (returned once by its next call). */
function isIcmpErrno(e: number): boolean {
  return e === Errno.ECONNREFUSED || e === Errno.EHOSTUNREACH || e === Errno.ENETUNREACH ||
    e === Errno.EHOSTDOWN || e === Errno.ENETDOWN || e === Errno.EMSGSIZE || e === Errno.EACCES ||
    e === 71 /* EPROTO */ || e === 92 /* ENOPROTOOPT */;
}

const cores = new WeakMap<MediaLoop, Core>();

function coreOf(loop: MediaLoop): Core {
  const c = cores.get(loop);
  if (!c) throw new Error("not a MediaLoop");
  return c;
}

/**
 * An event loop for datagram sockets and timers on one thread: its
 * {@linkcode MediaLoop.network} binds {@linkcode FastUdpSocket}s, its
 * {@linkcode MediaLoop.clock} paces the chains of the sessions bound on it.
 * Throws a clear error on a platform other than x86_64 Linux or without the
 * `ffi` permission (use {@linkcode createFastNetwork} for a network that falls
 * back instead).
 *
 * @example
 * ```ts
 * const loop = new MediaLoop();
 * const session = new Session({ id: "call-1", clock: loop.clock, net: loop.network });
 * // ... build the session's chains; their sockets, chains and timers all run on this loop
 * await session.close();
 * await loop.close();
 * ```
 */
export class MediaLoop {
  /** The loop's clock: its timers run on the loop's turns, woken by its `timerfd`. */
  readonly clock: LoopClock;
  /** Binds {@linkcode FastUdpSocket}s on this loop. */
  readonly network: FastNetwork;

  /**
   * Creates a loop (an epoll instance and a timerfd). It runs only while a
   * socket listens, a send waits, or a timer is live.
   *
   * @param opts batch size, fine-wait margin, socket buffer sizes
   */
  constructor(opts: MediaLoopOptions = {}) {
    // Checked before any FFI call, so a refusal says why rather than failing on the first pointer taken.
    const problem = fastPathProblem();
    if (problem) throw new Error(`MediaLoop: ${problem}`);
    const core = new Core(opts);
    cores.set(this, core);
    this.clock = core.clock;
    this.network = new FastNetwork(this);
  }

  /** True once {@linkcode MediaLoop.close} has been called. */
  get closed(): boolean {
    return coreOf(this).closed;
  }

  /** The loop's counters (a snapshot). */
  stats(): MediaLoopStats {
    return { ...coreOf(this).stats };
  }

  /** The native pacer's counters, or undefined without one (see {@linkcode MediaLoopOptions.pacer}). */
  pacerStats(): PacerStats | undefined {
    return coreOf(this).pacer?.stats();
  }

  /** The native pacer's lead, spin and budget, or undefined without one (see {@linkcode MediaLoopOptions.pacer}). */
  pacerSettings(): Readonly<PacerSettings> | undefined {
    return coreOf(this).pacer?.settings;
  }

  /**
   * Closes every socket of the loop (queued sends fail), stops running its
   * timers, and releases the epoll instance and timerfd. Idempotent.
   */
  close(): Promise<void> {
    return coreOf(this).closeLoop();
  }
}

/**
 * The {@linkcode Network} of a {@linkcode MediaLoop}: binds
 * {@linkcode FastUdpSocket}s run by that loop.
 *
 * @example
 * ```ts
 * const loop = new MediaLoop();
 * const sock = loop.network.bind("127.0.0.1", 0);
 * await sock.close();
 * ```
 */
export class FastNetwork implements Network {
  /** The loop its sockets run on. */
  readonly loop: MediaLoop;

  /**
   * Creates the network of `loop` (also available as `loop.network`).
   * @param loop the loop its sockets run on
   */
  constructor(loop: MediaLoop) {
    this.loop = loop;
  }

  /**
   * Binds `hostname:port` (an IP literal or `localhost`; port 0 = any free
   * port). Throws {@linkcode AddressInUseError} when the port is taken, and an
   * `Error` naming the address for any other reason.
   */
  bind(hostname: string, port: number): FastUdpSocket {
    return new FastUdpSocket(this.loop, hostname, port);
  }
}

/**
 * A UDP socket driven through FFI by a {@linkcode MediaLoop}: the
 * {@linkcode DatagramSocket} semantics of `UdpSocket`, with datagrams received
 * and sent in batches. A `::` socket is dual-stack (IPv4 senders are reported
 * as IPv4). An ICMP port-unreachable for a datagram it sent reaches the
 * listener's `onError` as a {@linkcode PortUnreachableError}; other ICMP and
 * local errors as an `Error` saying which.
 *
 * Sends are queued and leave at the end of the current task (a microtask, or
 * the end of the loop's turn), all that one socket queued in one `sendmmsg`
 * call, in call order.
 *
 * @example
 * ```ts
 * const loop = new MediaLoop();
 * const a = new FastUdpSocket(loop, "127.0.0.1", 0), b = loop.network.bind("127.0.0.1", 0);
 * b.listen((data, from) => console.log(data.length, from.port));
 * await a.send(new Uint8Array(12), b.local);
 * ```
 */
export class FastUdpSocket implements DatagramSocket {
  readonly #core: Core;
  readonly #s: Sock;

  /**
   * Binds `hostname:port` on `loop` (the same as `loop.network.bind`).
   *
   * @param loop the loop that runs the socket
   * @param hostname an IP literal of this host (`0.0.0.0`, `::`, `127.0.0.1`, ...) or `localhost`
   * @param port the port, 0 for any free one
   */
  constructor(loop: MediaLoop, hostname: string, port: number) {
    this.#core = coreOf(loop);
    this.#s = this.#core.bind(hostname, port);
  }

  /** The bound address (as the kernel reports it, and the actual port). */
  get local(): HostPort {
    return { hostname: this.#s.local.hostname, port: this.#s.local.port };
  }

  /** Bound address, e.g. `0.0.0.0`, `::`, `127.0.0.1`. */
  get hostname(): string {
    return this.#s.local.hostname;
  }

  /** Bound port. */
  get port(): number {
    return this.#s.local.port;
  }

  /** IP version of the socket (a `::` socket is dual-stack and reports 6). */
  get family(): 4 | 6 {
    return this.#s.family;
  }

  /** True once {@linkcode FastUdpSocket.close} has run. */
  get closed(): boolean {
    return this.#s.closed;
  }

  /** Datagrams posted and not sent yet. */
  get sendBacklog(): number {
    return this.#s.backlog;
  }

  /** Sends one datagram; resolves with the bytes sent, rejects on a send error. Datagrams leave in call order. */
  send(data: Uint8Array, to: HostPort): Promise<number> {
    return new Promise((resolve, reject) => this.#core.post(this.#s, data, to, { sent: resolve, failed: reject }));
  }

  /**
   * Sends one datagram without a promise; tells `listener` how it went. The
   * bytes are copied when the datagram leaves (at the end of the current
   * task), so `data` must not change before then. Datagrams leave in call
   * order.
   */
  post(data: Uint8Array, to: HostPort, listener?: SendListener): void {
    this.#core.post(this.#s, data, to, listener);
  }

  /**
   * Delivers received datagrams (a copy of the bytes, and the sender with
   * IPv4-mapped addresses written as IPv4) to `handler` until the returned
   * function is called or the socket closes. A later `listen` replaces the
   * listener. A handler that returns a promise pauses this socket's receiving
   * until it settles (a rejection goes to `onError`).
   */
  listen(handler: PacketHandler, opts: ListenOptions = {}): () => void {
    return this.#core.listen(this.#s, handler, opts);
  }

  /** How early a paced sink hands this socket a datagram for `postAt`: the loop's pacer lead, 0 without one. */
  get timedLeadMs(): number {
    return this.#core.pacer?.settings.leadMs ?? 0;
  }

  /**
   * Sends one datagram at `due` (performance.now() ms) through the loop's native pacer; `listener` hears `sent` as
   * soon as the pacer has the bytes (copied). Without a pacer (or when it is full), the same as `post`.
   */
  postAt(data: Uint8Array, to: HostPort, due: number, listener?: SendListener): void {
    this.#core.postAt(this.#s, data, to, due, listener);
  }

  /** Datagrams handed to the pacer with `postAt` and not sent yet. */
  get timedPending(): number {
    return this.#s.closed ? 0 : this.#core.pacer?.pending(this.#s.fd) ?? 0;
  }

  /** Drops what waits in the pacer for this socket; returns how many. */
  forgetTimed(): number {
    return this.#s.closed ? 0 : this.#core.pacer?.forget(this.#s.fd) ?? 0;
  }

  /** Closes the socket: the port is free when this returns (the promise resolves at once). Idempotent. */
  close(): Promise<void> {
    this.#core.closeSocket(this.#s);
    return Promise.resolve();
  }
}
