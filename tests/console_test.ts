/**
 * The browser console's logic (plugins/console/hub.ts) on a fake call service
 * and a VirtualClock: placing a call with a checked file, the events a page
 * gets, one chart sample per second, the call's audio as binary messages,
 * incoming calls answered or rejected from the page, the paged table, the
 * per-call log lines and SIP ladder, server recordings, bounds, bad requests.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { VirtualClock } from "../core/clock.ts";
import { Logger, MemoryOutput } from "../core/log.ts";
import { AudioLibrary } from "../plugins/console/files.ts";
import {
  CONSOLE_HUB_DEFAULTS,
  type ConsoleConnection,
  ConsoleHub,
  type ConsoleHubOptions,
} from "../plugins/console/hub.ts";
import { callFieldOf, logKeyMatches } from "../plugins/console/log_tap.ts";
import { decodeAudio, encodeAudio, type StatsSample, statsSample } from "../plugins/console/protocol.ts";
import { newMediaStats } from "../core/session.ts";
import { sanitizeFileComponent } from "../core/paths.ts";
import { FakeCalls } from "./console_fake_calls.ts";
import { repoPath } from "./util.ts";

type Msg = Record<string, unknown> & { type: string };

/** A page: what it received. */
class Page {
  readonly msgs: Msg[] = [];
  readonly audio: Uint8Array[] = [];
  conn!: ConsoleConnection;
  #req = 0;
  acceptAudio = true;

  get client() {
    return {
      send: (m: Record<string, unknown>) => this.msgs.push(JSON.parse(JSON.stringify(m))),
      sendAudio: (b: Uint8Array) => {
        if (!this.acceptAudio) return false;
        this.audio.push(b);
        return true;
      },
    };
  }

  of(type: string): Msg[] {
    return this.msgs.filter((m) => m.type === type);
  }

  last(type: string): Msg {
    const l = this.of(type).at(-1);
    assert(l, `no "${type}" message (got ${[...new Set(this.msgs.map((m) => m.type))].join(", ")})`);
    return l;
  }

  /** Sends an op and returns its reply. */
  async op(op: string, fields: Record<string, unknown> = {}): Promise<Msg> {
    const req = ++this.#req;
    await this.conn.receive(JSON.stringify({ op, req, ...fields }));
    const r = this.msgs.find((m) => m.type === "reply" && m.req === req);
    assert(r, `no reply to ${op}`);
    return r;
  }
}

async function setup(
  opts: Partial<typeof CONSOLE_HUB_DEFAULTS> & {
    answerAfterMs?: number;
    openRecording?: ConsoleHubOptions["openRecording"];
  } = {},
) {
  const clock = new VirtualClock();
  const out = new MemoryOutput();
  const log = new Logger({ level: "info", outputs: [out] });
  const calls = new FakeCalls({ clock, log, answerAfterMs: opts.answerAfterMs ?? 300, epoch: 1_700_000_000_000 });
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-console-" });
  const library = new AudioLibrary({ libraryDir: repoPath("examples/audio"), uploadDir: `${dir}/uploads` });
  const hub = new ConsoleHub({
    ...CONSOLE_HUB_DEFAULTS,
    recordDir: `${dir}/rec`,
    ...opts,
    calls,
    clock,
    log,
    library,
    wallNow: () => 1_700_000_000_000 + clock.now(),
  });
  const untap = log.tap(hub.logTap);
  hub.start();
  const page = new Page();
  page.conn = await hub.connect(page.client);
  const done = async () => {
    calls.closeAll();
    await hub.close();
    untap();
    await Deno.remove(dir, { recursive: true });
  };
  return { clock, calls, hub, page, dir, done, out };
}

Deno.test("console: a page places a call with a checked file and follows it: ladder, state, samples, end and reason", async () => {
  const { clock, calls, page, hub, done } = await setup();
  try {
    const hello = page.last("hello");
    const files = (hello.files as { file: string }[]).map((f) => f.file);
    assert(files.includes("library/hello.wav") && files.includes("library/hello.mp3"), String(files));
    assert(!files.some((f) => f.endsWith("README.md")), "only audio files are listed");

    const noFile = await page.op("dial", { target: "sip:bob@127.0.0.1:5062" });
    assertEquals(noFile.ok, false);
    assertMatch(String(noFile.error), /no audio file chosen/);
    const outside = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/../../deno.json" });
    assertMatch(String(outside.error), /is not a file of the console's library or uploads/);
    assertEquals(calls.dials.length, 0, "nothing dialed with a bad file");

    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav", loop: true });
    assertEquals(r.ok, true, String(r.error));
    const result = r.result as {
      call: { id: string; state: string };
      ladder: { label: string }[];
      file: { format: string };
    };
    assertEquals(result.call.state, "dialing");
    assertEquals(result.ladder.map((e) => e.label), ["INVITE"]);
    assertEquals(result.file.format, "16-bit PCM 16000 Hz mono");
    assertEquals(calls.dials[0].variables, { file: repoPath("examples/audio/hello.wav"), loop: true });
    const id = result.call.id;

    await page.op("select", { id });
    await clock.advanceAsync(400);
    const events = page.of("event").map((m) => (m.event as { type: string }).type);
    assertEquals(events.filter((t) => t !== "message"), ["progress", "answered"]);
    assertEquals(
      page.of("ladder").map((m) => (m.entry as { label: string }).label),
      ["180 Ringing", "200 OK", "ACK"],
    );

    await clock.advanceAsync(3000);
    const samples = page.of("sample").map((m) => m.sample as StatsSample);
    assert(samples.length >= 3, `samples: ${samples.length}`);
    const s = samples.at(-1)!;
    assert(s.sent > 100 && s.received > 100, JSON.stringify(s));
    assert(s.sendRate > 40 && s.sendRate < 60, `send rate ${s.sendRate}`);
    assertEquals(hub.history(id).length, samples.length);
    const row = (page.last("calls").rows as { id: string; state: string; sent: number }[]).find((x) => x.id === id)!;
    assertEquals(row.state, "answered");
    assert(row.sent > 100);

    const h = await page.op("hangup", { id });
    assertEquals(h.ok, true);
    assertEquals(calls.hangups, [id]);
    const ended = page.of("event").map((m) => m.event as { type: string; call: { reason?: string } }).at(-1)!;
    assertEquals(ended.type, "ended");
    assertEquals(ended.call.reason, "local: BYE");
    await clock.advanceAsync(2000);
    const n = page.of("sample").length;
    await clock.advanceAsync(2000);
    assertEquals(page.of("sample").length, n, "no samples after the end");
  } finally {
    await done();
  }
});

Deno.test("console: a file that cannot be played is refused with the reason, before any call", async () => {
  const { calls, page, dir, done } = await setup();
  try {
    await Deno.mkdir(`${dir}/uploads`, { recursive: true });
    await Deno.writeTextFile(`${dir}/uploads/notes.mp3`, "this is not audio at all, only text in a file named .mp3\n");
    const probe = await page.op("probe", { file: "upload/notes.mp3" });
    assertEquals(probe.ok, false);
    assertMatch(String(probe.error), /^notes\.mp3 cannot be played: /);
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "upload/notes.mp3" });
    assertMatch(String(r.error), /notes\.mp3 cannot be played/);
    assertEquals(calls.dials.length, 0);
    const ok = await page.op("probe", { file: "library/hello.flac" });
    assertEquals(ok.ok, true, String(ok.error));
    assertEquals((ok.result as { file: { type: string } }).file.type, "FLAC");
  } finally {
    await done();
  }
});

Deno.test("console: a call's audio reaches the page as binary messages; pause stops it; the end is announced", async () => {
  const { clock, page, done } = await setup();
  try {
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav" });
    const id = (r.result as { call: { id: string } }).call.id;
    const early = await page.op("play", { id });
    assertEquals(early.ok, false, "no audio before the answer");
    assertMatch(String(early.error), /only an answered call has audio/);
    await clock.advanceAsync(400);
    assertEquals((await page.op("play", { id })).ok, true);
    await clock.advanceAsync(1000);
    assert(page.audio.length >= 45, `audio messages: ${page.audio.length}`);
    const a = decodeAudio(page.audio[5]);
    assertEquals([a.sampleRate, a.channels, a.samples.length], [8000, 1, 160]);
    assert(a.samples.some((x) => Math.abs(x) > 4000), "the tone, not silence");
    assertEquals(page.last("audio").state, "playing");

    await page.op("pause", { id });
    assertEquals(page.last("audio").state, "paused");
    const n = page.audio.length;
    await clock.advanceAsync(500);
    assertEquals(page.audio.length, n, "nothing after pause");

    await page.op("play", { id });
    page.acceptAudio = false; // a page that fell behind: frames are dropped for it, the call goes on
    await clock.advanceAsync(500);
    page.acceptAudio = true;
    await clock.advanceAsync(500);
    assert(page.audio.length > n, "audio again after resume");
    await page.op("hangup", { id });
    await clock.advanceAsync(100);
    assertEquals(page.last("audio").state, "ended");
  } finally {
    await done();
  }
});

Deno.test("console: incoming calls ring in the page until answered or rejected; auto-answer answers them", async () => {
  const { clock, calls, page, done } = await setup();
  try {
    const a = await calls.incoming("sip:alice@127.0.0.1:5070");
    await clock.advanceAsync(300);
    const inc = page.last("incoming").calls as { id: string; state: string }[];
    assertEquals(inc.map((c) => [c.id, c.state]), [[a, "ringing"]]);
    assertEquals((await page.op("answer", { id: a })).ok, true);
    assertEquals(calls.call(a)!.state, "answered");

    const b = await calls.incoming("sip:carol@127.0.0.1:5070");
    const rej = await page.op("reject", { id: b });
    assertEquals(rej.ok, true);
    assertEquals(calls.call(b)!.state, "ended");
    assertEquals(calls.call(b)!.reason, "local: 486 Busy Here");
    const again = await page.op("answer", { id: b });
    assertMatch(String(again.error), /not ringing/);

    assertEquals((await page.op("auto_answer", { on: true })).ok, true);
    assertEquals(page.last("settings").autoAnswer, true);
    const c = await calls.incoming("sip:dave@127.0.0.1:5070");
    assertEquals(calls.call(c)!.state, "answered");
    await clock.advanceAsync(300);
    const list = page.last("incoming").calls as { id: string; state: string }[];
    assertEquals(list.map((x) => x.state).sort(), ["answered", "answered"]);
  } finally {
    await done();
  }
});

Deno.test("console: the table pages and filters many calls; ended calls kept are bounded", async () => {
  const { clock, page, hub, done } = await setup({ keepEnded: 5, answerAfterMs: 100 });
  try {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      ids.push(
        ((await page.op("dial", { target: `sip:u${i}@127.0.0.1:5062`, file: "library/hello.wav" })).result as {
          call: { id: string };
        }).call.id,
      );
      await clock.advanceAsync(10);
    }
    await page.op("page", { page: 2, size: 10, filter: "all" });
    let t = page.last("calls");
    assertEquals([t.page, t.pages, t.matching, (t.rows as unknown[]).length], [2, 3, 25, 5]);
    // Newest first: the last page holds the first calls.
    assertEquals((t.rows as { id: string }[]).map((r) => r.id), ids.slice(0, 5).reverse());
    for (const id of ids.slice(0, 8)) await page.op("hangup", { id });
    await clock.advanceAsync(1000);
    await page.op("page", { page: 0, size: 10, filter: "ended" });
    t = page.last("calls");
    assertEquals(t.matching, 5, "keep_ended bounds the ended calls kept");
    assertEquals((t.counts as Record<string, number>).answered, 17);
    assertEquals(hub.tracked, 22);
    const bad = await page.op("page", { size: 0 });
    assertMatch(String(bad.error), /size must be 1\.\.500/);
    const badFilter = await page.op("page", { filter: "some" });
    assertMatch(String(badFilter.error), /filter must be all, active or ended/);
  } finally {
    await done();
  }
});

Deno.test("console: the selected call's log lines (call= field, Call-ID sanitized) and ladder, live and on select", async () => {
  const { clock, page, done } = await setup();
  try {
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav" });
    const id = (r.result as { call: { id: string } }).call.id;
    assert(id !== "out-1@fake", "the id is the sanitized Call-ID");
    await clock.advanceAsync(400);
    await page.op("select", { id });
    const sel = page.last("selected");
    const lines = (sel.logs as { line: string; level: string }[]).map((l) => l.line);
    assert(lines.some((l) => /INVITE sent call=out-1@fake/.test(l)), lines.join("\n"));
    assert(lines.some((l) => /placed from the console/.test(l)), "the console's own line");
    assertEquals((sel.ladder as { label: string }[]).map((e) => e.label), ["INVITE", "180 Ringing", "200 OK", "ACK"]);
    await page.op("hangup", { id });
    const live = page.of("log").flatMap((m) => (m.entries as { line: string }[]).map((e) => e.line));
    assert(live.some((l) => /BYE sent/.test(l)), live.join("\n"));
    assert(live.some((l) => /call ended: local: BYE/.test(l)), live.join("\n"));
    const unknown = await page.op("select", { id: "nope" });
    assertMatch(String(unknown.error), /no call "nope"/);
  } finally {
    await done();
  }
});

Deno.test("console: Record writes the call's audio to a WAV file on the server", async () => {
  const { clock, page, done } = await setup();
  try {
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav" });
    const id = (r.result as { call: { id: string } }).call.id;
    await clock.advanceAsync(400);
    const on = await page.op("record", { id, on: true });
    assertEquals(on.ok, true, String(on.error));
    const path = (on.result as { path: string }).path;
    await clock.advanceAsync(1000);
    assert((page.last("calls").rows as { recording?: boolean }[])[0].recording, "the row says recording");
    const off = await page.op("record", { id, on: false });
    assertEquals((off.result as { path: string }).path, path);
    const bytes = await Deno.readFile(path);
    const v = new DataView(bytes.buffer);
    assertEquals(new TextDecoder().decode(bytes.subarray(0, 4)), "RIFF");
    assertEquals(v.getUint32(24, true), 8000);
    const dataBytes = v.getUint32(40, true);
    assertEquals(dataBytes, bytes.length - 44);
    // 1 s of 20 ms frames, give or take the frames in flight when it started and stopped.
    assert(dataBytes >= 45 * 320 && dataBytes <= 55 * 320, `data bytes ${dataBytes}`);
    assert(v.getInt16(44 + 2 * 20, true) !== 0 || v.getInt16(44 + 2 * 21, true) !== 0, "the tone");
  } finally {
    await done();
  }
});

Deno.test("console: two recordings of a call started in the same second get two files; neither overwrites the other", async () => {
  const { clock, page, dir, done } = await setup();
  try {
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav" });
    const id = (r.result as { call: { id: string } }).call.id;
    await clock.advanceAsync(400);
    const paths: string[] = [];
    for (let i = 0; i < 3; i++) {
      // Wall clock (virtual) 0.4 s, 0.6 s, 0.8 s into the same second: one time stamp for the three.
      const on = await page.op("record", { id, on: true });
      assertEquals(on.ok, true, String(on.error));
      paths.push((on.result as { path: string }).path);
      await clock.advanceAsync(200);
      await page.op("record", { id, on: false });
    }
    assertEquals(new Set(paths).size, 3, paths.join(", "));
    assertMatch(paths[1], /-2\.wav$/);
    assertMatch(paths[2], /-3\.wav$/);
    const first = await Deno.readFile(paths[0]);
    const dataBytes = new DataView(first.buffer).getUint32(40, true);
    assert(dataBytes >= 8 * 320, `the first recording is whole: ${dataBytes} data bytes`);
    assertEquals(dataBytes, first.length - 44);
    for (const p of paths.slice(1)) {
      assertEquals(new TextDecoder().decode((await Deno.readFile(p)).subarray(0, 4)), "RIFF");
    }
    assertEquals((await Array.fromAsync(Deno.readDir(`${dir}/rec`))).length, 3);
  } finally {
    await done();
  }
});

Deno.test("console: Record into a folder that cannot be written is an error naming the file and why; nothing records", async () => {
  const { clock, page, dir, done } = await setup();
  try {
    await Deno.writeTextFile(`${dir}/rec`, "a file where the recording folder should be");
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav" });
    const id = (r.result as { call: { id: string } }).call.id;
    await clock.advanceAsync(400);
    const on = await page.op("record", { id, on: true });
    assertEquals(on.ok, false, "no success for a recording that cannot be written");
    assertMatch(
      String(on.error),
      new RegExp(`^record: cannot write ${dir}/rec/console-.*\\.wav: .*(Not a directory|exists)`),
    );
    await clock.advanceAsync(1000);
    assert(!(page.last("calls").rows as { recording?: boolean }[])[0].recording, "the row does not say recording");
    assertEquals((await page.op("record", { id, on: false })).result, { recording: false });
  } finally {
    await done();
  }
});

Deno.test("console: a recording whose writes fail stops, drops its audio and says so once, to the log and the page", async () => {
  let failing = false;
  let writes = 0;
  const { clock, page, out, done } = await setup({
    openRecording: () =>
      Promise.resolve({
        write: (p: Uint8Array) => {
          writes++;
          return failing
            ? Promise.reject(new Error("No space left on device (os error 28)"))
            : Promise.resolve(p.length);
        },
        seek: () => Promise.resolve(0),
        close: () => {},
      }),
  });
  try {
    const r = await page.op("dial", { target: "sip:bob@127.0.0.1:5062", file: "library/hello.wav" });
    const id = (r.result as { call: { id: string } }).call.id;
    await clock.advanceAsync(400);
    const on = await page.op("record", { id, on: true });
    assertEquals(on.ok, true, String(on.error));
    const path = (on.result as { path: string }).path;
    await clock.advanceAsync(1000);
    assert(writes > 0, "written once a second");
    failing = true;
    await clock.advanceAsync(3000);
    const told = page.of("record");
    assertEquals(told.length, 1, JSON.stringify(told));
    assertEquals(told[0].id, id);
    assertEquals(told[0].recording, false);
    assertEquals(told[0].error, `recording to ${path} stopped: No space left on device (os error 28)`);
    const warned = out.lines.filter((l) => l.includes("stopped: No space left"));
    assertEquals(warned.length, 1, warned.join("\n"));
    const n = writes;
    await clock.advanceAsync(3000);
    assertEquals(writes, n, "no more writes");
    assertEquals(page.of("record").length, 1, "said once");
    assert(!(page.last("calls").rows as { recording?: boolean }[])[0].recording, "the row no longer says recording");
    assertEquals((await page.op("record", { id, on: false })).result, { recording: false });
  } finally {
    await done();
  }
});

Deno.test("console: bad requests get clear errors", async () => {
  const { page, done } = await setup();
  try {
    await page.conn.receive("{not json");
    assertMatch(String(page.last("reply").error), /not a JSON object/);
    const u = await page.op("jump");
    assertMatch(String(u.error), /unknown op "jump" \(ops: dial, probe/);
    const noId = await page.op("hangup");
    assertMatch(String(noId.error), /hangup: which call\?/);
    const noTarget = await page.op("dial", { file: "library/hello.wav" });
    assertMatch(String(noTarget.error), /no SIP URI to call/);
    const badTarget = await page.op("dial", { target: "bob", file: "library/hello.wav" });
    assertMatch(String(badTarget.error), /not a SIP URI/);
    // Found by fuzzing: String() of this object threw "Cannot convert object to primitive value", sent as the error.
    const badDigits = await page.op("dtmf", { id: "c1", digits: { toString: 1 } });
    assertEquals(badDigits.ok, false);
    assertMatch(String(badDigits.error), /^dtmf: "digits" is a string of 0-9 \* # A-D, got object$/);
  } finally {
    await done();
  }
});

Deno.test("console protocol: audio messages round-trip; samples compute rates and loss; log fields", () => {
  const s = new Int16Array([0, 1, -1, 32767, -32768]);
  const back = decodeAudio(encodeAudio(s, 8000, 1));
  assertEquals([...back.samples], [...s]);
  assertEquals([back.sampleRate, back.channels], [8000, 1]);

  const a = newMediaStats();
  const b = {
    ...newMediaStats(),
    packetsSent: 100,
    packetsReceived: 90,
    lost: 10,
    concealedFrames: 4,
    jitterMs: 2.345,
  };
  const first = statsSample(1000, a);
  assertEquals([first.sendRate, first.lossPct, first.rttMs, first.delayP50], [0, 0, null, null]);
  const x = statsSample(3000, b, { t: 1000, stats: a });
  assertEquals([x.sendRate, x.recvRate, x.lossPct, x.lossPctCall, x.concealedRate, x.jitterMs], [
    50,
    45,
    10,
    10,
    2,
    2.35,
  ]);

  assertEquals(callFieldOf(`2026-01-01T00:00:00.000Z INFO  [SIP] BYE sent call=abc@host`), "abc@host");
  assertEquals(callFieldOf(`... msg with call=fake in text status=1 call="a b"`), "a b");
  assertEquals(callFieldOf(`no field here`), undefined);
  assert(logKeyMatches("abc@host", sanitizeFileComponent("abc@host")));
  assert(logKeyMatches("abc@host", `${sanitizeFileComponent("abc@host")}-2`));
  assert(logKeyMatches("plain", "plain-2"));
  assert(!logKeyMatches("plain", "plainer"));
  assert(!logKeyMatches("abc@host", "abc_host"));
});
