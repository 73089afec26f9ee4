/**
 * The audio files the console's caller may play: a library folder it lists
 * (read only) and an upload folder it writes. The page names a file as
 * `library/<name>` or `upload/<name>`, never by a path, so nothing the page
 * sends reaches outside the two folders. Every file is checked the way
 * `file-source` reads it ({@linkcode probeAudioFile}) before a call plays it.
 *
 * @module
 */
import { basename, extname, join, resolve } from "node:path";
import { sanitizeFileComponent } from "../../core/paths.ts";
import { type AudioFileInfo, probeAudioFile } from "../file/file_source.ts";

/** A file of the library or of the uploads, as the page lists it. */
export interface AudioFileEntry {
  /** `library/<name>` or `upload/<name>`: what the page sends back to play it. */
  file: string;
  /** The file name. */
  name: string;
  /** Where it comes from. */
  source: "library" | "upload";
  /** Size in bytes. */
  bytes: number;
}

/** A checked file: what {@linkcode AudioLibrary.probe} returns. */
export interface CheckedAudioFile extends AudioFileEntry, AudioFileInfo {
  /** Its path on the server (for the call's template variable). */
  path: string;
}

/** File name extensions listed as audio (a listed file is still checked before it plays). */
export const AUDIO_EXTENSIONS: ReadonlySet<string> = new Set([
  ".wav",
  ".wave",
  ".flac",
  ".mp3",
  ".ogg",
  ".oga",
  ".opus",
  ".aif",
  ".aiff",
  ".aifc",
  ".m4a",
  ".webm",
  ".caf",
]);

/** Folders of {@linkcode AudioLibrary}. */
export interface AudioLibraryOptions {
  /** Folder listed for the caller to choose from (read only); empty: none. */
  libraryDir: string;
  /** Folder uploads are written to (created on the first upload). */
  uploadDir: string;
}

/** The console's audio files. */
export class AudioLibrary {
  readonly #o: AudioLibraryOptions;
  readonly #checked = new Map<string, { key: string; info: AudioFileInfo }>();

  /**
   * Creates the library.
   * @param o the two folders (absolute)
   */
  constructor(o: AudioLibraryOptions) {
    this.#o = { libraryDir: o.libraryDir ? resolve(o.libraryDir) : "", uploadDir: resolve(o.uploadDir) };
  }

  /** The files of both folders, library first, each sorted by name. */
  async list(): Promise<AudioFileEntry[]> {
    const out: AudioFileEntry[] = [];
    for (const source of ["library", "upload"] as const) {
      const dir = this.#dir(source);
      if (!dir) continue;
      const names: AudioFileEntry[] = [];
      try {
        for await (const e of Deno.readDir(dir)) {
          if (!e.isFile || e.name.startsWith(".") || !AUDIO_EXTENSIONS.has(extname(e.name).toLowerCase())) continue;
          const st = await Deno.stat(join(dir, e.name)).catch(() => undefined);
          if (st) names.push({ file: `${source}/${e.name}`, name: e.name, source, bytes: st.size });
        }
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      out.push(...names.sort((a, b) => a.name.localeCompare(b.name)));
    }
    return out;
  }

  #dir(source: "library" | "upload"): string {
    return source === "library" ? this.#o.libraryDir : this.#o.uploadDir;
  }

  /** The path of a file the page names (`library/<name>` or `upload/<name>`); throws saying what is wrong. */
  pathOf(file: unknown): { path: string; source: "library" | "upload"; name: string } {
    if (typeof file !== "string" || !file) throw new Error("no audio file chosen: choose one or upload one");
    const m = /^(library|upload)\/([^/\\]+)$/.exec(file);
    if (!m || m[2] === "." || m[2] === "..") {
      throw new Error(`"${file}" is not a file of the console's library or uploads (library/<name>, upload/<name>)`);
    }
    const source = m[1] as "library" | "upload";
    const dir = this.#dir(source);
    if (!dir) throw new Error(`the console has no ${source} folder`);
    return { path: join(dir, m[2]), source, name: m[2] };
  }

  /**
   * Checks a file as `file-source` would read it; throws `<file> cannot be played: <reason>`.
   * Results are kept while the file's size and modification time stay the same.
   */
  async probe(file: unknown): Promise<CheckedAudioFile> {
    const { path, source, name } = this.pathOf(file);
    const st = await Deno.stat(path).catch(() => undefined);
    if (!st?.isFile) throw new Error(`${file} cannot be played: no such file`);
    const key = `${st.size}:${st.mtime?.getTime()}`;
    let info = this.#checked.get(path);
    if (!info || info.key !== key) {
      try {
        info = { key, info: await probeAudioFile(path) };
      } catch (e) {
        throw new Error(`${name} cannot be played: ${reasonOf(e, path)}`);
      }
      this.#checked.set(path, info);
      if (this.#checked.size > 256) this.#checked.delete(this.#checked.keys().next().value!);
    }
    return { file: `${source}/${name}`, name, source, bytes: st.size, path, ...info.info };
  }

  /**
   * Stores an uploaded file under a safe, new name and checks it; a file that
   * cannot be played is deleted and the error says why.
   */
  async upload(name: string, bytes: Uint8Array): Promise<CheckedAudioFile> {
    if (bytes.length === 0) throw new Error(`${name || "the upload"} cannot be played: empty file`);
    const ext = extname(name).toLowerCase().replace(/[^a-z0-9.]/g, "");
    const stem = sanitizeFileComponent(basename(name, extname(name)) || "upload").slice(0, 60);
    await Deno.mkdir(this.#o.uploadDir, { recursive: true });
    let final = "";
    for (let k = 0; k < 1000; k++) {
      const candidate = `${stem}${k ? `-${k}` : ""}${ext}`;
      try {
        const f = await Deno.open(join(this.#o.uploadDir, candidate), { write: true, createNew: true });
        try {
          let off = 0;
          while (off < bytes.length) off += await f.write(bytes.subarray(off));
        } finally {
          f.close();
        }
        final = candidate;
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    if (!final) throw new Error(`cannot store ${name}: too many uploads with that name`);
    try {
      return await this.probe(`upload/${final}`);
    } catch (e) {
      await Deno.remove(join(this.#o.uploadDir, final)).catch(() => {});
      throw new Error((e instanceof Error ? e.message : String(e)).replace(final, name));
    }
  }
}

/** The reason of a probe failure without the `file-source: <path>: ` prefix. */
function reasonOf(e: unknown, path: string): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(`file-source: ${path}: `, "").replace(/^file-source: /, "");
}
