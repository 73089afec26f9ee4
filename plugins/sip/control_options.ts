/**
 * What the `sip` control plugin declares before any call: its options schema, the template
 * variables it provides and its description. Kept apart from the SIP stack (control.ts and what
 * it imports, sdp-transform included) so that registering the plugin at start-up does not load
 * that stack: plugins/controls.ts loads control.ts when a pipeline file uses `"control": {"use": "sip"}`.
 *
 * @module
 */
import { z } from "zod";

/** One line for `--list-plugins`. */
export const SIP_CONTROL_DESCRIPTION =
  "SIP user agent over UDP: places or answers calls and runs the chains of each call";

/** A comma-separated list of codec names (which names exist is checked against the registry). */
const CODEC_LIST = /^\s*[A-Za-z0-9][A-Za-z0-9._+-]*\s*(,\s*[A-Za-z0-9][A-Za-z0-9._+-]*\s*)*$/;

/** Options of the `sip` control plugin. */
export const sipControlOptions = z.object({
  role: z.enum(["caller", "callee"]).describe("caller places one call to `to`; callee answers incoming calls"),
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
    "caller: seconds without an answer before CANCEL",
  ),
  answer_after: z.number().min(0).max(3600).default(0).describe("callee: seconds of ringing (180) before answering"),
  calls: z.number().int().min(0).default(0).describe("callee: exit after this many answered calls (0 = forever)"),
  max_calls: z.number().int().min(1).max(10000).default(100).describe(
    "callee: concurrent calls; more get 486 Busy Here",
  ),
  rtp_ports: z.string().regex(/^\s*\d{1,5}\s*-\s*\d{1,5}\s*$/).default("10000-20000").describe(
    "range for local RTP/RTCP port pairs (min-max)",
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
    "SIP URI of a registrar to register with before calling or answering, e.g. sip:pbx.example.com (empty: none)",
  ),
  aor: z.string().default("").describe(
    "address-of-record to register and to put in From (default sip:<user>@<registrar host> with a registrar)",
  ),
  auth_user: z.string().default("").describe("user name for digest authentication (default: user)"),
  password: z.string().default("").describe("password for digest authentication (prefer password_env)"),
  password_env: z.string().regex(/^([A-Za-z_][A-Za-z0-9_]*)?$/).default("").describe(
    "name of the environment variable holding the password, e.g. VOXPIPE_SIP_PASSWORD",
  ),
  realm: z.string().default("").describe("answer digest challenges of this realm only (default: any realm)"),
  outbound_proxy: z.string().default("").describe(
    "SIP URI of an outbound proxy: calls and REGISTERs go to it, with a Route header (loose routing)",
  ),
  register_expires: z.number().int().min(10).max(86400).default(600).describe(
    "lifetime asked for the registration, s (refreshed at half the granted lifetime)",
  ),
});

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
};
