/**
 * The floor of a recorded call's set-up on Deno's own APIs, for `bench/call_floor.ts`: a bare SIP UAS with none of
 * voxpipe's code, doing per call only the system work that `pipelines/callee.json` does, through the same Deno APIs
 * (`Deno.listenDatagram`, `Deno.open`), and nothing else: no transaction layer (no retransmission, no linger), no
 * validation beyond finding the headers a response copies, no chain, no statistics. Not a product: it trusts its
 * peer (sipp on loopback) and exists to be measured.
 *
 * Per call, by `--mode`:
 * - `sip`: receive the INVITE, send 180 and 200 (with an SDP answer), receive the ACK, receive the BYE, send its 200;
 * - `sockets`: also bind an RTP/RTCP port pair when the INVITE arrives, with a receive pending on each (as a call's
 *   chain listens), and on BYE send an RTCP BYE to the peer's RTCP port and close both;
 * - `wav`: also create the call's WAV file (exclusive create, 44-byte header) when the INVITE arrives, and on BYE
 *   write the header again and close it;
 * - `ffi`: the work of `wav`, but the port pair and the file through the C library (Deno FFI, synchronous calls:
 *   `socket`, `bind`, `epoll_ctl` to watch each socket as an event loop would, `sendto`, `open`, `write`,
 *   `pwrite`, `close`), SIP still on `Deno.listenDatagram`: what is left when only SIP stays on Deno's
 *   asynchronous operations;
 * - `ffi-all`: the work of `ffi`, and SIP through the C library too: the SIP socket's readiness waited for by an
 *   `epoll_wait` on another thread (a non-blocking FFI call), then read with `recvfrom` until none is left, and
 *   answered with `sendto`: no asynchronous operation of Deno per message.
 *
 * Run by `bench/call_floor.ts`: `deno run -A bench/_call_floor_uas.ts --port P --mode M --dir DIR`.
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    mode: { type: "string", default: "wav" },
    dir: { type: "string", default: "." },
    "rtp-ports": { type: "string", default: "20000-40000" },
  },
});
const MODE = args.mode!;
if (!["sip", "sockets", "wav", "ffi", "ffi-all"].includes(MODE)) {
  throw new Error(`--mode: sip, sockets, wav, ffi or ffi-all, not "${MODE}"`);
}
/** The port pair and the file through the C library. */
const FFI_MEDIA = MODE === "ffi" || MODE === "ffi-all";
/** SIP through the C library too. */
const FFI_SIP = MODE === "ffi-all";
const [PORT_MIN, PORT_MAX] = args["rtp-ports"]!.split("-").map(Number);
const HOST = "127.0.0.1";
const SIP_PORT = Number(args.port);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Call {
  rtp?: Deno.DatagramConn;
  rtcp?: Deno.DatagramConn;
  rtcpTo?: Deno.NetAddr;
  wav?: Deno.FsFile;
  /** `ffi`: the pair's descriptors, the peer's RTCP port, the file's descriptor. */
  fds?: { rtp: number; rtcp: number; rtcpPort: number; wav: number };
}
const calls = new Map<string, Call>();
let nextPort = PORT_MIN;
let tagCounter = 0;

/** The 44-byte header of an empty 8 kHz mono 16-bit WAV. */
const HEADER = (() => {
  const b = new Uint8Array(44);
  const v = new DataView(b.buffer);
  b.set(encoder.encode("RIFF"), 0);
  v.setUint32(4, 36, true);
  b.set(encoder.encode("WAVEfmt "), 8);
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 1, true);
  v.setUint32(24, 8000, true);
  v.setUint32(28, 16000, true);
  v.setUint16(32, 2, true);
  v.setUint16(34, 16, true);
  b.set(encoder.encode("data"), 36);
  return b;
})();

/** An RTCP BYE for SSRC 1 (RFC 3550 §6.6), with an empty receiver report before it. */
const RTCP_BYE = new Uint8Array(new ArrayBuffer(16));
RTCP_BYE.set([0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 1, 0, 0, 0, 1]);

const libc = FFI_MEDIA
  ? Deno.dlopen("libc.so.6", {
    socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
    bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
    open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
    epoll_create1: { parameters: ["i32"], result: "i32" },
    epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
    epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32", nonblocking: true },
    recvfrom: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"], result: "isize" },
  }).symbols
  : undefined;
const epoll = libc ? libc.epoll_create1(0o2000000) : -1;
const EPOLL_EVENT = new Uint8Array(new ArrayBuffer(12));
new DataView(EPOLL_EVENT.buffer).setUint32(0, 1, true); // EPOLLIN

/** A `sockaddr_in` for 127.0.0.1:`port` (x86_64 Linux layout). */
function sockaddr(port: number): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(16));
  const v = new DataView(b.buffer);
  v.setUint16(0, 2, true);
  v.setUint16(2, port, false);
  b.set([127, 0, 0, 1], 4);
  return b;
}

/** A non-blocking UDP socket bound on 127.0.0.1:`port` and watched by the epoll set, or -1. */
function ffiBind(port: number): number {
  const fd = libc!.socket(2, 2 | 0o4000 | 0o2000000, 0);
  if (fd < 0) throw new Error("socket failed");
  if (libc!.bind(fd, sockaddr(port), 16) !== 0) {
    libc!.close(fd);
    return -1;
  }
  libc!.epoll_ctl(epoll, 1, fd, EPOLL_EVENT);
  return fd;
}

/**
 * The first pair of the range, from where the last search stopped, that `bind` binds: `bind(port)` gives the RTP
 * and RTCP sockets bound on `port` and `port + 1`, or undefined when either is taken (having closed the other).
 */
function findPair<T>(bind: (port: number) => T | undefined): T & { port: number } {
  for (let i = 0; i < (PORT_MAX - PORT_MIN) / 2; i++) {
    const port = nextPort;
    nextPort = nextPort + 2 > PORT_MAX - 1 ? PORT_MIN : nextPort + 2;
    const pair = bind(port);
    if (pair) return { ...pair, port };
  }
  throw new Error("no free port pair");
}

function ffiPair(port: number): { rtp: number; rtcp: number } | undefined {
  const rtp = ffiBind(port);
  if (rtp < 0) return undefined;
  const rtcp = ffiBind(port + 1);
  if (rtcp >= 0) return { rtp, rtcp };
  libc!.close(rtp);
  return undefined;
}

function denoPair(port: number): { rtp: Deno.DatagramConn; rtcp: Deno.DatagramConn } | undefined {
  let rtp: Deno.DatagramConn | undefined;
  try {
    rtp = Deno.listenDatagram({ hostname: HOST, port, transport: "udp" });
    return { rtp, rtcp: Deno.listenDatagram({ hostname: HOST, port: port + 1, transport: "udp" }) };
  } catch {
    rtp?.close();
    return undefined;
  }
}

/** A received message, its header lines split once. */
interface Message {
  text: string;
  /** The header lines (without the start line), up to the empty line. */
  headers: string[];
}

function parse(text: string): Message {
  const end = text.indexOf("\r\n\r\n");
  return { text, headers: text.slice(text.indexOf("\r\n") + 2, end < 0 ? text.length : end).split("\r\n") };
}

/** The lines of header `name` (long form only, as sipp writes them). */
function header(msg: Message, name: string): string[] {
  const want = name.toLowerCase() + ":";
  return msg.headers.filter((line) => line.toLowerCase().startsWith(want));
}

function respond(msg: Message, status: string, to: Deno.NetAddr, toTag: string, body = ""): Promise<number> {
  const lines = [`SIP/2.0 ${status}`, ...header(msg, "Via"), ...header(msg, "From")];
  const toLine = header(msg, "To")[0];
  lines.push(toLine.includes(";tag=") ? toLine : `${toLine};tag=${toTag}`);
  lines.push(...header(msg, "Call-ID"), ...header(msg, "CSeq"), `Contact: <sip:floor@${HOST}:${args.port}>`);
  if (body) lines.push("Content-Type: application/sdp");
  lines.push(`Content-Length: ${encoder.encode(body).length}`, "", body);
  return sendSip(encoder.encode(lines.join("\r\n")), to);
}

/** A receive pending on `conn` until it closes, as a chain's source keeps one. */
function listen(conn: Deno.DatagramConn): void {
  conn.receive().then(() => listen(conn), () => {});
}

async function invite(msg: Message, from: Deno.NetAddr, callId: string): Promise<void> {
  // A retransmitted INVITE (the floor fell behind): ignored, the run fails its calls and is not counted.
  if (calls.has(callId)) return;
  const call: Call = {};
  calls.set(callId, call);
  const tag = `f${(++tagCounter).toString(36)}`;
  const rtcpPort = Number(/m=audio (\d+)/.exec(msg.text)?.[1] ?? 9) + 1;
  const wavPath = `${args.dir}/call-${callId.replace(/[^A-Za-z0-9._-]/g, "_")}.wav`;
  let rtpPort = 9;
  if (FFI_MEDIA) {
    const pair = findPair(ffiPair);
    rtpPort = pair.port;
    const wav = libc!.open(encoder.encode(`${wavPath}\0`), 1 | 0o100 | 0o200 | 0o2000000, 0o644);
    if (wav < 0) throw new Error("open failed");
    libc!.write(wav, HEADER, 44n);
    call.fds = { rtp: pair.rtp, rtcp: pair.rtcp, rtcpPort, wav };
  } else if (MODE !== "sip") {
    const pair = findPair(denoPair);
    rtpPort = pair.port;
    call.rtp = pair.rtp;
    call.rtcp = pair.rtcp;
    listen(call.rtp);
    listen(call.rtcp);
    call.rtcpTo = { transport: "udp", hostname: HOST, port: rtcpPort };
  }
  if (MODE === "wav") {
    call.wav = await Deno.open(wavPath, { write: true, createNew: true });
    await call.wav.write(HEADER);
  }
  await respond(msg, "180 Ringing", from, tag);
  const sdp = `v=0\r\no=- 1 1 IN IP4 ${HOST}\r\ns=-\r\nc=IN IP4 ${HOST}\r\nt=0 0\r\nm=audio ${rtpPort} RTP/AVP 0\r\n` +
    `a=rtpmap:0 PCMU/8000\r\n`;
  await respond(msg, "200 OK", from, tag, sdp);
}

async function bye(msg: Message, from: Deno.NetAddr, callId: string): Promise<void> {
  await respond(msg, "200 OK", from, "");
  const call = calls.get(callId);
  if (!call) return;
  calls.delete(callId);
  if (call.fds) {
    libc!.sendto(call.fds.rtcp, RTCP_BYE, 16n, 0, sockaddr(call.fds.rtcpPort), 16);
    libc!.close(call.fds.rtp);
    libc!.close(call.fds.rtcp);
    libc!.pwrite(call.fds.wav, HEADER, 44n, 0n);
    libc!.close(call.fds.wav);
  }
  if (call.rtcp && call.rtcpTo) await call.rtcp.send(RTCP_BYE, call.rtcpTo).catch(() => {});
  call.rtp?.close();
  call.rtcp?.close();
  if (call.wav) {
    await call.wav.seek(0, Deno.SeekMode.Start);
    await call.wav.write(HEADER);
    call.wav.close();
  }
}

function handle(text: string, from: Deno.NetAddr): void {
  const msg = parse(text);
  const method = text.slice(0, text.indexOf(" "));
  const callId = header(msg, "Call-ID")[0]?.slice(8).trim() ?? "";
  if (method === "INVITE") invite(msg, from, callId).catch((e) => console.error(`INVITE: ${e}`));
  else if (method === "BYE") bye(msg, from, callId).catch((e) => console.error(`BYE: ${e}`));
}

let sendSip: (data: Uint8Array, to: Deno.NetAddr) => Promise<number>;
if (FFI_SIP) {
  const fd = libc!.socket(2, 2 | 0o4000 | 0o2000000, 0);
  if (fd < 0 || libc!.bind(fd, sockaddr(SIP_PORT), 16) !== 0) throw new Error(`cannot bind port ${SIP_PORT}`);
  const ep = libc!.epoll_create1(0o2000000);
  libc!.epoll_ctl(ep, 1, fd, EPOLL_EVENT);
  sendSip = (data, to) =>
    Promise.resolve(Number(libc!.sendto(fd, data, BigInt(data.length), 0, sockaddr(to.port), 16)));
  const buf = new Uint8Array(new ArrayBuffer(65536));
  const from = new Uint8Array(new ArrayBuffer(16));
  const fromLen = new Uint32Array(new ArrayBuffer(4));
  const events = new Uint8Array(new ArrayBuffer(12));
  const fromView = new DataView(from.buffer);
  while (true) {
    await libc!.epoll_wait(ep, events, 1, -1);
    while (true) {
      fromLen[0] = 16;
      const n = Number(libc!.recvfrom(fd, buf, 65536n, 0x40, from, new Uint8Array(fromLen.buffer)));
      if (n < 0) break;
      handle(decoder.decode(buf.subarray(0, n)), {
        transport: "udp",
        hostname: HOST,
        port: fromView.getUint16(2, false),
      });
    }
  }
} else {
  const sip = Deno.listenDatagram({ hostname: HOST, port: SIP_PORT, transport: "udp" });
  sendSip = (data, to) => sip.send(data, to);
  for await (const [data, from] of sip) handle(decoder.decode(data), from as Deno.NetAddr);
}
