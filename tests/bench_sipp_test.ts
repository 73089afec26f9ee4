/**
 * The sipp bench helpers (`bench/_sipp.ts`) and sipp's command lines
 * (`sippArgs` in `sip_util.ts`, used by the benches and the sipp tests): the
 * argument lists are compared whole; the RTP pcap the load ladder has sipp
 * replay is read back field by field, and by tshark (an independent reader;
 * interop, skipped with `VOXPIPE_SKIP_INTEROP=1`); sipp's screen counters are
 * read from a screen dump as sipp 3.6.1 writes it.
 *
 * @module
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { requireTool, runBounded, SKIP_INTEROP, spawnBounded, waitForUdpPort } from "./media_util.ts";
import {
  freeUdpPort,
  g711Audio,
  readSippStats,
  requireTool as requireSipTool,
  scenarioPath,
  sippArgs,
  sippCounter,
} from "./sip_util.ts";
import {
  descriptorCeilingLine,
  openFilesLimit,
  rtpPcap,
  SIPP_BUFFER_ARGS,
  SIPP_BUFFER_BYTES,
  sippBufferNote,
  sippScreenCounters,
} from "../bench/_sipp.ts";
import { cpuSeconds, liveCpuSeconds, statCpuSeconds } from "./record_check.ts";

Deno.test("sippArgs: a UAC from a scenario file, all at once with statistics: every argument, in order", () => {
  const args = sippArgs({
    scenario: "/tmp/uac_pcmu_stream.xml",
    mediaIp: "127.0.0.2",
    port: 5070,
    mediaPort: 6000,
    service: "bob",
    calls: 200,
    limit: 200,
    rate: 25,
    ratePeriodMs: 1000,
    pauseMs: 30_000,
    extra: ["-trace_screen"],
    stats: { file: "uac.csv", periodS: 1 },
    target: "127.0.0.1:5062",
  });
  assertEquals(args, [
    ..."-sf /tmp/uac_pcmu_stream.xml -i 127.0.0.1 -mi 127.0.0.2 -p 5070 -mp 6000 -s bob".split(" "),
    ..."-m 200 -l 200 -r 25 -rp 1000 -d 30000 -trace_screen".split(" "),
    ..."-nostdin -trace_stat -stf uac.csv -fd 1 127.0.0.1:5062".split(" "),
  ]);
});

Deno.test("sippArgs: the built-in UAS echoing RTP, one call, no target; statistics without a period", () => {
  assertEquals(
    sippArgs({ builtin: "uas", local: "127.0.0.3", port: 5080, mediaPort: 7000, rtpEcho: true, calls: 1 }),
    "-sn uas -i 127.0.0.3 -mi 127.0.0.1 -p 5080 -mp 7000 -rtp_echo -m 1".split(" "),
  );
  assertEquals(
    sippArgs({ builtin: "uac", port: 5090, mediaPort: 7002, stats: { file: "s.csv" }, target: "127.0.0.1:5062" }),
    "-sn uac -i 127.0.0.1 -mi 127.0.0.1 -p 5090 -mp 7002 -nostdin -trace_stat -stf s.csv 127.0.0.1:5062".split(" "),
  );
});

Deno.test("sippArgs: free ports by default (the media port even); a missing or doubled scenario or a NaN is refused", () => {
  const args = sippArgs({ scenario: "uac.xml", service: "bob", calls: 1, target: "127.0.0.1:5062" });
  assertEquals(args.length, 15);
  assertEquals([args[0], args[1], args[6], args[8]], ["-sf", "uac.xml", "-p", "-mp"]);
  assertEquals(args.slice(10), "-s bob -m 1 127.0.0.1:5062".split(" "));
  const port = Number(args[7]), media = Number(args[9]);
  assert(Number.isInteger(port) && port > 0 && port < 65536, `-p ${args[7]}`);
  assert(Number.isInteger(media) && media % 2 === 0 && media > 0 && media < 65535, `-mp ${args[9]}`);
  assertThrows(() => sippArgs({ calls: 1 }), Error, "give either scenario (a file, -sf) or builtin");
  assertThrows(() => sippArgs({ scenario: "a.xml", builtin: "uac" }), Error, "exactly one");
  assertThrows(() => sippArgs({ builtin: "uac", rate: Number("x") }), Error, "rate (-r) must be a finite number");
});

Deno.test("rtpPcap: one Ethernet/IPv4/UDP/RTP packet per 160 bytes, 20 ms apart, sequence and timestamp counting up", () => {
  const payload = g711Audio("PCMU", 0.1, 5).bytes; // 5 packets
  const pcap = rtpPcap(payload, { srcPort: 7000, dstPort: 7002, ssrc: 0x01020304 });
  const v = new DataView(pcap.buffer);
  assertEquals(v.getUint32(0, true), 0xa1b2c3d4);
  assertEquals(v.getUint32(20, true), 1); // Ethernet
  const frame = 14 + 20 + 8 + 12 + 160;
  assertEquals(pcap.length, 24 + 5 * (16 + frame));
  for (let i = 0; i < 5; i++) {
    const at = 24 + i * (16 + frame);
    assertEquals(v.getUint32(at, true) * 1e6 + v.getUint32(at + 4, true), i * 20_000, `packet ${i} time`);
    assertEquals(v.getUint32(at + 8, true), frame);
    const ip = at + 16 + 14;
    let sum = 0;
    for (let k = 0; k < 20; k += 2) sum += v.getUint16(ip + k);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    assertEquals(sum, 0xffff, `packet ${i}: IPv4 header checksum`);
    assertEquals(pcap[ip + 9], 17);
    assertEquals([v.getUint16(ip + 20), v.getUint16(ip + 22), v.getUint16(ip + 24)], [7000, 7002, 8 + 12 + 160]);
    const rtp = ip + 28;
    assertEquals([pcap[rtp], pcap[rtp + 1]], [0x80, 0]);
    assertEquals([v.getUint16(rtp + 2), v.getUint32(rtp + 4), v.getUint32(rtp + 8)], [i, i * 160, 0x01020304]);
    assertEquals([...pcap.subarray(rtp + 12, rtp + 172)], [...payload.subarray(i * 160, (i + 1) * 160)]);
  }
  assertThrows(() => rtpPcap(new Uint8Array(170)), Error, "not a whole number of 160-byte packets");
});

Deno.test({
  name: "interop: tshark reads rtpPcap's file as 20 ms PCMU RTP, nothing malformed",
  ignore: SKIP_INTEROP,
  async fn() {
    await requireTool("tshark", ["-v"]);
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-pcap-" });
    try {
      const payload = g711Audio("PCMU", 0.2, 5).bytes; // 10 packets
      await Deno.writeFile(`${dir}/a.pcap`, rtpPcap(payload));
      const r = await runBounded("tshark", [
        "-r",
        `${dir}/a.pcap`,
        "-d",
        "udp.port==6002,rtp",
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "frame.time_relative",
        "-e",
        "rtp.p_type",
        "-e",
        "rtp.seq",
        "-e",
        "rtp.timestamp",
        "-e",
        "rtp.payload",
        "-e",
        "_ws.malformed",
      ], { timeoutMs: 60_000 });
      assertEquals(r.code, 0, r.stderr);
      const rows = r.stdout.trim().split("\n").map((l) => l.split(","));
      assertEquals(rows.length, 10);
      rows.forEach((f, i) => {
        assertEquals(Math.round(Number(f[0]) * 1000), i * 20, `packet ${i} time`);
        assertEquals(f.slice(1, 4), ["0", String(i), String(i * 160)]);
        const hex = [...payload.subarray(i * 160, (i + 1) * 160)].map((b) => b.toString(16).padStart(2, "0"));
        assertEquals(f[4].replaceAll(":", ""), hex.join(""), `packet ${i} payload`);
        assertEquals(f[5] ?? "", "", `packet ${i} malformed`);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "interop: sipp takes the call benches' socket buffers (-buff_size): its UAS answers its UAC's calls with them",
  ignore: SKIP_INTEROP,
  async fn() {
    await requireSipTool("sipp");
    assertEquals(SIPP_BUFFER_ARGS, ["-buff_size", String(SIPP_BUFFER_BYTES)]);
    assert(sippBufferNote().startsWith("sipp's socket buffers: 4 MB"), sippBufferNote());
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-sipp-buff-" });
    const port = freeUdpPort();
    const uas = spawnBounded("sipp", sippArgs({ builtin: "uas", port, extra: [...SIPP_BUFFER_ARGS] }), {
      cwd: dir,
      timeoutMs: 60_000,
      stopSignal: "SIGINT",
    });
    try {
      await waitForUdpPort(port, 10_000);
      const uac = await runBounded(
        "sipp",
        sippArgs({
          scenario: scenarioPath("uac_nomedia.xml"),
          service: "bob",
          calls: 5,
          rate: 50,
          pauseMs: 0,
          stats: { file: "uac.csv" },
          extra: [...SIPP_BUFFER_ARGS],
          target: `127.0.0.1:${port}`,
        }),
        { cwd: dir, timeoutMs: 60_000 },
      );
      assertEquals(uac.code, 0, uac.stderr);
      const stats = await readSippStats(`${dir}/uac.csv`);
      assertEquals([sippCounter(stats, "SuccessfulCall(C)"), sippCounter(stats, "FailedCall(C)")], [5, 0]);
    } finally {
      uas.kill("SIGINT");
      await uas.result;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("sippScreenCounters: the last pcap-play and echo counts on sipp's dumped screens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-screens-" });
  try {
    const screen = (sent: number, echoed: number) =>
      "------------------------------ Scenario Screen -------- [1-9]: Change Screen --\n" +
      "  0 open sockets                          0/0/0 UDP errors (send/recv/cong)\n" +
      `  ${sent} Total RTP pckts sent                   0.000 last period RTP rate (kB/s)\n` +
      `  ${echoed} Total echo RTP pckts 1st stream       8.600 last period RTP rate (kB/s)\n` +
      "  0 Total echo RTP pckts 2nd stream        0.000 last period RTP rate (kB/s)\n";
    // The final screen repeats the line before instead of the RTP lines: the last dump that has them counts.
    const final = "  0 open sockets                          0/0/0 UDP errors (send/recv/cong)\n".repeat(2);
    await Deno.writeTextFile(`${dir}/uas_123_screen.log`, screen(100, 90) + screen(250, 240) + final);
    assertEquals(sippScreenCounters(dir), { rtpSent: 250, echoed: 240 });
    await Deno.writeTextFile(`${dir}/uas_123_screen.log`, final);
    const none = sippScreenCounters(dir);
    assert(none.rtpSent === undefined && none.echoed === undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("descriptorCeilingLine: (open files - 100) / 3 calls in flight, as many per hold time; the ratio to sipp's rate", () => {
  const limit = openFilesLimit();
  // The shell's own reading of the soft limit, which a child inherits: another reader than the function's.
  const soft = new TextDecoder().decode(new Deno.Command("bash", { args: ["-c", "ulimit -Sn"] }).outputSync().stdout);
  assertEquals(limit, Number(soft.trim()));
  const inFlight = Math.floor((limit - 100) / 3);
  assertEquals(
    descriptorCeilingLine(1000, 25600),
    `descriptor ceiling: open files limit ${limit}, 3 per recorded call in flight (RTP, RTCP, WAV): at most ` +
      `~${inFlight} calls in flight, ~${inFlight} cps with 1000 ms calls ` +
      `(${(inFlight / 25600).toFixed(2)}× sipp's UAS at 25600 cps), whatever the callee's code`,
  );
  assert(descriptorCeilingLine(500)!.includes(`~${inFlight * 2} cps with 500 ms calls, whatever`));
  assertEquals(descriptorCeilingLine(0), undefined); // no hold: no ceiling to give
});

Deno.test("statCpuSeconds: utime + stime (fields 14 and 15, in 1/100 s) counted from the last ')', whatever the name holds", () => {
  // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime ...
  const tail = "S 1 1 1 0 -1 4194560 100 0 0 0 250 37 5 6 20 0 1 0";
  assertEquals(statCpuSeconds(`4242 (deno) ${tail}`), 2.87);
  assertEquals(statCpuSeconds(`4242 (worker) 1 (x) y) ${tail}`), 2.87);
});

Deno.test("cpuSeconds: this process's CPU time grows while it computes; its main thread's is part of it; none once gone", () => {
  const cpu = () => cpuSeconds(Deno.pid)!;
  const before = cpu();
  assert(Number.isFinite(before) && before >= 0, `cpuSeconds gave ${before}`);
  // Spin until the kernel has counted 30 ms more (its counters tick every 10 ms), however slow the machine; a counter
  // that never moves fails after a minute instead of spinning for ever.
  const giveUp = Date.now() + 60_000;
  let x = 0;
  for (let i = 0; cpu() - before < 0.03 && Date.now() < giveUp; i++) x += Math.sqrt(i);
  assert(cpu() - before >= 0.03, `no CPU time counted in a minute of computing (x = ${x})`);
  const main = cpuSeconds(Deno.pid, Deno.pid)!, all = cpu();
  assert(main > 0 && main <= all, `main thread ${main} s, process ${all} s`);
  assertEquals(cpuSeconds(Deno.pid, 0x7ffffffe), undefined); // no such thread
  // The benches' variant: the same figure for a live process, an error naming the process for one that is gone.
  assert(liveCpuSeconds(Deno.pid) >= all);
  assertThrows(() => liveCpuSeconds(Deno.pid, 0x7ffffffe), Error, `thread ${0x7ffffffe} of process ${Deno.pid}`);
});
