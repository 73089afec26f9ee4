/**
 * The SIP relay family: a SIP registrar and back-to-back user agent (B2BUA)
 * with media anchored at the relay, so that two phones behind NAT can call
 * each other through it.
 *
 * - `options.ts`: the `sip-relay` control plugin's options (what registering
 *   it needs; `plugins/controls.ts` loads `control.ts` only when a pipeline
 *   file uses it).
 * - `control.ts`: the `sip-relay` control plugin.
 * - `sip_relay.ts`: {@linkcode SipRelay}, the registrar and B2BUA on one SIP
 *   port: calls between registered users, state mirrored leg to leg.
 * - `registrar.ts`: {@linkcode Registrar}, the bindings table (expiry as the
 *   heartbeat, limits).
 * - `digest_server.ts`: {@linkcode DigestChallenger}, Digest challenges and
 *   credential checks (401/407).
 * - `sdp_relay.ts`: the SDP rewriting so both legs send to the relay on one codec.
 * - `media.ts`: {@linkcode MediaLeg} and {@linkcode MediaBridge}, packet
 *   forwarding between the legs with latching and counters.
 *
 * @example
 * ```ts
 * import { SipRelay } from "./plugins/b2bua/mod.ts";
 * const relay = new SipRelay({ clock, net: udpNetwork, bind: "0.0.0.0", port: 5060, codecs: registry.codecs,
 *   maxClients: 100, maxContacts: 4, minExpires: 60, maxExpires: 3600, defaultExpires: 3600, retryAfter: 30,
 *   maxCalls: 50, ringTimeout: 60, mediaTimeout: 60, rtpPorts: [20000, 30000], latch: "signalling",
 *   maxPacket: 1500, nat: true });
 * relay.start();
 * ```
 *
 * @module
 */
export { sipRelayControl, sipRelayOptions } from "./control.ts";
export { SIP_RELAY_DESCRIPTION, type SipRelayControlOptions, sipRelayOptionsSchema } from "./options.ts";
export { type RelayedCallStats, SipRelay, type SipRelayOptions, type SipRelayStats } from "./sip_relay.ts";
export { type Binding, Registrar, type RegistrarOptions, type RegistrarStats, userOf } from "./registrar.ts";
export { DigestChallenger, type DigestChallengerOptions, type DigestCheck, parseUsers } from "./digest_server.ts";
export {
  type Agreement,
  calleeOffer,
  type CalleeOfferOptions,
  callerAnswer,
  type CallerAnswerOptions,
  offeredCodecs,
} from "./sdp_relay.ts";
export {
  type LatchPolicy,
  type LegStats,
  MediaBridge,
  type MediaBridgeOptions,
  MediaLeg,
  type MediaLegOptions,
  type PathStats,
  RELATCH_AFTER_MS,
} from "./media.ts";
