/**
 * SIP parser and serializer speed on a typical INVITE with an SDP body
 * (about 650 bytes, the shape a softphone sends).
 *
 * Run: `deno bench -A bench/sip_parse_bench.ts`
 */
import { parseMessage, serializeMessage } from "../plugins/sip/message.ts";
import { createOffer } from "../plugins/sip/sdp.ts";
import { CodecRegistry } from "../core/codec.ts";
import { builtinCodecs } from "../plugins/builtin.ts";

const codecs = new CodecRegistry(builtinCodecs);

const sdp = createOffer({ registry: codecs, address: "192.0.2.10", port: 40000, sessionId: "3724394400" });
const body = new TextEncoder().encode(sdp);
const head = [
  "INVITE sip:bob@192.0.2.20:5060 SIP/2.0",
  "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9a3c5d21e8f0;rport",
  "Max-Forwards: 70",
  'From: "Alice Example" <sip:alice@192.0.2.10>;tag=9fxced76sl',
  "To: <sip:bob@192.0.2.20:5060>",
  "Call-ID: 3848276298220188511@192.0.2.10",
  "CSeq: 1 INVITE",
  "Contact: <sip:alice@192.0.2.10:5060>",
  "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS",
  "Supported: replaces, timer",
  "User-Agent: voxpipe/0.1",
  "Content-Type: application/sdp",
  `Content-Length: ${body.length}`,
].join("\r\n") + "\r\n\r\n";
const datagram = new Uint8Array([...new TextEncoder().encode(head), ...body]);
const parsed = parseMessage(datagram);

Deno.bench({ name: `parse INVITE (${datagram.length} bytes)`, group: "sip", baseline: true }, () => {
  parseMessage(datagram);
});

Deno.bench({ name: "serialize INVITE", group: "sip" }, () => {
  serializeMessage(parsed);
});
