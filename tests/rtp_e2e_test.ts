/**
 * End to end over loopback UDP, through the CLI: our `rtp-send` pipeline streams
 * a WAV as G.711 RTP (with RTCP) to our `rtp-receive` pipeline, which records
 * it. Both exit 0 on their own (the sender when the file has been sent, the
 * receiver after its packet timeout), and the recording equals the G.711 round
 * trip of the source, computed independently with alawmulaw, sample by sample
 * after alignment.
 *
 * @module
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  assertSampleExact,
  freeUdpPortPair,
  type G711Codec,
  outputTail,
  readWav,
  runSender,
  spawnReceiver,
  writeFixture,
} from "./media_util.ts";

/** Concealment a real-time receiver plays after the last packet (jitter-buffer max_conceal, 100 ms). */
const CONCEAL_TAIL = 800;

async function sendAndReceive(codec: G711Codec, host: string, ptime: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-e2e-" });
  try {
    const fx = await writeFixture(dir, codec);
    const port = freeUdpPortPair(host);
    const out = `${dir}/received.wav`;
    const receiver = await spawnReceiver({ port, out, codec, bind: host, timeout: 3 });
    const to = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    // The source is NOT G.711-representable: this also checks that our encoder rounds as alawmulaw does.
    const sent = await runSender({ file: fx.sourcePath, to, codec, ptime });
    if (sent.code !== 0) receiver.kill("SIGKILL");
    const received = await receiver.result;
    assertEquals(sent.code, 0, `sender failed: ${outputTail(sent)}`);
    assertEquals(received.code, 0, `receiver failed: ${outputTail(received)}`);
    assert(!received.timedOut, "the receiver had to be killed: it did not end by its timeout");
    assertMatch(sent.stderr, /pipeline "send" ended \(eos\)/);
    assertMatch(received.stderr, /no datagram for 3 s: ending/);
    assertMatch(received.stderr, /pipeline "receive" ended \(eos\)/);
    // RTCP went both ways: the receiver got sender reports, the sender got receiver reports saying no loss.
    assertMatch(received.stderr, /SR received: packets=\d+/);
    assertMatch(sent.stderr, /RR received: loss=0\.0%/);
    assertMatch(received.stderr, /BYE received/);

    const wav = await readWav(out);
    assertEquals([wav.sampleRate, wav.channels, wav.finalized], [8000, 1, true]);
    const c = assertSampleExact(fx.reference, wav.samples, { concealTail: CONCEAL_TAIL, label: `${codec} ${to}` });
    assertEquals(c.score > 0.999, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("rtp-send → rtp-receive, PCMU over 127.0.0.1, ptime 20: both exit 0, the WAV is the G.711 round trip exactly", async () => {
  await sendAndReceive("PCMU", "127.0.0.1", 20);
});

Deno.test("rtp-send → rtp-receive, PCMA over [::1], ptime 30: both exit 0, the WAV is the G.711 round trip exactly", async () => {
  await sendAndReceive("PCMA", "::1", 30);
});
