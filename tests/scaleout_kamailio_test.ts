/**
 * Past one machine: two voxpipe servers behind Kamailio's dispatcher, with the
 * configuration shipped in deploy/kamailio/ (only the listen address and the
 * list of servers filled in), on loopback. Calls to Kamailio's one address are
 * spread over both servers; once a server is stopped, calls still succeed on
 * the other (Kamailio fails them over and marks the dead one inactive). And it is
 * no open relay: in-dialog requests from outside aimed at a third socket (by the
 * Request-URI, a second Route, a host name) and a stray response are refused or
 * dropped, while in-dialog requests between a caller and a server still pass.
 *
 * Skipped with a message when Kamailio is not installed (or VOXPIPE_SKIP_INTEROP=1).
 */
import { assert, assertEquals } from "./assert.ts";
import { outputTail, SKIP_INTEROP, spawnBounded, waitForUdpPort } from "./media_util.ts";
import { freeUdpPort, g711Audio, ProcessGroup, spawnCallee, spawnCaller, writeG711Wav } from "./sip_util.ts";
import { kamailioPath } from "./sip_servers.ts";
import { repoPath } from "./util.ts";

const BIN = kamailioPath();
if (!BIN && !SKIP_INTEROP) {
  console.warn(
    "scaleout_kamailio_test: kamailio is not installed, skipping: install the Debian package kamailio " +
      "(bash scripts/setup.sh as root)",
  );
}

/** A running Kamailio: its SIP port, its log so far (stderr), and how to stop it. */
interface Dispatcher {
  port: number;
  /** Resolves once Kamailio's log matches `re` (rejects after `timeoutMs` or when it exits). */
  waitForLog(re: RegExp, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts Kamailio with the shipped dispatcher configuration in front of `servers` (SIP ports on 127.0.0.1). */
async function startDispatcher(servers: number[]): Promise<Dispatcher> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-dispatcher-" });
  const port = freeUdpPort();
  const list = servers.map((p) => `1 sip:127.0.0.1:${p}`).join("\n") + "\n";
  await Deno.writeTextFile(`${dir}/dispatcher.list`, list);
  const template = await Deno.readTextFile(repoPath("deploy/kamailio/dispatcher.cfg"));
  const cfg = template.replaceAll("@LISTEN@", `127.0.0.1:${port}`).replaceAll("@LIST@", `${dir}/dispatcher.list`);
  await Deno.writeTextFile(`${dir}/dispatcher.cfg`, cfg);
  const proc = spawnBounded(BIN!, [
    "-f",
    `${dir}/dispatcher.cfg`,
    "-DD",
    "-E",
    "-P",
    `${dir}/kamailio.pid`,
    "-w",
    dir,
    "-Y",
    dir,
    "-m",
    "32",
    "-M",
    "4",
  ], { timeoutMs: 150_000, stopSignal: "SIGTERM" });
  // SIGTERM: Kamailio's main process then stops its children (a SIGKILL would leave them holding the pipes).
  const stop = async () => {
    proc.kill("SIGTERM");
    await proc.result;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await Promise.race([
      waitForUdpPort(port, 15_000),
      proc.result.then((r) => {
        throw new Error(`kamailio exited at start: ${outputTail(r)}`);
      }),
    ]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, waitForLog: (re, timeoutMs) => proc.waitForOutput(re, timeoutMs), stop };
}

/** How many calls a server answered so far (its log says "200 OK sent" once per answered call). */
function answered(log: string): number {
  return log.split("\n").filter((l) => /\[SIP\] 200 OK sent/.test(l)).length;
}

Deno.test({
  name: "scale-out: two servers behind Kamailio's dispatcher share the calls; a stopped one fails over to the other",
  ignore: SKIP_INTEROP || !BIN,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const procs = new ProcessGroup();
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-scaleout-" });
    let kam: Dispatcher | undefined;
    try {
      await writeG711Wav(`${dir}/source.wav`, g711Audio("PCMU", 0.6, 3));
      const a = procs.trackCallee(
        await spawnCallee({ record: `${dir}/a-\${call.id}.wav`, calls: 0, rtpTimeout: 5, timeoutMs: 140_000 }),
      );
      const b = procs.trackCallee(
        await spawnCallee({ record: `${dir}/b-\${call.id}.wav`, calls: 0, rtpTimeout: 5, timeoutMs: 140_000 }),
      );
      kam = await startDispatcher([a.port, b.port]);
      const call = async (n: number) => {
        const r = await spawnCaller({
          to: `sip:service@127.0.0.1:${kam!.port}`,
          file: `${dir}/source.wav`,
          timeoutMs: 60_000,
        }).result;
        assertEquals(r.code, 0, `call ${n} through Kamailio: ${outputTail(r)}`);
      };
      for (let n = 1; n <= 4; n++) await call(n);
      const recordings = (prefix: string) =>
        [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(prefix) && e.name.endsWith(".wav")).length;
      // Round robin: both servers answered and recorded calls (two each, in the order Kamailio chose).
      assertEquals(answered(a.proc.output()) + answered(b.proc.output()), 4);
      assert(answered(a.proc.output()) >= 1 && answered(b.proc.output()) >= 1, "calls spread over both servers");
      assertEquals(recordings("a-") + recordings("b-"), 4);

      // Server B goes away: every further call still succeeds, on A.
      b.proc.kill("SIGTERM");
      await b.proc.result;
      const before = answered(a.proc.output());
      for (let n = 5; n <= 7; n++) await call(n);
      assertEquals(answered(a.proc.output()), before + 3, "every call after B stopped was answered by A");
      assertEquals(recordings("a-") + recordings("b-"), 7);
    } finally {
      await kam?.stop();
      await procs.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** A UDP socket on 127.0.0.1 that keeps every datagram it receives, as text, and can wait for one. */
class Peer {
  readonly conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  readonly port = (this.conn.addr as Deno.NetAddr).port;
  readonly received: string[] = [];
  #wake: (() => void) | undefined;
  readonly #reading: Promise<void>;

  constructor() {
    this.#reading = (async () => {
      try {
        for await (const [data] of this.conn) {
          this.received.push(new TextDecoder().decode(data));
          this.#wake?.();
        }
      } catch {
        // closed
      }
    })();
  }

  send(text: string, port: number): Promise<number> {
    return this.conn.send(new TextEncoder().encode(text), { transport: "udp", hostname: "127.0.0.1", port });
  }

  /** The first datagram received (so far or later) that matches `pred`; throws after `timeoutMs`. */
  async next(pred: (msg: string) => boolean, what: string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.received.find(pred);
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${what}: nothing within ${timeoutMs} ms; received: ${JSON.stringify(this.received)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.conn.close();
    await this.#reading;
  }
}

/** An in-dialog request (it has a To tag) from `from`, with the given Request-URI and Route header (if any). */
function inDialog(method: string, ruri: string, route: string | undefined, from: Peer, callId: string): string {
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${from.port};rport;branch=z9hG4bK${callId}`,
    "Max-Forwards: 70",
    `From: <sip:someone@127.0.0.1:${from.port}>;tag=f${callId}`,
    `To: <sip:service@127.0.0.1>;tag=t${callId}`,
    `Call-ID: ${callId}`,
    `CSeq: 2 ${method}`,
    ...(route ? [`Route: ${route}`] : []),
    `Contact: <sip:someone@127.0.0.1:${from.port}>`,
    "Content-Length: 0",
    "",
    "",
  ].join("\r\n");
}

/** Whether `msg` is a response (or, with `method`, a request of that method) whose Call-ID is `callId`. */
function isFor(msg: string, callId: string, method?: string): boolean {
  const first = msg.slice(0, msg.indexOf("\r\n"));
  if (method ? !first.startsWith(`${method} `) : !first.startsWith("SIP/2.0 ")) return false;
  return new RegExp(`^Call-ID:[ \\t]*${callId}\\r?$`, "im").test(msg);
}

Deno.test({
  name: "scale-out: Kamailio relays in-dialog requests from outside only to the voxpipe servers, never to a third host",
  ignore: SKIP_INTEROP || !BIN,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // Two "servers" (set 1), a caller, an attacker and a third party, all plain sockets: no call is needed to
    // craft in-dialog requests, and the servers need not answer the probes (a BYE may go to an inactive server).
    const [s1, s2, caller, attacker, third] = [new Peer(), new Peer(), new Peer(), new Peer(), new Peer()];
    let kam: Dispatcher | undefined;
    // Generous: only reached when something is wrong; a pass never waits for it.
    const BOUND = 20_000;
    try {
      kam = await startDispatcher([s1.port, s2.port]);
      const K = `127.0.0.1:${kam.port}`;
      const T = `127.0.0.1:${third.port}`;
      /** Sends a crafted request from the attacker; returns Kamailio's final response to it (its first line). */
      const refused = async (method: string, ruri: string, route: string, callId: string) => {
        await attacker.send(inDialog(method, ruri, route, attacker, callId), kam!.port);
        const r = await attacker.next(
          (m) => isFor(m, callId) && !m.startsWith("SIP/2.0 1"),
          `Kamailio's answer to ${method} ${ruri} (Route: ${route})`,
          BOUND,
        );
        return r.slice(0, r.indexOf("\r\n"));
      };

      const seen = () => `the third party received: ${JSON.stringify(third.received.map((m) => m.split("\r\n")[0]))}`;
      // Loosely routed to the third party by the Request-URI, by a second Route, and a name to resolve.
      assertEquals(
        await refused("BYE", `sip:victim@${T}`, `<sip:${K};lr>`, "relay1"),
        "SIP/2.0 403 Next Hop Not A Voxpipe Server",
        seen(),
      );
      assertEquals(
        await refused("INVITE", `sip:x@127.0.0.1:${s1.port}`, `<sip:${K};lr>, <sip:${T};lr>`, "relay2"),
        "SIP/2.0 403 Next Hop Not A Voxpipe Server",
        seen(),
      );
      assertEquals(
        await refused("MESSAGE", "sip:victim@relay-target.invalid", `<sip:${K};lr>`, "relay3"),
        "SIP/2.0 403 Next Hop Not An IP Address",
        seen(),
      );
      // An ACK gets no answer: Kamailio's log says it decided. So does a response matching no transaction,
      // whose second Via names the third party.
      await attacker.send(inDialog("ACK", `sip:victim@${T}`, `<sip:${K};lr>`, attacker, "relay4"), kam.port);
      await kam.waitForLog(/refused ACK relay4 .*not a voxpipe server/, BOUND);
      await attacker.send(
        [
          "SIP/2.0 200 OK",
          `Via: SIP/2.0/UDP ${K};branch=z9hG4bKnosuchtransaction`,
          `Via: SIP/2.0/UDP ${T};branch=z9hG4bKrelay5`,
          "From: <sip:a@127.0.0.1>;tag=a",
          "To: <sip:b@127.0.0.1>;tag=b",
          "Call-ID: relay5",
          "CSeq: 1 INVITE",
          "Content-Length: 0",
          "",
          "",
        ].join("\r\n"),
        kam.port,
      );
      await kam.waitForLog(/dropped a 200 response relay5 .*matches no transaction/, BOUND);

      // Still relayed: from outside to a server (the caller's BYE), and from a server along its Request-URI
      // (the server's BYE to the caller's Contact).
      await caller.send(inDialog("BYE", `sip:x@127.0.0.1:${s1.port}`, `<sip:${K};lr>`, caller, "legit1"), kam.port);
      await s1.next((m) => isFor(m, "legit1", "BYE"), "the caller's BYE at server 1", BOUND);
      await s2.send(inDialog("BYE", `sip:someone@127.0.0.1:${caller.port}`, `<sip:${K};lr>`, s2, "legit2"), kam.port);
      await caller.next((m) => isFor(m, "legit2", "BYE"), "server 2's BYE at the caller", BOUND);

      // Kamailio answered or logged every crafted message before this point: none of them reached the third party.
      assertEquals(third.received, [], "nothing reached the third party");
    } finally {
      await kam?.stop();
      for (const p of [s1, s2, caller, attacker, third]) await p.close();
    }
  },
});
