/**
 * Interop with GStreamer over loopback RTP, both ways, PCMU and PCMA:
 *
 * - our `rtp-send` → `udpsrc ! rtpjitterbuffer ! rtppcmudepay ! mulawdec ! wavenc ! filesink`
 *   (A-law: `rtppcmadepay ! alawdec`);
 * - `filesrc ! wavparse ! audioconvert ! audioresample ! mulawenc ! rtppcmupay ! udpsink`
 *   (A-law: `alawenc ! rtppcmapay`) → our `rtp-receive`, with the payloader's own packetization (it fills
 *   the MTU: 1388 samples, 173.5 ms) and with 20 ms packets (`min-ptime`/`max-ptime`).
 *
 * The audio is already G.711-representable, so the recordings must match it
 * sample by sample after alignment.
 *
 * Needs gst-launch-1.0 with gstreamer1.0-plugins-good (Debian packages
 * gstreamer1.0-tools, gstreamer1.0-plugins-good; scripts/setup.sh installs
 * them). The tests fail without them, unless VOXPIPE_SKIP_INTEROP=1.
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
/** Depayloader, decoder, encoder and payloader of each law. */
const ELEMENTS: Record<G711Codec, { depay: string; dec: string; enc: string; pay: string }> = {
  PCMU: { depay: "rtppcmudepay", dec: "mulawdec", enc: "mulawenc", pay: "rtppcmupay" },
  PCMA: { depay: "rtppcmadepay", dec: "alawdec", enc: "alawenc", pay: "rtppcmapay" },
};

function requireGst(codec: G711Codec): Promise<void> {
  const e = ELEMENTS[codec];
  return requireTool("gst-launch-1.0", ["--version"], [
    "udpsrc",
    "udpsink",
    "rtpjitterbuffer",
    "filesrc",
    "filesink",
    "wavparse",
    "wavenc",
    "audioconvert",
    "audioresample",
    e.depay,
    e.dec,
    e.enc,
    e.pay,
  ]);
}

async function oursToGst(codec: G711Codec): Promise<void> {
  await requireGst(codec);
  const e = ELEMENTS[codec];
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-gst-" });
  try {
    const fx = await writeFixture(dir, codec);
    const port = freeUdpPortPair();
    const out = `${dir}/gst.wav`;
    const caps = `application/x-rtp,media=audio,clock-rate=8000,encoding-name=${codec},payload=${PT[codec]}`;
    // -e: on SIGINT, send EOS down the pipeline so wavenc writes its final header.
    const gst = spawnBounded("gst-launch-1.0", [
      "-e",
      "udpsrc",
      "address=127.0.0.1",
      `port=${port}`,
      `caps=${caps}`,
      "!",
      "rtpjitterbuffer",
      "!",
      e.depay,
      "!",
      e.dec,
      "!",
      "wavenc",
      "!",
      "filesink",
      `location=${out}`,
      // Written as it plays out (not held in a 64 KB buffer until EOS): the test waits for the file to hold it all.
      "buffer-mode=unbuffered",
    ], { timeoutMs: 60000, stopSignal: "SIGINT" });
    let sent;
    try {
      await gst.waitForOutput(/Setting pipeline to PLAYING/, 20000);
      await waitForUdpPort(port, 10000);
      sent = await runSender({ file: fx.referencePath, to: `127.0.0.1:${port}`, codec });
      // rtpjitterbuffer holds 200 ms by default: let it play out before the EOS, until the WAV (a 44-byte header,
      // then 16-bit samples) holds as many samples as were sent, however long the machine takes; the bound only
      // keeps a lost packet from hanging the test (the checks below then say what is missing).
      const want = 44 + 2 * fx.reference.length;
      for (let waited = 0; waited < 20_000 && sent.code === 0; waited += 50) {
        if (await Deno.stat(out).then((i) => i.size >= want, () => false)) break;
        await sleep(50);
      }
    } finally {
      gst.kill("SIGINT");
    }
    const r = await gst.result;
    assertEquals(sent.code, 0, `sender failed: ${outputTail(sent)}`);
    assert(!r.timedOut, `gst-launch had to be killed: ${outputTail(r)}`);
    assertMatch(r.stdout, /Got EOS from element/, outputTail(r));
    const wav = await readWav(out);
    assertEquals([wav.sampleRate, wav.channels, wav.finalized], [8000, 1, true], outputTail(r));
    assertSampleExact(fx.reference, wav.samples, { label: `ours → GStreamer ${codec}` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** How the payloader packetizes: `default` fills the MTU (1388 samples); `20ms` sets min/max-ptime to 20 ms. */
type Packetization = "default" | "20ms";

async function gstToOurs(codec: G711Codec, packetization: Packetization): Promise<void> {
  await requireGst(codec);
  const e = ELEMENTS[codec];
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-gst-" });
  try {
    const fx = await writeFixture(dir, codec);
    const port = freeUdpPortPair();
    const out = `${dir}/received.wav`;
    const receiver = await spawnReceiver({ port, out, codec, timeout: 3 });
    // udpsink syncs to the clock: real time, each packet sent when its first sample is due.
    const gst = await runBounded("gst-launch-1.0", [
      "filesrc",
      `location=${fx.referencePath}`,
      "!",
      "wavparse",
      "!",
      "audioconvert",
      "!",
      "audioresample",
      "!",
      e.enc,
      "!",
      e.pay,
      ...(packetization === "20ms" ? ["min-ptime=20000000", "max-ptime=20000000"] : []),
      "!",
      "udpsink",
      "host=127.0.0.1",
      `port=${port}`,
    ], { timeoutMs: 60000 });
    if (gst.code !== 0) receiver.kill("SIGKILL");
    const rx = await receiver.result;
    assertEquals(gst.code, 0, `gst-launch failed: ${outputTail(gst)}`);
    await assertReceivedExact(
      rx,
      out,
      fx.reference,
      `GStreamer (${packetization} packets) → ours ${codec}`,
      packetization === "20ms" ? 20 : 173.5,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "interop: rtp-send → GStreamer rtppcmudepay ! mulawdec ! wavenc: matches sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => oursToGst("PCMU"),
});

Deno.test({
  name: "interop: rtp-send → GStreamer rtppcmadepay ! alawdec ! wavenc: matches sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => oursToGst("PCMA"),
});

Deno.test({
  name: "interop: GStreamer mulawenc ! rtppcmupay ! udpsink (MTU-filling 1388-sample packets) → rtp-receive: " +
    "matches sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => gstToOurs("PCMU", "default"),
});

Deno.test({
  name: "interop: GStreamer alawenc ! rtppcmapay ! udpsink (MTU-filling 1388-sample packets) → rtp-receive: " +
    "matches sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => gstToOurs("PCMA", "default"),
});

Deno.test({
  name: "interop: GStreamer mulawenc ! rtppcmupay min-ptime=max-ptime=20 ms ! udpsink → rtp-receive: matches " +
    "sample-exact",
  ignore: SKIP_INTEROP,
  fn: () => gstToOurs("PCMU", "20ms"),
});
