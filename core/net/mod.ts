/**
 * The network layer every protocol uses: one address type ({@linkcode HostPort})
 * and parser, one datagram socket abstraction with one receive loop
 * ({@linkcode DatagramSocket}, bound by a {@linkcode Network}: real UDP in
 * `udp.ts`, in-memory and lossy in `memory.ts`, and the fast path in
 * `media_loop.ts` — FFI sockets run in batches by a {@linkcode MediaLoop} that
 * also runs a clock — opted into through `fast.ts`), and RTP/RTCP port pairs
 * (`ports.ts`), and the accept loop of stream listeners, which backs off when the process is out of descriptors,
 * with the rate-limited warning of a server refusing connections (`accept.ts`). No protocol, codec or plugin is named
 * here.
 *
 * @module
 */
export * from "./accept.ts";
export * from "./address.ts";
export * from "./datagram.ts";
export * from "./failure_limit.ts";
export * from "./fast.ts";
export * from "./filtered.ts";
export * from "./media_loop.ts";
export * from "./memory.ts";
export * from "./ports.ts";
export * from "./udp.ts";
