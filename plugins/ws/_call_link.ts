/**
 * One call a client owns, and its audio both ways: the peer's audio read from
 * the call session's `from-call` bus (handed to the bridge, which sends it to
 * the client), and the client's audio played into its `to-call` bus by a
 * {@linkcode CallPlayer}, one frame per tick of the bridge's ticker.
 *
 * @module
 */
import type { Bus, BusSubscription } from "../../core/bus.ts";
import type { CallService } from "../../core/calls.ts";
import type { Frame, PcmFrame } from "../../core/frame.ts";
import type { AudioEncoding } from "./audio.ts";
import { CallPlayer, type CallPlayerStats } from "./player.ts";

/** Frames the from-call reader may hold (it reads at once: this only bounds a stalled process). */
const FROM_QUEUE = 1000;

/** Ticks a link waits for the call's chains to start before it publishes anyway. */
const START_WAIT_TICKS = 25;
/** Ticks more a stream waits for a tick that runs on time (within a quarter period) before it starts anyway. */
const PUNCTUAL_WAIT_TICKS = 10;

/** Per-call counters of the bridge. */
export interface CallLinkStats {
  /** The call. */
  callId: string;
  /** The client that owns it. */
  client: number;
  /** Frames of the peer's audio sent to the client. */
  framesToClient: number;
  /** Frames of the peer's audio dropped because the client's socket was full. */
  framesToClientDropped: number;
  /** Frames on the from-call bus that were not pcm 8000 Hz mono (dropped). */
  framesWrongFormat: number;
  /** The player's counters (the client's audio into the call). */
  player: CallPlayerStats;
}

/** What a link needs from the bridge. */
export interface CallLinkHost {
  /** The call service (for the call's session). */
  calls: CallService;
  /** Bus names. */
  fromBus: string;
  /** Bus names. */
  toBus: string;
  /** The peer's audio arrived (a frame of the from-call bus). */
  onPeerAudio(link: CallLink, frame: Frame): void;
  /** Marks whose audio has been played. */
  onMarks(link: CallLink, marks: string[]): void;
  /** A DTMF digit the call's receive chain recognized (the session's `dtmf` event: `digit`, `duration_ms`). */
  onPeerDtmf(link: CallLink, detail: unknown): void;
}

/** See the module documentation. */
export class CallLink {
  /** The call's id. */
  readonly id: string;
  /** The owning client's id. */
  readonly client: number;
  /** `inbound` or `outbound`. */
  readonly direction: "inbound" | "outbound";
  /** The audio encoding the client chose for this call (else its connection's). */
  encoding: AudioEncoding | undefined;
  /** The client's audio waiting to be played. */
  readonly player: CallPlayer;
  /** True once the answered notice went out. */
  answered = false;
  /** True once the ringing notice went out. */
  rang = false;
  /** True once closed. */
  closed = false;
  /** True once a queue overflow was reported to the client. */
  overflowReported = false;
  /** True once a wrong from-call format was logged. */
  formatReported = false;
  /** Media sequence number of the last frame sent to the client. */
  seqToClient = 0;
  /** Samples of the peer's audio seen (sent or dropped): the next frame's timestamp. */
  samplesToClient = 0;
  /** Counters. */
  framesToClient = 0;
  /** Counters. */
  framesToClientDropped = 0;
  /** Counters. */
  framesWrongFormat = 0;
  /** How late the tick of the first frame played into the call ran, ms (the send chain sends that much later). */
  firstFrameLateMs: number | undefined;
  readonly #host: CallLinkHost;
  readonly #frame: number;
  #toBus: Bus | undefined;
  #endPublisher: (() => void) | undefined;
  #fromSub: BusSubscription | undefined;
  #firstTick: number | undefined;
  #offSession: (() => void) | undefined;
  #chainsStarted = false;
  #waited = 0;
  #punctualWaited = 0;
  /** The last tick that published a frame. */
  #lastTick = 0;

  /**
   * Creates the link of a call a client owns.
   * @param host the bridge
   * @param id the call id
   * @param client the owning client's id
   * @param direction the call's direction
   * @param player options of its player (frame = samples per tick)
   */
  constructor(
    host: CallLinkHost,
    id: string,
    client: number,
    direction: "inbound" | "outbound",
    player: { frame: number; jitter: number; jitterMs: number; maxQueue: number },
  ) {
    this.#host = host;
    this.id = id;
    this.client = client;
    this.direction = direction;
    this.#frame = player.frame;
    this.player = new CallPlayer(player);
  }

  /** True once connected to the call's session buses. */
  get attached(): boolean {
    return this.#toBus !== undefined;
  }

  /** The to-call bus, once attached. */
  get toBus(): Bus | undefined {
    return this.#toBus;
  }

  /**
   * Connects to the call's session (once it has one: the call is answered): reads its from-call bus, publishes on
   * its to-call bus. Returns false while the call has no session yet.
   */
  attach(): boolean {
    if (this.closed) return false;
    if (this.#toBus) return true;
    const session = this.#host.calls.session(this.id);
    if (!session || session.closed) return false;
    // The call's chains start after they are all built: frames published before its send chain runs would wait
    // in its queue, and its sink (which paces from its first packet) would send everything that much later.
    this.#offSession = session.on((e) => {
      if (e.type === "started") this.#chainsStarted = true;
      else if (e.type === "dtmf" && !this.closed) this.#host.onPeerDtmf(this, e.detail);
    });
    const sub = session.bus(this.#host.fromBus).subscribe(FROM_QUEUE, FROM_QUEUE);
    this.#fromSub = sub;
    this.#toBus = session.bus(this.#host.toBus);
    this.#endPublisher = this.#toBus.attachPublisher();
    this.#toBus.format ??= { kind: "pcm", sampleRate: 8000, channels: 1 };
    this.#read(sub);
    return true;
  }

  async #read(sub: BusSubscription): Promise<void> {
    for (;;) {
      let f = sub.poll();
      if (!f) {
        f = await sub.next();
        if (!f) return;
      }
      if (this.closed) return;
      this.#host.onPeerAudio(this, f);
    }
  }

  /**
   * One tick of the bridge's media clock (tick number `n`, time `now`, `late` ms after its due time): once the
   * call's send chain reads its to-call bus and has started (or 25 ticks after it subscribed, should its start
   * go unseen) and a tick runs on time (or 10 ticks more have passed), one frame of the client's audio (or
   * silence) is published on it each tick; audio due during ticks skipped after a long stall is dropped.
   */
  tick(n: number, now: number, late = 0): void {
    const bus = this.#toBus;
    if (!bus || this.closed || bus.subscribers === 0) return;
    if (this.#firstTick === undefined) {
      if (!this.#chainsStarted && this.#waited++ < START_WAIT_TICKS) return;
      // The send chain's sink paces from its first packet: a first frame published late delays every later one
      // as much, for the whole call. Start on a punctual tick (a busy moment, such as many calls starting at
      // once, passes), or after PUNCTUAL_WAIT_TICKS more.
      if (late > this.#frame / 32 && this.#punctualWaited++ < PUNCTUAL_WAIT_TICKS) return;
      this.#firstTick = n;
      this.#lastTick = n - 1;
      this.firstFrameLateMs = late;
    }
    if (n > this.#lastTick + 1) {
      // The bridge's clock stalled longer than it catches up: the audio due meanwhile is dropped, not delayed.
      const marks = this.player.skip((n - this.#lastTick - 1) * this.#frame);
      if (marks.length > 0) this.#host.onMarks(this, marks);
    }
    this.#lastTick = n;
    const f = this.player.next(now);
    const frame: PcmFrame = {
      kind: "pcm",
      samples: f.samples,
      sampleRate: 8000,
      channels: 1,
      pts: (n - this.#firstTick) * this.#frame,
      type: f.audio > 0 ? "normal" : "silence",
    };
    bus.publish(frame);
    if (f.marks.length > 0) this.#host.onMarks(this, f.marks);
  }

  /** Stops both ways: the from-call reader unsubscribes, the to-call stream ends. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#offSession?.();
    this.#fromSub?.close();
    this.#endPublisher?.();
  }

  /** Counters. */
  stats(): CallLinkStats {
    return {
      callId: this.id,
      client: this.client,
      framesToClient: this.framesToClient,
      framesToClientDropped: this.framesToClientDropped,
      framesWrongFormat: this.framesWrongFormat,
      player: this.player.stats(),
    };
  }
}
