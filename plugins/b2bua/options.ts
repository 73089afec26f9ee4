/**
 * What the `sip-relay` control plugin declares before it runs: its options
 * schema (built on first use, {@linkcode sipRelayOptionsSchema}) and
 * description. Kept apart from the SIP stack (`control.ts` and what it
 * imports), so that registering the plugin at start-up does not load that
 * stack: `plugins/controls.ts` loads `control.ts` when a pipeline file uses
 * `"control": {"use": "sip-relay"}`.
 *
 * @module
 */
import { z } from "zod";
import { lazySchema } from "../../core/options.ts";
import { failureLimitOptions } from "../_failure_limit_options.ts";

/** One line for `--list-plugins`. */
export const SIP_RELAY_DESCRIPTION =
  "SIP registrar and B2BUA: registered phones call each other, their media relayed (and latched) at the relay";

const CODEC_LIST = /^\s*[A-Za-z0-9][A-Za-z0-9._+-]*\s*(,\s*[A-Za-z0-9][A-Za-z0-9._+-]*\s*)*$/;

/**
 * Options of the `sip-relay` control plugin: the schema, built on the first call (the same instance every time;
 * control.ts exports it as `sipRelayOptions`).
 */
export const sipRelayOptionsSchema = lazySchema(() =>
  z.object({
    port: z.number().int().min(0).max(65535).default(5060).describe("SIP port (UDP; 0 = any free port)"),
    bind: z.string().min(1).default("0.0.0.0").describe(
      "local address of the SIP port and the media ports (0.0.0.0: every IPv4 interface)",
    ),
    public_address: z.string().default("").describe(
      "address to advertise in Contact, Via and SDP (e.g. the public address of a relay behind 1:1 NAT; " +
        "default: the local address facing each phone)",
    ),
    users: z.string().default("").describe(
      "users and passwords, user:password separated by commas: with users (here or in users_file), REGISTER and " +
        "INVITE need Digest credentials (prefer users_file: a --set value shows in the process list)",
    ),
    users_file: z.string().default("").describe(
      "file of users: one user:password per line (# comments); a relative path is looked for in the pipeline " +
        "file's directory, then in the working directory",
    ),
    realm: z.string().regex(/^[^"\\\r\n]+$/).default("voxpipe").describe("Digest realm"),
    auth_algorithms: z.string().regex(/^\s*[A-Za-z0-9-]+\s*(,\s*[A-Za-z0-9-]+\s*)*$/).default("MD5").describe(
      "Digest algorithms challenged with, preferred first, separated by commas (MD5, SHA-256, SHA-512-256)",
    ),
    nonce_lifetime: z.number().int().min(10).max(86400).default(300).describe("seconds a Digest nonce is accepted"),
    ...failureLimitOptions("failed credentials", "its REGISTERs and INVITEs refused (403)"),
    max_clients: z.number().int().min(1).max(100000).default(100).describe(
      "users registered at once; a new one beyond gets 503 with Retry-After",
    ),
    max_contacts: z.number().int().min(1).max(16).default(4).describe(
      "contacts per user (a new one beyond replaces the oldest); calls go to the freshest",
    ),
    min_expires: z.number().int().min(1).max(86400).default(60).describe(
      "shortest registration accepted, s (shorter: 423 Interval Too Brief)",
    ),
    max_expires: z.number().int().min(1).max(86400).default(3600).describe("longest registration granted, s"),
    default_expires: z.number().int().min(1).max(86400).default(3600).describe(
      "registration lifetime when the REGISTER asks none, s",
    ),
    retry_after: z.number().int().min(1).max(86400).default(30).describe("Retry-After of the 503s, s"),
    max_calls: z.number().int().min(1).max(10000).default(50).describe(
      "relayed calls at once; more INVITEs get 503 with Retry-After",
    ),
    ring_timeout: z.number().min(1).max(3600).default(60).describe(
      "seconds a callee may ring before both legs are cancelled (408 to the caller)",
    ),
    media_timeout: z.number().min(0).max(86400).default(60).describe(
      "seconds without media from either phone after which an answered call is hung up (0 = never)",
    ),
    codecs: z.string().regex(CODEC_LIST, "expected codec names separated by commas, e.g. PCMU,PCMA").optional()
      .describe("codecs relayed (both legs must agree on one: no transcoding); default every registered codec"),
    rtp_ports: z.string().regex(/^\s*\d{1,5}\s*-\s*\d{1,5}\s*$/).default("20000-30000").describe(
      "range of the media port pairs (two pairs per call)",
    ),
    latch: z.enum(["signalling", "any"]).default("signalling").describe(
      'which source a leg latches to: "signalling" (the IP of its SIP messages or SDP) or "any"',
    ),
    max_packet: z.number().int().min(12).max(65507).default(1500).describe(
      "largest media datagram forwarded, bytes; larger ones are dropped and counted",
    ),
    nat: z.boolean().default(true).describe(
      "reach phones where their messages come from (REGISTER source, in-dialog requests) rather than their Contact",
    ),
    keep_calls: z.number().int().min(0).max(100000).default(100).describe(
      "finished calls kept in stats (each is also logged)",
    ),
    t1_ms: z.number().int().min(10).max(10000).default(500).describe("SIP timer T1 (RTT estimate), ms"),
  })
);

/** Validated options of the `sip-relay` control plugin. */
export type SipRelayControlOptions = z.output<ReturnType<typeof sipRelayOptionsSchema>>;
