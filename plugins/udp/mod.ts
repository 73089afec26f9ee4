/**
 * The udp plugin family: the `udp-source` and `udp-sink` stages. The sockets
 * they use come from their session (`ctx.session.socket`), which binds them on
 * the core network layer (`core/net/`: addresses, datagram sockets, port pairs).
 *
 * @module
 */
export { udpSource, type UdpSourceOptions, udpSourceOptions } from "./udp_source.ts";
export { udpSink, type UdpSinkOptions, udpSinkOptions, UdpSinkStage } from "./udp_sink.ts";

export { plugins } from "./plugins.ts";
