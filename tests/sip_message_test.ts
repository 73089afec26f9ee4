import assert from "node:assert/strict";
import {
  bodyText,
  createRequest,
  createResponse,
  getCSeq,
  getFrom,
  getTo,
  parseMessage,
  reasonPhrase,
  serializeMessage,
  SipParseError,
  type SipRequest,
  type SipResponse,
  topVia,
} from "../plugins/sip/message.ts";
import { canonicalName, SipHeaders, splitHeaderValue } from "../plugins/sip/headers.ts";
import { formatNameAddr, formatUri, isSipUri, parseNameAddr, parseUri } from "../plugins/sip/uri.ts";
import { formatVia, parseVia, responseTarget } from "../plugins/sip/via.ts";

const te = new TextEncoder();

/** Joins lines with CRLF and appends the empty line plus body. */
function msg(lines: string[], body = ""): string {
  return lines.join("\r\n") + "\r\n\r\n" + body;
}

const BASIC = [
  "INVITE sip:bob@biloxi.example.com SIP/2.0",
  "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
  "Max-Forwards: 70",
  "To: Bob <sip:bob@biloxi.example.com>",
  'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
  "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
  "CSeq: 314159 INVITE",
  "Contact: <sip:alice@pc33.atlanta.example.com>",
  "Content-Type: application/sdp",
];

function parseError(input: string | Uint8Array, opts = {}): SipParseError {
  try {
    parseMessage(input, opts);
  } catch (e) {
    assert.ok(e instanceof SipParseError, `expected SipParseError, got ${e}`);
    return e;
  }
  assert.fail("expected a parse error");
}

function asRequest(m: ReturnType<typeof parseMessage>): SipRequest {
  assert.equal(m.kind, "request");
  return m as SipRequest;
}

Deno.test("parse: basic INVITE with body framed by Content-Length", () => {
  const body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
  const m = asRequest(parseMessage(msg([...BASIC, `Content-Length: ${te.encode(body).length}`], body)));
  assert.equal(m.method, "INVITE");
  assert.equal(m.uri, "sip:bob@biloxi.example.com");
  assert.equal(m.version, "SIP/2.0");
  assert.equal(m.headers.get("call-id"), "a84b4c76e66710@pc33.atlanta.example.com");
  assert.deepEqual(getCSeq(m), { seq: 314159, method: "INVITE" });
  assert.equal(getFrom(m).params.tag, "1928301774");
  assert.equal(getFrom(m).displayName, "Alice");
  assert.equal(getTo(m).params.tag, undefined);
  assert.equal(bodyText(m), body);
});

Deno.test("parse: status line, empty reason phrase, multi-word reason", () => {
  const head = [
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa",
    "From: <sip:a@x>;tag=1",
    "To: <sip:b@y>;tag=2",
    "Call-ID: c1",
    "CSeq: 1 INVITE",
    "Content-Length: 0",
  ];
  const r = parseMessage(msg(["SIP/2.0 183 Session Progress", ...head])) as SipResponse;
  assert.equal(r.kind, "response");
  assert.equal(r.status, 183);
  assert.equal(r.reason, "Session Progress");
  const e = parseMessage(msg(["SIP/2.0 200 ", ...head])) as SipResponse;
  assert.equal(e.status, 200);
  assert.equal(e.reason, "");
  assert.equal(parseError(msg(["SIP/2.0 99 Low", ...head])).reason, "bad status line");
  assert.equal(parseError(msg(["SIP/3.0 200 OK", ...head])).reason, "unsupported SIP version 'SIP/3.0'");
});

Deno.test("parse: compact forms and case-insensitive names normalized to full names", () => {
  const m = asRequest(parseMessage(msg([
    "OPTIONS sip:bob@b.example SIP/2.0",
    "v: SIP/2.0/UDP h.example;branch=z9hG4bK1",
    "f: <sip:a@a.example>;tag=x",
    "t: <sip:bob@b.example>",
    "i: abc@h",
    "cseq: 7 OPTIONS",
    "MAX-FORWARDS: 70",
    "m: <sip:a@h.example>",
    "k: timer, 100rel",
    "s: hello",
    "e: gzip",
    "o: presence",
    "r: <sip:c@c.example>",
    "u: dialog",
    "c: text/plain",
    "l: 0",
  ])));
  const names = [...m.headers].map(([n]) => n);
  assert.deepEqual(names, [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Contact",
    "Supported",
    "Supported",
    "Subject",
    "Content-Encoding",
    "Event",
    "Refer-To",
    "Allow-Events",
    "Content-Type",
    "Content-Length",
  ]);
  assert.deepEqual(m.headers.getAll("SUPPORTED"), ["timer", "100rel"]);
  assert.equal(m.headers.get("cOnTeNt-TyPe"), "text/plain");
  assert.equal(canonicalName("www-authenticate"), "WWW-Authenticate");
});

Deno.test("parse: unusual whitespace, tabs, LF-only line ends, leading CRLFs", () => {
  // The request line takes single spaces only (RFC 3261 25.1; RFC 4475 3.1.2.9 lets a parser reject more).
  assert.equal(
    parseError("INVITE  sip:bob@b.example   SIP/2.0\r\n\r\n").reason,
    "more than one space between request line elements",
  );
  const raw = "\r\n\r\nINVITE sip:bob@b.example SIP/2.0\n" +
    "Via :\tSIP / 2.0 / UDP   h.example : 5070 ;  branch = z9hG4bKws ; rport\n" +
    "From:<sip:a@a.example>  ;  tag = t1 \n" +
    "To:\t<sip:bob@b.example>\n" +
    "Call-ID:   ws1   \n" +
    "CSeq:  8    INVITE\n" +
    "Content-Length:\t0\n\n";
  const m = asRequest(parseMessage(raw));
  assert.equal(m.uri, "sip:bob@b.example");
  const via = topVia(m);
  assert.equal(via.host, "h.example");
  assert.equal(via.port, 5070);
  assert.equal(via.params.branch, "z9hG4bKws");
  assert.equal(via.params.rport, null);
  assert.equal(getFrom(m).params.tag, "t1");
  assert.equal(m.headers.get("Call-ID"), "ws1");
  assert.deepEqual(getCSeq(m), { seq: 8, method: "INVITE" });
});

Deno.test("parse: line folding joins continuation lines with one space", () => {
  const m = asRequest(parseMessage(msg([
    "OPTIONS sip:b@b.example SIP/2.0",
    "Via: SIP/2.0/UDP h.example",
    "   ;branch=z9hG4bKfold",
    "From: <sip:a@a.example>;tag=1",
    "To: <sip:b@b.example>",
    "Subject: I know you're there,",
    "\tpick up the phone",
    "         and talk to me!",
    "Call-ID: fold",
    "CSeq: 1 OPTIONS",
  ])));
  assert.equal(m.headers.get("Subject"), "I know you're there, pick up the phone and talk to me!");
  assert.equal(topVia(m).params.branch, "z9hG4bKfold");
  assert.equal(
    parseError("OPTIONS sip:b@b SIP/2.0\r\n folded-first\r\n\r\n").reason,
    "continuation line before first header",
  );
});

Deno.test("parse: comma lists are split except inside quotes/<> and for non-list headers", () => {
  const m = asRequest(parseMessage(msg([
    "INVITE sip:b@b.example SIP/2.0",
    "Via: SIP/2.0/UDP p1.example;branch=z9hG4bK1, SIP/2.0/UDP p2.example:5070;branch=z9hG4bK2",
    "v: SIP/2.0/UDP p3.example;branch=z9hG4bK3",
    "From: <sip:a@a.example>;tag=1",
    "To: <sip:b@b.example>",
    "Call-ID: list",
    "CSeq: 1 INVITE",
    'Contact: "Doe, John" <sip:jd@h.example;x=a,b>;q=0.5, <sip:other@h.example>',
    "Record-Route: <sip:p1.example;lr>,<sip:p2.example;lr>",
    "Allow: INVITE,ACK , BYE",
    "Date: Sat, 13 Nov 2010 23:29:00 GMT",
    'WWW-Authenticate: Digest realm="a.example", nonce="abc", qop="auth,auth-int"',
    "X-Custom: a, b",
  ])));
  assert.deepEqual(m.headers.getAll("Via").map((v) => parseVia(v).host), ["p1.example", "p2.example", "p3.example"]);
  const contacts = m.headers.getAll("Contact");
  assert.equal(contacts.length, 2);
  const c0 = parseNameAddr(contacts[0]);
  assert.equal(c0.displayName, "Doe, John");
  assert.equal(c0.uri.params.x, "a,b");
  assert.equal(c0.params.q, "0.5");
  assert.deepEqual(m.headers.getAll("Record-Route"), ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
  assert.deepEqual(m.headers.getAll("Allow"), ["INVITE", "ACK", "BYE"]);
  assert.deepEqual(m.headers.getAll("Date"), ["Sat, 13 Nov 2010 23:29:00 GMT"]);
  assert.equal(m.headers.getAll("WWW-Authenticate").length, 1);
  assert.deepEqual(m.headers.getAll("X-Custom"), ["a, b"]);
  assert.deepEqual(splitHeaderValue("Route", '<sip:a;lr>, "x,y" <sip:b>'), ["<sip:a;lr>", '"x,y" <sip:b>']);
});

Deno.test("parse: quoted strings with escapes in display names", () => {
  const m = asRequest(parseMessage(msg([
    "MESSAGE sip:b@b.example SIP/2.0",
    "Via: SIP/2.0/UDP h.example;branch=z9hG4bKq",
    'From: "J \\"Rosenberg\\" \\\\ <\\\\>; tag=fake" <sip:j@a.example>;tag=real',
    'To: "<sip:not@me>, comma" <sip:b@b.example>',
    "Call-ID: q1",
    "CSeq: 1 MESSAGE",
  ])));
  const from = getFrom(m);
  assert.equal(from.displayName, 'J "Rosenberg" \\ <\\>; tag=fake');
  assert.equal(from.params.tag, "real");
  assert.ok(isSipUri(from.uri));
  assert.equal(from.uri.user, "j");
  const to = getTo(m);
  assert.equal(to.displayName, "<sip:not@me>, comma");
  assert.ok(isSipUri(to.uri));
  assert.equal(to.uri.user, "b");
  assert.equal(to.params.tag, undefined);
  // Formatting escapes again, and re-parses to the same value.
  assert.deepEqual(parseNameAddr(formatNameAddr(from)), from);
});

Deno.test("parse: IPv6 in Via sent-by, received and Request-URI", () => {
  const m = asRequest(parseMessage(msg([
    "BYE sip:[2001:db8::10]:5070;transport=udp SIP/2.0",
    "Via: SIP/2.0/UDP [2001:db8::9]:5080;branch=z9hG4bK6;received=2001:db8::9;rport=5081",
    "Via: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK7",
    "From: <sip:a@[2001:db8::9]>;tag=1",
    "To: <sip:b@[2001:db8::10]>;tag=2",
    "Call-ID: v6",
    "CSeq: 2 BYE",
  ])));
  const via = topVia(m);
  assert.equal(via.host, "2001:db8::9");
  assert.equal(via.port, 5080);
  assert.equal(via.params.received, "2001:db8::9");
  assert.deepEqual(responseTarget(via), { hostname: "2001:db8::9", port: 5081 });
  const second = parseVia(m.headers.getAll("Via")[1]);
  assert.equal(second.host, "2001:db8::1");
  assert.equal(second.port, undefined);
  const ruri = parseUri(m.uri);
  assert.equal(ruri.host, "2001:db8::10");
  assert.equal(ruri.port, 5070);
  assert.equal(formatVia(via), "SIP/2.0/UDP [2001:db8::9]:5080;branch=z9hG4bK6;received=2001:db8::9;rport=5081");
});

Deno.test("parse: missing mandatory headers give an error naming the header", () => {
  const all = [
    "Via: SIP/2.0/UDP h.example;branch=z9hG4bKm",
    "From: <sip:a@a.example>;tag=1",
    "To: <sip:b@b.example>",
    "Call-ID: m1",
    "CSeq: 1 OPTIONS",
  ];
  const names = ["Via", "From", "To", "Call-ID", "CSeq"];
  for (let i = 0; i < all.length; i++) {
    const lines = ["OPTIONS sip:b@b.example SIP/2.0", ...all.filter((_, j) => j !== i)];
    assert.equal(parseError(msg(lines)).reason, `missing ${names[i]} header`);
  }
});

Deno.test("parse: bad Content-Length (negative, non-numeric, larger than body, conflicting)", () => {
  const base = [
    "MESSAGE sip:b@b.example SIP/2.0",
    "Via: SIP/2.0/UDP h.example;branch=z9hG4bKcl",
    "From: <sip:a@a.example>;tag=1",
    "To: <sip:b@b.example>",
    "Call-ID: cl",
    "CSeq: 1 MESSAGE",
  ];
  assert.equal(parseError(msg([...base, "Content-Length: -5"], "hello")).reason, "bad Content-Length '-5'");
  assert.equal(parseError(msg([...base, "Content-Length: abc"], "hello")).reason, "bad Content-Length 'abc'");
  assert.equal(parseError(msg([...base, "l: 12"], "hello")).reason, "Content-Length larger than body");
  assert.equal(
    parseError(msg([...base, "Content-Length: 5", "Content-Length: 6"], "hello!")).reason,
    "conflicting Content-Length headers",
  );
  // Leading zeros are fine.
  assert.equal(bodyText(parseMessage(msg([...base, "Content-Length: " + "0".repeat(60) + "5"], "hello"))), "hello");
  // Longer body than Content-Length: truncated to it.
  const m = parseMessage(msg([...base, "Content-Length: 3"], "hello"));
  assert.equal(bodyText(m), "hel");
  // Missing Content-Length over UDP: the rest of the datagram.
  const r = parseMessage(msg(base, "whole rest\r\n"));
  assert.equal(bodyText(r), "whole rest\r\n");
});

Deno.test("parse: partial request is attached for 400 answers", () => {
  const e = parseError(msg([
    "INVITE sip:b@b.example SIP/2.0",
    "Via: SIP/2.0/UDP h.example;branch=z9hG4bKp",
    "From: <sip:a@a.example>;tag=1",
    "To: <sip:b@b.example>",
    "Call-ID: p",
    "CSeq: 1 INVITE",
    "Content-Length: 100",
  ], "short"));
  assert.equal(e.reason, "Content-Length larger than body");
  assert.equal(e.partial?.method, "INVITE");
  assert.equal(e.partial?.headers.find(([n]) => n === "Call-ID")?.[1], "p");
  // Garbage has no partial.
  const g = parseError(new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x0d, 0x0a]));
  assert.equal(g.reason, "bad request line");
  assert.equal(g.partial, undefined);
});

Deno.test("parse: other malformed inputs give precise reasons", () => {
  const base = [
    "Via: SIP/2.0/UDP h.example;branch=z9hG4bKx",
    "From: <sip:a@a.example>;tag=1",
    "To: <sip:b@b.example>",
    "Call-ID: x",
  ];
  assert.equal(
    parseError(msg(["INVITE sip:b@b.example SIP/2.0", ...base, "CSeq: 1 BYE"])).reason,
    "CSeq method 'BYE' does not match request method 'INVITE'",
  );
  assert.equal(
    parseError(msg(["INVITE sip:b@b.example SIP/2.0", ...base, "CSeq: one INVITE"])).reason,
    "bad CSeq 'one INVITE'",
  );
  assert.equal(
    parseError(msg(["INVITE sip:b@b.example SIP/2.0", ...base, "CSeq: 99999999999 INVITE"])).reason,
    "bad CSeq '99999999999 INVITE'",
  );
  assert.match(
    parseError(msg(["INVITE sip:b@b.example SIP/2.0", ...base, "CSeq: 1 INVITE", "Broken line"])).reason,
    /^bad header line 'Broken line'/,
  );
  assert.match(parseError(msg(["INVITE sip:b@[::1 SIP/2.0", ...base, "CSeq: 1 INVITE"])).reason, /^bad Request-URI: /);
  assert.equal(
    parseError(msg(["INVITE sip:b@b.example SIP/3.0", ...base, "CSeq: 1 INVITE"])).reason,
    "unsupported SIP version 'SIP/3.0'",
  );
  assert.match(
    parseError(msg(["INVITE sip:b@b.example SIP/2.0", "Via: SIP/2.0/UDP", ...base.slice(1), "CSeq: 1 INVITE"])).reason,
    /^bad Via header: /,
  );
  assert.match(
    parseError(
      msg([
        "INVITE sip:b@b.example SIP/2.0",
        base[0],
        'From: "unterminated <sip:a@a>',
        ...base.slice(2),
        "CSeq: 1 INVITE",
      ]),
    )
      .reason,
    /^bad From header: unterminated quoted string/,
  );
  assert.equal(
    parseError(msg(["INVITE sip:b@b.example SIP/2.0", ...base, "CSeq: 1 INVITE", "To: <sip:c@c>"])).reason,
    "more than one To header",
  );
  assert.equal(parseError("").reason, "empty message");
  assert.equal(parseError("\r\n\r\n").reason, "empty message");
  // tel: URIs are accepted as Request-URI.
  assert.equal(
    asRequest(parseMessage(msg(["INVITE tel:+15551234 SIP/2.0", ...base, "CSeq: 1 INVITE"]))).uri,
    "tel:+15551234",
  );
});

Deno.test("parse: size limits (datagram, header count, line length)", () => {
  const big = "x".repeat(70000);
  assert.equal(parseError(big).reason, "message too large (70000 bytes, limit 65535)");
  const many = ["OPTIONS sip:b@b.example SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bKl"];
  for (let i = 0; i < 30; i++) many.push(`X-H${i}: ${i}`);
  assert.equal(parseError(msg(many), { maxHeaders: 20 }).reason, "too many headers (limit 20)");
  const long = ["OPTIONS sip:b@b.example SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bKl", "Subject: " + "y".repeat(500)];
  assert.equal(parseError(msg(long), { maxLineLength: 200 }).reason, "header line too long (limit 200)");
});

Deno.test("serialize: round trip keeps start line, headers and body; Content-Length recomputed", () => {
  const body = "v=0\r\n";
  const original = parseMessage(
    msg([...BASIC, "l: 999", "Subject: folded", " line"], body + "junk").replace("l: 999", `l: ${body.length}`),
  );
  const bytes = serializeMessage(original);
  const text = new TextDecoder().decode(bytes);
  assert.ok(text.startsWith("INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"));
  assert.ok(text.includes("\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
  assert.ok(text.includes("\r\nSubject: folded line\r\n"));
  const again = parseMessage(bytes);
  assert.deepEqual(
    [...again.headers],
    [...original.headers].filter(([n]) => n !== "Content-Length").concat([["Content-Length", "5"]]),
  );
  assert.deepEqual(again.body, original.body);
  assert.deepEqual(serializeMessage(again), bytes);
});

Deno.test("createResponse copies Via/From/To/Call-ID/CSeq, adds To tag, Record-Route for 2xx INVITE", () => {
  const inv = asRequest(parseMessage(msg([
    ...BASIC.slice(0, 2),
    "Via: SIP/2.0/UDP second.example;branch=z9hG4bK2",
    ...BASIC.slice(2),
    "Record-Route: <sip:proxy.example;lr>",
    "Timestamp: 54",
  ])));
  const ok = createResponse(inv, 200, undefined, { toTag: "xyz", headers: [["Contact", "<sip:bob@h>"]] });
  assert.equal(ok.reason, "OK");
  assert.deepEqual(ok.headers.getAll("Via"), inv.headers.getAll("Via"));
  assert.equal(getTo(ok).params.tag, "xyz");
  assert.equal(ok.headers.get("Record-Route"), "<sip:proxy.example;lr>");
  assert.equal(ok.headers.get("Contact"), "<sip:bob@h>");
  const trying = createResponse(inv, 100, undefined, { toTag: "xyz" });
  assert.equal(getTo(trying).params.tag, undefined);
  assert.equal(trying.headers.get("Timestamp"), "54");
  assert.equal(reasonPhrase(481), "Call/Transaction Does Not Exist");
  assert.equal(reasonPhrase(499), "Client Error");
  const req = createRequest({
    method: "OPTIONS",
    uri: parseUri("sip:x@y"),
    headers: [["Max-Forwards", "70"]],
    body: "a",
  });
  assert.equal(req.uri, "sip:x@y");
  assert.equal(req.body.length, 1);
});

Deno.test("uri: parse and format sip/sips URIs", () => {
  const u = parseUri(
    "sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=project&priority=urgent",
  );
  assert.equal(u.scheme, "sips");
  assert.equal(u.user, "alice");
  assert.equal(u.password, "secret");
  assert.equal(u.host, "Atlanta.example.com");
  assert.equal(u.port, 5061);
  assert.deepEqual(u.params, { transport: "TCP", lr: null, maddr: "239.255.255.1" });
  assert.deepEqual(u.headers, { subject: "project", priority: "urgent" });
  assert.equal(
    formatUri(u),
    "sips:alice:secret@Atlanta.example.com:5061;transport=TCP;lr;maddr=239.255.255.1?subject=project&priority=urgent",
  );
  const semi = parseUri("sip:alice;day=tuesday@atlanta.example.com");
  assert.equal(semi.user, "alice;day=tuesday");
  const esc = parseUri("sip:sip%3Auser%40example.com@company.com;other-param=summit");
  assert.equal(esc.user, "sip%3Auser%40example.com");
  const v6 = parseUri("sip:[2001:db8::1]");
  assert.equal(v6.host, "2001:db8::1");
  assert.equal(formatUri(v6), "sip:[2001:db8::1]");
  assert.throws(() => parseUri("http://x"), /unsupported URI scheme 'http'/);
  assert.throws(() => parseUri("sip:a@"), /missing host/);
  assert.throws(() => parseUri("sip:a@host:99999"), /port out of range/);
  assert.throws(() => parseUri("sip:a@ho st"), /whitespace in URI/);
});

Deno.test("uri: name-addr and addr-spec forms", () => {
  const a = parseNameAddr("sip:alice@a.example;tag=abc");
  assert.equal(a.displayName, undefined);
  assert.deepEqual(a.uri.params, {});
  assert.equal(a.params.tag, "abc");
  const b = parseNameAddr("Bob  Smith <sip:bob@b.example;transport=udp>;tag=9;expires=60");
  assert.equal(b.displayName, "Bob Smith");
  assert.equal(b.uri.params.transport, "udp");
  assert.deepEqual(b.params, { tag: "9", expires: "60" });
  assert.equal(formatNameAddr(b), '"Bob Smith" <sip:bob@b.example;transport=udp>;tag=9;expires=60');
  const c = parseNameAddr("<sip:c@c.example>");
  assert.equal(c.displayName, undefined);
  assert.throws(() => parseNameAddr('"x" sip:y@z'), /expected '<'/);
  assert.throws(() => parseNameAddr("<sip:y@z"), /missing '>'/);
});

Deno.test("headers: ordered multi-map operations", () => {
  const h = new SipHeaders([["Via", "a"], ["From", "f"], ["Via", "b"]]);
  h.prepend("v", "top");
  assert.deepEqual(h.getAll("VIA"), ["top", "a", "b"]);
  h.set("via", "only");
  assert.deepEqual(h.toArray(), [["Via", "only"], ["From", "f"]]);
  h.setFirst("Call-ID", "x");
  assert.equal(h.get("i"), "x");
  assert.equal(h.delete("f"), 1);
  assert.equal(h.has("From"), false);
  const c = h.clone();
  c.append("To", "t");
  assert.equal(h.has("To"), false);
});

Deno.test("parse: a tortuous INVITE combining many oddities at once", () => {
  const body =
    "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\nt=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\n";
  const raw = [
    "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
    "TO :",
    " sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
    "  ;",
    "  tag = 98asjd8",
    "MaX-fOrWaRdS: 0068",
    "Call-ID: wsinv.ndaksdj@192.0.2.1",
    "Content-Length   : " + new TextEncoder().encode(body).length,
    "cseq: 0009",
    "  INVITE",
    "Via  : SIP  /   2.0",
    " /UDP",
    "    192.0.2.2;rport;branch=390skdjuw",
    "s :",
    "NewFangledHeader:   newfangled value",
    " continued newfangled value",
    "UnknownHeaderWithUnusualValue: ;;,,;;,;",
    "Content-Type: application/sdp",
    "Route:",
    " <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
    "v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
    "  branch  =   z9hG4bK9ikj8  ,",
    " SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
    " z9hG4bK30239",
    'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
    "      newvalue ;",
    "  secondparam ; q = 0.33",
  ].join("\r\n") + "\r\n\r\n" + body;
  const m = asRequest(parseMessage(raw));
  assert.equal(getTo(m).params.tag, "1918181833n");
  assert.equal(getFrom(m).displayName, 'J Rosenberg \\"');
  assert.equal(getFrom(m).params.tag, "98asjd8");
  assert.equal(m.headers.get("Max-Forwards"), "0068");
  assert.deepEqual(getCSeq(m), { seq: 9, method: "INVITE" });
  const vias = m.headers.getAll("Via").map(parseVia);
  assert.deepEqual(vias.map((v) => [v.transport, v.host, v.params.branch]), [
    ["UDP", "192.0.2.2", "390skdjuw"],
    ["TCP", "spindle.example.com", "z9hG4bK9ikj8"],
    ["UDP", "192.168.255.111", "z9hG4bK30239"],
  ]);
  assert.equal(m.headers.get("Subject"), "");
  assert.equal(m.headers.get("NewFangledHeader"), "newfangled value continued newfangled value");
  assert.equal(m.headers.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;");
  const contact = parseNameAddr(m.headers.get("Contact")!);
  assert.equal(contact.displayName, 'Quoted string ""');
  assert.deepEqual(contact.params, { newparam: "newvalue", secondparam: null, q: "0.33" });
  assert.equal(parseNameAddr(m.headers.get("Route")!).uri.params["unknown-no-value"], null);
  assert.equal(bodyText(m), body);
});
