/**
 * SipUserAgent over real UDP sockets on loopback. Timing is real but nothing
 * asserts a duration; a guard only stops a hung test.
 */
import assert from "node:assert/strict";
import type { Clock, Timer } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { parseMessage, type SipResponse } from "../plugins/sip/message.ts";
import { createAnswer, createOffer, negotiated } from "../plugins/sip/sdp.ts";
import type { Address } from "../plugins/sip/transport.ts";
import { udpNetwork } from "../core/net/udp.ts";
import { type IncomingCall, SipUserAgent } from "../plugins/sip/mod.ts";
import { codecs } from "./registry_util.ts";

/** A real-time clock on plain setTimeout/clearTimeout, so cancelled timers leave nothing pending. */
class TimeoutClock implements Clock {
  now(): number {
    return performance.now();
  }
  at(due: number, fn: () => void): Timer {
    const id = setTimeout(fn, Math.max(0, due - this.now()));
    return { due, cancel: () => clearTimeout(id) };
  }
  after(ms: number, fn: () => void): Timer {
    return this.at(this.now() + ms, fn);
  }
  sleepUntil(due: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = this.at(due, resolve);
      signal?.addEventListener("abort", () => {
        t.cancel();
        reject(signal.reason);
      }, { once: true });
    });
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.sleepUntil(this.now() + ms, signal);
  }
}

/** Rejects if `p` does not settle within `ms` (a hang guard, not a timing assertion). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    id = setTimeout(() => reject(new Error(`${what} did not happen`)), ms);
  });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(id);
  }
}

Deno.test("UDP loopback: INVITE / 180 / 200 / ACK / BYE between two SipUserAgents", async () => {
  const clock = new TimeoutClock();
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  const alice = new SipUserAgent({ hostname: "127.0.0.1", port: 0, clock, log, userName: "alice" });
  const bob = new SipUserAgent({ hostname: "0.0.0.0", port: 0, clock, log, userName: "bob" });
  try {
    const incoming = new Promise<IncomingCall>((resolve) =>
      bob.onInvite((call) => {
        call.ringing();
        call.accept(createAnswer(call.offer!, { registry: codecs, address: "127.0.0.1", port: 41000 }));
        resolve(call);
      })
    );
    const target = `sip:bob@127.0.0.1:${bob.localAddress.port}`;
    const call = alice.invite(target, { sdp: createOffer({ registry: codecs, address: "127.0.0.1", port: 40000 }) });
    const progress: number[] = [];
    call.on("progress", (p) => progress.push(p.status));
    const { sdp } = await within(call.established, 5000, "caller established");
    assert.ok(progress.includes(180), `progress ${progress}`);
    const media = negotiated(sdp!, { registry: codecs });
    assert.equal(media.remotePort, 41000);
    assert.equal(media.codec, "PCMU");
    const bobCall = await incoming;
    await within(bobCall.established, 5000, "callee established");
    // Bob is bound to 0.0.0.0: his Contact must name the loopback address facing Alice.
    assert.equal(call.remoteTarget, `sip:bob@127.0.0.1:${bob.localAddress.port}`);
    await within(call.hangup(), 5000, "BYE answered");
    const end = await within(bobCall.ended, 5000, "callee ended");
    assert.deepEqual(end, { by: "remote", reason: "BYE" });
    assert.deepEqual(call.endInfo, { by: "local", reason: "BYE" });
    const text = out.lines.join("\n");
    assert.ok(text.includes(`[SIP] INVITE sent to ${target}`));
    assert.ok(text.includes("[SIP] 180 Ringing"));
    assert.ok(text.includes("[SIP] 200 OK received, sending ACK"));
    assert.ok(text.includes("[SIP] BYE sent"));
    assert.ok(text.includes("[SIP] BYE received"));
  } finally {
    await alice.close();
    await bob.close();
  }
});

Deno.test("UDP loopback: garbage gets 400 or is dropped, the UA keeps answering", async () => {
  const clock = new TimeoutClock();
  const ua = new SipUserAgent({ hostname: "127.0.0.1", port: 0, clock, userName: "bob" });
  const probe = udpNetwork.bind("127.0.0.1", 0);
  const got: string[] = [];
  let notify = () => {};
  probe.listen((d) => {
    got.push(new TextDecoder().decode(d));
    notify();
  });
  const next = () => new Promise<void>((r) => (notify = r));
  try {
    const to: Address = ua.localAddress;
    const p = probe.local.port;
    const te = new TextEncoder();
    await probe.send(crypto.getRandomValues(new Uint8Array(300)), to);
    const bad = [
      "OPTIONS sip:bob@127.0.0.1 SIP/2.0",
      `Via: SIP/2.0/UDP 127.0.0.1:${p};branch=z9hG4bKgarbage`,
      "From: <sip:probe@127.0.0.1>;tag=1",
      "To: <sip:bob@127.0.0.1>",
      "Call-ID: garbage-1",
      "CSeq: 1 OPTIONS",
      "Content-Length: 9000",
    ].join("\r\n") + "\r\n\r\n";
    let wait = next();
    await probe.send(te.encode(bad), to);
    await within(wait, 5000, "400 answer");
    const r400 = parseMessage(got[0]) as SipResponse;
    assert.equal(r400.status, 400);
    assert.equal(r400.reason, "Bad Request (Content-Length larger than body)");
    wait = next();
    await probe.send(
      te.encode(bad.replace("Content-Length: 9000", "Content-Length: 0").replace("garbage", "good")),
      to,
    );
    await within(wait, 5000, "OPTIONS answer");
    assert.equal((parseMessage(got[1]) as SipResponse).status, 200);
    assert.equal(ua.stats.malformedDropped, 1);
    assert.equal(ua.stats.badRequestsAnswered, 1);
  } finally {
    await probe.close();
    await ua.close();
  }
});

Deno.test("UDP loopback over IPv6: call set up and torn down with bracketed addresses", async () => {
  const clock = new TimeoutClock();
  const alice = new SipUserAgent({ hostname: "::1", port: 0, clock, userName: "alice" });
  const bob = new SipUserAgent({ hostname: "::1", port: 0, clock, userName: "bob" });
  try {
    const incoming = new Promise<IncomingCall>((resolve) =>
      bob.onInvite((call) => {
        call.accept(createAnswer(call.offer!, { registry: codecs, address: "::1", port: 41000 }));
        resolve(call);
      })
    );
    const call = alice.invite(`sip:bob@[::1]:${bob.localAddress.port}`, {
      sdp: createOffer({ registry: codecs, address: "::1", port: 40000 }),
    });
    const { sdp } = await within(call.established, 5000, "caller established");
    assert.equal(negotiated(sdp!, { registry: codecs }).remoteAddress, "::1");
    assert.equal(call.remoteTarget, `sip:bob@[::1]:${bob.localAddress.port}`);
    assert.match(call.invite.headers.get("Via")!, /^SIP\/2.0\/UDP \[::1\]:\d+;branch=/);
    const bobCall = await incoming;
    await within(bobCall.established, 5000, "callee established");
    await within(bobCall.hangup(), 5000, "BYE answered");
    assert.deepEqual(await within(call.ended, 5000, "caller ended"), { by: "remote", reason: "BYE" });
  } finally {
    await alice.close();
    await bob.close();
  }
});
