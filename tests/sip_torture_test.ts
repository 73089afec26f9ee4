/**
 * The SIP parsers against hostile and tortuous input:
 *
 * - every message of RFC 4475 §3.1.1–§3.4 (tests/fixtures/rfc4475/, written in
 *   the RFC's notation and checked to decode to the RFC's bytes): valid ones
 *   parse with the fields the RFC's commentary talks about; invalid ones are
 *   refused with the status a reply gets (400, or 505 for the version) and a
 *   reason naming the problem; application-level ones go through
 *   `checkRequestSemantics`;
 * - the transport's answer to malformed datagrams (400/505 to the source
 *   address, a sanitized reason, one warning line, nothing kept);
 * - pathological inputs of up to 64 KB (tests/sip_pathological.ts, also the
 *   bench's): each is parsed or refused with a clear reason, and the bounds
 *   (size, headers, line length, parameters) hold.
 *
 * No assertion here depends on time.
 */
import assert from "node:assert/strict";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import {
  bodyText,
  checkRequestSemantics,
  createRequest,
  getCSeq,
  getFrom,
  getTo,
  parseMessage,
  serializeMessage,
  SipParseError,
  type SipRequest,
  type SipResponse,
  tagOf,
  topVia,
} from "../plugins/sip/message.ts";
import { MAX_PARAMS, parseParams, readQuoted, splitOutside } from "../plugins/sip/syntax.ts";
import { isIpAddress, quote } from "../plugins/sip/syntax.ts";
import {
  decodeEscapes,
  formatNameAddr,
  formatUri,
  isSipUri,
  isTelUri,
  parseAddress,
  parseAnyUri,
  parseNameAddr,
  parseUri,
  type SipUri,
} from "../plugins/sip/uri.ts";
import { parseVia } from "../plugins/sip/via.ts";
import { type Address, SipTransport } from "../plugins/sip/transport.ts";
import { MemoryNetwork } from "../core/net/memory.ts";
import { datagramCases, valueCases } from "./sip_pathological.ts";
import { FIXTURES, loadRfc4475 as load } from "./rfc4475.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/**
 * SHA-256 of each message as RFC 4475 gives it (the files of its Appendix B
 * archive): the fixtures must decode to exactly these bytes.
 */
const RFC_SHA256: Record<string, string> = {
  badaspec: "f8f6e2f4247287b0be6adb5ac222a6db4759395e44d27d2ddb9b39393e94867e",
  badbranch: "cb049c727f16b5ec49e822f9e8b7d0ee20ca2d20ffb50baecd0b411a5e64fa7d",
  baddate: "1208a6e3e0c8a8c33a06a1f3733d158413cb72e58c379d094c4ecea11e9d4c28",
  baddn: "9d9428e8017092f194ec11077ba6865c251308cdfd7fd9db6a993b28e5748951",
  badinv01: "9ee2b88f2e0b5a9eeb9bf729b6177f0a0c7d0b5e6c84be593e0480d7962f3ab8",
  badvers: "037d702d19e934bfeebbd2609050d7d54928d590cf90c78f3914522771dd8e03",
  bcast: "073637c63597199179cf5fc91b980b2d530c066a0048ea3b908772def57b4c36",
  bext01: "57181987c02c4f5752b7aa8c2847311f6184216ce7621e40303015949e70761c",
  bigcode: "f79450070975da54c3525c9a5cbe75bae3c9d8cb92eba609772c26f66f225c2e",
  clerr: "d9da629086a38df433438fb0fb19a8730f34516f049a5520dd0cac3285485290",
  cparam01: "dfa6b5cdb289adc694b9b7e103ebfa7a2167335c46e5dc9de67055021910ae1c",
  cparam02: "e93574215bd1d804bb46cc15ca6176b567def7ea1b15f72ab2c2dcf598af465a",
  dblreq: "a6be48426565c2a705389c4ce2ea17e57b891cb13f80490a2cb9392c797b46ef",
  esc01: "be3a316d4ce5f69cad474646191e390dd4b50fc8371e44b5197fe1237781973e",
  esc02: "9a9c59449f00327b02071feafc8e5c2a261c98c818044167894cc17809a12199",
  escnull: "263fe2ecd12a5ccbb6c67b3174e9211d11da9b600e7d69666a86d2ee42873e90",
  escruri: "c3cf30af13a9d107829cc105effd79355f1139c6ecc683a048b4c27951f8f416",
  insuf: "1e3efd9f3b238c6351ba12bc7eb46d843f2761b5d4a6b82b63bffdf07f2c5aee",
  intmeth: "b957a8292c1c0a9851fe94705b90f94320738f43aacde64998e401f742ef688d",
  inv2543: "76fac8afe22dee49ea696b511621946694897ac7030fc5d07f57c8b487ce0521",
  invut: "9b39e824947df46f90f824cd308fb3c118f548d94637f581101e355b381a0d92",
  longreq: "185739292bc676760e5b1cca77c87705aa570240171c506ad76f8c35af0ecdaa",
  ltgtruri: "bcacb2dc17610e8cc8f9b8b0e3d6ee65ab473f93787a03bbd33579e1cea473df",
  lwsdisp: "d1b36b6316c12824f6f04bf6b1fd1f021cade9b74871693b9c3474cd9fa7f4e6",
  lwsruri: "3e22ceeca585ad23cc180208e2dad94e0a5aa4bb877a61cac443aa927f758b9e",
  lwsstart: "f884e5626c6c5b1210cfc4a3540b8a28bd52939cff092f3f0c5c971e032adb0e",
  mcl01: "887191619bf003b7e87399200b5cf4c3b5397344dbf70288ad5e23bd157b7fe4",
  mismatch01: "a2c285636e451e75420da0cc62ee55ca3e398827008418befbfb078726bf0793",
  mismatch02: "01b287f9a9c492f7f57405c36c8a2af0e2393896ed2d25fb92b502f2a6722bc4",
  mpart01: "92147c8e24997bac59629e1b163767697d0d6d499af87f89e325d69968bec3ba",
  multi01: "d156ab12105b4bfd8a6498de6f7195087058162b8cda1606169855b722411791",
  ncl: "7ea6538edc1f054fdb6cd1c821040460cffca3cb682fa2e8e2a502d92170b4c2",
  noreason: "07e11e470a69fffa3674de805e5165d1351a9439a91045ee70c9570ea24ab4fe",
  novelsc: "9a50a7343fcf685e77c4d0f477138a28f32a41c75aa566d200f3df210b01e648",
  quotbal: "e61978a2ea359fc666f0336fe4dbc623447532280e3273ea98119b3d3f788c84",
  regaut01: "885ba0488872cfc04a3c7622854b8381955a5ee890745d6010834e3731a73faa",
  regbadct: "575d27530275814c1c98be164808fac89a0e2b4fc899dadcd97e6ba499437bda",
  regescrt: "dab4087c133348b06fd7b3c4c7ef15094f8754e265e4e8c2137bb3ecda2ef477",
  scalar02: "53158177326568e9964bce5dcfac27a2bf8a90953bbc03f6c5e2775864a97e4b",
  scalarlg: "0957eca31737e3592eb1418bb41e9f5219278a78ff420111620d7fb60175b551",
  sdp01: "497c5f1ced6c7b579b48075e2dca919ce9b819a735964128a6e744a3a0b9e57f",
  semiuri: "87bbaed6b4b354dbd3c5c7a20e66686303c63e43a0aa19b89de1ac75231611a2",
  transports: "33b4553a3b9418121b099ff07882535151edd6a1e81898c63a916aad2cbf90bc",
  trws: "64ae20694026e28c10746b57386b7fd1276de02b6f8d42d418070e87d6f4499f",
  unkscm: "81be1a6a566c7ab52fe1c58c4a75440dfd697ad04c5e09fa71340de7da7b8bbb",
  unksm2: "f6914409ced613ef5eb56e264d2f096dac26ab9e397d6a638934d2027f1f6acb",
  unreason: "4f939d6ebf4817eea70f011d3209e83732872ffc20ffd304b244084dc392f4d7",
  wsinv: "d6f6cdee99cd0a1f8e3d9a0fdd67c877700e19ab86d8186dada06f61260e3e61",
  zeromf: "50954ef47acca4f9f5263ded06246d06dee4e2ee508a8d284191795d7fddf365",
};

function parsed(name: string): ReturnType<typeof parseMessage> {
  return parseMessage(load(name));
}

function req(name: string): SipRequest {
  const m = parsed(name);
  assert.equal(m.kind, "request", name);
  return m as SipRequest;
}

function res(name: string): SipResponse {
  const m = parsed(name);
  assert.equal(m.kind, "response", name);
  return m as SipResponse;
}

function refused(data: Uint8Array | string, opts = {}): SipParseError {
  try {
    parseMessage(data, opts);
  } catch (e) {
    assert.ok(e instanceof SipParseError, `expected SipParseError, got ${e}`);
    return e;
  }
  assert.fail("expected the message to be refused");
}

function sipUri(u: { scheme: string }): SipUri {
  assert.ok(isSipUri(u as SipUri), `not a SIP URI: ${u.scheme}`);
  return u as SipUri;
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- fixtures

Deno.test("RFC 4475 fixtures: one per message of §3.1.1–§3.4, each decoding to the RFC's bytes", async () => {
  const files = [...Deno.readDirSync(FIXTURES)].map((e) => e.name).filter((n) => n.endsWith(".txt")).sort();
  assert.deepEqual(files.map((f) => f.slice(0, -4)), Object.keys(RFC_SHA256).sort());
  for (const name of Object.keys(RFC_SHA256)) assert.equal(await sha256(load(name)), RFC_SHA256[name], name);
  assert.equal(Object.keys(RFC_SHA256).length, 49);
});

// ------------------------------------------------------- 3.1.1 valid messages

Deno.test("RFC 4475 3.1.1.1 wsinv: folding, LWS everywhere, escaped quotes, compact and odd-case names", () => {
  const m = req("wsinv");
  assert.equal(m.method, "INVITE");
  assert.deepEqual(sipUri(parseAnyUri(m.uri)).params, { unknownparam: null });
  assert.equal(getTo(m).params.tag, "1918181833n");
  const from = getFrom(m);
  assert.equal(from.displayName, 'J Rosenberg \\"');
  assert.equal(from.params.tag, "98asjd8");
  assert.equal(m.headers.get("Max-Forwards"), "0068");
  assert.deepEqual(getCSeq(m), { seq: 9, method: "INVITE" });
  assert.deepEqual(
    m.headers.getAll("Via").map(parseVia).map((v) => [v.protocol, v.transport, v.host, v.params.branch]),
    [
      ["SIP/2.0", "UDP", "192.0.2.2", "390skdjuw"],
      ["SIP/2.0", "TCP", "spindle.example.com", "z9hG4bK9ikj8"],
      ["SIP/2.0", "UDP", "192.168.255.111", "z9hG4bK30239"],
    ],
  );
  assert.equal(m.headers.get("Subject"), "");
  assert.equal(m.headers.get("NewFangledHeader"), "newfangled value continued newfangled value");
  // Unknown header: kept as one opaque value, not split on ',' nor parsed as parameters.
  assert.deepEqual(m.headers.getAll("UnknownHeaderWithUnusualValue"), [";;,,;;,;"]);
  const route = parseNameAddr(m.headers.get("Route")!);
  assert.deepEqual(route.uri.params, { lr: null, unknownwith: "value", "unknown-no-value": null });
  const contact = parseAddress(m.headers.get("Contact")!);
  assert.equal(contact.displayName, 'Quoted string ""');
  assert.deepEqual(contact.params, { newparam: "newvalue", secondparam: null, q: "0.33" });
  assert.equal(m.body.length, 150);
  assert.ok(bodyText(m).startsWith("v=0\r\n") && bodyText(m).endsWith("a=rtpmap:31 LPC\r\n"));
});

Deno.test("RFC 4475 3.1.1.2 intmeth: every token character in method, URI, branch, names, Call-ID", () => {
  const m = req("intmeth");
  const method = "!interesting-Method0123456789_*+`.%indeed'~";
  assert.equal(m.method, method);
  assert.deepEqual(getCSeq(m), { seq: 139122385, method });
  const ruri = sipUri(parseAnyUri(m.uri));
  assert.equal(ruri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  assert.equal(ruri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
  assert.equal(ruri.host, "example.com");
  assert.equal(topVia(m).params.branch, "z9hG4bK-.!%66*_+`'~");
  const to = getTo(m);
  assert.equal(to.displayName, "BEL:\x07 NUL:\x00 DEL:\x7f");
  assert.equal(sipUri(to.uri).user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  const from = getFrom(m);
  assert.equal(from.displayName, "token1~` token2'+_ token3*%!.-");
  assert.equal(from.params["fromparam''~+*_!.-%"], '"работающий"');
  assert.equal(from.params.tag, "_token~1'+`*%!-.");
  assert.equal(m.headers.get("Call-ID"), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
  assert.equal(m.headers.get("Max-Forwards"), "255");
  assert.equal(m.headers.get("extensionHeader-!.%*+_`'~"), "\ufeff大停電");
  // Written back, the escaped NUL stays a quoted-pair and re-parses to the same message.
  const again = parseMessage(serializeMessage(m)) as SipRequest;
  assert.equal(getTo(again).displayName, "BEL:\x07 NUL:\x00 DEL:\x7f");
  assert.equal(again.method, method);
});

Deno.test("RFC 4475 3.1.1.3 esc01: % HEX HEX escapes in user parts and URI parameters, never unescaped twice", () => {
  const m = req("esc01");
  const ruri = sipUri(parseAnyUri(m.uri));
  assert.equal(ruri.host, "example.net");
  assert.equal(ruri.user, "sips%3Auser%40example.com");
  assert.equal(decodeEscapes(ruri.user!), "sips:user@example.com");
  assert.equal(decodeEscapes(sipUri(getTo(m).uri).user!), "user");
  assert.equal(decodeEscapes(sipUri(getFrom(m).uri).user!), "I have spaces");
  const contact = parseNameAddr(m.headers.get("Contact")!);
  assert.equal(decodeEscapes(contact.uri.user!), "caller");
  // ;%6C%72 is the lr parameter; ;n%61me=v%61lue%25%34%31 is name=value%41, not valueA.
  assert.equal(contact.uri.params.lr, null);
  assert.equal(decodeEscapes(contact.uri.params.name!), "value%41");
  assert.equal(m.headers.get("Content-Type"), "application/sdp");
  assert.equal(m.body.length, 150);
});

Deno.test("RFC 4475 3.1.1.4 escnull: escaped NULs in user parts, two distinct contacts", () => {
  const m = req("escnull");
  assert.equal(decodeEscapes(sipUri(getTo(m).uri).user!), "null-\x00-null");
  const contacts = m.headers.getAll("Contact").map((c) => decodeEscapes(parseNameAddr(c).uri.user!));
  assert.deepEqual(contacts, ["\x00", "\x00\x00"]);
  // Written back, the NULs stay escaped.
  const text = td.decode(serializeMessage(m));
  assert.ok(!text.includes("\x00"));
  assert.ok(text.includes("sip:null-%00-null@example.com") && text.includes("<sip:%00%00@host5.example.com>"));
});

Deno.test("RFC 4475 3.1.1.5 esc02: % is not an escape in methods, display names, branches or header names", () => {
  const m = req("esc02");
  assert.equal(m.method, "RE%47IST%45R");
  assert.notEqual(m.method, "REGISTER");
  assert.equal(getCSeq(m).method, "RE%47IST%45R");
  assert.equal(getTo(m).displayName, "%Z%45");
  assert.equal(getFrom(m).displayName, "%Z%45");
  assert.equal(topVia(m).params.branch, "z9hG4bK209%fzsnel234");
  assert.deepEqual(m.headers.getAll("Contact"), ["<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>"]);
  assert.deepEqual(m.headers.getAll("C%6Fntact"), ["<sip:alias2@host2.example.com>"]);
});

Deno.test("RFC 4475 3.1.1.6 lwsdisp: no LWS between display name and '<'", () => {
  const from = getFrom(req("lwsdisp"));
  assert.equal(from.displayName, "caller");
  assert.equal(sipUri(from.uri).user, "caller");
  assert.equal(from.params.tag, "323");
});

Deno.test("RFC 4475 3.1.1.7 longreq: long display names, parameters, tag, Call-ID; 34 Vias in every spelling", () => {
  const m = req("longreq");
  const to = getTo(m);
  assert.equal(to.displayName, `I have a user name of ${"extreme".repeat(10)} proportion`);
  const toUri = sipUri(to.uri);
  assert.equal(toUri.port, 6000);
  assert.equal(toUri.params.unknownparam1, `very${"long".repeat(20)}value`);
  assert.equal(toUri.params[`longparam${"name".repeat(25)}`], "shortvalue");
  assert.equal(toUri.params[`very${"long".repeat(25)}parameternamewithnovalue`], null);
  const from = getFrom(m);
  assert.equal(from.params.tag, `1${"298".repeat(50)}2424`);
  assert.equal(sipUri(from.uri).user, "amazinglylongcallername".repeat(5));
  assert.equal(m.headers.get("Call-ID"), `longreq.one${"really".repeat(20)}longcallid`);
  const vias = m.headers.getAll("Via").map(parseVia);
  assert.equal(vias.length, 34);
  assert.deepEqual(
    vias.slice(0, 33).map((v) => v.host),
    Array.from({ length: 33 }, (_, i) => `sip${33 - i}.example.com`),
  );
  assert.equal(vias[33].params.branch, `very${"long".repeat(50)}branchvalue`);
  assert.equal(vias[33].params.received, "192.0.2.5");
  const name = `Unknown-${"Long".repeat(20)}-Name`;
  const long = "long".repeat(20);
  assert.equal(
    m.headers.get(name),
    `unknown-${long}-value; unknown-${long}-parameter-name = unknown-${long}-parameter-value`,
  );
  assert.equal(m.body.length, 150);
});

Deno.test("RFC 4475 3.1.1.8 dblreq: octets after Content-Length in a datagram are ignored", () => {
  const m = req("dblreq");
  assert.equal(m.method, "REGISTER");
  assert.equal(m.body.length, 0);
  assert.equal(m.headers.get("Call-ID"), "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
  assert.ok(!td.decode(serializeMessage(m)).includes("INVITE"));
});

Deno.test("RFC 4475 3.1.1.9 semiuri: ';' and an escaped '@' in the Request-URI user part", () => {
  const m = req("semiuri");
  const u = sipUri(parseAnyUri(m.uri));
  assert.equal(u.user, "user;par=u%40example.net");
  assert.equal(decodeEscapes(u.user!), "user;par=u@example.net");
  assert.equal(u.host, "example.com");
  assert.deepEqual(u.params, {});
  assert.deepEqual(m.headers.getAll("Accept"), [
    "application/sdp",
    "application/pkcs7-mime",
    "multipart/mixed",
    "multipart/signed",
    "message/sip",
    "message/sipfrag",
  ]);
});

Deno.test("RFC 4475 3.1.1.10 transports: known and unknown transports in Via", () => {
  const m = req("transports");
  assert.deepEqual(m.headers.getAll("Via").map((v) => parseVia(v).transport), ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
  assert.equal(m.headers.get("Call-ID"), "transports.kijh4akdnaqjkwendsasfdj");
});

Deno.test("RFC 4475 3.1.1.11 mpart01: multipart body with binary part framed by Content-Length", () => {
  const raw = load("mpart01");
  const m = req("mpart01");
  assert.equal(m.body.length, 553);
  assert.deepEqual(m.body, raw.slice(raw.length - 553));
  assert.ok(m.body.includes(0));
  assert.equal(m.headers.get("Content-Type"), "multipart/mixed;boundary=7a9cbec02ceef655");
  assert.equal(m.headers.get("Identity")?.length, 172);
});

Deno.test("RFC 4475 3.1.1.12 unreason: UTF-8 reason phrase", () => {
  const r = res("unreason");
  assert.equal(r.status, 200);
  assert.equal(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
  assert.equal(r.body.length, 154);
});

Deno.test("RFC 4475 3.1.1.13 noreason: empty reason phrase; a missing last SP is tolerated", () => {
  const r = res("noreason");
  assert.equal(r.status, 100);
  assert.equal(r.reason, "");
  assert.ok(td.decode(serializeMessage(r)).startsWith("SIP/2.0 100 \r\n"));
  const text = td.decode(load("noreason")).replace("SIP/2.0 100 \r\n", "SIP/2.0 100\r\n");
  assert.equal((parseMessage(text) as SipResponse).status, 100);
});

// ----------------------------------------------------- 3.1.2 invalid messages

/** Invalid messages of §3.1.2: the status a reply gets and what the reason must name. */
const INVALID: [name: string, section: string, status: 400 | 505, reason: RegExp][] = [
  ["badinv01", "3.1.2.1", 400, /^bad Via header: empty element in Via list$/],
  ["clerr", "3.1.2.2", 400, /^Content-Length larger than body$/],
  ["ncl", "3.1.2.3", 400, /^bad Content-Length '-999'$/],
  ["scalar02", "3.1.2.4", 400, /^bad CSeq '36893488147419103232 REGISTER'$/],
  ["scalarlg", "3.1.2.5", 400, /^bad CSeq '9292394834772304023312 OPTIONS'$/],
  ["quotbal", "3.1.2.6", 400, /^bad To header: unterminated quoted string$/],
  ["ltgtruri", "3.1.2.7", 400, /^Request-URI enclosed in '<>'$/],
  ["lwsruri", "3.1.2.8", 400, /^whitespace in Request-URI$/],
  ["lwsstart", "3.1.2.9", 400, /^more than one space between request line elements$/],
  ["trws", "3.1.2.10", 400, /^whitespace at the end of the request line$/],
  ["escruri", "3.1.2.11", 400, /^headers \('\?'\) in a SIP Request-URI$/],
  ["baddate", "3.1.2.12", 400, /^bad Date 'Fri, 01 Jan 2010 16:00:00 EST': not an RFC 1123 date in GMT$/],
  ["regbadct", "3.1.2.13", 400, /^bad Contact header: a URI with '\?' must be enclosed in '<>'$/],
  ["badaspec", "3.1.2.14", 400, /^bad To header: whitespace inside '<>'$/],
  ["baddn", "3.1.2.15", 400, /^bad From header: display name 'Bell, Alexander' has characters that need quotes$/],
  ["badvers", "3.1.2.16", 505, /^unsupported SIP version 'SIP\/7\.0'$/],
  ["mismatch01", "3.1.2.17", 400, /^CSeq method 'INVITE' does not match request method 'OPTIONS'$/],
  ["mismatch02", "3.1.2.18", 400, /^CSeq method 'INVITE' does not match request method 'NEWMETHOD'$/],
  ["bigcode", "3.1.2.19", 400, /^status code '4294967301' out of range 100-699$/],
];

for (const [name, section, status, reason] of INVALID) {
  Deno.test(`RFC 4475 ${section} ${name}: refused, ${status}, reason names the problem`, () => {
    const e = refused(load(name));
    assert.match(e.reason, reason);
    assert.equal(e.status, status);
    const isRequest = !td.decode(load(name)).startsWith("SIP/2.0 ");
    // Requests keep what a reply needs; responses are never answered.
    assert.equal(e.partial !== undefined, isRequest);
    if (e.partial) {
      assert.ok(e.partial.headers.some(([n]) => n === "Via"), "the partial request has its Via");
      assert.ok(e.partial.headers.some(([n, v]) => n === "Call-ID" && v.startsWith(name)), "and its Call-ID");
    }
  });
}

// ------------------------------------------------ 3.2, 3.3, 3.4 semantics

Deno.test("RFC 4475 3.2.1 badbranch: parses; the UA answers 400 (branch is only the magic cookie)", () => {
  const m = req("badbranch");
  assert.equal(topVia(m).params.branch, "z9hG4bK");
  const p = checkRequestSemantics(m)!;
  assert.equal(p.status, 400);
  assert.match(p.reason, /^Bad Request \(Via branch is the magic cookie z9hG4bK without an identifier\)$/);
});

Deno.test("RFC 4475 3.3.1 insuf: missing Call-ID, From and To → 400 naming all three", () => {
  const e = refused(load("insuf"));
  assert.equal(e.status, 400);
  assert.equal(e.reason, "missing From, To and Call-ID headers");
  assert.deepEqual(e.partial?.headers.map(([n]) => n), ["CSeq", "Via", "Content-Type", "Content-Length"]);
});

Deno.test("RFC 4475 3.3.2 unkscm / 3.3.3 novelsc: any Request-URI scheme parses; the UA answers 416", () => {
  const unk = req("unkscm");
  assert.deepEqual(parseAnyUri(unk.uri), { scheme: "nobodyknowsthisscheme", opaque: "totallyopaquecontent" });
  assert.equal(checkRequestSemantics(unk)?.status, 416);
  // The To header looks like a SIP URI; that must not change where the request goes.
  assert.equal(formatUri(getTo(unk).uri), "sip:user@example.com");
  const novel = req("novelsc");
  assert.deepEqual(parseAnyUri(novel.uri), { scheme: "soap.beep", opaque: "//192.0.2.103:3002" });
  assert.equal(checkRequestSemantics(novel)?.status, 416);
  assert.equal(checkRequestSemantics(novel, { schemes: ["sip", "soap.beep"] }), undefined);
});

Deno.test("RFC 4475 3.3.4 unksm2: isbn:, http: and name: URIs in To, From and Contact parse", () => {
  const m = req("unksm2");
  assert.deepEqual(getTo(m).uri, { scheme: "isbn", opaque: "2983792873" });
  const from = getFrom(m);
  assert.deepEqual(from.uri, { scheme: "http", opaque: "//www.example.com" });
  assert.equal(from.params.tag, "3234233");
  assert.equal(tagOf(m.headers.get("From")), "3234233");
  assert.equal(tagOf(m.headers.get("To")), undefined);
  assert.deepEqual(parseAddress(m.headers.get("Contact")!).uri, { scheme: "name", opaque: "John_Smith" });
  assert.throws(() => parseNameAddr(m.headers.get("To")!), /unsupported URI scheme 'isbn' \(expected sip or sips\)/);
});

Deno.test("RFC 4475 3.3.5 bext01: unknown Require → 420 with Unsupported; Proxy-Require ignored by a UAS", () => {
  const m = req("bext01");
  const p = checkRequestSemantics(m)!;
  assert.equal(p.status, 420);
  assert.deepEqual(p.headers, [["Unsupported", "nothingSupportsThis, nothingSupportsThisEither"]]);
  assert.equal(
    checkRequestSemantics(m, { supported: ["nothingSupportsThis", "nothingSupportsThisEither"] }),
    undefined,
    "Proxy-Require is not a UAS's business",
  );
});

Deno.test("RFC 4475 3.3.6 invut: body of unknown type → 415 with Accept", () => {
  const m = req("invut");
  assert.equal(bodyText(m), '<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n');
  const p = checkRequestSemantics(m)!;
  assert.equal(p.status, 415);
  assert.deepEqual(p.headers, [["Accept", "application/sdp"]]);
});

Deno.test("RFC 4475 3.3.7 regaut01: unknown Authorization scheme is kept as is", () => {
  const m = req("regaut01");
  assert.equal(m.headers.get("Authorization"), "NoOneKnowsThisScheme opaque-data=here");
  assert.equal(m.headers.get("Content-Length"), "0");
});

Deno.test("RFC 4475 3.3.8 multi01 / 3.3.9 mcl01: repeated single-value headers → 400", () => {
  const multi = refused(load("multi01"));
  assert.equal(multi.status, 400);
  assert.equal(multi.reason, "more than one From header");
  const mcl = refused(load("mcl01"));
  assert.equal(mcl.status, 400);
  assert.equal(mcl.reason, "conflicting Content-Length headers");
});

Deno.test("RFC 4475 3.3.10 bcast: the response parses; the transport drops it (more than one Via)", () => {
  const r = res("bcast");
  assert.equal(parseVia(r.headers.getAll("Via")[1]).host, "255.255.255.255");
  const { clock, server, peer } = transportSetup();
  let up = 0;
  server.onResponse = () => up++;
  void peer.send(load("bcast"), server.localAddress);
  clock.advance(2);
  assert.equal(up, 0);
  assert.equal(server.stats.misroutedResponses, 1);
});

Deno.test("RFC 4475 3.3.11 zeromf: Max-Forwards 0 is processed by a UAS", () => {
  const m = req("zeromf");
  assert.equal(m.headers.get("Max-Forwards"), "0");
  assert.equal(checkRequestSemantics(m), undefined);
});

Deno.test("RFC 4475 3.3.12 cparam01 / 3.3.13 cparam02: contact parameter vs URI parameter", () => {
  const c1 = parseNameAddr(req("cparam01").headers.get("Contact")!);
  assert.deepEqual(c1.params, { unknownparam: null });
  assert.deepEqual(c1.uri.params, {});
  assert.equal(c1.uri.user, "+19725552222");
  const c2 = parseNameAddr(req("cparam02").headers.get("Contact")!);
  assert.deepEqual(c2.params, {});
  assert.deepEqual(c2.uri.params, { unknownparam: null });
});

Deno.test("RFC 4475 3.3.14 regescrt: escaped header in a Contact URI inside '<>'", () => {
  const c = parseNameAddr(req("regescrt").headers.get("Contact")!);
  assert.deepEqual(c.uri.headers, { Route: "%3Csip:sip.example.com%3E" });
  assert.equal(decodeEscapes(c.uri.headers.Route), "<sip:sip.example.com>");
  assert.equal(formatUri(c.uri), "sip:user@example.com?Route=%3Csip:sip.example.com%3E");
});

Deno.test("RFC 4475 3.3.15 sdp01: Accept without application/sdp → 406", () => {
  const m = req("sdp01");
  const p = checkRequestSemantics(m)!;
  assert.equal(p.status, 406);
  assert.equal(p.reason, "Not Acceptable");
  assert.match(p.detail, /text\/nobodyKnowsThis/);
});

Deno.test("RFC 4475 3.4.1 inv2543: RFC 2543 INVITE (no branch, no From tag, no Content-Length, no Max-Forwards)", () => {
  const m = req("inv2543");
  assert.equal(topVia(m).params.branch, undefined);
  assert.equal(getFrom(m).params.tag, undefined);
  assert.equal(m.headers.has("Max-Forwards"), false);
  assert.equal(m.headers.has("Content-Length"), false);
  assert.ok(bodyText(m).startsWith("v=0\r\n") && bodyText(m).endsWith("m=audio 49217 RTP/AVP 0\r\n"));
  assert.equal(parseNameAddr(m.headers.get("Record-Route")!).uri.params.maddr, "ss1.example.com");
  assert.equal(getTo(m).params.user, "phone");
  assert.equal(checkRequestSemantics(m), undefined);
});

// ------------------------------------------------------- transport answers

function transportSetup(now?: () => number) {
  const clock = new VirtualClock();
  const net = new MemoryNetwork({ clock, latencyMs: 1 });
  const out = new MemoryOutput();
  const log = new Logger({ level: "debug", outputs: [out] }).child("SIP");
  const server = new SipTransport({
    transport: net.bind("10.0.0.2", 5060),
    log,
    now: now ?? (() => clock.now()),
  });
  const peer = net.bind("10.0.0.1", 5060);
  const received: { data: Uint8Array; from: Address; port: number }[] = [];
  peer.listen((data, from) => void received.push({ data, from, port: 5060 }));
  // quotbal's Via names port 5050 (and no rport): its answer goes to the source IP at that port.
  net.bind("10.0.0.1", 5050).listen((data, from) => void received.push({ data, from, port: 5050 }));
  return { clock, net, out, server, peer, received };
}

Deno.test("transport: each invalid RFC 4475 request gets one 400/505 with the reason; responses are dropped", async () => {
  for (const [name, section, status, reason] of INVALID) {
    const { clock, out, server, peer, received } = transportSetup();
    let up = 0;
    server.onRequest = () => up++;
    server.onResponse = () => up++;
    await peer.send(load(name), server.localAddress);
    clock.advance(5);
    assert.equal(up, 0, name);
    const warnings = out.lines.filter((l) => l.includes("WARN"));
    assert.equal(warnings.length, 1, `${name}: one warning line`);
    assert.ok(!out.lines.some((l) => /\n|\r| {4}at /.test(l)), `${name}: single lines, no stack`);
    if (name === "bigcode" || name === "scalarlg") {
      assert.equal(received.length, 0, name);
      assert.equal(server.stats.malformedDropped, 1, name);
      assert.match(warnings[0], /dropped malformed response from 10\.0\.0\.1:5060/);
      continue;
    }
    assert.equal(received.length, 1, `${name} (${section}) answered once`);
    assert.deepEqual(received[0].from, server.localAddress);
    assert.equal(received[0].port, name === "quotbal" ? 5050 : 5060, name);
    // Read as text: the reply echoes the request's Vias as they came (badinv01's is itself invalid).
    const text = td.decode(received[0].data);
    const statusLine = text.slice(0, text.indexOf("\r\n"));
    const phrase = status === 505 ? "Version Not Supported" : "Bad Request";
    assert.ok(statusLine.startsWith(`SIP/2.0 ${status} ${phrase} (`), `${name}: ${statusLine}`);
    // Every character of the reason phrase is one RFC 3261 allows (escaped where needed).
    const sent = statusLine.slice(`SIP/2.0 ${status} `.length);
    assert.match(sent, /^[A-Za-z0-9;/?:@&=+$,\-_.!~*'() %\u0080-\uffff]*$/, name);
    assert.match(decodeURIComponent(sent.slice(phrase.length + 2, -1)), reason, name);
    assert.ok(text.includes(`\r\nCall-ID: ${name}.`), `${name}: Call-ID copied`);
    assert.ok(text.endsWith("\r\nContent-Length: 0\r\n\r\n"), name);
    assert.match(
      warnings[0],
      new RegExp(`${status} ${phrase} sent to 10\\.0\\.0\\.1:${received[0].port} .* from 10\\.0\\.0\\.1:5060`),
    );
    assert.equal(server.stats.badRequestsAnswered, 1);
  }
});

Deno.test("transport: insuf (no From/To/Call-ID) is still answered along its Via", async () => {
  const { clock, server, peer, received } = transportSetup();
  await peer.send(load("insuf"), server.localAddress);
  clock.advance(5);
  assert.equal(received.length, 1);
  const text = td.decode(received[0].data);
  assert.match(text, /^SIP\/2\.0 400 Bad Request \(missing From, To and Call-ID headers\)\r\n/);
  assert.match(text, /\r\nVia: SIP\/2\.0\/UDP 192\.0\.2\.95;branch=z9hG4bKkdj\.insuf;received=10\.0\.0\.1\r\n/);
  assert.match(text, /\r\nCSeq: 193942 INVITE\r\n/);
  assert.equal(server.stats.badRequestsAnswered, 1);
});

Deno.test("transport: hostile content cannot break the reply's framing or reach a host name", async () => {
  const { clock, server, peer, received, out } = transportSetup();
  const bad = [
    "INVITE sip:bob@10.0.0.2 SIP/2.0",
    // maddr and sent-by are host names: the reply must still go to the source IP, resolving nothing.
    "Via: SIP/2.0/UDP attacker.example.com:7000;maddr=victim.example.net;branch=z9hG4bKhostile;rport",
    "From: <sip:a@b>;tag=1",
    "To: <sip:bob@10.0.0.2>",
    "Call-ID: hostile",
    "CSeq: 1 INVITE",
    'X-Evil\x01"<>\\%: injected',
  ].join("\r\n") + "\r\n\r\n";
  await peer.send(te.encode(bad), server.localAddress);
  // A bare CR inside a value, trying to inject a header into anything that echoes it.
  const cr = bad.replace('X-Evil\x01"<>\\%: injected', "Subject: a\rX-Injected: 1").replace("hostile", "cr");
  await peer.send(te.encode(cr), server.localAddress);
  clock.advance(5);
  // Both replies reach the peer: its source address, not attacker.example.com:7000 nor victim.example.net.
  assert.equal(received.length, 2);
  const first = td.decode(received[0].data);
  const statusLine = first.slice(0, first.indexOf("\r\n"));
  assert.match(
    statusLine,
    /^SIP\/2\.0 400 Bad Request \(bad header line 'X-Evil%5Cx01%22%3C%3E%5Cx5c%25: injected'\)$/,
  );
  // deno-lint-ignore no-control-regex -- looking for control characters
  assert.ok(!/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(first), "no control characters in the reply");
  assert.match(
    first,
    /\r\nVia: SIP\/2\.0\/UDP attacker\.example\.com:7000;maddr=victim\.example\.net;branch=z9hG4bKhostile;rport=5060;received=10\.0\.0\.1\r\n/,
  );
  const second = td.decode(received[1].data);
  assert.match(second, /^SIP\/2\.0 400 Bad Request \(control character 0x0d in Subject header\)\r\n/);
  assert.ok(!second.includes("X-Injected"));
  // Log lines: one per datagram, no raw control characters.
  const warnings = out.lines.filter((l) => l.includes("WARN"));
  assert.equal(warnings.length, 2);
  // deno-lint-ignore no-control-regex -- looking for control characters
  for (const l of warnings) assert.ok(!/[\x00-\x1f]/.test(l), l);
  assert.match(warnings[0], /bad header line 'X-Evil\\x01"<>\\x5c%: injected'/);
});

Deno.test("transport: the 400 keeps every Via of a comma-separated list, the top one stamped", async () => {
  const { clock, server, peer, received } = transportSetup();
  const bad = [
    "OPTIONS sip:bob@10.0.0.2 SIP/2.0",
    "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1;rport, SIP/2.0/UDP b.example:5070;branch=z9hG4bK2",
    "Via: SIP/2.0/UDP c.example;branch=z9hG4bK3",
    "From: <sip:a@b>;tag=1",
    "To: <sip:bob@10.0.0.2>",
    "Call-ID: vialist",
    "CSeq: 1 OPTIONS",
    "Content-Length: 10",
  ].join("\r\n") + "\r\n\r\nshort";
  await peer.send(te.encode(bad), server.localAddress);
  clock.advance(5);
  assert.equal(received.length, 1);
  const r = parseMessage(received[0].data) as SipResponse;
  assert.equal(r.reason, "Bad Request (Content-Length larger than body)");
  assert.deepEqual(r.headers.getAll("Via"), [
    "SIP/2.0/UDP a.example;branch=z9hG4bK1;rport=5060;received=10.0.0.1",
    "SIP/2.0/UDP b.example:5070;branch=z9hG4bK2",
    "SIP/2.0/UDP c.example;branch=z9hG4bK3",
  ]);
});

Deno.test("transport: ACKs and requests without a Via are never answered; nothing is kept per source", async () => {
  const { clock, server, peer, received } = transportSetup();
  const ack = td.decode(load("clerr")).replace("INVITE sip:", "ACK sip:").replace("CSeq: 8 INVITE", "CSeq: 8 ACK");
  await peer.send(te.encode(ack), server.localAddress);
  await peer.send(
    te.encode("OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nContent-Length: 4\r\n\r\n"),
    server.localAddress,
  );
  for (let i = 0; i < 50; i++) await peer.send(crypto.getRandomValues(new Uint8Array(200)), server.localAddress);
  clock.advance(5);
  assert.equal(received.length, 0);
  assert.equal(server.stats.malformedDropped, 52);
  // The only state a malformed datagram touches is a few global counters.
  assert.deepEqual(Object.keys(server).sort(), ["onMessage", "onRequest", "onResponse", "onUnreachable", "stats"]);
});

Deno.test("transport: malformed-datagram warnings are rate limited, with one line saying how many were left out", async () => {
  const { clock, server, peer, out } = transportSetup();
  for (let i = 0; i < 30; i++) await peer.send(te.encode(`GARBAGE ${i}\r\n\r\n`), server.localAddress);
  clock.advance(5);
  const warns = () => out.lines.filter((l) => l.includes("WARN"));
  assert.equal(warns().length, 20);
  assert.equal(server.stats.malformedLogsSuppressed, 10);
  assert.equal(server.stats.malformedDropped, 30);
  clock.advance(1000);
  await peer.send(te.encode("GARBAGE again\r\n\r\n"), server.localAddress);
  clock.advance(5);
  const w = warns();
  assert.equal(w.length, 22);
  assert.match(w[20], /10 more malformed datagrams were not logged \(limit 20\/s\)/);
  assert.match(w[21], /dropped malformed datagram from 10\.0\.0\.1:5060 \(bad request line\)/);
});

Deno.test("transport: valid RFC 4475 requests are passed up with received/rport stamped", async () => {
  for (const name of ["wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri"]) {
    const { clock, server, peer } = transportSetup();
    const got: SipRequest[] = [];
    server.onRequest = (r) => got.push(r);
    await peer.send(load(name), server.localAddress);
    clock.advance(5);
    assert.equal(got.length, 1, name);
    assert.equal(topVia(got[0]).params.received, "10.0.0.1", name);
  }
});

// ------------------------------------------------- pathological inputs

const LIFTED = { maxSize: 65535, maxHeaders: 1_000_000, maxLineLength: 65535 };

function outcome(f: () => unknown): string {
  try {
    f();
    return "parse";
  } catch (e) {
    if (e instanceof SipParseError) return e.reason;
    throw e;
  }
}

Deno.test("pathological datagrams (64 KB): parsed or refused with a clear reason, default and lifted limits", () => {
  const cases = datagramCases();
  assert.ok(cases.length >= 25);
  for (const c of cases) {
    assert.ok(c.data.length <= 65_535, c.name);
    for (const [opts, expect, label] of [[{}, c.expect, "default"], [LIFTED, c.expectLifted, "lifted"]] as const) {
      const got = outcome(() => parseMessage(c.data, opts));
      if (expect === "parse") assert.equal(got, "parse", `${c.name} (${label} limits)`);
      else assert.match(got, expect, `${c.name} (${label} limits)`);
      // A reason is one short line: never the datagram itself.
      assert.ok(got.length <= 200 && !/[\r\n]/.test(got), `${c.name}: ${got.slice(0, 80)}`);
    }
  }
});

Deno.test("pathological values (60 000 characters) for each inner parser", () => {
  const parsers = {
    via: parseVia,
    address: parseAddress,
    uri: parseAnyUri,
    params: (s: string) => parseParams(s),
    quoted: (s: string) => readQuoted(s, 0),
    split: (s: string) => splitOutside(s, ","),
  };
  for (const c of valueCases()) {
    const got = outcome(() => parsers[c.parser](c.value));
    if (c.expect === "parse") assert.equal(got, "parse", c.name);
    else assert.match(got, c.expect, c.name);
    assert.ok(got.length <= 200 && !/[\r\n]/.test(got), c.name);
  }
});

Deno.test("bounds: size, header count, line length and parameter count are enforced with clear reasons", () => {
  const base = "OPTIONS sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKb\r\nFrom: <sip:a@a>;tag=1\r\n" +
    "To: <sip:b@b>\r\nCall-ID: b\r\nCSeq: 1 OPTIONS\r\n";
  assert.equal(parseMessage(base + "\r\n").kind, "request");
  assert.equal(refused(new Uint8Array(65536)).reason, "message too large (65536 bytes, limit 65535)");
  assert.equal(
    refused(base + "\r\n", { maxSize: 100 }).reason,
    `message too large (${base.length + 2} bytes, limit 100)`,
  );
  // Header fields after list splitting, and header lines.
  assert.equal(refused(base + "Allow: " + "A,".repeat(300) + "B\r\n\r\n").reason, "too many headers (limit 256)");
  assert.equal(refused(base + "X: 1\r\n".repeat(300) + "\r\n").reason, "too many headers (limit 256)");
  assert.equal(parseMessage(base + "X: 1\r\n".repeat(250) + "\r\n").headers.getAll("X").length, 250);
  // Line length: a single line, and a folded one.
  assert.equal(refused(base + "Subject: " + "x".repeat(9000) + "\r\n\r\n").reason, "header line too long (limit 8192)");
  assert.equal(
    refused(base + "Subject: x\r\n" + " yyyyyyyyy\r\n".repeat(1000) + "\r\n").reason,
    "header line too long (limit 8192)",
  );
  assert.equal(
    refused("OPTIONS sip:" + "b".repeat(9000) + " SIP/2.0\r\n\r\n").reason,
    "start line too long (limit 8192)",
  );
  // Parameters: per header value and per URI.
  const params = (n: number) => Array.from({ length: n }, (_, i) => `;p${i}`).join("");
  assert.equal(MAX_PARAMS, 64);
  assert.equal(parseMessage(base + `Contact: <sip:c@c>${params(64)}\r\n\r\n`).kind, "request");
  assert.equal(
    refused(base + `Contact: <sip:c@c>${params(65)}\r\n\r\n`).reason,
    "bad Contact header: too many parameters (limit 64)",
  );
  assert.match(
    refused(base + `Contact: <sip:c@c${params(65)}>\r\n\r\n`).reason,
    /too many URI parameters \(limit 64\)/,
  );
  assert.match(
    refused(base.replace(";branch=z9hG4bKb", ";branch=z9hG4bKb" + params(64))).reason,
    /bad Via header: too many parameters in Via \(limit 64\)/,
  );
});

// ----------------------------------------------------- lexical details

Deno.test("URIs: sip, sips, tel and other schemes; escapes; hosts handed over as text", () => {
  assert.deepEqual(parseAnyUri("tel:+1-201-555-0123;ext=22"), {
    scheme: "tel",
    number: "+1-201-555-0123",
    params: { ext: "22" },
  });
  const local = parseAnyUri("tel:7042;phone-context=example.com");
  assert.ok(isTelUri(local) && local.params["phone-context"] === "example.com");
  assert.throws(() => parseAnyUri("tel:12x4"), /bad character 'x' in telephone number/);
  assert.throws(() => parseAnyUri("tel:+"), /no digits in telephone number/);
  assert.equal(formatUri(parseAnyUri("urn:service:sos")), "urn:service:sos");
  assert.throws(() => parseAnyUri("1http://x"), /bad URI scheme '1http'/);
  assert.throws(() => parseAnyUri("http://a b"), /whitespace in URI/);
  assert.throws(() => parseAnyUri("http://a%zz"), /bad escape '%zz'/);
  assert.throws(() => parseAnyUri("mailto:"), /empty URI/);
  assert.throws(() => parseUri("sip:a@b;lr;lr"), /URI parameter 'lr' repeated/);
  assert.throws(() => parseUri("sip:a@b;"), /empty URI parameter/);
  assert.throws(() => parseUri("sip:a:b;c@h"), /bad password/);
  assert.equal(parseUri("sip:h;%6C%72").params.lr, null);
  assert.deepEqual(
    parseUri("sip:h;%3B").params,
    { "%3b": null },
    "an escape that would change the syntax stays escaped",
  );
  assert.equal(decodeEscapes("%E5%A4%A7"), "大");
  assert.equal(isIpAddress("192.0.2.1"), true);
  assert.equal(isIpAddress("[2001:db8::1]"), true);
  assert.equal(isIpAddress("2001:db8::1"), true);
  assert.equal(isIpAddress("256.0.0.1"), false);
  assert.equal(isIpAddress("example.com"), false);
  // "__proto__" is a legal token: it must be an ordinary key, not a prototype change.
  const p = parseParams(";__proto__;x=1");
  assert.equal(Object.getPrototypeOf(p), Object.prototype);
  assert.deepEqual(Object.keys(p), ["__proto__", "x"]);
});

Deno.test("name-addr: quoted and token display names, rules for '<>' and addr-spec", () => {
  assert.equal(parseAddress('"A \\"B\\"" <tel:+1>').displayName, 'A "B"');
  assert.equal(parseAddress("A  B\t C <sip:x@y>").displayName, "A B C");
  assert.throws(() => parseAddress("A, B <sip:x@y>"), /display name 'A, B' has characters that need quotes/);
  assert.throws(() => parseAddress("< sip:x@y>"), /whitespace inside '<>'/);
  assert.throws(() => parseAddress("<sip:x@y;a=<b>"), /'<' inside '<>'/);
  assert.throws(() => parseAddress("sip:x@y,z"), /a URI with ',' must be enclosed in '<>'/);
  assert.throws(() => parseAddress("<sip:x@y>;tag=1;tag=2"), /parameter 'tag' repeated/);
  assert.equal(parseAddress("<sip:x@y>;tag").params.tag, null);
  assert.throws(() => parseAddress("<sip:x@y> junk"), /unexpected 'junk'/);
  assert.throws(() => parseAddress('"a\x01" <sip:x@y>'), /control character 0x01 in quoted string/);
  const a = parseAddress('"Q" <sip:x@y>;p="a;b,c";q=0.5');
  assert.deepEqual(a.params, { p: '"a;b,c"', q: "0.5" });
  assert.equal(formatNameAddr(a), '"Q" <sip:x@y>;p="a;b,c";q=0.5');
  assert.equal(quote("a\r\nb\x07"), '"a  b\\\x07"');
});

Deno.test("Via: comments, whitespace, parameter checks", () => {
  const v = parseVia(
    "SIP / 2.0 / UDP  first.example.com : 4000 ; ttl = 16 ; maddr=224.2.0.1 ;branch=a7c6 (Acme (x) \\) server)",
  );
  assert.deepEqual([v.protocol, v.transport, v.host, v.port], ["SIP/2.0", "UDP", "first.example.com", 4000]);
  assert.deepEqual(v.params, { ttl: "16", maddr: "224.2.0.1", branch: "a7c6" });
  assert.throws(() => parseVia("SIP/2.0/UDP h (open"), /unterminated comment in Via/);
  assert.throws(() => parseVia("SIP/2.0/UDP h (c) x"), /unexpected 'x' after comment/);
  assert.throws(() => parseVia("SIP/2.0/UDPh"), /missing sent-by host/);
  assert.throws(() => parseVia("SIP/2.0/UDP h;branch"), /branch parameter without a value/);
  assert.throws(() => parseVia("SIP/2.0/UDP h;received=example.com"), /bad received 'example.com': not an IP address/);
  assert.throws(() => parseVia("SIP/2.0/UDP h;rport=0"), /bad rport '0'/);
  assert.throws(() => parseVia("SIP/2.0/UDP h;ttl=256"), /bad ttl '256'/);
  assert.throws(() => parseVia("SIP/2.0/UDP h:0"), /port out of range/);
  assert.throws(() => parseVia("SIP/2.0/UDP h;;branch=z9hG4bK1"), /empty parameter in Via/);
  assert.equal(parseVia("SIP/2.0/UDP [::1]:5070;received=::1;maddr=::2").host, "::1");
});

Deno.test("headers: control characters only as quoted-pairs; bare CR refused", () => {
  const base = "OPTIONS sip:b@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKc\r\nFrom: <sip:a@a>;tag=1\r\n" +
    "To: <sip:b@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
  assert.equal(refused(base + "Subject: a\x00b\r\n\r\n").reason, "control character 0x00 in Subject header");
  assert.equal(refused(base + "Subject: a\rb\r\n\r\n").reason, "control character 0x0d in Subject header");
  assert.equal(refused(base + "Subject: a\r\r\n\r\n").reason, "control character 0x0d in Subject header");
  assert.equal(parseMessage(base + 'Subject: "a\\\x07"\r\n\r\n').headers.get("Subject"), '"a\\\x07"');
  assert.equal(parseMessage(base + "Subject: a\tb\r\n\r\n").headers.get("Subject"), "a\tb");
  assert.throws(
    () => serializeMessage(createRequest({ method: "OPTIONS", uri: "sip:b@b", headers: [["X", "a\r\nY: b"]] })),
    /contains CR or LF/,
  );
});

Deno.test("checkRequestSemantics: media ranges, q=0, encodings, CANCEL and ACK", () => {
  const base = (extra: string[], method = "INVITE", body = "") =>
    parseMessage(
      [
        `${method} sip:b@b SIP/2.0`,
        "Via: SIP/2.0/UDP h;branch=z9hG4bKs",
        "From: <sip:a@a>;tag=1",
        "To: <sip:b@b>",
        "Call-ID: s",
        `CSeq: 1 ${method}`,
        ...extra,
      ].join("\r\n") + "\r\n\r\n" + body,
    ) as SipRequest;
  assert.equal(checkRequestSemantics(base(["Accept: */*"])), undefined);
  assert.equal(checkRequestSemantics(base(["Accept: application/*;q=0.5"])), undefined);
  assert.equal(checkRequestSemantics(base(["Accept: text/html, application/SDP"])), undefined);
  assert.equal(checkRequestSemantics(base(["Accept: application/sdp;q=0"]))?.status, 406);
  assert.equal(
    checkRequestSemantics(base(["Accept: text/plain"], "OPTIONS")),
    undefined,
    "OPTIONS answers carry no SDP",
  );
  const sdp = "v=0\r\n";
  assert.equal(checkRequestSemantics(base(["Content-Type: application/sdp"], "INVITE", sdp)), undefined);
  assert.equal(checkRequestSemantics(base([], "INVITE", sdp))?.reason, "Bad Request (body without Content-Type)");
  const gz = checkRequestSemantics(base(["Content-Type: application/sdp", "Content-Encoding: gzip"], "INVITE", sdp))!;
  assert.deepEqual([gz.status, gz.headers], [415, [["Accept-Encoding", "identity"]]]);
  assert.equal(checkRequestSemantics(base(["Require: foo"], "CANCEL")), undefined, "Require does not apply to CANCEL");
  assert.equal(checkRequestSemantics(base(["Require: timer"]), { supported: ["timer"] }), undefined);
  assert.equal(checkRequestSemantics(base(["Require: foo"], "ACK")), undefined, "ACK is never answered");
  assert.equal(
    checkRequestSemantics(base(["Contact: <name:John_Smith>"]))?.reason,
    "Bad Request (Contact of INVITE must be a sip: or sips: URI)",
  );
  assert.equal(
    checkRequestSemantics(base(["Contact: <sip:a@a>, <sip:b@b>"]))?.reason,
    "Bad Request (more than one Contact in INVITE)",
  );
  assert.equal(checkRequestSemantics(base(["Contact: <sips:a@a>"])), undefined);
  assert.equal(checkRequestSemantics(base(["Contact: <name:John_Smith>"], "OPTIONS")), undefined);
  const tel = parseMessage(
    td.decode(load("zeromf")).replace("OPTIONS sip:user@example.com", "OPTIONS tel:+15551234"),
  ) as SipRequest;
  assert.equal(checkRequestSemantics(tel)?.status, 416);
  assert.equal(checkRequestSemantics(tel, { schemes: ["sip", "sips", "tel"] }), undefined);
});
