/**
 * What the `sip` control plugin declares before any call: its options schema (built on first use,
 * {@linkcode sipControlOptionsSchema}), the template variables it provides and its description. Kept
 * apart from the SIP stack (control.ts and what it imports) so that registering
 * the plugin at start-up does not load that stack: plugins/controls.ts loads control.ts when a pipeline
 * file uses `"control": {"use": "sip"}`.
 *
 * @module
 */
import { z } from "zod";
import type { CodecInfo, CodecRegistry } from "../../core/codec.ts";
import type { Variables } from "../../core/config.ts";
import { formatHostPort } from "../../core/net/address.ts";
import { parsePortRange } from "../../core/net/ports.ts";
import { lazySchema } from "../../core/options.ts";

/** One line for `--list-plugins`. */
export const SIP_CONTROL_DESCRIPTION =
  "SIP user agent over UDP: places or answers calls (a call server: both) and runs the chains of each call";

/** A comma-separated list of codec names (which names exist is checked against the registry). */
const CODEC_LIST = /^\s*[A-Za-z0-9][A-Za-z0-9._+-]*\s*(,\s*[A-Za-z0-9][A-Za-z0-9._+-]*\s*)*$/;

/**
 * Options of the `sip` control plugin: the schema, built on the first call (the same instance every time;
 * control.ts exports it as `sipControlOptions`).
 */
export const sipControlOptionsSchema = lazySchema(() =>
  z.object({
    role: z.enum(["caller", "callee", "server"]).describe(
      "caller places one call to `to`; callee answers incoming calls; server answers incoming calls and places " +
        "calls on request (the call service's dial)",
    ),
    to: z.string().default("").describe("caller: the SIP URI to call, e.g. sip:bob@127.0.0.1:5062"),
    port: z.number().int().min(0).max(65535).default(5060).describe("local SIP port (0 = any free port)"),
    bind: z.string().min(1).default("127.0.0.1").describe("local address for SIP and RTP (0.0.0.0 or :: for all)"),
    user: z.string().regex(/^[A-Za-z0-9._~-]+$/).default("voxpipe").describe("user part of our SIP URI"),
    codecs: z.string().regex(CODEC_LIST, "expected codec names separated by commas, e.g. PCMU,PCMA").optional()
      .describe(
        "codecs offered/accepted, in order of preference: names of registered codecs separated by commas " +
          "(default: every registered codec, in registration order)",
      ),
    ptime: z.number().int().min(10).max(60).default(20).describe("packet time we ask to receive, in ms"),
    dtmf: z.boolean().default(true).describe(
      "offer and accept RFC 4733 telephone-event (DTMF 0-15) in SDP; the chains get its payload type as " +
        "${dtmf.payloadType} (0 when the peer did not accept it, or with false)",
    ),
    ring_timeout: z.number().min(0.1).max(3600).default(30).describe(
      "caller, dial: seconds without an answer before CANCEL; callee, server: seconds an incoming call left ringing " +
        "by its decider rings before 480 Temporarily Unavailable",
    ),
    answer_after: z.number().min(0).max(3600).default(0).describe(
      "callee, server: seconds of ringing (180) before answering (when no decider is set)",
    ),
    calls: z.number().int().min(0).default(0).describe(
      "callee, server: exit after this many answered incoming calls (0 = forever)",
    ),
    max_calls: z.number().int().min(1).max(10000).default(100).describe(
      "callee, server: concurrent calls (both directions); more incoming ones get busy_status, more dials fail",
    ),
    busy_status: z.union([z.literal(486), z.literal(503)]).default(503).describe(
      "callee, server: the answer to an INVITE beyond max_calls: 503 Service Unavailable with Retry-After " +
        "(stateless), or 486 Busy Here",
    ),
    max_duration: z.number().min(0).max(86400).default(0).describe(
      "seconds after which an answered call is hung up (BYE); 0 = no limit",
    ),
    stats_interval: z.number().min(0).max(3600).default(5).describe(
      "seconds between `stats` call events of each answered call (call service); 0 = none",
    ),
    overload_lag_ms: z.number().min(1).max(60000).default(500).describe(
      "event-loop lag (ms) above which new INVITEs get 503 Service Unavailable with Retry-After, once two lag samples " +
        "in a row (100 ms apart) ran that late: a single stall is not overload",
    ),
    max_transactions: z.number().int().min(10).max(1000000).default(10000).describe(
      "SIP server transactions kept at once (about 4 KB each); at the cap new INVITEs get 503 and new requests outside a dialog are answered statelessly",
    ),
    resolve_names: z.boolean().default(false).describe(
      "allow a host name as the caller's target (resolved by the system); names from the network are never resolved",
    ),
    dialog_to_source: z.boolean().default(true).describe(
      "send in-dialog requests (BYE, the ACK of a 2xx) to the address the peer's INVITE (or its 2xx to " +
        "ours) came from, not to the Contact or Record-Route it names: those are the peer's choice and may name a " +
        "third host, or a private address behind NAT. false: to the Contact / route set (RFC 3261 §12.2.1.1), e.g. " +
        "behind a proxy that does not Record-Route yet relays the INVITEs",
    ),
    keep_summaries: z.number().int().min(0).max(100000).default(100).describe(
      "finished-call summaries kept for stats() (the oldest are dropped; every summary is logged)",
    ),
    rtp_ports: z.string().regex(/^\s*\d{1,5}\s*-\s*\d{1,5}\s*$/).default("10000-20000").describe(
      "range for local RTP/RTCP port pairs (min-max)",
    ),
    media_workers: z.number().int().min(0).max(64).optional().describe(
      "callee, server, caller: run each call's media (port pair, sockets, RTCP, chains, recordings) in one of this " +
        "many worker threads, the least busy first, with the SIP stack on the main thread (uses more cores); each " +
        "worker binds its calls' ports in its own slice of rtp_ports and builds chains from this file's built-in " +
        "and by-path plugins. 0 = on the main thread. With workers, sessions are not reachable from the main thread " +
        "(a ws-bridge or a console audio tap needs 0). Default: the environment variable VOXPIPE_MEDIA_WORKERS, else 0",
    ),
    hangup_on: z.array(z.string()).default([]).describe(
      "chains whose end of stream ends the call (caller: the send chain; callee: the receive chain, which ends on RTP timeout)",
    ),
    linger: z.number().min(0).max(64).default(1).describe(
      "seconds to keep answering retransmissions after the last call before exiting (a lost 200 for BYE, a lost ACK)",
    ),
    t1_ms: z.number().int().min(10).max(10000).default(500).describe("SIP timer T1 (RTT estimate), ms"),
    t2_ms: z.number().int().min(100).max(60000).default(4000).describe("SIP timer T2 (retransmit cap), ms"),
    t4_ms: z.number().int().min(100).max(60000).default(5000).describe("SIP timer T4 (max message lifetime), ms"),
    registrar: z.string().default("").describe(
      "SIP URI of a registrar to register with before calling or answering, e.g. sip:pbx.example.com (empty: none); " +
        "requests sent to its host:port may be challenged (the credentials are for it and the outbound proxy)",
    ),
    aor: z.string().default("").describe(
      "address-of-record to register and to put in From (default sip:<user>@<registrar host> with a registrar)",
    ),
    auth_user: z.string().default("").describe("user name for digest authentication (default: user)"),
    password: z.string().default("").describe(
      "password for digest authentication (prefer password_env). A 401/407 is answered only when the challenged " +
        "request went to a server of the account: the outbound_proxy or the registrar (a caller with neither: the " +
        "host of `to`), compared as written, never resolved; a callee called directly, or any other host, gets " +
        "neither a digest response nor our user name, and the call fails saying so",
    ),
    password_env: z.string().regex(/^([A-Za-z_][A-Za-z0-9_]*)?$/).default("").describe(
      "name of the environment variable holding the password, e.g. VOXPIPE_SIP_PASSWORD",
    ),
    realm: z.string().default("").describe(
      "answer digest challenges of this realm only (default: any realm the account's servers use). The realm is no " +
        "secret (a callee reads our domain in From): it does not make a host trusted; credentials still go only to " +
        "the account's servers (see password)",
    ),
    outbound_proxy: z.string().default("").describe(
      "SIP URI of an outbound proxy: calls and REGISTERs go to it, with a Route header (loose routing); it may " +
        "challenge them (the credentials are for it and the registrar)",
    ),
    register_expires: z.number().int().min(10).max(86400).default(600).describe(
      "lifetime asked for the registration, s (refreshed at half the granted lifetime)",
    ),
  })
);

/** Variables the plugin provides to chain templates. */
export const SIP_VARIABLES: Record<string, string> = {
  "call.id": "the Call-ID, sanitized for use in file names",
  "call.n": "call number in this process (1, 2, ...)",
  "call.from": "the remote user name, sanitized",
  "local.bind": "address the RTP sockets bind to",
  "local.address": "our RTP address as put in the SDP",
  "local.rtp_port": "our RTP port (even)",
  "local.rtcp_port": "our RTCP port (RTP port + 1)",
  "remote.address": "the peer's RTP address from its SDP",
  "remote.rtp": "the peer's RTP host:port",
  "remote.rtcp": "the peer's RTCP host:port",
  "remote.rtp_port": "the peer's RTP port",
  "remote.rtcp_port": "the peer's RTCP port",
  "codec": "negotiated codec: the name of a registered codec (e.g. PCMU)",
  "payloadType": "negotiated RTP payload type",
  "ptime": "packet time the peer asked for, ms (what we send)",
  "dtmf.payloadType": "negotiated RTP payload type of telephone-event (RFC 4733 DTMF), 0 when not negotiated",
  "call.direction": "in (the peer called) or out (we called)",
  "call.incoming": "true when the peer called (its SDP came unsolicited: see udp-sink's wait_for_peer), else false",
  "call.start": "when the call started (INVITE received or sent), local time, as YYYYMMDD-HHMMSS",
  "date": "the call's start date, local time, as YYYY-MM-DD",
  "time": "the call's start time, local time, as HH-MM-SS",
};

/** Validated options of the `sip` control plugin. */
export type SipControlOptions = z.output<ReturnType<typeof sipControlOptionsSchema>>;

/**
 * What calls could fill the templates with under these options, for checking them when the file loads: one call
 * per codec the options allow, in order of preference (every registered codec when they name none), each with the
 * first port pair of `rtp_ports` and a peer on the loopback of `bind`'s family (RTP to the discard port 9).
 */
export function sipExampleCalls(o: SipControlOptions, codecs: CodecRegistry): Variables[] {
  const named = o.codecs?.split(",").map((n) => codecs.get(n.trim())).filter((c) => c !== undefined) ?? [];
  const list = named.length ? named : codecs.list();
  return (list.length ? list : [undefined]).map((codec) => exampleCall(o, codec));
}

function exampleCall(o: SipControlOptions, codec: CodecInfo | undefined): Variables {
  const [min] = parsePortRange(o.rtp_ports);
  const rtp = min % 2 === 0 ? min : min + 1;
  const v6 = o.bind.includes(":");
  const peer = v6 ? "::1" : "127.0.0.1";
  const local = o.bind === "0.0.0.0" || o.bind === "::" ? peer : o.bind;
  return {
    "call.id": "example-call",
    "call.n": 1,
    "call.from": "example",
    "local.bind": o.bind,
    "local.address": local,
    "local.rtp_port": rtp,
    "local.rtcp_port": rtp + 1,
    "remote.address": peer,
    "remote.rtp": formatHostPort({ hostname: peer, port: 9 }),
    "remote.rtcp": formatHostPort({ hostname: peer, port: 10 }),
    "remote.rtp_port": 9,
    "remote.rtcp_port": 10,
    "codec": codec?.name ?? "PCMU",
    "payloadType": typeof codec?.payloadType === "number" ? codec.payloadType : 96,
    "ptime": o.ptime,
    "dtmf.payloadType": o.dtmf ? 101 : 0,
    "call.direction": o.role === "caller" ? "out" : "in",
    "call.incoming": o.role !== "caller",
    "call.start": "20260101-000000",
    "date": "2026-01-01",
    "time": "00-00-00",
  };
}
