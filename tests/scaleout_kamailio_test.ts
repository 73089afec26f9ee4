/**
 * Past one machine: two voxpipe servers behind Kamailio's dispatcher, with the
 * configuration shipped in deploy/kamailio/ (only the listen address and the
 * list of servers filled in), on loopback. Calls to Kamailio's one address are
 * spread over both servers; once a server is stopped, calls still succeed on
 * the other (Kamailio fails them over and marks the dead one inactive).
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

/** Starts Kamailio with the shipped dispatcher configuration in front of `servers` (SIP ports on 127.0.0.1). */
async function startDispatcher(servers: number[]): Promise<{ port: number; stop(): Promise<void> }> {
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
  return { port, stop };
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
    let kam: { port: number; stop(): Promise<void> } | undefined;
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
