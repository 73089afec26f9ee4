/**
 * The SIP relay (`pipelines/sip-relay.json`, run by our CLI) with real SIP
 * phones over loopback: baresip (Debian `baresip`) and Linphone's console
 * phone (`linphonec`, Debian `linphone-cli`) register to it with Digest
 * credentials (from a users file) and call each other through it.
 *
 * - baresip (alice) → baresip (bob): each plays a G.711-representable file
 *   and dumps what it decodes; both directions are sample-exact.
 * - Linphone (carol) → baresip (bob), and baresip (alice) → Linphone (carol,
 *   auto answer): what baresip decodes is Linphone's file sample-exact; what
 *   Linphone records holds baresip's audio packet for packet (its adaptive
 *   jitter buffer may drop or repeat a packet as it adapts).
 *
 * And the media really passes through the relay: tshark captures on `lo`
 * (bounded: the relay's media ports and the phones' RTP ports only) and the
 * capture shows RTP only between each phone and its leg's relay port, none
 * directly between the phones; every RTP packet the relay sent to one phone
 * carries the SSRC and sequence number of a packet the other phone sent to the
 * relay (relayed, not re-made); and the packets the relay sent each way match
 * the counters in its end-of-call summary line.
 *
 * Each phone's account registers to the relay; commands go to baresip's
 * standard input (its `stdio` module), so a call is dialled only once both
 * phones are registered. Without baresip, linphonec or tshark these tests fail
 * with an install hint, unless VOXPIPE_SKIP_INTEROP=1.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  type BoundedProcess,
  compareAligned,
  findPackets,
  outputTail,
  readWav,
  requireTool as requireMediaTool,
  runBounded,
  SKIP_INTEROP,
  sleep,
  spawnBounded,
  spawnCli,
} from "./media_util.ts";
import {
  cleanBaresipOutput,
  freePortPair,
  freeUdpPort,
  g711Audio,
  ProcessGroup,
  requireTool,
  wavFiles,
  writeBaresipConfig,
  writeG711Wav,
} from "./sip_util.ts";
import { linphonecInstalled, startLinphone } from "./sip_servers.ts";
import { repoPath } from "./util.ts";

const PASSWORDS: Record<string, string> = { alice: "alice-Pw-1", bob: "bob-Pw-2", carol: "carol-Pw-3" };

const opts = { ignore: SKIP_INTEROP, sanitizeResources: false, sanitizeOps: false };

/** The relay, run by our CLI from the shipped pipeline file. */
interface Relay {
  proc: BoundedProcess;
  sipPort: number;
  /** First and last port of its media range. */
  rtp: [number, number];
  uri: string;
}

async function startRelay(dir: string, procs: ProcessGroup): Promise<Relay> {
  await Deno.writeTextFile(
    `${dir}/users`,
    `# test users\n${Object.entries(PASSWORDS).map(([u, p]) => `${u}:${p}`).join("\n")}\n`,
  );
  const sipPort = freeUdpPort();
  const first = freePortPair("127.0.0.1", 8);
  const proc = procs.add(spawnCli([
    "--pipeline",
    repoPath("pipelines/sip-relay.json"),
    "--set",
    `port=${sipPort}`,
    "--set",
    "bind=127.0.0.1",
    "--set",
    `users_file=${dir}/users`,
    "--set",
    `rtp_ports=${first}-${first + 7}`,
  ], { timeoutMs: 90_000, stopSignal: "SIGINT" }));
  await proc.waitForOutput(/\[B2BUA\] registrar and B2BUA on udp 127\.0\.0\.1:\d+/, 20_000);
  return { proc, sipPort, rtp: [first, first + 7], uri: `sip:127.0.0.1:${sipPort}` };
}

/** A baresip phone registered to the relay, driven through its standard input. */
async function startBaresip(
  dir: string,
  user: string,
  relay: Relay,
  source: string,
  procs: ProcessGroup,
): Promise<{ proc: BoundedProcess; rtpPort: number; dump: string }> {
  const cfg = `${dir}/${user}-cfg`, dump = `${dir}/${user}-dump`;
  await Deno.mkdir(cfg);
  await Deno.mkdir(dump);
  const rtpPort = freePortPair();
  await writeBaresipConfig(cfg, { sipPort: freeUdpPort(), rtpPort, user, source: `aufile,${source}`, dumpDir: dump });
  // Register to the relay (every 60 s), answer at once; commands from standard input (stdio).
  await Deno.writeTextFile(
    `${cfg}/accounts`,
    `<sip:${user}@127.0.0.1:${relay.sipPort}>;auth_pass=${PASSWORDS[user]};regint=60;answermode=auto;` +
      "audio_codecs=PCMU\n",
  );
  await Deno.writeTextFile(`${cfg}/config`, `${await Deno.readTextFile(`${cfg}/config`)}module\t\t\tstdio.so\n`);
  const proc = procs.add(spawnBounded("baresip", ["-f", cfg, "-n", "127.0.0.1", "-t", "60"], {
    timeoutMs: 70_000,
    stopSignal: "SIGINT",
    stdin: true,
  }));
  await proc.waitForOutput(/baresip is ready/, 15_000);
  return { proc, rtpPort, dump };
}

/** tshark capturing the relay's media ports and the phones' RTP ports on `lo`. */
async function startCapture(dir: string, relay: Relay, phonePorts: number[], procs: ProcessGroup) {
  await requireMediaTool("tshark", ["-v"]);
  await Deno.chmod(dir, 0o777); // dumpcap may run as another user
  const cap = `${dir}/relay.pcap`;
  const filter = `udp and (portrange ${relay.rtp[0]}-${relay.rtp[1]}${
    phonePorts.map((p) => ` or portrange ${p}-${p + 1}`).join("")
  })`;
  const proc = procs.add(spawnBounded("tshark", ["-i", "lo", "-f", filter, "-F", "pcap", "-w", cap], {
    timeoutMs: 90_000,
    stopSignal: "SIGINT",
  }));
  await proc.waitForOutput(/Capturing on/, 20_000).catch((e) => {
    throw new Error(`tshark cannot capture on lo (it needs root, or dumpcap with cap_net_raw): ${e.message}`);
  });
  return { proc, cap };
}

interface RtpRow {
  src: number;
  dst: number;
  pt: string;
  seq: string;
  ssrc: string;
}

/** The RTP packets of a capture (every even port of the relay and the phones decoded as RTP). */
async function readRtp(cap: string, relay: Relay, phonePorts: number[]): Promise<RtpRow[]> {
  const ports = [...phonePorts];
  for (let p = relay.rtp[0]; p <= relay.rtp[1]; p += 2) ports.push(p);
  const r = await runBounded("tshark", [
    "-r",
    cap,
    ...ports.flatMap((p) => ["-d", `udp.port==${p},rtp`]),
    "-T",
    "fields",
    "-E",
    "separator=/t",
    "-e",
    "udp.srcport",
    "-e",
    "udp.dstport",
    "-e",
    "rtp.p_type",
    "-e",
    "rtp.seq",
    "-e",
    "rtp.ssrc",
  ], { timeoutMs: 60_000 });
  assertEquals(r.code, 0, outputTail(r));
  return r.stdout.trim().split("\n").filter((l) => l.trim()).map((l) => {
    const [src, dst, pt, seq, ssrc] = l.split("\t");
    return { src: Number(src), dst: Number(dst), pt: pt ?? "", seq: seq ?? "", ssrc: ssrc ?? "" };
  }).filter((row) => row.pt !== "");
}

/** The relay's log lines for call `n`: its legs' ports and its end-of-call counters. */
function callReport(log: string, n: number) {
  const ans = new RegExp(
    `call ${n}: answered by \\S+, (\\w+); a 127\\.0\\.0\\.1:(\\d+) ↔ 127\\.0\\.0\\.1:(\\d+), ` +
      `b 127\\.0\\.0\\.1:(\\d+) ↔ 127\\.0\\.0\\.1:(\\d+)`,
  ).exec(log);
  assert(ans, `no answer line for call ${n} in the relay's log:\n${log.slice(-3000)}`);
  const end = new RegExp(
    `call ${n} \\S+ → \\S+ ended: (.*); a: rtp in (\\d+) out (\\d+), (.*); b: rtp in (\\d+) out (\\d+), (.*)`,
  ).exec(log);
  assert(end, `no summary line for call ${n} in the relay's log:\n${log.slice(-3000)}`);
  return {
    codec: ans[1],
    relayA: Number(ans[2]),
    relayB: Number(ans[4]),
    how: end[1],
    a: { in: Number(end[2]), out: Number(end[3]), sendErrors: sendErrors(end[4]) },
    b: { in: Number(end[5]), out: Number(end[6]), sendErrors: sendErrors(end[7]) },
    line: end[0],
  };
}

/** The `send_errors N` of a summary's drop reasons, or 0. */
function sendErrors(text: string): number {
  return Number(/send_errors (\d+)/.exec(text)?.[1] ?? 0);
}

/**
 * The capture shows the media through the relay: caller ↔ relay leg a, callee ↔ relay leg b, none between the
 * phones; what the relay sent each phone is what the other sent it (same SSRC and sequence numbers), as many as its
 * counters say.
 */
function checkCapture(
  rows: RtpRow[],
  caller: number,
  callee: number,
  report: ReturnType<typeof callReport>,
  captureDrops: number,
) {
  const between = (s: number, d: number) => rows.filter((r) => r.src === s && r.dst === d);
  const direct = [...between(caller, callee), ...between(callee, caller)];
  assertEquals(direct.length, 0, "RTP went directly between the phones");
  const aIn = between(caller, report.relayA), aOut = between(report.relayA, caller);
  const bIn = between(callee, report.relayB), bOut = between(report.relayB, callee);
  const counts = { aIn: aIn.length, aOut: aOut.length, bIn: bIn.length, bOut: bOut.length };
  console.log(`capture: ${JSON.stringify(counts)}; relay: ${report.line}`);
  for (const [k, v] of Object.entries(counts)) assert(v >= 100, `only ${v} RTP packets captured for ${k}`);
  // Every RTP packet of the capture is between a phone and its own leg's relay port.
  assertEquals(rows.length, aIn.length + aOut.length + bIn.length + bOut.length, "RTP outside the two legs");
  const key = (r: RtpRow) => `${r.ssrc}/${r.seq}`;
  const fromCaller = new Set(aIn.map(key)), fromCallee = new Set(bIn.map(key));
  // The relay cannot have sent a phone more than its counters say (a failed send is counted as sent and as a send
  // error); each packet it sent was one the other phone sent.
  const sentA = report.a.out - report.a.sendErrors, sentB = report.b.out - report.b.sendErrors;
  assert(aOut.length <= sentA && bOut.length <= sentB, `the capture shows more than the relay sent: ${report.line}`);
  const unmatched = bOut.filter((r) => !fromCaller.has(key(r))).length +
    aOut.filter((r) => !fromCallee.has(key(r))).length;
  const missing = sentA - aOut.length + sentB - bOut.length + gaps(aIn) + gaps(bIn);
  // Packets the capture missed at the very start or end of a phone's stream leave no sequence gap (a loaded capture
  // process can miss a phone's first packets and still see their relayed copies, sent after the relay's own stall),
  // and one sent after the relay closed the leg is captured but not counted, so the counts can agree while the
  // capture lacks edge packets: a relayed packet without its original is accepted only outside the range of
  // sequence numbers captured from that phone's stream (same SSRC); one inside it is a stray.
  const strays = [
    ...bOut.filter((r) => !fromCaller.has(key(r))).filter((r) => insideCaptured(aIn, r)),
    ...aOut.filter((r) => !fromCallee.has(key(r))).filter((r) => insideCaptured(bIn, r)),
  ];
  if (captureDrops === 0 && missing === 0) {
    // The capture holds every packet: exactly what the counters say, each one from the other phone.
    assertEquals(strays.map(key), [], "relayed packets that the other phone did not send");
  } else {
    // On a loaded machine the capture process may fall behind and miss packets (the kernel does not always count
    // them as dropped): at most 5 % may be missing, and only those may leave a relayed packet unmatched.
    console.log(`capture incomplete: ${missing} packets missing (the capture process fell behind)`);
    assert(missing <= 0.05 * (sentA + sentB), `the capture misses ${missing} of ${sentA + sentB} packets`);
    assert(unmatched <= missing + 2, `${unmatched} relayed packets match nothing captured from the other phone`);
  }
}

/**
 * True when `r`'s sequence number lies within the range captured of its SSRC among `originals` (from the first
 * captured to the last, in capture order, across wrap-around), or when no packet of that SSRC was captured at all
 * (a relayed stream nobody sent is a stray as a whole).
 */
function insideCaptured(originals: RtpRow[], r: RtpRow): boolean {
  const same = originals.filter((x) => x.ssrc === r.ssrc);
  if (same.length === 0) return true;
  const first = Number(same[0].seq), last = Number(same[same.length - 1].seq);
  return (Number(r.seq) - first + 65536) % 65536 <= (last - first + 65536) % 65536;
}

/** Sequence numbers missing inside each SSRC's captured range (packets the capture missed), across wrap-around. */
function gaps(rows: RtpRow[]): number {
  const ext = new Map<string, { last: number; seen: Set<number>; min: number; max: number }>();
  for (const r of rows) {
    const seq = Number(r.seq);
    const s = ext.get(r.ssrc);
    if (!s) {
      ext.set(r.ssrc, { last: seq, seen: new Set([seq]), min: seq, max: seq });
      continue;
    }
    const e = s.last + ((((seq - s.last) & 0xffff) + 32768) % 65536) - 32768; // nearest unwrapped value
    s.last = e;
    s.seen.add(e);
    s.min = Math.min(s.min, e);
    s.max = Math.max(s.max, e);
  }
  let n = 0;
  for (const s of ext.values()) n += s.max - s.min + 1 - s.seen.size;
  return n;
}

/** Stops the capture; resolves with the packets the kernel dropped before tshark read them (usually 0). */
async function stopCapture(proc: BoundedProcess): Promise<number> {
  await sleep(500); // the last packets reach the capture
  proc.kill("SIGINT");
  const t = await proc.result;
  assert(!t.timedOut, `tshark had to be killed: ${outputTail(t)}`);
  const dropped = Number(/(\d+) packets? dropped/.exec(t.stderr)?.[1] ?? 0);
  if (dropped > 0) console.log(`tshark: ${dropped} packets dropped by the kernel`);
  return dropped;
}

/**
 * Waits until each WAV holds at least its seconds of 16-bit 8 kHz audio (judged by its size: the phones write as they
 * go; a path ending in "/" is a decode dump folder, its "-dec.wav" file), or `boundMs` passes.
 */
async function untilRecorded(files: [string, number][], boundMs: number): Promise<void> {
  const size = async (path: string): Promise<number> => {
    if (path.endsWith("/")) {
      const dec = wavFiles(path).find((n) => n.endsWith("-dec.wav"));
      if (!dec) return 0;
      path += dec;
    }
    return await Deno.stat(path).then((i) => i.size, () => 0);
  };
  for (let waited = 0; waited < boundMs; waited += 100) {
    const sizes = await Promise.all(files.map(([path]) => size(path)));
    if (files.every(([, seconds], i) => sizes[i] >= 44 + 2 * 8000 * seconds)) return;
    await sleep(100);
  }
}

async function decodedDump(dump: string): Promise<Int16Array> {
  const dec = wavFiles(dump).find((n) => n.endsWith("-dec.wav"));
  assert(dec, `no decode dump in ${dump}: ${wavFiles(dump)}`);
  return (await readWav(`${dump}/${dec}`)).samples;
}

Deno.test({
  name: "sip relay: baresip (alice) → relay → baresip (bob), both registered: audio both ways sample-exact, " +
    "media only through the relay",
  ...opts,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-sip-relay-bb-" });
    const procs = new ProcessGroup();
    try {
      const aliceAudio = g711Audio("PCMU", 3, 31), bobAudio = g711Audio("PCMU", 12, 32);
      await writeG711Wav(`${dir}/alice.wav`, aliceAudio);
      await writeG711Wav(`${dir}/bob.wav`, bobAudio);
      const relay = await startRelay(dir, procs);
      const bob = await startBaresip(dir, "bob", relay, `${dir}/bob.wav`, procs);
      const alice = await startBaresip(dir, "alice", relay, `${dir}/alice.wav`, procs);
      const capture = await startCapture(dir, relay, [alice.rtpPort, bob.rtpPort], procs);
      await relay.proc.waitForOutput(/register alice: /, 15_000);
      await relay.proc.waitForOutput(/register bob: /, 15_000);
      await alice.proc.write(`/dial sip:bob@127.0.0.1:${relay.sipPort}\n`);
      // alice hangs up when her 3 s file ends.
      await relay.proc.waitForOutput(/call 1 alice → bob ended: .*\n/, 30_000);
      const captureDrops = await stopCapture(capture.proc);
      for (const p of [alice.proc, bob.proc]) await p.write("/quit\n").catch(() => {});
      const [ar, br] = await Promise.all([alice.proc.result, bob.proc.result]);
      relay.proc.kill("SIGINT");
      const rr = await relay.proc.result;
      const log = rr.stderr;
      assertEquals(rr.code, 0, outputTail(rr, 3000));
      const aliceLog = cleanBaresipOutput(ar.stdout + ar.stderr), bobLog = cleanBaresipOutput(br.stdout + br.stderr);
      assertMatch(log, /\[REGISTRAR\] register alice: sip:alice/);
      assertMatch(log, /\[SIP\] 407 Proxy Authentication Required sent/);
      const report = callReport(log, 1);
      assertEquals(report.codec, "PCMU");
      assertMatch(report.how, /BYE from alice/);
      // Each phone received its media from its leg's port at the relay.
      assertMatch(aliceLog, new RegExp(`receiving from 127\\.0\\.0\\.1:${report.relayA}\\b`));
      assertMatch(bobLog, new RegExp(`receiving from 127\\.0\\.0\\.1:${report.relayB}\\b`));
      assertMatch(bobLog, /Call established: sip:alice@127\.0\.0\.1/);

      // What each decoded is the other's file, sample for sample where it has it.
      const atBob = compareAligned(aliceAudio.samples, await decodedDump(bob.dump));
      assertEquals(atBob.mismatches, 0, `alice → bob: ${JSON.stringify(atBob)}`);
      assert(atBob.overlap >= aliceAudio.samples.length * 0.8, `alice → bob: ${JSON.stringify(atBob)}`);
      const bobHeard = await decodedDump(alice.dump);
      const atAlice = compareAligned(bobAudio.samples, bobHeard);
      assertEquals(atAlice.mismatches, 0, `bob → alice: ${JSON.stringify(atAlice)}`);
      assert(
        atAlice.overlap >= bobHeard.length * 0.8 && atAlice.overlap >= 16000,
        `bob → alice: ${JSON.stringify(atAlice)}`,
      );
      console.log(`alice → bob ${atBob.overlap} samples exact; bob → alice ${atAlice.overlap} samples exact`);

      checkCapture(
        await readRtp(capture.cap, relay, [alice.rtpPort, bob.rtpPort]),
        alice.rtpPort,
        bob.rtpPort,
        report,
        captureDrops,
      );
    } finally {
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const LINPHONE = linphonecInstalled();
if (!LINPHONE && !SKIP_INTEROP) {
  console.warn("interop_sip_relay_test: linphonec is not installed: install linphone-cli (bash scripts/setup.sh)");
}

Deno.test({
  name: "sip relay: Linphone (carol) → relay → baresip (bob): bob hears carol's file sample-exact, carol bob's audio",
  ...opts,
  ignore: SKIP_INTEROP || !LINPHONE,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-sip-relay-lb-" });
    const procs = new ProcessGroup();
    let phone;
    try {
      const carolAudio = g711Audio("PCMU", 3, 33), bobAudio = g711Audio("PCMU", 12, 34);
      await writeG711Wav(`${dir}/carol.wav`, carolAudio);
      await writeG711Wav(`${dir}/bob.wav`, bobAudio);
      const relay = await startRelay(dir, procs);
      const bob = await startBaresip(dir, "bob", relay, `${dir}/bob.wav`, procs);
      phone = await startLinphone({
        identity: "sip:carol@127.0.0.1",
        proxy: relay.uri,
        password: PASSWORDS.carol,
        record: `${dir}/carol-rec.wav`,
        play: `${dir}/carol.wav`,
        timeoutMs: 60_000,
      });
      const carolRtp = phone.rtpPort;
      const capture = await startCapture(dir, relay, [carolRtp, bob.rtpPort], procs);
      await phone.waitRegistered(15_000);
      await relay.proc.waitForOutput(/register bob: /, 15_000);
      await phone.command(`call sip:bob@127.0.0.1:${relay.sipPort}`);
      await phone.proc.waitForOutput(/Call \d+ with sip:bob@127\.0\.0\.1:\d+ connected/, 15_000);
      // Hang up once bob's decode dump holds carol's 3 s file with room to spare (4.5 s: it grows as baresip decodes,
      // 16-bit at 8 kHz) and carol's recording 4 s of bob's (the checks below want 3 s): how long that takes depends
      // on the machine's load. The bound only keeps a stream that never comes from hanging the test.
      await untilRecorded([[`${bob.dump}/`, 4.5], [`${dir}/carol-rec.wav`, 4]], 30_000);
      await phone.command("terminate");
      await relay.proc.waitForOutput(/call 1 carol → bob ended: .*\n/, 15_000);
      const captureDrops = await stopCapture(capture.proc);
      await phone.stop();
      phone = undefined;
      await bob.proc.write("/quit\n").catch(() => {});
      await bob.proc.result;
      relay.proc.kill("SIGINT");
      const rr = await relay.proc.result;
      assertEquals(rr.code, 0, outputTail(rr, 3000));
      const report = callReport(rr.stderr, 1);
      assertMatch(report.how, /BYE from carol/);

      // bob decoded carol's file: its first pass sample-exact (Linphone plays it in a loop).
      const atBob = compareAligned(carolAudio.samples, await decodedDump(bob.dump));
      assertEquals(atBob.mismatches, 0, `carol → bob: ${JSON.stringify(atBob)}`);
      assertEquals(atBob.overlap, carolAudio.samples.length, `carol → bob: ${JSON.stringify(atBob)}`);
      // carol recorded bob's audio through Linphone's adaptive jitter buffer: packets found sample-exact, in order.
      const rec = await readWav(`${dir}/carol-rec.wav`);
      const heard = Math.min(bobAudio.samples.length, Math.floor(rec.samples.length / 160) * 160);
      const f = findPackets(bobAudio.samples.subarray(0, heard), rec.samples);
      console.log(`bob → carol (Linphone): ${f.found} of ${f.total} packets sample-exact, in order`);
      assert(
        f.total >= 150 && f.found >= f.total * 0.8,
        `too little of bob's audio reached carol: ${JSON.stringify(f)}`,
      );

      checkCapture(
        await readRtp(capture.cap, relay, [carolRtp, bob.rtpPort]),
        carolRtp,
        bob.rtpPort,
        report,
        captureDrops,
      );
    } finally {
      await phone?.stop();
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "sip relay: baresip (alice) → relay → Linphone (carol, auto answer): both hear each other's audio",
  ...opts,
  ignore: SKIP_INTEROP || !LINPHONE,
  async fn() {
    await requireTool("baresip");
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-sip-relay-bl-" });
    const procs = new ProcessGroup();
    let phone;
    try {
      const aliceAudio = g711Audio("PCMU", 3, 35), carolAudio = g711Audio("PCMU", 3, 36);
      await writeG711Wav(`${dir}/alice.wav`, aliceAudio);
      await writeG711Wav(`${dir}/carol.wav`, carolAudio);
      const relay = await startRelay(dir, procs);
      phone = await startLinphone({
        identity: "sip:carol@127.0.0.1",
        proxy: relay.uri,
        password: PASSWORDS.carol,
        record: `${dir}/carol-rec.wav`,
        play: `${dir}/carol.wav`,
        autoAnswer: true,
        timeoutMs: 60_000,
      });
      const carolRtp = phone.rtpPort;
      const alice = await startBaresip(dir, "alice", relay, `${dir}/alice.wav`, procs);
      const capture = await startCapture(dir, relay, [alice.rtpPort, carolRtp], procs);
      await phone.waitRegistered(15_000);
      await relay.proc.waitForOutput(/register alice: /, 15_000);
      await alice.proc.write(`/dial sip:carol@127.0.0.1:${relay.sipPort}\n`);
      // alice hangs up when her 3 s file ends.
      await relay.proc.waitForOutput(/call 1 alice → carol ended: .*\n/, 30_000);
      await phone.proc.waitForOutput(/Call \d+ with sip:alice@127\.0\.0\.1\S* ended/, 10_000);
      const captureDrops = await stopCapture(capture.proc);
      await phone.stop();
      phone = undefined;
      await alice.proc.write("/quit\n").catch(() => {});
      await alice.proc.result;
      relay.proc.kill("SIGINT");
      const rr = await relay.proc.result;
      assertEquals(rr.code, 0, outputTail(rr, 3000));
      const report = callReport(rr.stderr, 1);
      assertMatch(report.how, /BYE from alice/);

      // carol (Linphone) recorded alice's audio: packets found sample-exact, in order.
      const rec = await readWav(`${dir}/carol-rec.wav`);
      const f = findPackets(aliceAudio.samples, rec.samples);
      console.log(`alice → carol (Linphone): ${f.found} of ${f.total} packets sample-exact, in order`);
      assert(f.found >= f.total * 0.8, `too little of alice's audio reached carol: ${JSON.stringify(f)}`);
      // alice decoded carol's file (Linphone plays it in a loop): sample-exact where aligned.
      const heard = await decodedDump(alice.dump);
      const atAlice = compareAligned(carolAudio.samples, heard);
      assertEquals(atAlice.mismatches, 0, `carol → alice: ${JSON.stringify(atAlice)}`);
      assert(atAlice.overlap >= 16000, `carol → alice: ${JSON.stringify(atAlice)}`);

      checkCapture(
        await readRtp(capture.cap, relay, [alice.rtpPort, carolRtp]),
        alice.rtpPort,
        carolRtp,
        report,
        captureDrops,
      );
    } finally {
      await phone?.stop();
      await procs.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
