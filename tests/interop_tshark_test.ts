/**
 * Wireshark's dissectors as an independent judge of our wire format: while our
 * `rtp-send` streams to our `rtp-receive` over loopback (both with a short RTCP
 * interval, so reports flow within a short clip), tshark captures on `lo`; the
 * capture is then decoded with RTP on the port and RTCP on port + 1 and must
 * show every RTP packet with the right payload type, sequence and timestamp
 * steps, RTCP SR, RR, SDES and BYE, and no malformed packet or expert warning.
 *
 * Needs tshark (Debian package `tshark`, installed by scripts/setup.sh) and the
 * right to capture on `lo` (root, or dumpcap's capabilities). The test fails
 * without them, unless VOXPIPE_SKIP_INTEROP=1.
 *
 * @module
 */
import { assert, assertEquals } from "./assert.ts";
import {
  freeUdpPortPair,
  outputTail,
  requireTool,
  runBounded,
  runSender,
  SKIP_INTEROP,
  sleep,
  spawnBounded,
  spawnReceiver,
  writeFixture,
} from "./media_util.ts";

const FIELDS = [
  "frame.number",
  "udp.srcport",
  "udp.dstport",
  "rtp.p_type",
  "rtp.seq",
  "rtp.timestamp",
  "rtp.ssrc",
  "rtp.marker",
  "rtcp.pt",
  "rtcp.senderssrc",
  "rtcp.ssrc.identifier",
  "rtcp.ssrc.fraction",
  "rtcp.ssrc.cum_nr",
  "rtcp.sender.packetcount",
  "rtcp.sdes.text",
] as const;

type Row = Record<(typeof FIELDS)[number], string>;

/**
 * Waits until the capture file `cap` holds a marker datagram sent to `marks` (itself): the capture then holds every
 * packet sent before it, however long dumpcap took to read and write them. A marker is sent every 20 ms (dumpcap
 * may buffer what it writes: more markers fill its buffer); the bound only keeps a broken capture from hanging the
 * test (the checks then say what is missing).
 */
async function captured(cap: string, marks: Deno.DatagramConn): Promise<void> {
  const marker = new TextEncoder().encode(`voxpipe capture marker ${crypto.randomUUID()}`);
  const holds = (file: Uint8Array) => {
    outer: for (
      let i = file.indexOf(marker[0]);
      i >= 0 && i + marker.length <= file.length;
      i = file.indexOf(marker[0], i + 1)
    ) {
      for (let j = 1; j < marker.length; j++) if (file[i + j] !== marker[j]) continue outer;
      return true;
    }
    return false;
  };
  for (let waited = 0; waited < 30_000; waited += 20) {
    await marks.send(marker, marks.addr);
    await sleep(20);
    if (holds(await Deno.readFile(cap).catch(() => new Uint8Array(0)))) return;
  }
}

Deno.test({
  name: "interop: tshark decodes our RTP (PT 8) and RTCP SR, RR, SDES, BYE with nothing malformed",
  ignore: SKIP_INTEROP,
  async fn() {
    await requireTool("tshark", ["-v"]);
    const dir = await Deno.makeTempDir({ prefix: "voxpipe-tshark-" });
    // dumpcap may run as another user: let it write the capture.
    await Deno.chmod(dir, 0o777);
    try {
      const codec = "PCMA";
      const fx = await writeFixture(dir, codec);
      const port = freeUdpPortPair();
      const cap = `${dir}/cap.pcap`;
      // Markers go to this socket's port (captured, never decoded as RTP or RTCP): once one is in the file, the
      // capture holds every packet sent before it.
      const marks = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
      const markPort = (marks.addr as Deno.NetAddr).port;
      const tshark = spawnBounded("tshark", [
        "-i",
        "lo",
        "-f",
        `udp and (port ${port} or port ${port + 1} or port ${markPort})`,
        "-F",
        "pcap",
        "-w",
        cap,
      ], { timeoutMs: 60000, stopSignal: "SIGINT" });
      let sent, received;
      try {
        await tshark.waitForOutput(/Capturing on/, 20000).catch((e) => {
          throw new Error(
            `tshark cannot capture on lo (it needs root, or dumpcap with cap_net_raw,cap_net_admin): ${e.message}`,
          );
        });
        const receiver = await spawnReceiver({ port, out: `${dir}/received.wav`, codec, timeout: 2 });
        sent = await runSender({ file: fx.referencePath, to: `127.0.0.1:${port}`, codec, rtcpInterval: 0.5 });
        if (sent.code !== 0) receiver.kill("SIGKILL");
        received = await receiver.result;
        await captured(cap, marks);
      } finally {
        tshark.kill("SIGINT");
        marks.close();
      }
      const t = await tshark.result;
      assertEquals(sent.code, 0, `sender failed: ${outputTail(sent)}`);
      assertEquals(received.code, 0, `receiver failed: ${outputTail(received)}`);
      assert(!t.timedOut, `tshark had to be killed: ${outputTail(t)}`);

      const decodeAs = ["-d", `udp.port==${port},rtp`, "-d", `udp.port==${port + 1},rtcp`];
      const fields = await runBounded("tshark", [
        "-r",
        cap,
        ...decodeAs,
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        ...FIELDS.flatMap((f) => ["-e", f]),
      ], { timeoutMs: 60000 });
      assertEquals(fields.code, 0, outputTail(fields));
      const rows: Row[] = fields.stdout.trim().split("\n").map((line) => {
        const cols = line.split("\t");
        return Object.fromEntries(FIELDS.map((f, i) => [f, cols[i] ?? ""])) as Row;
      });

      // RTP: every packet of the 2.5 s clip at 20 ms, payload type 8, one SSRC, steps of 1 and 160.
      const rtp = rows.filter((r) => r["rtp.p_type"] !== "");
      assertEquals(rtp.length, 125, `RTP packets captured: ${rtp.length}`);
      assert(rtp.every((r) => r["rtp.p_type"] === "8"), "every RTP packet has payload type 8 (PCMA)");
      assert(rtp.every((r) => r["udp.dstport"] === String(port)));
      const ssrc = rtp[0]["rtp.ssrc"];
      assert(rtp.every((r) => r["rtp.ssrc"] === ssrc), "one SSRC");
      assertEquals(rtp.map((r) => r["rtp.marker"]), ["1", ...new Array(124).fill("0")], "marker on the first only");
      for (let i = 1; i < rtp.length; i++) {
        assertEquals((Number(rtp[i]["rtp.seq"]) - Number(rtp[i - 1]["rtp.seq"]) + 65536) % 65536, 1, `seq at ${i}`);
        const step = (Number(rtp[i]["rtp.timestamp"]) - Number(rtp[i - 1]["rtp.timestamp"]) + 2 ** 32) % 2 ** 32;
        assertEquals(step, 160, `timestamp step at ${i}`);
      }

      // RTCP: SR + SDES from the sender, RR + SDES from the receiver (port + 1), BYE from both.
      const rtcp = rows.filter((r) => r["rtcp.pt"] !== "");
      const fromReceiver = rtcp.filter((r) => r["udp.srcport"] === String(port + 1));
      const fromSender = rtcp.filter((r) => r["udp.dstport"] === String(port + 1));
      const pts = (rs: Row[]) => rs.flatMap((r) => r["rtcp.pt"].split(","));
      const sr = fromSender.filter((r) => r["rtcp.pt"].startsWith("200"));
      // How many reports fall inside the 2.5 s depends on scheduling (a starved process sends fewer): at least one.
      assert(sr.length >= 1, `sender reports: ${sr.length}`);
      assert(sr.every((r) => r["rtcp.senderssrc"] === ssrc), "SR sender SSRC is the RTP SSRC");
      assert(sr.every((r) => Number(r["rtcp.sender.packetcount"]) <= 125));
      assert(Number(sr[sr.length - 1]["rtcp.sender.packetcount"]) > 0);
      const rr = fromReceiver.filter((r) => r["rtcp.pt"].startsWith("201") && r["rtcp.ssrc.fraction"] !== "");
      assert(rr.length >= 1, `receiver reports with a report block: ${rr.length}`);
      for (const r of rr) {
        assertEquals(r["rtcp.ssrc.identifier"].split(",")[0], ssrc, "the RR block is about our RTP stream");
        assertEquals([r["rtcp.ssrc.fraction"], r["rtcp.ssrc.cum_nr"]], ["0", "0"], "no loss on loopback");
      }
      assert(rtcp.every((r) => r["rtcp.pt"].split(",").includes("202")), "SDES in every compound packet");
      assert(rtcp.every((r) => r["rtcp.sdes.text"] !== ""), "a CNAME in every SDES");
      assert(pts(fromSender).includes("203"), "BYE from the sender");
      assert(pts(fromReceiver).includes("203"), "BYE from the receiver");

      // Nothing malformed, no expert warning or error (severity >= warning).
      const bad = await runBounded("tshark", [
        "-r",
        cap,
        ...decodeAs,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= 0x00600000",
      ], { timeoutMs: 60000 });
      assertEquals(bad.code, 0, outputTail(bad));
      assertEquals(bad.stdout.trim(), "", "malformed packets or expert warnings");

      // tshark's own RTP stream analysis: no loss, no problem flagged.
      const streams = await runBounded("tshark", ["-r", cap, ...decodeAs, "-q", "-z", "rtp,streams"], {
        timeoutMs: 60000,
      });
      const line = streams.stdout.split("\n").find((l) => l.toLowerCase().includes(ssrc.toLowerCase().slice(2)));
      assert(line, `no stream line for ${ssrc}:\n${streams.stdout}`);
      const m = line.match(/g711A\s+(\d+)\s+(-?\d+) \(/);
      assert(m, `cannot parse: ${line}`);
      assertEquals([Number(m[1]), Number(m[2])], [125, 0], line);
      assert(!/\sX\s*$/.test(line), `tshark flags a problem: ${line}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
