/**
 * The relay family: a media relay and its clients.
 *
 * - `relay` (control, `relay_control.ts`): clients register over TCP with the
 *   line protocol of `protocol.ts`; the relay (`server.ts`) forwards each
 *   registered client's UDP datagrams to its target.
 * - `relay-client` (control, `client_control.ts`): registers (`registration.ts`:
 *   retries, heartbeats, re-registration, DISCONNECT) and runs the file's send
 *   and receive chains through the relay's UDP port.
 * - Stages: `rtp-end-marker` and `rtp-end-detector` (`end_marker.ts`: the
 *   end-of-transmission packet), `silence-detector` (`silence_detector.ts`:
 *   warns once about a silent microphone), `rtp-timeline` (`rtp_timeline.ts`:
 *   records on the sender's timeline, for the file-driven client).
 * - `stream.ts`: the TCP connections (and their in-memory twin for tests).
 *
 * @module
 */
import type { AnyControlPlugin } from "../../core/control.ts";
import type { AnyPlugin } from "../../core/stage.ts";
import { relayClientControl } from "./client_control.ts";
import { rtpEndDetector, rtpEndMarker } from "./end_marker.ts";
import { relayControl } from "./relay_control.ts";
import { rtpTimeline } from "./rtp_timeline.ts";
import { silenceDetector } from "./silence_detector.ts";

export { endMarkerAfter, isEndMarker } from "./end_marker.ts";
export {
  formatReply,
  formatRequest,
  LineSplitter,
  type ParseProblem,
  parseReply,
  parseRequest,
  RELAY_DEFAULTS,
  type RelayReply,
  type RelayRequest,
} from "./protocol.ts";
export {
  heartbeatInterval,
  MIN_HEARTBEAT_MS,
  type Registered,
  RegistrationError,
  type RegistrationEvents,
  type RegistrationOptions,
  RelayRegistration,
} from "./registration.ts";
export { type RelayClientStats, RelayServer, type RelayServerOptions, type RelayStats } from "./server.ts";
export {
  MemoryStreamNetwork,
  type MemoryStreamOptions,
  type StreamConn,
  type StreamHandlers,
  type StreamListener,
  type StreamNetwork,
  TcpStreamNetwork,
} from "./stream.ts";

/** The stage plugins of this family, registered as built-ins. */
export const plugins: AnyPlugin[] = [rtpEndMarker, rtpEndDetector, rtpTimeline, silenceDetector];

/** The control plugins of this family, registered as built-ins. */
export const controls: AnyControlPlugin[] = [relayControl, relayClientControl];
