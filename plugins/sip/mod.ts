/**
 * The SIP library (RFC 3261 over UDP) and, on top of it, the SIP control plugin.
 *
 * What lives in this folder, by layer; each file imports only from its own
 * layer or the ones above it in this list (tests/sip_layers_test.ts checks it):
 *
 * 1. message — `errors.ts`, `syntax.ts`, `ids.ts`, `headers.ts`, `uri.ts`,
 *    `via.ts`, `message.ts` (parse/serialize), `sdp.ts` (SDP bodies),
 *    `auth_header.ts` (challenge and credentials parameters)
 * 2. transport — `transport.ts` (UDP, memory and lossy datagram transports;
 *    parsed messages, 400s, Via routing), `local_address.ts`, `trace.ts`
 *    (message traces)
 * 3. transaction — `transaction.ts` (client/server transactions and timers)
 * 4. dialog — `dialog.ts` (dialog state, in-dialog requests, UAS screening)
 * 5. user agent — `emitter.ts`, `auth.ts` (401/407 seam), `digest.ts`
 *    (Digest computation and the credentials authenticator), `register.ts`
 *    (registration types), `registration_keeper.ts` (refresh, retry,
 *    unregister), `_overload.ts` (503 under load), `_request_builder.ts` (every out-of-dialog
 *    request), `_context.ts` (what a UA's parts share), `_client.ts`
 *    (non-INVITE client requests, REGISTER), `call.ts`, `outgoing_call.ts`
 *    (client side of calls), `incoming_call.ts` (server side), `_dispatcher.ts`
 *    (routes incoming requests and stray responses, answers the rest),
 *    `user_agent.ts` (the facade), this `mod.ts`
 * 6. control — `control.ts`, the control plugin, which uses only this module
 *    (and `sdp.ts`); `plugins/controls.ts` registers it
 *
 * Files whose name starts with `_` are private to the folder; everything
 * public is exported here.
 *
 * @example
 * ```ts
 * import { createOffer, SipUserAgent } from "./plugins/sip/mod.ts";
 * const ua = new SipUserAgent({ hostname: "127.0.0.1", port: 0, userName: "alice" });
 * const codecs = createRegistry().codecs; // the codecs the plugins registered
 * const offer = createOffer({ address: "127.0.0.1", port: 40000, registry: codecs });
 * const call = ua.invite("sip:bob@127.0.0.1:5062", { sdp: offer });
 * await call.established;
 * await call.hangup();
 * await ua.close();
 * ```
 *
 * @module
 */

// The core types this API takes (a clock for every SIP timer, a logger).
export type { Clock, Timer } from "../../core/clock.ts";
export type { LogFields, Logger, LogLevel } from "../../core/log.ts";

// 1. message
export { type PartialRequest, SipParseError } from "./errors.ts";
export { SipHeaders } from "./headers.ts";
export {
  bodyText,
  createRequest,
  createResponse,
  type CSeq,
  getCallId,
  getCSeq,
  getFrom,
  getTo,
  parseMessage,
  type ParseOptions,
  reasonPhrase,
  type RequestInit,
  type ResponseInit,
  serializeMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  tagOf,
  topVia,
} from "./message.ts";
export { formatNameAddr, formatUri, type NameAddr, parseNameAddr, parseUri, type SipUri } from "./uri.ts";
export { type Via } from "./via.ts";
export type { Params } from "./syntax.ts";
export { newBranch, newCallId, newTag } from "./ids.ts";
export { type AuthParams, formatCredentials, parseChallenges, parseCredentials } from "./auth_header.ts";
export {
  agreedMedia,
  type AnswerOptions,
  createAnswer,
  createOffer,
  type Direction,
  negotiated,
  type NegotiatedAudio,
  NoCommonCodecError,
  type OfferOptions,
  SdpError,
} from "./sdp.ts";

// 2. transport
export {
  type Address,
  type DatagramTransport,
  type SipMessageEvent,
  SipTransport,
  type SipTransportOptions,
  type SipTransportStats,
} from "./transport.ts";
export { localAddressFacing } from "./local_address.ts";
export { formatTraceEvent, maskCredentials, type SipTraceEvent, type SipTracer, TracingTransport } from "./trace.ts";

// 3. transaction
export {
  type ClientState,
  type ClientTransaction,
  type ClientTransactionUser,
  DestinationUnreachableError,
  type InviteServerTransaction,
  type MessageSender,
  resolveTimers,
  type ServerState,
  type ServerTransaction,
  type ServerTransactionUser,
  type StatelessServerTransaction,
  type TimerSettings,
  type Transaction,
  TransactionLayer,
  type TransactionLayerOptions,
} from "./transaction.ts";

// 4. dialog
export {
  Dialog,
  type DialogInit,
  type DialogRole,
  type DialogState,
  type InDialogRequestOptions,
  screenRequest,
  type UasPolicy,
} from "./dialog.ts";

// 5. user agent
export {
  type Authenticator,
  type ChallengeContext,
  type CredentialsHeader,
  type CredentialsHeaderName,
  credentialsHeaderName,
  isChallenge,
  MAX_AUTH_ROUNDS,
} from "./auth.ts";
export {
  DIGEST_ALGORITHMS,
  type DigestAlgorithm,
  digestAuthenticator,
  type DigestAuthenticatorOptions,
  type DigestCredentials,
  digestHash,
  type DigestInput,
  type DigestQop,
  digestResponse,
  formatNonceCount,
} from "./digest.ts";
export {
  Call,
  type CallEndInfo,
  type CallEvents,
  CallFailedError,
  type CallInit,
  type CallState,
  type EstablishedEvent,
  type ProgressEvent,
} from "./call.ts";
export { type InviteOptions, OutgoingCall } from "./outgoing_call.ts";
export { IncomingCall } from "./incoming_call.ts";
export {
  parseRegisterRequest,
  type RegisterContact,
  type RegisterOptions,
  type RegisterRequest,
  type RegistrarHandler,
  type RegistrarReply,
  Registration,
  RegistrationError,
  type RegistrationInit,
  type RegistrationOps,
} from "./register.ts";
export {
  type KeeperEvents,
  type KeeperFailure,
  type KeeperState,
  type KeepRegisteredOptions,
  refreshDelay,
  RegistrationKeeper,
} from "./registration_keeper.ts";
export {
  ALLOWED_METHODS,
  type OverloadOptions,
  SipUserAgent,
  type SipUserAgentOptions,
  USER_AGENT,
  type UserAgentEvents,
  type UserAgentUsage,
} from "./user_agent.ts";
