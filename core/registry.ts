/**
 * The plugin registry: built-in plugins by name, user plugins by path or URL,
 * control plugins, and the codecs plugins register ({@linkcode Registry.codecs}).
 *
 * @example
 * ```ts
 * const registry = new Registry(builtinPlugins, builtinControls, builtinCodecs);
 * const gain = await registry.resolve("./my_gain.ts", "/home/me/pipelines");
 * registry.codecs.names(); // the codecs the plugins registered
 * ```
 *
 * @module
 */
import { isAbsolute, resolve as resolvePath } from "./path.ts";
import { toFileUrl } from "./paths.ts";
import { ConfigError, type ConfigLocation } from "./errors.ts";
import { didYouMean } from "./suggest.ts";
import { type CodecInfo, CodecRegistry } from "./codec.ts";
import type { Format } from "./frame.ts";
import type { AnyPlugin, PluginResolver, StageConfig, StageKind } from "./stage.ts";
import type { AnyControlPlugin, AnyServicePlugin } from "./control.ts";

const KINDS: readonly StageKind[] = ["source", "transform", "sink"];

/** A control plugin definition is registered alongside stage plugins (see core/control.ts). */
export interface NamedDefinition {
  /** Unique name. */
  name: string;
  /** Plugin kind. */
  kind: string;
}

/** True when `use` names a module (path or URL) rather than a registered plugin. */
export function isModuleReference(use: string): boolean {
  return use.startsWith("./") || use.startsWith("../") || use.startsWith("/") ||
    /^(file|https?|npm|data):/.test(use) || /\.(ts|js|mjs|mts)$/.test(use);
}

/** Checks that a module's default export looks like a stage plugin definition; returns a reason if not. */
export function validatePluginShape(def: unknown): string | undefined {
  if (typeof def !== "object" || def === null) return "its default export is not a plugin definition object";
  const d = def as Record<string, unknown>;
  if (typeof d.name !== "string" || !d.name) return 'the definition has no "name"';
  if (!KINDS.includes(d.kind as StageKind)) {
    return `the definition's "kind" must be one of ${KINDS.join(", ")}, got ${JSON.stringify(d.kind)}`;
  }
  if (typeof d.create !== "function") return 'the definition has no "create" function';
  // An accessor (`get options()`, a schema built on first use: see `lazySchema`) is not read here, so registering
  // the built-in plugins builds none of their schemas; it is read when a pipeline uses the plugin.
  if (typeof Object.getOwnPropertyDescriptor(d, "options")?.get !== "function") {
    const opts = d.options as { safeParse?: unknown } | undefined;
    if (!opts || typeof opts.safeParse !== "function") return 'the definition\'s "options" is not a zod schema';
  }
  if (d.codecs !== undefined && !Array.isArray(d.codecs)) return 'the definition\'s "codecs" is not an array';
  for (const key of ["borrowsInput", "passesInputThrough"] as const) {
    if (d[key] !== undefined && typeof d[key] !== "boolean") return `the definition's "${key}" is not a boolean`;
  }
  if (d.bridges !== undefined && typeof d.bridges !== "function") {
    return 'the definition\'s "bridges" is not a function';
  }
  return undefined;
}

/** Holds plugins by name, loads user plugins from modules, and holds the codecs they register. */
export class Registry implements PluginResolver {
  readonly #plugins = new Map<string, AnyPlugin>();
  readonly #modules = new Map<string, Promise<AnyPlugin>>();
  /** Plugins loaded from modules with the `use` that named them, in load order (asked for bridges last). */
  readonly #loaded: { plugin: AnyPlugin; use: string }[] = [];
  readonly #controls = new Map<string, AnyControlPlugin>();
  readonly #services = new Map<string, AnyServicePlugin>();
  /** The codecs known to this registry: registered directly, or by the plugins that implement them. */
  readonly codecs: CodecRegistry;

  /**
   * Creates a registry.
   * @param plugins stage plugins to register at once (with the codecs they declare)
   * @param controls control plugins to register at once
   * @param codecs codecs to register first, in preference order (e.g. a plugin family's `codecs` export)
   */
  constructor(plugins: AnyPlugin[] = [], controls: AnyControlPlugin[] = [], codecs: Iterable<CodecInfo> = []) {
    this.codecs = new CodecRegistry(codecs);
    for (const p of plugins) this.register(p);
    for (const c of controls) this.registerControl(c);
  }

  /**
   * A stage that turns `from` into `to`: the first plugin whose `bridges` offers one, registered plugins first
   * (in registration order), then plugins loaded from modules (whose suggestions name them as they were loaded,
   * by path). Undefined when none does.
   *
   * @example
   * ```ts
   * registry.suggestBridge({ kind: "pcm", sampleRate: 16000, channels: 1 }, { kind: "pcm", sampleRate: 8000 });
   * // e.g. { use: "resampler", rate: 8000 } when a resampler plugin is registered
   * ```
   */
  suggestBridge(from: Format, to: Format): StageConfig | undefined {
    const ask = (p: AnyPlugin): StageConfig | undefined => {
      try {
        return p.bridges?.(from, to);
      } catch {
        return undefined; // a faulty suggestion must not hide the real error
      }
    };
    for (const p of this.#plugins.values()) {
      const s = ask(p);
      if (s) return s;
    }
    for (const { plugin, use } of this.#loaded) {
      const s = ask(plugin);
      if (s) return s.use === plugin.name ? { ...s, use } : s;
    }
    return undefined;
  }

  /** Registers a service plugin (e.g. `ws-bridge`). */
  registerService(plugin: AnyServicePlugin): void {
    if (plugin.kind !== "service" || typeof plugin.create !== "function") {
      throw new Error(`cannot register service plugin "${plugin.name}": not a service plugin definition`);
    }
    if (this.#services.has(plugin.name)) {
      throw new Error(`a service plugin named "${plugin.name}" is already registered`);
    }
    this.#services.set(plugin.name, plugin);
  }

  /** All registered service plugins, sorted by name. */
  listServices(): AnyServicePlugin[] {
    return [...this.#services.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The service plugin with this name; throws a ConfigError listing the known ones. */
  service(name: string, where: ConfigLocation = {}): AnyServicePlugin {
    const c = this.#services.get(name);
    if (c) return c;
    const names = [...this.#services.keys()].sort();
    throw new ConfigError(
      `unknown service plugin "${name}"${didYouMean(name, names)}; known service plugins: ${
        names.join(", ") || "none"
      }`,
      where,
    );
  }

  /** Registers a control plugin (e.g. `sip`). */
  registerControl(plugin: AnyControlPlugin): void {
    if (plugin.kind !== "control" || typeof plugin.create !== "function") {
      throw new Error(`cannot register control plugin "${plugin.name}": not a control plugin definition`);
    }
    if (this.#controls.has(plugin.name)) {
      throw new Error(`a control plugin named "${plugin.name}" is already registered`);
    }
    this.#controls.set(plugin.name, plugin);
  }

  /** All registered control plugins, sorted by name. */
  listControls(): AnyControlPlugin[] {
    return [...this.#controls.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The control plugin with this name; throws a ConfigError listing the known ones. */
  control(name: string, where: ConfigLocation = {}): AnyControlPlugin {
    const c = this.#controls.get(name);
    if (c) return c;
    const names = [...this.#controls.keys()].sort();
    throw new ConfigError(
      `unknown control plugin "${name}"${didYouMean(name, names)}; known control plugins: ${
        names.join(", ") || "none"
      }`,
      where,
    );
  }

  /** Registers a plugin under its name. Throws when the name is taken. */
  register(plugin: AnyPlugin): void {
    const reason = validatePluginShape(plugin);
    if (reason) throw new Error(`cannot register plugin: ${reason}`);
    if (this.#plugins.has(plugin.name)) throw new Error(`a plugin named "${plugin.name}" is already registered`);
    for (const c of plugin.codecs ?? []) this.codecs.register(c);
    this.#plugins.set(plugin.name, plugin);
  }

  /** All registered plugins, sorted by name. */
  list(): AnyPlugin[] {
    return [...this.#plugins.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The registered plugin with this name, if any. */
  get(name: string): AnyPlugin | undefined {
    return this.#plugins.get(name);
  }

  /**
   * Resolves `use`: a registered name, or a module path (relative to `baseDir`) or
   * URL whose default export is a plugin definition.
   */
  resolve(use: string, baseDir: string = Deno.cwd(), where: ConfigLocation = {}): Promise<AnyPlugin> {
    if (!isModuleReference(use)) {
      const p = this.#plugins.get(use);
      if (p) return Promise.resolve(p);
      const known = [...this.#plugins.keys()].sort();
      return Promise.reject(
        new ConfigError(
          `unknown plugin "${use}"${didYouMean(use, known)}; ` +
            `known plugins: ${known.join(", ")}; a user plugin is loaded by path, e.g. "./my_stage.ts"`,
          where,
        ),
      );
    }
    const url = /^[a-z]+:/.test(use) && !/^[a-zA-Z]:[\\/]/.test(use)
      ? use
      : toFileUrl(isAbsolute(use) ? use : resolvePath(baseDir, use));
    let p = this.#modules.get(url);
    if (!p) {
      p = loadPluginModule(url, use, where).then((def) => {
        try {
          for (const c of def.codecs ?? []) this.codecs.register(c);
        } catch (e) {
          throw new ConfigError(
            `plugin module "${use}" declares a codec that cannot be registered: ${e instanceof Error ? e.message : e}`,
            where,
            e,
          );
        }
        this.#loaded.push({ plugin: def, use });
        return def;
      });
      this.#modules.set(url, p);
      p.catch(() => this.#modules.delete(url));
    }
    return p;
  }
}

async function loadPluginModule(url: string, use: string, where: ConfigLocation): Promise<AnyPlugin> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(url);
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new ConfigError(`cannot load plugin module "${use}" (${url}): ${msg}`, where, e);
  }
  const def = mod.default;
  const reason = validatePluginShape(def);
  if (reason) {
    throw new ConfigError(
      `plugin module "${use}" is not a stage plugin: ${reason} (export default definePlugin({...}))`,
      where,
    );
  }
  return def as AnyPlugin;
}
