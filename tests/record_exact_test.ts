/**
 * Recordings on the sender's timeline are exact (issue 11), scaled down from
 * `bench/record_exact.ts` to run in CI:
 *
 * - 20 concurrent sipp calls of 5 s (`rtp_stream`, PCMU) into
 *   `pipelines/callee.json`: every call succeeds, and every recording holds
 *   every 20 ms frame sipp sent, in order, no shift, and apart from leading and
 *   trailing silence is sipp's audio sample for sample;
 * - our CLI caller → our CLI callee, 10 s of G.711-representable speech, the
 *   callee frozen (SIGSTOP) for 1.5 s about when the caller sends its last
 *   packets and its BYE: the same, against the file the caller sent. (The
 *   frozen callee then finds the BYE and the RTP queued before it at once;
 *   before udp-source drained its socket on a graceful end, the packets read
 *   after the BYE were lost. If the machine is so slow that the freeze falls
 *   elsewhere in the call, the recording must be exact all the same.)
 *
 * Nothing here depends on how fast the machine is: the recording follows the
 * RTP timestamps, not the clock; every process has a generous time bound; the
 * callee's overload protection (503 when the event loop lags, which a loaded
 * machine can cause) is set to 60 s of lag (`--set overload_lag_ms=60000`) so
 * a slow machine does not turn calls away; sipp waits 10 s after its audio
 * before BYE, so a sender running late still finishes. It passes alongside
 * `stress-ng --cpu 2`. Loopback only. Needs sipp (`bash scripts/setup.sh`).
 *
 * The checks themselves (`tests/record_check.ts`) are tested first on
 * recordings with a frame dropped, a frame of silence inserted, and two frames
 * swapped, so a broken recording cannot pass.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  freePortPair,
  g711Audio,
  outputTail,
  ProcessGroup,
  readSippStats,
  readWav,
  requireTool,
  scenarioPath,
  sippArgs,
  sippCounter,
  sippErrors,
  spawnCallee,
  spawnCaller,
  spawnSipp,
  writeG711Wav,
} from "./sip_util.ts";
import { callSummaries, compareApartFromSilence, framesFound, recordBufferSummaries } from "./record_check.ts";

const CALLS = 20;
const CALL_SECONDS = 5;
/** Seconds sipp waits after its audio before it sends BYE: a sender that runs late on a loaded machine still ends. */
const TAIL_SECONDS = 10;
const processes = { sanitizeResources: false, sanitizeOps: false };

/** Sends a signal to a process that may have ended already (then its result says what happened). */
function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch { /* gone */ }
}

/** Bytes the kernel holds unread for the IPv4 UDP socket(s) bound to `port` (from /proc/net/udp; 0 without it). */
async function udpReceiveQueue(port: number): Promise<number> {
  const text = await Deno.readTextFile("/proc/net/udp").catch(() => "");
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let queued = 0;
  for (const line of text.split("\n").slice(1)) {
    // "sl local_address rem_address st tx_queue:rx_queue ...", addresses as HEXIP:HEXPORT
    const f = line.trim().split(/\s+/);
    if (f.length > 4 && f[1].endsWith(`:${hex}`)) queued += parseInt(f[4].split(":")[1], 16) || 0;
  }
  return queued;
}

/** Asserts a recording is exact: every frame, in order, no shift, and the reference sample for sample. */
function assertExactRecording(ref: Int16Array, rec: Int16Array, label: string): void {
  const f = framesFound(ref, rec);
  const c = compareApartFromSilence(ref, rec);
  const what = `${label}: ${JSON.stringify(f)} ${JSON.stringify(c)}`;
  assert(f.total >= (ref.length / 160) * 0.9, `${label}: too few distinct frames to look for (${f.total})`);
  assertEquals(f.found, f.total, `frames missing: ${what}`);
  assertEquals(f.shifts, 0, `timeline shifted: ${what}`);
  assert(c.equal, `not sample-exact: ${what}`);
}

Deno.test("record check: finds every frame of an exact copy, and sees a dropped, an inserted and a swapped frame", () => {
  const ref = g711Audio("PCMU", 2).samples; // 100 frames
  const withSilence = (a: Int16Array, head: number, tail: number) => {
    const out = new Int16Array(head + a.length + tail);
    out.set(a, head);
    return out;
  };
  const frame = (k: number) => ref.subarray(k * 160, (k + 1) * 160);
  const join = (...parts: Int16Array[]) => {
    const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) (out.set(p, at), at += p.length);
    return out;
  };

  const exact = withSilence(ref, 1234, 480);
  const f = framesFound(ref, exact);
  assertEquals([f.total, f.found, f.shifts, f.firstAt, f.endAt], [100, 100, 0, 1234, 1234 + ref.length]);
  assertEquals(compareApartFromSilence(ref, exact), {
    equal: true,
    leading: 1234,
    trailing: 480,
    recLength: ref.length,
    refLength: ref.length,
    mismatches: 0,
    firstMismatch: -1,
  });

  // Frame 40 removed: one frame missing and the timeline shifted by its length where it was.
  const dropped = join(ref.subarray(0, 40 * 160), ref.subarray(41 * 160));
  const d = framesFound(ref, dropped);
  assertEquals([d.found, d.shifts, d.shiftedSamples, d.missing], [99, 1, 160, [40]]);
  assertEquals(compareApartFromSilence(ref, dropped).equal, false);

  // A frame of silence (concealment) inserted after frame 60: everything found, one shift of 160 samples.
  const inserted = join(ref.subarray(0, 61 * 160), new Int16Array(160), ref.subarray(61 * 160));
  const i = framesFound(ref, inserted);
  assertEquals([i.found, i.shifts, i.shiftedSamples], [100, 1, 160]);
  assertEquals(compareApartFromSilence(ref, inserted).firstMismatch, 61 * 160);

  // Frames 70 and 71 swapped: in order, one of them cannot be found.
  const swapped = join(ref.subarray(0, 70 * 160), frame(71), frame(70), ref.subarray(72 * 160));
  const s = framesFound(ref, swapped);
  assertEquals(s.found, 99);
  assertEquals(compareApartFromSilence(ref, swapped).equal, false);

  // One sample changed: the frame holding it is not found, and the strict comparison says where.
  const altered = ref.slice();
  altered[5000] ^= 1;
  assertEquals(framesFound(ref, altered).missing, [Math.floor(5000 / 160)]);
  assertEquals(compareApartFromSilence(ref, altered).firstMismatch, 5000);
});

Deno.test("record check: reads our callee's call and record buffer summaries", () => {
  const log = [
    "2026-12-01T15:00:00.000Z INFO [SIP] call summary: from=sip:sipp@127.0.0.1:5060 codec=PCMU duration=5.2 s " +
    "received=250 lost=0 late=0 recording=/tmp/x/call-1-42@127.0.0.1.wav (5.0 s) call=1-42@127.0.0.1",
    "2026-12-01T15:00:00.000Z INFO [JITTER-BUFFER] record buffer summary received=250 lost=0 late=0 max_packet_ms=20",
  ].join("\n");
  assertEquals(callSummaries(log), [{
    received: 250,
    lost: 0,
    recording: "/tmp/x/call-1-42@127.0.0.1.wav",
    callId: "1-42@127.0.0.1",
  }]);
  assertEquals(recordBufferSummaries(log), [{ received: 250, lost: 0, late: 0, max_packet_ms: 20 }]);
});

Deno.test({
  name: `${CALLS} concurrent sipp calls of ${CALL_SECONDS} s → pipelines/callee.json: every recording sample-exact`,
  ...processes,
  async fn() {
    await requireTool("sipp");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-record-exact-sipp-" });
    const procs = new ProcessGroup();
    try {
      const audio = g711Audio("PCMU", CALL_SECONDS, 5);
      await Deno.writeFile(`${dir}/voxpipe_pcmu.raw`, audio.bytes);
      await Deno.mkdir(`${dir}/rec`);
      const bound = (CALL_SECONDS + TAIL_SECONDS + 150) * 1000;
      const callee = procs.trackCallee(
        await spawnCallee({
          record: `${dir}/rec/call-\${call.id}.wav`,
          calls: CALLS,
          codecs: "PCMU",
          rtpTimeout: 30,
          timeoutMs: bound,
          extra: ["--set", `max_calls=${CALLS}`, "--set", "overload_lag_ms=60000"],
        }),
      );
      const sipp = procs.add(spawnSipp(
        sippArgs({
          scenario: scenarioPath("uac_pcmu_stream.xml"),
          mediaPort: freePortPair("127.0.0.1", 2 * CALLS),
          service: "bob",
          calls: CALLS,
          limit: CALLS,
          rate: CALLS,
          ratePeriodMs: 1000,
          pauseMs: (CALL_SECONDS + TAIL_SECONDS) * 1000,
          target: `127.0.0.1:${callee.port}`,
        }),
        { cwd: dir, timeoutMs: bound },
      ));
      const sr = await sipp.result;
      if (sr.code !== 0) callee.proc.kill(); // it would wait for its calls until its own time bound
      const cr = await callee.proc.result;
      assertEquals(sr.code, 0, `sipp failed: ${outputTail(sr)}\nerrors: ${sippErrors(dir)}\ncallee: ${outputTail(cr)}`);
      assertEquals(cr.code, 0, `callee failed: ${outputTail(cr)}`);
      const stats = await readSippStats(`${dir}/stats.csv`);
      assertEquals(sippCounter(stats, "SuccessfulCall(C)"), CALLS);
      assertEquals(sippCounter(stats, "FailedCall(C)"), 0);

      const sums = callSummaries(cr.stderr);
      assertEquals(sums.length, CALLS, `call summaries: ${outputTail(cr)}`);
      for (const s of sums) {
        assert(s.recording, `call ${s.callId} has no recording`);
        const w = await readWav(s.recording);
        assert(w.finalized && w.sampleRate === 8000 && w.channels === 1, `${s.recording}: ${JSON.stringify(w)}`);
        assertExactRecording(audio.samples, w.samples, `call ${s.callId}`);
        assertEquals(s.received, audio.bytes.length / 160, `call ${s.callId}: packets received`);
      }
      for (const r of recordBufferSummaries(cr.stderr)) {
        assertEquals([r.lost, r.late, r.concealed_samples], [0, 0, 0], `record buffer ${JSON.stringify(r)}`);
      }
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "our caller → our callee, 10 s, callee frozen near the end until the BYE: the recording is the file sent, sample-exact",
  ...processes,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-record-exact-call-" });
    const procs = new ProcessGroup();
    try {
      // G.711-representable audio: the caller's encoder maps it to bytes that decode back to it.
      const audio = g711Audio("PCMU", 10, 17);
      await writeG711Wav(`${dir}/source.wav`, audio);
      const callee = procs.trackCallee(
        await spawnCallee({
          record: `${dir}/rec.wav`,
          codecs: "PCMU",
          rtpTimeout: 30,
          timeoutMs: 180_000,
          extra: ["--set", "overload_lag_ms=60000"],
        }),
      );
      const caller = procs.add(
        spawnCaller({ to: callee.uri, file: `${dir}/source.wav`, codecs: "PCMU", timeoutMs: 180_000 }),
      );
      // Freeze the callee once its recording holds 8 s (its WAV grows as it records, 16-bit at 8 kHz, the header
      // rewritten every second) until the caller has sent its BYE: the callee's last packets and the BYE queue up in
      // its sockets. Both follow the processes' own progress, not the wall time since a log line was read.
      await callee.proc.waitForOutput(/\[SIP\] media: PCMU/, 120_000);
      let byeBeforeFreeze = true;
      for (let waited = 0; waited < 60_000 && !caller.ended; waited += 50) {
        const size = await Deno.stat(`${dir}/rec.wav`).then((i) => i.size, () => 0);
        if (size >= 44 + 2 * 8000 * 8) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      signal(callee.proc.pid, "SIGSTOP");
      try {
        byeBeforeFreeze = /BYE sent/.test(caller.output());
        await caller.waitForOutput(/BYE sent/, 60_000).catch(() => {});
        // The caller logs "BYE sent" as it hands the BYE to its socket: resume the callee once the BYE waits in the
        // callee's SIP socket (the kernel's receive queue for its port is not empty), not before it has arrived.
        for (let waited = 0; waited < 10_000 && (await udpReceiveQueue(callee.port)) === 0; waited += 20) {
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        signal(callee.proc.pid, "SIGCONT");
      }
      const kr = await caller.result;
      if (kr.code !== 0) callee.proc.kill();
      const cr = await callee.proc.result;
      assertEquals(kr.code, 0, `caller failed: ${outputTail(kr)}`);
      assertEquals(cr.code, 0, `callee failed: ${outputTail(cr)}`);
      assertMatch(kr.stderr, /BYE sent/, `caller: ${outputTail(kr)}`);
      assert(!byeBeforeFreeze, `the caller sent its BYE before the callee was frozen: ${outputTail(kr)}`);
      const w = await readWav(`${dir}/rec.wav`);
      assert(w.finalized && w.sampleRate === 8000 && w.channels === 1, `recording: ${JSON.stringify(w)}`);
      assertExactRecording(audio.samples, w.samples, "caller → callee");
      const [rb] = recordBufferSummaries(cr.stderr);
      assert(rb, `no record buffer summary: ${outputTail(cr)}`);
      assertEquals([rb.received, rb.lost, rb.late, rb.concealed_samples], [audio.bytes.length / 160, 0, 0, 0]);
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
