/**
 * Interop with ffmpeg over loopback RTP, both ways, PCMU and PCMA:
 *
 * - our `rtp-send` → ffmpeg receiving through an SDP file → WAV;
 * - ffmpeg `-re … -f rtp` → our `rtp-receive` → WAV, with ffmpeg's own packetization (1460 + 588 samples
 *   every 256 ms, as it sends by default) and with 20 ms packets.
 *
 * The audio is already G.711-representable (the alawmulaw round trip of a
 * speech-like signal), so every encoder maps it back to the same codes and the
 * recordings must match it sample by sample after alignment.
 *
 * ffmpeg is needed (Debian package `ffmpeg`, installed by scripts/setup.sh). The
 * tests fail without it, unless VOXPIPE_SKIP_INTEROP=1.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertReceivedExact,
  assertSampleExact,
  freeUdpPortPair,
  type G711Codec,
  outputTail,
  readWav,
  requireTool,
  runBounded,
  runSender,
  SKIP_INTEROP,
  sleep,
  spawnBounded,
  spawnReceiver,
  waitForUdpPort,
  writeFixture,
} from "./media_util.ts";

const PT: Record<G711Codec, number> = { PCMU: 0, PCMA: 8 };
const FFMPEG_CODEC: Record<G711Codec, string> = { PCMU: "pcm_mulaw", PCMA: "pcm_alaw" };

function sdp(codec: G711Codec, port: number): string {
  return [
    "v=0",
    "o=- 0 0 IN IP4 127.0.0.1",
    "s=voxpipe interop",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    `m=audio ${port} RTP/AVP ${PT[codec]}`,
    `a=rtpmap:${PT[codec]} ${codec}/8000`,
    "a=ptime:20",
    "a=recvonly",
    "",
  ].join("\r\n");
}

/** Whether an RTCP compound packet holds a BYE (packet type 203). */
function hasBye(p: Uint8Array): boolean {
  for (let at = 0; at + 4 <= p.length; at += 4 * (((p[at + 2] << 8) | p[at + 3]) + 1)) {
    if (p[at + 1] === 203) return true;
  }
  return false;
}

/**
 * A relay between our sender and ffmpeg, on an even port Q and Q + 1 of loopback: what arrives at Q (RTP) goes
 * on to `rtpTo`, what arrives at Q + 1 (RTCP) to `rtpTo + 1`, except that RTCP packets holding a BYE wait until
 * `releaseBye()`.
 */
function byeHoldingRelay(rtpTo: number) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = freeUdpPortPair();
    let rtp: Deno.DatagramConn, rtcp: Deno.DatagramConn;
    try {
      rtp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    } catch {
      continue;
    }
    try {
      rtcp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: port + 1 });
    } catch {
      rtp.close();
      continue;
    }
    const held: Uint8Array[] = [];
    let released = false, forwarded = 0;
    const rtpAddr: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: rtpTo };
    const rtcpAddr: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: rtpTo + 1 };
    (async () => {
      for await (const [p] of rtp) {
        await rtp.send(p, rtpAddr);
        forwarded++;
      }
    })().catch(() => {});
    (async () => {
      for await (const [p] of rtcp) {
        if (hasBye(p) && !released) held.push(p);
        else await rtcp.send(p, rtcpAddr);
      }
    })().catch(() => {});
    return {
      port,
      /** How many RTP packets went on. */
      forwarded: () => forwarded,
      /** How many BYEs arrived from the sender. */
      byes: () => held.length,
      /** Sends the held BYEs on, and any later one at once. */
      releaseBye: async () => {
        released = true;
        for (const p of held) await rtcp.send(p, rtcpAddr);
      },
      close: () => {
        rtp.close();
        rtcp.close();
      },
    };
  }
  throw new Error("no free UDP port pair found for the relay");
}

/**
 * The bytes waiting in the receive queue of the IPv4 UDP socket bound to `port` (Linux's `/proc/net/udp`), or
 * undefined if no socket is bound to it.
 */
async function udpReceiveQueue(port: number): Promise<number | undefined> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const line of (await Deno.readTextFile("/proc/net/udp")).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 4 && f[1].endsWith(`:${hexPort}`)) return parseInt(f[4].split(":")[1], 16);
  }
  return undefined;
}

/**
 * Our `rtp-send` to ffmpeg reading an SDP file, through a relay in this test that holds back our RTCP BYE.
 * ffmpeg ends on a BYE, and it reads a ready RTCP packet before a ready RTP one: on a busy machine it would
 * end on our BYE with the last RTP packets unread. So the BYE goes on once every RTP packet has been relayed
 * and ffmpeg's RTP socket is empty: ffmpeg has read them all, ends on the BYE and writes them (without a BYE
 * it would wait ten seconds for more).
 */
async function oursToFfmpeg(codec: G711Codec): Promise<void> {
  await requireTool("ffmpeg", ["-hide_banner", "-version"]);
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-ffmpeg-" });
  try {
    const fx = await writeFixture(dir, codec);
    const port = freeUdpPortPair();
    await Deno.writeTextFile(`${dir}/in.sdp`, sdp(codec, port));
    const out = `${dir}/ffmpeg.wav`;
    const ffmpeg = spawnBounded("ffmpeg", [
      "-hide_banner",
      "-nostdin",
      "-loglevel",
      "info",
      "-protocol_whitelist",
      "file,udp,rtp",
      "-i",
      `${dir}/in.sdp`,
      "-c:a",
      "pcm_s16le",
      "-progress",
      "pipe:1",
      "-stats_period",
      "0.1",
      "-y",
      out,
    ], { timeoutMs: 60000, stopSignal: "SIGINT" });
    let sent;
    let byes = 0;
    const want = Math.floor((fx.reference.length / 8000) * 1e6);
    const written = () => Math.max(0, ...[...ffmpeg.output().matchAll(/out_time_us=(\d+)/g)].map((m) => +m[1]));
    try {
      await waitForUdpPort(port, 15000);
      const relay = byeHoldingRelay(port);
      try {
        sent = await runSender({ file: fx.referencePath, to: `127.0.0.1:${relay.port}`, codec });
        // However long a loaded machine takes: every packet relayed and read by ffmpeg, then the BYE, then its
        // progress report says the whole duration is written, or it has ended.
        const packets = Math.ceil(fx.reference.length / 160);
        for (let waited = 0; relay.forwarded() < packets && waited < 30_000; waited += 20) await sleep(20);
        for (let waited = 0; waited < 30_000; waited += 20) {
          const queued = await udpReceiveQueue(port); // undefined: ffmpeg has closed its socket (it ended)
          if (queued === 0 || queued === undefined || ffmpeg.ended) break;
          await sleep(20);
        }
        for (let waited = 0; relay.byes() === 0 && waited < 5_000; waited += 20) await sleep(20);
        byes = relay.byes();
        await relay.releaseBye();
        for (let waited = 0; written() < want && !ffmpeg.ended && waited < 30_000; waited += 20) await sleep(20);
      } finally {
        relay.close();
      }
    } finally {
      ffmpeg.kill("SIGINT");
    }
    const r = await ffmpeg.result;
    assertEquals(sent.code, 0, `sender failed: ${outputTail(sent)}`);
    assert(!r.timedOut, `ffmpeg had to be killed: ${outputTail(r)}`);
    assertEquals(byes, 1, "the sender's RTCP BYE, at port + 1");
    assertMatch(r.stderr, new RegExp(`Audio: ${FFMPEG_CODEC[codec]}, 8000 Hz, mono`));
    const wav = await readWav(out);
    assertEquals([wav.sampleRate, wav.channels, wav.finalized], [8000, 1, true], outputTail(r));
    assertSampleExact(fx.reference, wav.samples, { label: `ours → ffmpeg ${codec}` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * How ffmpeg packetizes: `default` is what its RTP muxer does on its own (each 2048-sample demuxer packet
 * of the WAV as 1460 + 588 samples, sent together every 256 ms); `20ms` forces 160-sample packets
 * with `-af asetnsamples=n=160`.
 */
type Packetization = "default" | "20ms";

async function ffmpegToOurs(codec: G711Codec, packetization: Packetization): Promise<void> {
  await requireTool("ffmpeg", ["-hide_banner", "-version"]);
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-ffmpeg-" });
  try {
    const fx = await writeFixture(dir, codec);
    const port = freeUdpPortPair();
    const out = `${dir}/received.wav`;
    const receiver = await spawnReceiver({ port, out, codec, timeout: 3 });
    const ff = await runBounded("ffmpeg", [
      "-hide_banner",
      "-nostdin",
      "-loglevel",
      "warning",
      "-re",
      "-i",
      fx.referencePath,
      ...(packetization === "20ms" ? ["-af", "asetnsamples=n=160"] : []),
      "-c:a",
      FFMPEG_CODEC[codec],
      "-f",
      "rtp",
      `rtp://127.0.0.1:${port}`,
    ], { timeoutMs: 60000 });
    if (ff.code !== 0) receiver.kill("SIGKILL");
    const rx = await receiver.result;
    assertEquals(ff.code, 0, `ffmpeg failed: ${outputTail(ff)}`);
    // ffmpeg sends RTCP sender reports to port + 1: our rtcp stage parses them.
    assertMatch(rx.stderr, /SR received: packets=\d+/);
    await assertReceivedExact(
      rx,
      out,
      fx.reference,
      `ffmpeg (${packetization} packets) → ours ${codec}`,
      packetization === "20ms" ? 20 : 182.5,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "interop: rtp-send → ffmpeg (SDP) PCMU: ffmpeg's WAV matches sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => oursToFfmpeg("PCMU"),
});

Deno.test({
  name: "interop: rtp-send → ffmpeg (SDP) PCMA: ffmpeg's WAV matches sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => oursToFfmpeg("PCMA"),
});

Deno.test({
  name: "interop: ffmpeg -f rtp PCMU (its default 1460 + 588-sample packets) → rtp-receive: our WAV matches " +
    "sample-exact, ffmpeg's SR parsed",
  ignore: SKIP_INTEROP,
  fn: () => ffmpegToOurs("PCMU", "default"),
});

Deno.test({
  name: "interop: ffmpeg -f rtp PCMA (its default 1460 + 588-sample packets) → rtp-receive: our WAV matches " +
    "sample-exact, ffmpeg's SR parsed",
  ignore: SKIP_INTEROP,
  fn: () => ffmpegToOurs("PCMA", "default"),
});

Deno.test({
  name: "interop: ffmpeg -f rtp PCMU (20 ms packets) → rtp-receive: our WAV matches sample-exact, ffmpeg's SR parsed",
  ignore: SKIP_INTEROP,
  fn: () => ffmpegToOurs("PCMU", "20ms"),
});
