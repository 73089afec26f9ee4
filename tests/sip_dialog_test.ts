import assert from "node:assert/strict";
import { Dialog, dialogIdOfRequest, screenRequest } from "../plugins/sip/dialog.ts";
import {
  createRequest,
  createResponse,
  getCSeq,
  getFrom,
  getTo,
  type SipRequest,
  topVia,
} from "../plugins/sip/message.ts";

function invite(extra: [string, string][] = []): SipRequest {
  return createRequest({
    method: "INVITE",
    uri: "sip:bob@biloxi.example.com",
    headers: [
      ["Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"],
      ["Max-Forwards", "70"],
      ["From", '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'],
      ["To", "Bob <sip:bob@biloxi.example.com>"],
      ["Call-ID", "a84b4c76e66710"],
      ["CSeq", "314159 INVITE"],
      ["Contact", "<sip:alice@pc33.atlanta.example.com>"],
      ...extra,
    ],
  });
}

const VIA = "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnew";

Deno.test("UAC dialog: route set reversed from Record-Route, remote target from Contact, BYE with next CSeq", () => {
  const inv = invite([["Record-Route", "<sip:p1.example.com;lr>"], ["Record-Route", "<sip:p2.example.com;lr>"]]);
  const ok = createResponse(inv, 200, undefined, {
    toTag: "a6c85cf",
    headers: [["Contact", "<sip:bob@192.0.2.4:5062>"]],
  });
  const d = Dialog.fromUac(inv, ok);
  assert.equal(d.id, "a84b4c76e66710;1928301774;a6c85cf");
  assert.equal(d.state, "confirmed");
  assert.equal(d.remoteTarget, "sip:bob@192.0.2.4:5062");
  assert.deepEqual(d.routeSet, ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
  const { request: bye, nextHop } = d.createRequest("BYE", { via: VIA });
  assert.equal(bye.uri, "sip:bob@192.0.2.4:5062");
  assert.deepEqual(bye.headers.getAll("Route"), ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
  assert.equal(nextHop.host, "p2.example.com");
  assert.deepEqual(getCSeq(bye), { seq: 314160, method: "BYE" });
  assert.equal(getFrom(bye).params.tag, "1928301774");
  assert.equal(getTo(bye).params.tag, "a6c85cf");
  assert.equal(getFrom(bye).displayName, "Alice");
  assert.equal(topVia(bye).params.branch, "z9hG4bKnew");
  // ACK for the 2xx: same CSeq number as the INVITE, method ACK, the new Via.
  const { request: ack } = d.createAck(314159, { via: VIA });
  assert.deepEqual(getCSeq(ack), { seq: 314159, method: "ACK" });
  assert.equal(ack.uri, "sip:bob@192.0.2.4:5062");
  assert.equal(d.localSeq, 314160, "ACK does not consume a CSeq number");
});

Deno.test("UAC dialog: strict routing puts the first route in the Request-URI and the target last", () => {
  const inv = invite([["Record-Route", "<sip:strict.example.com>"]]);
  const ok = createResponse(inv, 200, undefined, { toTag: "t", headers: [["Contact", "<sip:bob@192.0.2.4>"]] });
  const d = Dialog.fromUac(inv, ok);
  const { request, nextHop } = d.createRequest("BYE", { via: VIA });
  assert.equal(request.uri, "sip:strict.example.com");
  assert.deepEqual(request.headers.getAll("Route"), ["<sip:bob@192.0.2.4>"]);
  assert.equal(nextHop.host, "strict.example.com");
});

Deno.test("UAS dialog: route set in order, remote CSeq tracked, out-of-order requests refused", () => {
  const inv = invite([["Record-Route", "<sip:p1.example.com;lr>"]]);
  const d = Dialog.fromUas(inv, "bobtag");
  assert.equal(d.id, "a84b4c76e66710;bobtag;1928301774");
  assert.equal(d.remoteTarget, "sip:alice@pc33.atlanta.example.com");
  assert.deepEqual(d.routeSet, ["<sip:p1.example.com;lr>"]);
  assert.equal(d.remoteSeq, 314159);
  const { request: bye } = d.createRequest("BYE", { via: "SIP/2.0/UDP biloxi.example.com;branch=z9hG4bKb" });
  assert.equal(getFrom(bye).params.tag, "bobtag");
  assert.equal(getTo(bye).params.tag, "1928301774");
  assert.ok(getCSeq(bye).seq >= 1);
  const inDialog = (seq: number) =>
    createRequest({
      method: "BYE",
      uri: "sip:bob@b",
      headers: [
        ["Via", VIA],
        ["From", "<sip:alice@atlanta.example.com>;tag=1928301774"],
        ["To", "<sip:bob@biloxi.example.com>;tag=bobtag"],
        ["Call-ID", "a84b4c76e66710"],
        ["CSeq", `${seq} BYE`],
      ],
    });
  assert.equal(dialogIdOfRequest(inDialog(1)), d.id);
  assert.equal(d.acceptRemoteCSeq(inDialog(314158)), false);
  assert.equal(d.acceptRemoteCSeq(inDialog(314160)), true);
  assert.equal(d.remoteSeq, 314160);
});

const POLICY_ALLOW = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"];

function req(method: string, opts: { toTag?: string; uri?: string; extra?: [string, string][] } = {}): SipRequest {
  return createRequest({
    method,
    uri: opts.uri ?? "sip:bob@10.0.0.2",
    headers: [
      ["Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKs"],
      ["From", "<sip:alice@10.0.0.1>;tag=a"],
      ["To", `<sip:bob@10.0.0.2>${opts.toTag ? `;tag=${opts.toTag}` : ""}`],
      ["Call-ID", "screen"],
      ["CSeq", `2 ${method}`],
      ...(opts.extra ?? []),
    ],
  });
}

Deno.test("screenRequest: 405 with Allow for unsupported methods", () => {
  for (const m of ["REGISTER", "INFO", "SUBSCRIBE", "MESSAGE", "UPDATE"]) {
    const res = screenRequest(req(m), { allow: POLICY_ALLOW, hasDialog: () => false })!;
    assert.equal(res.status, 405);
    assert.equal(res.reason, "Method Not Allowed");
    assert.equal(res.headers.get("Allow"), "INVITE, ACK, BYE, CANCEL, OPTIONS");
    assert.ok(getTo(res).params.tag, "final response outside a dialog gets a To tag");
  }
});

Deno.test("screenRequest: 501 Not Implemented for a method SIP does not define (405 is for known ones)", () => {
  for (const m of ["FOO", "INVITEX", "!interesting-Method0123456789_*+`.%indeed'~"]) {
    const res = screenRequest(req(m), { allow: POLICY_ALLOW, hasDialog: () => false })!;
    assert.equal(`${res.status} ${res.reason}`, "501 Not Implemented", m);
    assert.ok(getTo(res).params.tag, "final response outside a dialog gets a To tag");
  }
});

Deno.test("screenRequest: 481 for in-dialog requests matching no dialog and BYE outside a dialog", () => {
  const known = new Set(["screen;mine;a"]);
  const policy = { allow: POLICY_ALLOW, hasDialog: (r: SipRequest) => known.has(dialogIdOfRequest(r)!) };
  assert.equal(screenRequest(req("BYE", { toTag: "unknown" }), policy)?.status, 481);
  assert.equal(screenRequest(req("BYE"), policy)?.status, 481);
  assert.equal(screenRequest(req("INVITE", { toTag: "unknown" }), policy)?.status, 481);
  const r = screenRequest(req("BYE", { toTag: "unknown" }), policy)!;
  assert.equal(r.reason, "Call/Transaction Does Not Exist");
  assert.equal(getTo(r).params.tag, "unknown", "the existing To tag is kept");
  assert.equal(screenRequest(req("BYE", { toTag: "mine" }), policy), undefined);
  assert.equal(screenRequest(req("INVITE"), policy), undefined);
  assert.equal(screenRequest(req("CANCEL"), policy), undefined);
  assert.equal(screenRequest(req("ACK", { toTag: "unknown" }), policy), undefined, "never answer an ACK");
});

Deno.test("screenRequest: OPTIONS answered 200 with Allow and Accept; 420 for Require; 416 for non-SIP URIs", () => {
  const policy = {
    allow: POLICY_ALLOW,
    hasDialog: () => false,
    headers: [["Server", "voxpipe/0.1"]] as [string, string][],
  };
  const ok = screenRequest(req("OPTIONS"), policy)!;
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("Allow"), "INVITE, ACK, BYE, CANCEL, OPTIONS");
  assert.equal(ok.headers.get("Accept"), "application/sdp");
  assert.equal(ok.headers.get("Server"), "voxpipe/0.1");
  const ext = screenRequest(req("INVITE", { extra: [["Require", "100rel, timer"]] }), policy)!;
  assert.equal(ext.status, 420);
  assert.equal(ext.headers.get("Unsupported"), "100rel, timer");
  assert.equal(screenRequest(req("INVITE", { uri: "tel:+123" }), policy)?.status, 416);
});
