/**
 * Adversarial SIP inputs, shared by tests/sip_torture_test.ts (each is parsed or
 * refused with a clear reason) and bench/sip_parse_bench.ts (how long that takes).
 *
 * Two kinds:
 * - whole datagrams of up to 64 KB, given to `parseMessage` with its default limits
 *   (most are refused early by a limit) and with the limits lifted to the datagram
 *   size, so that the inner parsers see all of the hostile content;
 * - single values of about 60 000 characters given straight to one inner parser
 *   (Via, name-addr, URI, parameter list, quoted string, list splitting).
 *
 * @module
 */
import { seededRandom } from "../core/random.ts";

/** The largest datagram the inputs are built to (one below the largest UDP payload, 65 535). */
export const DATAGRAM = 65_000;
/** The length of the hostile run inside a value or a datagram. */
export const RUN = 60_000;

/** A whole datagram and what `parseMessage` must say about it. */
export interface DatagramCase {
  /** Short name (bench label). */
  name: string;
  /** The datagram. */
  data: Uint8Array;
  /** With default limits: `"parse"`, or a pattern the SipParseError reason matches. */
  expect: "parse" | RegExp;
  /** With limits lifted to the datagram size: `"parse"`, or a pattern of the reason. */
  expectLifted: "parse" | RegExp;
}

/** One value and what one inner parser must say about it. */
export interface ValueCase {
  /** Short name (bench label). */
  name: string;
  /** Which parser: `via`, `address` (name-addr/addr-spec), `uri`, `params`, `quoted`, `split`. */
  parser: "via" | "address" | "uri" | "params" | "quoted" | "split";
  /** The value. */
  value: string;
  /** `"parse"`, or a pattern the SipParseError reason matches. */
  expect: "parse" | RegExp;
}

const te = new TextEncoder();

const HEAD = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
  "Max-Forwards: 70",
  "To: Bob <sip:bob@biloxi.example.com>",
  'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
  "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
  "CSeq: 314159 INVITE",
];

/** A request whose mandatory headers are fine, with `extra` header lines (CRLF-joined) after them. */
function request(extra: string, opts: { replace?: string; head?: string[] } = {}): Uint8Array {
  const head = (opts.head ?? HEAD).filter((l) => !opts.replace || !l.startsWith(opts.replace + ":"));
  const text = head.join("\r\n") + "\r\n" + extra + "\r\n\r\n";
  const bytes = te.encode(text);
  if (bytes.length > DATAGRAM) throw new Error(`case too large: ${bytes.length}`);
  return bytes;
}

function fill(unit: string, size = RUN): string {
  return unit.repeat(Math.max(1, Math.floor(size / unit.length)));
}

/** The whole-datagram cases. */
export function datagramCases(): DatagramCase[] {
  const rand = seededRandom(4475);
  const noise = new Uint8Array(DATAGRAM);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(rand() * 256);
  const lineTooLong = /header line too long/;
  return [
    { name: "random bytes", data: noise, expect: /bad (request|status) line|bad method/, expectLifted: /./ },
    {
      name: "60 KB header line",
      data: request("Subject: " + fill("a")),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "thousands of headers",
      data: request(fill("X-H: 1\r\n", RUN).slice(0, -2)),
      expect: /too many headers \(limit 256\)/,
      expectLifted: "parse",
    },
    {
      name: "thousands of header lines without a colon",
      data: request(fill("x\r\n", RUN).slice(0, -2)),
      expect: /too many headers \(limit 256\)/,
      expectLifted: /bad header line 'x'/,
    },
    {
      name: "thousands of folded lines",
      data: request("Subject: a\r\n" + fill(" b\r\n", RUN).slice(0, -2)),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "60 KB Via comment, unterminated '((('",
      data: request("Via: SIP/2.0/UDP h;branch=z9hG4bK2 " + fill("(")),
      expect: lineTooLong,
      expectLifted: /unterminated comment in Via/,
    },
    {
      name: "Via comment nested 30 000 deep",
      data: request("Via: SIP/2.0/UDP h;branch=z9hG4bK2 " + fill("(", RUN / 2) + fill(")", RUN / 2)),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "60 KB of spaces inside a Via",
      data: request("Via: SIP/2.0/UDP" + fill(" ") + "h x"),
      expect: lineTooLong,
      expectLifted: /bad Via header: unexpected 'x' after sent-by/,
    },
    {
      name: "60 KB of ';' in Via parameters",
      data: request("Via: SIP/2.0/UDP h" + fill(";")),
      expect: lineTooLong,
      expectLifted: /bad Via header: empty parameter in Via/,
    },
    {
      name: "thousands of Via parameters",
      data: request("Via: SIP/2.0/UDP h" + fill(";p1")),
      expect: lineTooLong,
      expectLifted: /bad Via header: parameter 'p1' repeated in Via/,
    },
    {
      name: "thousands of distinct Via parameters",
      data: request("Via: SIP/2.0/UDP h" + Array.from({ length: 8000 }, (_, i) => `;p${i}`).join("")),
      expect: lineTooLong,
      expectLifted: /too many parameters in Via \(limit 64\)/,
    },
    {
      name: "thousands of Via values in one header",
      data: request("Via: " + fill("SIP/2.0/UDP h, ").slice(0, -2), { replace: "Via" }),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "60 KB of ',' in Contact",
      data: request("Contact: " + fill(",")),
      expect: lineTooLong,
      expectLifted: /bad Contact header: empty element in Contact list/,
    },
    {
      name: "60 KB of '\"' in From",
      data: request("From: " + fill('"'), { replace: "From" }),
      expect: lineTooLong,
      expectLifted: /bad From header: expected '<' after display name/,
    },
    {
      name: "60 KB of '\\\"' (escaped quotes, unterminated) in From",
      data: request('From: "' + fill('\\"'), { replace: "From" }),
      expect: lineTooLong,
      expectLifted: /bad From header: unterminated quoted string/,
    },
    {
      name: "60 KB of '\\' in From",
      data: request("From: " + fill("\\"), { replace: "From" }),
      expect: lineTooLong,
      expectLifted: /bad From header: not a URI/,
    },
    {
      name: "60 KB of '<' in To",
      data: request("To: " + fill("<") + "sip:b@b>", { replace: "To" }),
      expect: lineTooLong,
      expectLifted: /bad To header: '<' inside '<>'/,
    },
    {
      name: "'<' nested 30 000 deep in To",
      data: request("To: " + fill("<", RUN / 2) + "sip:b@b" + fill(">", RUN / 2), { replace: "To" }),
      expect: lineTooLong,
      expectLifted: /bad To header: '<' inside '<>'/,
    },
    {
      name: "60 KB Request-URI",
      data: request("", { head: ["INVITE sip:" + fill("a") + "@b SIP/2.0", ...HEAD.slice(1)] }),
      expect: /start line too long/,
      expectLifted: "parse",
    },
    {
      name: "60 KB of spaces in the request line",
      data: request("", { head: ["INVITE" + fill(" ") + "sip:b@b SIP/2.0", ...HEAD.slice(1)] }),
      expect: /start line too long/,
      expectLifted: /more than one space between request line elements/,
    },
    {
      name: "60 KB of '%' in the Request-URI user",
      data: request("", { head: ["INVITE sip:" + fill("%") + "@b SIP/2.0", ...HEAD.slice(1)] }),
      expect: /start line too long/,
      expectLifted: /bad Request-URI: bad escape/,
    },
    {
      name: "60 KB of '@' in the Request-URI",
      data: request("", { head: ["INVITE sip:" + fill("@") + " SIP/2.0", ...HEAD.slice(1)] }),
      expect: /start line too long/,
      expectLifted: /bad Request-URI: empty user part/,
    },
    {
      name: "60 KB unterminated IPv6 reference",
      data: request("Contact: <sip:[" + fill(":") + ">"),
      expect: lineTooLong,
      expectLifted: /bad Contact header: unterminated IPv6 reference/,
    },
    {
      name: "Content-Length of 60 000 zeros",
      data: request("Content-Length: " + fill("0")),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "60 KB Call-ID",
      data: request("Call-ID: " + fill("c"), { replace: "Call-ID" }),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "60 KB of bare CR in a value",
      data: request("Subject: " + fill("\r")),
      expect: lineTooLong,
      expectLifted: /control character 0x0d in Subject header/,
    },
    {
      name: "60 KB of CRLF before the start line",
      data: te.encode(fill("\r\n")),
      expect: /empty message/,
      expectLifted: /empty message/,
    },
    {
      name: "thousands of Contact values",
      data: request("Contact: " + fill("<sip:a@b>,").slice(0, -1)),
      expect: lineTooLong,
      expectLifted: "parse",
    },
    {
      name: "thousands of quoted display names",
      data: request("To: " + fill('"a" '), { replace: "To" }),
      expect: lineTooLong,
      expectLifted: /bad To header: expected '<' after display name/,
    },
    {
      name: "thousands of URI parameters in To",
      data: request("To: <sip:b@b" + Array.from({ length: 8000 }, (_, i) => `;x${i}`).join("") + ">", {
        replace: "To",
      }),
      expect: lineTooLong,
      expectLifted: /too many URI parameters \(limit 64\)/,
    },
  ];
}

/** The single-value cases for the inner parsers. */
export function valueCases(): ValueCase[] {
  return [
    { name: "Via: '(' x 60 000", parser: "via", value: "SIP/2.0/UDP h " + fill("("), expect: /unterminated comment/ },
    {
      name: "Via: comment nested 30 000 deep",
      parser: "via",
      value: "SIP/2.0/UDP h " + fill("(", RUN / 2) + fill(")", RUN / 2),
      expect: "parse",
    },
    {
      name: "Via: '\\(' x 30 000 in a comment",
      parser: "via",
      value: "SIP/2.0/UDP h (" + fill("\\("),
      expect: /unterminated comment/,
    },
    { name: "Via: ';' x 60 000", parser: "via", value: "SIP/2.0/UDP h" + fill(";"), expect: /empty parameter/ },
    {
      name: "Via: spaces x 60 000 between fields",
      parser: "via",
      value: "SIP" + fill(" ") + "/2.0/UDP h",
      expect: "parse",
    },
    { name: "Via: '/' x 60 000", parser: "via", value: fill("/"), expect: /missing protocol name/ },
    { name: "address: '\"' x 60 000", parser: "address", value: fill('"'), expect: /expected '<'/ },
    { name: "address: '\\' x 60 000", parser: "address", value: fill("\\"), expect: /not a URI/ },
    { name: "address: '<' x 60 000", parser: "address", value: fill("<"), expect: /missing '>'/ },
    { name: "address: '<>' x 30 000", parser: "address", value: fill("<>"), expect: /not a URI/ },
    {
      name: "address: token display name of 60 000 words",
      parser: "address",
      value: fill("a ") + "<sip:b@b>",
      expect: "parse",
    },
    { name: "address: ';' x 60 000 after <uri>", parser: "address", value: "<sip:b@b>" + fill(";"), expect: /empty/ },
    { name: "uri: '@' x 60 000", parser: "uri", value: "sip:" + fill("@"), expect: /empty user part/ },
    { name: "uri: ':' x 60 000", parser: "uri", value: "sip:" + fill(":"), expect: /empty host/ },
    { name: "uri: ';' x 60 000", parser: "uri", value: "sip:h" + fill(";"), expect: /empty URI parameter/ },
    { name: "uri: '?&' x 30 000", parser: "uri", value: "sip:h?" + fill("&"), expect: "parse" },
    { name: "uri: '%' x 60 000", parser: "uri", value: "sip:" + fill("%") + "@h", expect: /bad escape/ },
    { name: "uri: scheme of 60 000 letters", parser: "uri", value: fill("s") + ":x", expect: "parse" },
    { name: "params: ';a' x 30 000", parser: "params", value: fill(";a"), expect: /repeated/ },
    {
      name: "params: '=' x 60 000",
      parser: "params",
      value: ";a" + fill("="),
      expect: /missing value of parameter 'a'/,
    },
    { name: "params: ' ; ' x 20 000", parser: "params", value: fill(" ; "), expect: /empty parameter/ },
    { name: "quoted: '\\\\' x 30 000", parser: "quoted", value: '"' + fill("\\\\") + '"', expect: "parse" },
    { name: "quoted: unterminated 60 000", parser: "quoted", value: '"' + fill("a"), expect: /unterminated/ },
    { name: "split: ',' x 60 000", parser: "split", value: fill(","), expect: "parse" },
    { name: "split: '\"' x 60 000", parser: "split", value: fill('"'), expect: "parse" },
    { name: "split: '<' x 60 000", parser: "split", value: fill("<"), expect: "parse" },
  ];
}
