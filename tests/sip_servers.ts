/**
 * Real SIP servers and phones for the interop tests, run as bounded
 * subprocesses on loopback: Kamailio (Debian `kamailio`) as registrar and
 * proxy with digest authentication, from `tests/fixtures/kamailio/kamailio.cfg`
 * with a free port substituted; and Linphone's console phone `linphonec`
 * (Debian `linphone-cli`) with a configuration of its own in a temporary HOME,
 * sound from and to WAV files, driven through its standard input.
 *
 * @module
 */
import { type BoundedProcess, outputTail, sleep, spawnBounded, waitForUdpPort } from "./media_util.ts";
import { freePortPair, freeUdpPort } from "./sip_util.ts";
import { repoPath } from "./util.ts";

/** The users of the Kamailio test config and their passwords (as written in kamailio.cfg). */
export const KAMAILIO_USERS: Readonly<Record<string, string>> = {
  alice: "alice-Secret-7",
  bob: "bob-Secret-8",
  carol: "carol-Secret-9",
};

/** The realm of the Kamailio test config. */
export const KAMAILIO_REALM = "voxpipe.test";

/** Where Kamailio is, or undefined when it is not installed (it lives in /usr/sbin, often not in a user's PATH). */
export function kamailioPath(): string | undefined {
  for (const p of ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  try {
    const r = new Deno.Command("kamailio", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync();
    return r.success ? "kamailio" : undefined;
  } catch {
    return undefined;
  }
}

/** True when `linphonec` can be started. */
export function linphonecInstalled(): boolean {
  try {
    return new Deno.Command("linphonec", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** A running Kamailio. */
export interface RunningKamailio {
  /** Its UDP port on 127.0.0.1. */
  port: number;
  /** `sip:127.0.0.1:PORT`: the registrar and proxy URI. */
  uri: string;
  /** The process (its stderr is Kamailio's log). */
  proc: BoundedProcess;
  /** Stops it (SIGTERM: it stops its children; SIGKILL after 5 s) and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts Kamailio with the test config on a free loopback port: foreground
 * (`-DD`), logging to stderr (`-E`), its pid file, working and runtime
 * directories in a temporary directory, small memory pools, and a time bound.
 * Resolves once its UDP socket is bound.
 */
export async function startKamailio(
  opts: { algorithm: "MD5" | "SHA-256"; timeoutMs: number },
): Promise<RunningKamailio> {
  const bin = kamailioPath();
  if (!bin) throw new Error("kamailio is not installed: install the Debian package kamailio (bash scripts/setup.sh)");
  const dir = await Deno.makeTempDir({ prefix: "voxpipe-kamailio-" });
  const port = freeUdpPort();
  const template = await Deno.readTextFile(repoPath("tests/fixtures/kamailio/kamailio.cfg"));
  const cfg = template.replaceAll("@PORT@", String(port)).replaceAll("@ALGORITHM@", opts.algorithm);
  await Deno.writeTextFile(`${dir}/kamailio.cfg`, cfg);
  const proc = spawnBounded(bin, [
    "-f",
    `${dir}/kamailio.cfg`,
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
  ], { timeoutMs: opts.timeoutMs });
  const stop = async () => {
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await proc.result;
    clearTimeout(t);
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
  return { port, uri: `sip:127.0.0.1:${port}`, proc, stop };
}

/** A running linphonec. */
export interface RunningLinphone {
  /** Its SIP port. */
  sipPort: number;
  /** Its RTP port (RTCP on the next one). */
  rtpPort: number;
  /** The process. */
  proc: BoundedProcess;
  /** Sends one command line. */
  command(line: string): Promise<void>;
  /** Polls `states proxies` until the account is registered (rejects after `timeoutMs`). */
  waitRegistered(timeoutMs: number): Promise<void>;
  /** Asks it to quit, then waits (SIGKILL after 5 s); removes its HOME. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startLinphone}. */
export interface LinphoneOptions {
  /** SIP identity, e.g. `sip:carol@127.0.0.1`. */
  identity: string;
  /** Registrar/proxy, e.g. `sip:127.0.0.1:5060`. */
  proxy: string;
  /** Password. */
  password: string;
  /** WAV file it records the call into (file mode). */
  record?: string;
  /** WAV file it plays as its microphone (file mode). */
  play?: string;
  /** Answer incoming calls at once. */
  autoAnswer?: boolean;
  /** Time bound. */
  timeoutMs: number;
}

/**
 * Starts linphonec headless: HOME in a temporary directory (with the folder
 * of its call database, without which its core never starts), UDP only on a
 * free port, RTP on a free port pair, sound from/to WAV files (`soundcard use
 * files`, `play`, `record`), then `register`.
 */
export async function startLinphone(o: LinphoneOptions): Promise<RunningLinphone> {
  const home = await Deno.makeTempDir({ prefix: "voxpipe-linphone-" });
  await Deno.mkdir(`${home}/.local/share/linphone`, { recursive: true });
  const sipPort = freeUdpPort();
  const rtp = freePortPair();
  await Deno.writeTextFile(
    `${home}/linphonerc`,
    [
      "[sip]",
      `sip_port=${sipPort}`,
      "sip_tcp_port=-1",
      "sip_tls_port=-1",
      "ipv6_enabled=0",
      "[rtp]",
      `audio_rtp_port=${rtp}`,
      "[sound]",
      "echocancellation=0",
      "",
    ].join("\n"),
  );
  const proc = spawnBounded("linphonec", ["-c", `${home}/linphonerc`], {
    timeoutMs: o.timeoutMs,
    stdin: true,
    env: { HOME: home },
  });
  const command = (line: string) => proc.write(`${line}\n`);
  const stop = async () => {
    if (!proc.ended) await command("quit").catch(() => {});
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await proc.result;
    clearTimeout(t);
    await Deno.remove(home, { recursive: true }).catch(() => {});
  };
  try {
    await proc.waitForOutput(/linphonec> /, 15_000);
    await command("soundcard use files");
    if (o.record) await command(`record ${o.record}`);
    if (o.play) await command(`play ${o.play}`);
    if (o.autoAnswer) await command("autoanswer enable");
    await command(`register ${o.identity} ${o.proxy} ${o.password}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    sipPort,
    rtpPort: rtp,
    proc,
    command,
    async waitRegistered(timeoutMs: number) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const before = proc.output().length;
        await command("states proxies");
        await sleep(300);
        if (/LinphoneRegistrationOk/.test(proc.output().slice(before))) return;
        if (proc.ended) break;
      }
      throw new Error(`linphonec did not register within ${timeoutMs} ms:\n${proc.output().slice(-2000)}`);
    },
    stop,
  };
}
