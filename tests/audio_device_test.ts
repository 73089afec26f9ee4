/**
 * The audio-device family beyond one stage: loading the native binding (and
 * the errors when it cannot be loaded), device listing and selection, and a
 * speaker and a microphone sharing one duplex PortAudio stream, for real on an
 * ALSA file device.
 *
 * The device tests fail when the naudiodon binding is not built ("deno task
 * setup"); set VOXPIPE_SKIP_AUDIO=1 to skip them.
 */
import { join } from "node:path";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import {
  AudioBindingError,
  type AudioDeviceInfo,
  classifyLoadError,
  DeviceNotFoundError,
  formatDeviceList,
  loadBinding,
  missingBindingError,
  type NaudiodonBinding,
  resolveDevice,
} from "../plugins/audio-device/binding.ts";
import { DeviceStream } from "../plugins/audio-device/device_stream.ts";
import { Logger } from "../core/log.ts";
import { plugins } from "../plugins/audio-device/mod.ts";
import speaker from "../plugins/audio-device/speaker.ts";
import microphone from "../plugins/audio-device/microphone.ts";
import { alsaSandbox, expectOk, runHelper, skipAudio, warnSkip } from "./fixtures/alsa/run.ts";
import { firstDifference, noise, readRaw, stripSilence, tone } from "./fixtures/alsa/signal.ts";

warnSkip();

const SETUP = 'run "deno task setup" (needs python3, make, g++ and npm_config_nodedir=/usr)';

Deno.test("audio-device: the family registers speaker and microphone as real-time stages", () => {
  assertEquals(plugins.map((p) => p.name), ["speaker", "microphone"]);
  assertEquals(speaker.kind, "sink");
  assertEquals(microphone.kind, "source");
  assertEquals(speaker.realtime, true);
  assertEquals(microphone.realtime, true);
  // Defaults, from the schemas.
  const s = speaker.options.parse({});
  assertEquals(s, { latency_ms: 60, pause_mode: "drop", duplex: true });
  const m = microphone.options.parse({});
  assertEquals(m, { sample_rate: 16000, channels: 1, frame_ms: 20, duplex: true });
  assertEquals(speaker.options.safeParse({ device: 3 }).success, true);
  assertEquals(speaker.options.safeParse({ latency_ms: 5 }).success, false);
});

Deno.test("audio-device: a binding path that does not exist says so and how to fix it", () => {
  const err = assertThrows(() => loadBinding({ path: "/nonexistent/naudiodon.node" }), AudioBindingError);
  assertEquals(err.problem, "not-built");
  assert(err.message.startsWith("naudiodon native binding not found at /nonexistent/naudiodon.node"), err.message);
  assert(err.message.includes(SETUP), err.message);
});

Deno.test("audio-device: a missing package and a missing build are told apart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-nd-" });
  try {
    const node = join(dir, "node_modules", "naudiodon", "build", "Release", "naudiodon.node");
    const notInstalled = missingBindingError(node, undefined);
    assertEquals(notInstalled.problem, "not-installed");
    assert(notInstalled.message.startsWith("naudiodon is not installed"), notInstalled.message);
    assert(notInstalled.message.includes(SETUP), notInstalled.message);
    await Deno.mkdir(join(dir, "node_modules", "naudiodon"), { recursive: true });
    await Deno.writeTextFile(join(dir, "node_modules", "naudiodon", "package.json"), "{}");
    const notBuilt = missingBindingError(node, undefined);
    assertEquals(notBuilt.problem, "not-built");
    assertEquals(notBuilt.message.split(":")[0], `naudiodon native binding not built (${node} is missing)`);
    assert(notBuilt.message.includes(SETUP), notBuilt.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audio-device: a file that is not a native module is refused with the path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-nd-" });
  try {
    const fake = join(dir, "naudiodon.node");
    await Deno.writeTextFile(fake, "not an ELF file");
    const err = assertThrows(() => loadBinding({ path: fake }), AudioBindingError);
    assertEquals(err.problem, "load-failed");
    assert(err.message.includes(fake), err.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audio-device: load errors name the missing library and the package to install", () => {
  const p = "/x/node_modules/naudiodon/build/Release/naudiodon.node";
  const asound = classifyLoadError(
    p,
    new Error("libasound.so.2: cannot open shared object file: No such file or directory"),
  );
  assertEquals(asound.problem, "libasound-missing");
  assert(asound.message.startsWith("libasound.so.2 missing"), asound.message);
  assert(asound.message.includes("apt-get install libasound2"), asound.message);
  const pa = classifyLoadError(p, new Error("libportaudio.so.2: cannot open shared object file: No such file"));
  assertEquals(pa.problem, "portaudio-missing");
  assert(pa.message.includes("/x/node_modules/naudiodon/build/Release"), pa.message);
  const perm = new Error(`Requires ffi access to "${p}", run again with the --allow-ffi flag`);
  perm.name = "NotCapable";
  const denied = classifyLoadError(p, perm);
  assertEquals(denied.problem, "permission");
  assert(denied.message.includes("--allow-ffi"), denied.message);
  const elf = classifyLoadError(p, new Error(`${p}: invalid ELF header`));
  assertEquals(elf.problem, "load-failed");
  assert(elf.message.includes("not a native module for this machine"), elf.message);
});

const fakeDevices: AudioDeviceInfo[] = [
  mk(0, "HDA Intel PCH: ALC892 Analog (hw:0,0)", 2, 8),
  mk(1, "USB Audio Device: - (hw:1,0)", 1, 2),
  mk(2, "sysdefault", 128, 128),
  mk(3, "default", 128, 128, true),
  mk(4, "HDMI 0 (hw:0,3)", 0, 8),
];

function mk(id: number, name: string, inCh: number, outCh: number, def = false): AudioDeviceInfo {
  return {
    id,
    name,
    hostApi: "ALSA",
    maxInputChannels: inCh,
    maxOutputChannels: outCh,
    defaultSampleRate: 44100,
    defaultInput: def,
    defaultOutput: def,
  };
}

Deno.test("audio-device: devices are chosen by id, exact name, or a unique part of the name", () => {
  assertEquals(resolveDevice(undefined, "output", fakeDevices).id, 3);
  assertEquals(resolveDevice(1, "input", fakeDevices).id, 1);
  assertEquals(resolveDevice("4", "output", fakeDevices).id, 4);
  assertEquals(resolveDevice("default", "output", fakeDevices).id, 3); // exact beats "sysdefault"
  assertEquals(resolveDevice("usb", "output", fakeDevices).id, 1);
  assertThrows(
    () => resolveDevice("HDMI", "input", fakeDevices),
    DeviceNotFoundError,
    'no audio input device matches "HDMI"',
  );
  assertThrows(
    () => resolveDevice(4, "input", fakeDevices),
    DeviceNotFoundError,
    'audio device 4 "HDMI 0 (hw:0,3)" has no input channels',
  );
  assertThrows(
    () => resolveDevice("hw:0", "output", fakeDevices),
    DeviceNotFoundError,
    'audio output device "hw:0" is ambiguous',
  );
  assertThrows(
    () => resolveDevice(undefined, "input", [fakeDevices[0]]),
    DeviceNotFoundError,
    "no default audio input device",
  );
  assertThrows(
    () => resolveDevice(undefined, "output", []),
    DeviceNotFoundError,
    "no audio output device: PortAudio sees none (no sound card, or no ALSA configuration for one)",
  );
});

Deno.test("audio-device: formatDeviceList prints one aligned line per device", () => {
  const lines = formatDeviceList(fakeDevices);
  assertEquals(lines.length, 6);
  assertEquals(lines[0], "  id   in  out  rate    api   name");
  assertEquals(lines[4], "   3  128  128  44100   ALSA  default  (default input, default output)");
  assertEquals(lines[5], "   4    0    8  44100   ALSA  HDMI 0 (hw:0,3)");
  assert(formatDeviceList([])[0].startsWith("no audio devices found"));
});

Deno.test({
  name: "audio-device: without the binding the plugins still load, and a speaker says what is missing",
  async fn() {
    const r = await runHelper(undefined, "create", { stage: "speaker" }, {
      VOXPIPE_NAUDIODON_PATH: "/nonexistent/naudiodon.node",
    });
    assertEquals(
      r.result.error,
      `naudiodon native binding not found at /nonexistent/naudiodon.node (set by VOXPIPE_NAUDIODON_PATH): ` +
        `fix the path, or unset it and ${SETUP}`,
    );
    assertEquals(r.result.errorName, "AudioBindingError");
    // Every built-in plugin module loaded without touching the binding.
    const names = r.result.plugins;
    assert(Array.isArray(names) && names.includes("speaker") && names.includes("microphone"), String(names));
  },
});

Deno.test({
  name: "audio-device: listDevices and formatDeviceList over PortAudio's view of the ALSA configuration",
  ignore: skipAudio,
  async fn() {
    const sb = await alsaSandbox();
    try {
      const res = expectOk(await runHelper(sb, "list"));
      const devices = res.devices as AudioDeviceInfo[];
      assertEquals(devices.map((d) => d.name).sort(), ["default", "vp_capture", "vp_play"]);
      const def = devices.find((d) => d.name === "default")!;
      assertEquals([def.defaultInput, def.defaultOutput, def.hostApi], [true, true, "ALSA"]);
      const lines = res.lines as string[];
      assert(lines.some((l) => / ALSA +default +\(default input, default output\)$/.test(l)), lines.join("\n"));
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "audio-device: a speaker and a microphone on one device share one duplex stream, both ways exact",
  ignore: skipAudio,
  async fn() {
    const input = noise(8000, 11);
    const sb = await alsaSandbox(input);
    try {
      const out = join(sb.dir, "captured.raw");
      const res = expectOk(await runHelper(sb, "duplex", { rate: 8000, seconds: 0.5, out }));
      const mic = res.mic as Record<string, unknown>;
      assertEquals(mic.stream, "duplex");
      assertEquals(res.speakerMode, "duplex");
      assertEquals(res.errors, []);
      // Capture: the input file, exactly.
      const got = readRaw(out);
      assertEquals(got.length, 4000);
      assertEquals(firstDifference(got, input), -1);
      // Playback: the tone, exactly, after the silence the duplex stream played before the speaker had buffered.
      const { audio } = stripSilence(readRaw(sb.play), 1, 40);
      assertEquals(audio.length, 4000);
      assertEquals(firstDifference(audio, tone(8000, 1, 0.5, 1000, -6)), -1);
      // The duplex stream runs at real time (the file device alone has no clock).
      assert((res.elapsed as number) >= 400, `${res.elapsed} ms`);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test({
  name: "audio-device: with duplex off, the speaker and the microphone open streams of their own",
  ignore: skipAudio,
  async fn() {
    const input = noise(8000, 5);
    const sb = await alsaSandbox(input);
    try {
      const out = join(sb.dir, "captured.raw");
      const res = expectOk(await runHelper(sb, "duplex", { rate: 8000, seconds: 0.3, duplex: false, out }));
      assertEquals((res.mic as Record<string, unknown>).stream, "input");
      assertEquals(res.speakerMode, "output");
      assertEquals(firstDifference(readRaw(out), input), -1);
      const { audio } = stripSilence(readRaw(sb.play), 1, 40);
      assertEquals(firstDifference(audio, tone(8000, 1, 0.3, 1000, -6)), -1);
      assertEquals(audio.length, 2400);
    } finally {
      await sb.cleanup();
    }
  },
});

Deno.test("device stream: a microphone that attaches after the grace opened the stream for the speaker alone reopens it duplex (it failed: 'audio input was not registered')", async () => {
  // A fake native binding: what was opened, what each stream was given and read.
  const opened: { mode: string; writes: number; reads: number; quit?: string }[] = [];
  const binding: NaudiodonBinding = {
    getDevices: () => [],
    getHostAPIs: () => ({ defaultHostAPI: 0, HostAPIs: [] }) as unknown as ReturnType<NaudiodonBinding["getHostAPIs"]>,
    create(o) {
      const s: (typeof opened)[number] = {
        mode: o.inOptions && o.outOptions ? "duplex" : o.inOptions ? "input" : "output",
        writes: 0,
        reads: 0,
      };
      opened.push(s);
      return {
        start() {},
        write: () => Promise.resolve(void s.writes++),
        read: async (bytes) => {
          if (s.quit) return { finished: true };
          await new Promise((r) => setTimeout(r, 10)); // a 10 ms block at the device's pace
          s.reads++;
          return s.quit ? { finished: true } : { buf: new Uint8Array(bytes) };
        },
        quit: (mode) => Promise.resolve(void (s.quit = mode)),
      };
    },
  };
  const device: AudioDeviceInfo = {
    id: 0,
    name: "fake",
    hostApi: "ALSA",
    maxInputChannels: 2,
    maxOutputChannels: 2,
    defaultSampleRate: 8000,
    defaultInput: true,
    defaultOutput: true,
  };
  const stream = new DeviceStream(binding, "audio-device:0@8000", 8000, new Logger({ level: "silent" }));
  // Both registered at build time, as a call's speaker and microphone are.
  assert(stream.register("output", device, 1));
  assert(stream.register("input", device, 1, 160));
  const speakerParty = {
    channels: 1,
    pull: () => null,
    silence() {},
    handed() {},
    deviceStatus() {},
    pendingFrames: () => 0,
  };
  const captured: (Int16Array | null)[] = [];
  const micParty = { channels: 1, frames: 160, onInput: (s: Int16Array | null) => void captured.push(s) };
  // The speaker's chain started; the microphone's chain is still starting (real work) when the grace ends.
  await stream.attach("output", speakerParty);
  assertEquals(opened.map((s) => s.mode), ["output"]);
  await stream.attach("input", micParty);
  assertEquals(opened.map((s) => [s.mode, s.quit]), [["output", "ABORT"], ["duplex", undefined]]);
  assertEquals(stream.stats.openedAs, "duplex");
  // The reopened stream captures for the microphone and is fed by the speaker's pump.
  for (let i = 0; i < 3000 && (captured.length < 2 || opened[1].writes < 1); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert(captured.length >= 2 && captured.every((s) => s?.length === 160), `captured ${captured.length} frames`);
  assert(opened[1].writes >= 1, "the pump writes to the reopened stream");
  await stream.detach("input", "abort");
  await stream.detach("output", "abort");
  assertEquals(stream.isOpen, false);
  assertEquals(opened[1].quit, "ABORT");
});
