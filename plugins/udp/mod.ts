/**
 * The udp plugin family: `udp-source` and `udp-sink`, the shared-socket and
 * RTP/RTCP port-pair helpers the SIP and RTCP plugins use, and `host:port`
 * parsing.
 *
 * @module
 */
import type { AnyPlugin } from "../../core/stage.ts";
import { udpSink } from "./udp_sink.ts";
import { udpSource } from "./udp_source.ts";

export { udpSource, type UdpSourceOptions, udpSourceOptions } from "./udp_source.ts";
export { udpSink, type UdpSinkOptions, udpSinkOptions, UdpSinkStage } from "./udp_sink.ts";
export {
  acquireSharedSocket,
  allocatePortPair,
  openUdpSocket,
  parsePortRange,
  type PortPair,
  socketKey,
  takeReservedSocket,
  UdpSocket,
} from "./socket.ts";
export {
  canonicalHost,
  formatHostPort,
  type HostPort,
  ipVersion,
  parseHostPort,
  resolveHost,
  sameAddress,
} from "./address.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [udpSource, udpSink];
