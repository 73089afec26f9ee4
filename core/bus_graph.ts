/**
 * Static checks of how the chains of one session link through buses, on their configs with every variable filled
 * in: a `bus-source` or `mixer` that reads a bus no chain publishes on would wait forever, and so would chains that
 * feed each other in a circle (`a` reads `x` and publishes `y`, `b` reads `y` and publishes `x`). Both are refused
 * before anything runs, naming the chain, the stage and the bus.
 *
 * Only the built-in bus stages are known here: the caller skips the check when another plugin could publish on a
 * bus (a plugin loaded from a module), and for files with a control section, whose calls' buses are also published
 * by the control plugin and its services (bridges, the console, the WebSocket bridge).
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import type { StageConfig } from "./stage.ts";

/** One chain of a session, its stages' options already filled in. */
export interface ChainConfig {
  /** The chain's name in the file (`pipelines.<name>`). */
  name: string;
  /** Its stages. */
  stages: StageConfig[];
}

/** A bus read by a chain's source, and where. */
interface Read {
  bus: string;
  /** JSON path of the option naming it. */
  path: string;
  /** The stage's plugin, for messages. */
  use: string;
}

/** True when the stage ends by itself only when stopped, whatever its inputs do (a mixer `until: "stopped"`). */
function endsWhenStopped(stage: StageConfig): boolean {
  return stage.use === "mixer" && stage.until === "stopped";
}

/** The buses a source stage reads (a sequence's items included), each with the JSON path that names it. */
function readsOf(stage: StageConfig, path: string, out: Read[]): Read[] {
  if (stage.use === "bus-source" && typeof stage.bus === "string") {
    out.push({ bus: stage.bus, path: `${path}.bus`, use: stage.use });
  } else if (stage.use === "mixer" && Array.isArray(stage.buses)) {
    stage.buses.forEach((b, i) => {
      if (typeof b === "string") out.push({ bus: b, path: `${path}.buses[${i}]`, use: stage.use });
    });
  } else if (stage.use === "sequence" && Array.isArray(stage.items)) {
    stage.items.forEach((item, i) => {
      if (item && typeof item === "object") readsOf(item as StageConfig, `${path}.items[${i}]`, out);
    });
  }
  return out;
}

/**
 * Refuses, with a {@linkcode ConfigError} naming the file, the chain's stage (JSON path) and the bus:
 *
 * - a `bus-source` or `mixer` (also as a `sequence` item) reading a bus that no chain publishes on (`bus-sink`);
 * - chains that wait for each other through buses in a circle, so that none ever gets a frame or ends.
 *
 * A `mixer` with `until: "stopped"` ends when the pipeline stops, so a circle through one is not refused.
 *
 * @param chains the chains of one session, variables filled in
 * @param file the pipeline file, for the error
 * @example
 * ```ts
 * checkBusGraph([{ name: "a", stages: [{ use: "bus-source", bus: "x" }, { use: "null-sink" }] }], "p.json");
 * // throws: p.json: pipelines.a[0].bus: bus-source reads bus "x", but no chain publishes on it ...
 * ```
 */
export function checkBusGraph(chains: ChainConfig[], file: string): void {
  const publishers = new Map<string, string[]>();
  for (const c of chains) {
    for (const st of c.stages) {
      if (st.use === "bus-sink" && typeof st.bus === "string") {
        const list = publishers.get(st.bus) ?? [];
        list.push(c.name);
        publishers.set(st.bus, list);
      }
    }
  }
  const reads = new Map<string, Read[]>();
  for (const c of chains) {
    const source = c.stages[0];
    if (!source) continue;
    const r = readsOf(source, `pipelines.${c.name}[0]`, []);
    reads.set(c.name, r);
    for (const read of r) {
      if (publishers.has(read.bus)) continue;
      const published = [...publishers.keys()];
      throw new ConfigError(
        `${read.use} reads bus "${read.bus}", but no chain publishes on it (no {"use": "bus-sink", "bus": ` +
          `"${read.bus}"}): it would wait forever. ${
            published.length
              ? `Buses published: ${published.map((b) => `"${b}"`).join(", ")}`
              : "No chain publishes on a bus"
          }`,
        { file, path: read.path },
      );
    }
  }
  // A chain ends once its source ends: a source that reads no bus ends by itself (or when stopped), a bus reader when
  // every publisher of every bus it reads has ended. What never gets there waits in a circle (or behind one).
  const ends = new Set<string>();
  for (let changed = true; changed;) {
    changed = false;
    for (const c of chains) {
      if (ends.has(c.name)) continue;
      const r = reads.get(c.name) ?? [];
      const ok = endsWhenStopped(c.stages[0]) ||
        r.every((read) => publishers.get(read.bus)!.every((p) => ends.has(p)));
      if (ok) {
        ends.add(c.name);
        changed = true;
      }
    }
  }
  const stuck = chains.filter((c) => !ends.has(c.name));
  if (stuck.length === 0) return;
  // Walk from a stuck chain to a stuck publisher of what it reads until a chain repeats: that is a circle.
  const seen: string[] = [];
  const via: Read[] = [];
  let at = stuck[0].name;
  while (!seen.includes(at)) {
    seen.push(at);
    const read = (reads.get(at) ?? []).find((r) => publishers.get(r.bus)!.some((p) => !ends.has(p)))!;
    via.push(read);
    at = publishers.get(read.bus)!.find((p) => !ends.has(p))!;
  }
  const start = seen.indexOf(at);
  const circle = seen.slice(start).map((name, i) =>
    `chain "${name}" reads bus "${via[start + i].bus}", published by chain "${seen[start + i + 1] ?? at}"`
  );
  const first = via[start];
  throw new ConfigError(
    `${first.use} waits in a circle of buses: ${circle.join("; ")}. No chain of the circle ever gets a frame or ` +
      "ends: feed one of them from a source that is not a bus",
    { file, path: first.path },
  );
}
