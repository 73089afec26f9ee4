/**
 * A small assembler for the subset of the WebAssembly text format (WAT) that voxpipe's
 * hand-written kernels use, written here so that no third-party tool is needed:
 *
 * - module fields: `(memory $m? (export "name")? min max?)`, `(import "mod" "name" (memory min max?))`,
 *   `(func $name? (export "name")? (param $p type)* (result type)? (local $l type)* instr*)`,
 *   `(global $g (mut? type) (type.const v))`;
 * - instructions in flat form (`local.get $x`, `block $l` ... `end`) and folded form
 *   (`(i32.add (local.get $x) (i32.const 1))`, `(block $l ...)`, `(loop $l ...)`,
 *   `(if (result t)? cond (then ...) (else ...))`);
 * - types i32, i64, f32, f64, v128; the MVP integer and float operators, loads and stores with
 *   `offset=` and `align=`, saturating truncations, and the fixed-width SIMD operators listed in
 *   the opcode table below.
 *
 * Run as a script it assembles a `.wat` file into a TypeScript module that holds the bytes
 * (base64), which is how `plugins/resample/_kernel_wasm.ts` is made:
 *
 * ```sh
 * deno run -A scripts/wat.ts plugins/resample/kernel.wat plugins/resample/_kernel_wasm.ts
 * ```
 *
 * @module
 */

type Node = string | Node[];

/** An error in the WAT source, with what was wrong. */
export class WatError extends Error {
  /** @param message what is wrong, and where */
  constructor(message: string) {
    super(`wat: ${message}`);
    this.name = "WatError";
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing

function tokenize(src: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      i++;
    } else if (c === ";" && src[i + 1] === ";") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "(" && src[i + 1] === ";") {
      let depth = 1;
      i += 2;
      while (i < src.length && depth > 0) {
        if (src[i] === "(" && src[i + 1] === ";") (depth++, i += 2);
        else if (src[i] === ";" && src[i + 1] === ")") (depth--, i += 2);
        else i++;
      }
    } else if (c === "(" || c === ")") {
      out.push(c);
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== '"') j += src[j] === "\\" ? 2 : 1;
      out.push(src.slice(i, j + 1));
      i = j + 1;
    } else {
      let j = i;
      while (j < src.length && !" \t\r\n()".includes(src[j]) && !(src[j] === ";" && src[j + 1] === ";")) j++;
      out.push(src.slice(i, j));
      i = j;
    }
  }
  return out;
}

function parse(src: string): Node[] {
  const tokens = tokenize(src);
  let pos = 0;
  const list = (): Node[] => {
    const items: Node[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++];
      if (t === ")") return items;
      items.push(t === "(" ? list() : t);
    }
    throw new WatError("unbalanced parentheses: missing ')'");
  };
  const top: Node[] = [];
  while (pos < tokens.length) {
    const t = tokens[pos++];
    if (t !== "(") throw new WatError(`expected '(' at top level, got '${t}'`);
    top.push(list());
  }
  return top;
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers

class Bytes {
  b: number[] = [];
  u8(v: number): this {
    this.b.push(v & 0xff);
    return this;
  }
  u32(v: number): this {
    do {
      let byte = v & 0x7f;
      v = Math.floor(v / 128);
      if (v !== 0) byte |= 0x80;
      this.b.push(byte);
    } while (v !== 0);
    return this;
  }
  s64(v: bigint): this {
    for (;;) {
      const byte = Number(v & 0x7fn);
      v >>= 7n;
      const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
      this.b.push(done ? byte : byte | 0x80);
      if (done) return this;
    }
  }
  f32(v: number): this {
    const a = new Uint8Array(new Float32Array([v]).buffer);
    for (const x of a) this.b.push(x);
    return this;
  }
  f64(v: number): this {
    const a = new Uint8Array(new Float64Array([v]).buffer);
    for (const x of a) this.b.push(x);
    return this;
  }
  name(s: string): this {
    const e = new TextEncoder().encode(s);
    this.u32(e.length);
    for (const x of e) this.b.push(x);
    return this;
  }
  bytes(other: number[]): this {
    for (const x of other) this.b.push(x);
    return this;
  }
  vec(items: number[][]): this {
    this.u32(items.length);
    for (const it of items) this.bytes(it);
    return this;
  }
}

const VALTYPE: Record<string, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b };

function valtype(t: Node): number {
  if (typeof t !== "string" || !(t in VALTYPE)) throw new WatError(`unknown value type ${JSON.stringify(t)}`);
  return VALTYPE[t];
}

function parseInt64(s: string): bigint {
  const neg = s.startsWith("-");
  const body = s.replace(/^[+-]/, "").replaceAll("_", "");
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(body)) throw new WatError(`bad integer '${s}'`);
  const v = BigInt(body);
  return neg ? -v : v;
}

function parseFloatLit(s: string): number {
  const t = s.replaceAll("_", "");
  if (t === "inf" || t === "+inf") return Infinity;
  if (t === "-inf") return -Infinity;
  if (t === "nan" || t === "+nan" || t === "-nan") return NaN;
  const v = Number(t);
  if (Number.isNaN(v)) throw new WatError(`bad float '${s}'`);
  return v;
}

function unquote(s: Node): string {
  if (typeof s !== "string" || !s.startsWith('"')) throw new WatError(`expected a string, got ${JSON.stringify(s)}`);
  return s.slice(1, -1).replace(/\\(.)/g, "$1");
}

// ---------------------------------------------------------------------------------------------
// Opcodes

/** Immediate kinds. */
type Imm =
  | ""
  | "local"
  | "global"
  | "label"
  | "func"
  | "mem"
  | "i32"
  | "i64"
  | "f32"
  | "f64"
  | "v128"
  | "lane"
  | "lanes16"
  | "zero";

/** Instruction name → [opcode bytes, immediate kind, natural alignment log2 for memory ops]. */
const OPS = new Map<string, [number[], Imm, number?]>();

function def(names: string, first: number, imm: Imm = "", prefix?: number, aligns?: number[]): void {
  names.trim().split(/\s+/).forEach((n, i) => {
    if (n === "_") return;
    const code = first + i;
    const bytes = prefix === undefined ? [code] : [prefix, ...new Bytes().u32(code).b];
    OPS.set(n, [bytes, imm, aligns?.[i]]);
  });
}

def("unreachable nop", 0x00);
def("br br_if", 0x0c, "label");
def("return", 0x0f);
def("call", 0x10, "func");
def("drop select", 0x1a);
def("local.get local.set local.tee", 0x20, "local");
def("global.get global.set", 0x23, "global");
def(
  "i32.load i64.load f32.load f64.load i32.load8_s i32.load8_u i32.load16_s i32.load16_u " +
    "i64.load8_s i64.load8_u i64.load16_s i64.load16_u i64.load32_s i64.load32_u " +
    "i32.store i64.store f32.store f64.store i32.store8 i32.store16 i64.store8 i64.store16 i64.store32",
  0x28,
  "mem",
  undefined,
  [2, 3, 2, 3, 0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 3, 2, 3, 0, 1, 0, 1, 2],
);
def("memory.size memory.grow", 0x3f, "zero");
def("i32.const", 0x41, "i32");
def("i64.const", 0x42, "i64");
def("f32.const", 0x43, "f32");
def("f64.const", 0x44, "f64");
def(
  "i32.eqz i32.eq i32.ne i32.lt_s i32.lt_u i32.gt_s i32.gt_u i32.le_s i32.le_u i32.ge_s i32.ge_u " +
    "i64.eqz i64.eq i64.ne i64.lt_s i64.lt_u i64.gt_s i64.gt_u i64.le_s i64.le_u i64.ge_s i64.ge_u " +
    "f32.eq f32.ne f32.lt f32.gt f32.le f32.ge f64.eq f64.ne f64.lt f64.gt f64.le f64.ge " +
    "i32.clz i32.ctz i32.popcnt i32.add i32.sub i32.mul i32.div_s i32.div_u i32.rem_s i32.rem_u " +
    "i32.and i32.or i32.xor i32.shl i32.shr_s i32.shr_u i32.rotl i32.rotr " +
    "i64.clz i64.ctz i64.popcnt i64.add i64.sub i64.mul i64.div_s i64.div_u i64.rem_s i64.rem_u " +
    "i64.and i64.or i64.xor i64.shl i64.shr_s i64.shr_u i64.rotl i64.rotr " +
    "f32.abs f32.neg f32.ceil f32.floor f32.trunc f32.nearest f32.sqrt f32.add f32.sub f32.mul f32.div " +
    "f32.min f32.max f32.copysign " +
    "f64.abs f64.neg f64.ceil f64.floor f64.trunc f64.nearest f64.sqrt f64.add f64.sub f64.mul f64.div " +
    "f64.min f64.max f64.copysign " +
    "i32.wrap_i64 i32.trunc_f32_s i32.trunc_f32_u i32.trunc_f64_s i32.trunc_f64_u i64.extend_i32_s " +
    "i64.extend_i32_u i64.trunc_f32_s i64.trunc_f32_u i64.trunc_f64_s i64.trunc_f64_u " +
    "f32.convert_i32_s f32.convert_i32_u f32.convert_i64_s f32.convert_i64_u f32.demote_f64 " +
    "f64.convert_i32_s f64.convert_i32_u f64.convert_i64_s f64.convert_i64_u f64.promote_f32 " +
    "i32.reinterpret_f32 i64.reinterpret_f64 f32.reinterpret_i32 f64.reinterpret_i64 " +
    "i32.extend8_s i32.extend16_s i64.extend8_s i64.extend16_s i64.extend32_s",
  0x45,
);
def(
  "i32.trunc_sat_f32_s i32.trunc_sat_f32_u i32.trunc_sat_f64_s i32.trunc_sat_f64_u " +
    "i64.trunc_sat_f32_s i64.trunc_sat_f32_u i64.trunc_sat_f64_s i64.trunc_sat_f64_u",
  0,
  "",
  0xfc,
);
// SIMD (prefix 0xfd).
def(
  "v128.load v128.load8x8_s v128.load8x8_u v128.load16x4_s v128.load16x4_u v128.load32x2_s v128.load32x2_u " +
    "v128.load8_splat v128.load16_splat v128.load32_splat v128.load64_splat v128.store",
  0x00,
  "mem",
  0xfd,
  [4, 3, 3, 3, 3, 3, 3, 0, 1, 2, 3, 4],
);
def("v128.const", 0x0c, "v128", 0xfd);
def("i8x16.shuffle", 0x0d, "lanes16", 0xfd);
def("i8x16.swizzle i8x16.splat i16x8.splat i32x4.splat i64x2.splat f32x4.splat f64x2.splat", 0x0e, "", 0xfd);
def(
  "i8x16.extract_lane_s i8x16.extract_lane_u i8x16.replace_lane i16x8.extract_lane_s i16x8.extract_lane_u " +
    "i16x8.replace_lane i32x4.extract_lane i32x4.replace_lane i64x2.extract_lane i64x2.replace_lane " +
    "f32x4.extract_lane f32x4.replace_lane f64x2.extract_lane f64x2.replace_lane",
  0x15,
  "lane",
  0xfd,
);
def(
  "i8x16.eq i8x16.ne i8x16.lt_s i8x16.lt_u i8x16.gt_s i8x16.gt_u i8x16.le_s i8x16.le_u i8x16.ge_s i8x16.ge_u " +
    "i16x8.eq i16x8.ne i16x8.lt_s i16x8.lt_u i16x8.gt_s i16x8.gt_u i16x8.le_s i16x8.le_u i16x8.ge_s i16x8.ge_u " +
    "i32x4.eq i32x4.ne i32x4.lt_s i32x4.lt_u i32x4.gt_s i32x4.gt_u i32x4.le_s i32x4.le_u i32x4.ge_s i32x4.ge_u " +
    "f32x4.eq f32x4.ne f32x4.lt f32x4.gt f32x4.le f32x4.ge f64x2.eq f64x2.ne f64x2.lt f64x2.gt f64x2.le f64x2.ge " +
    "v128.not v128.and v128.andnot v128.or v128.xor v128.bitselect v128.any_true",
  0x23,
  "",
  0xfd,
);
def("v128.load32_zero v128.load64_zero", 0x5c, "mem", 0xfd, [2, 3]);
def("f32x4.demote_f64x2_zero f64x2.promote_low_f32x4", 0x5e, "", 0xfd);
def("f32x4.ceil f32x4.floor f32x4.trunc f32x4.nearest", 0x67, "", 0xfd);
def("f64x2.ceil f64x2.floor", 0x74, "", 0xfd);
def("f64x2.trunc", 0x7a, "", 0xfd);
def("f64x2.nearest", 0x94, "", 0xfd);
def("i16x8.narrow_i32x4_s i16x8.narrow_i32x4_u", 0x85, "", 0xfd);
def(
  "i32x4.extend_low_i16x8_s i32x4.extend_high_i16x8_s i32x4.extend_low_i16x8_u i32x4.extend_high_i16x8_u",
  0xa7,
  "",
  0xfd,
);
def("i32x4.shl i32x4.shr_s i32x4.shr_u i32x4.add", 0xab, "", 0xfd);
def("i32x4.sub", 0xb1, "", 0xfd);
def("i32x4.mul i32x4.min_s i32x4.min_u i32x4.max_s i32x4.max_u i32x4.dot_i16x8_s", 0xb5, "", 0xfd);
def(
  "f32x4.abs f32x4.neg _ f32x4.sqrt f32x4.add f32x4.sub f32x4.mul f32x4.div f32x4.min f32x4.max f32x4.pmin " +
    "f32x4.pmax f64x2.abs f64x2.neg _ f64x2.sqrt f64x2.add f64x2.sub f64x2.mul f64x2.div f64x2.min f64x2.max " +
    "f64x2.pmin f64x2.pmax i32x4.trunc_sat_f32x4_s i32x4.trunc_sat_f32x4_u f32x4.convert_i32x4_s " +
    "f32x4.convert_i32x4_u i32x4.trunc_sat_f64x2_s_zero i32x4.trunc_sat_f64x2_u_zero f64x2.convert_low_i32x4_s " +
    "f64x2.convert_low_i32x4_u",
  0xe0,
  "",
  0xfd,
);

// ---------------------------------------------------------------------------------------------
// Functions

interface FuncDef {
  name?: string;
  exports: string[];
  params: number[];
  results: number[];
  locals: number[];
  localNames: Map<string, number>;
  body: Node[];
}

class FuncEncoder {
  readonly code = new Bytes();
  readonly labels: (string | undefined)[] = [];

  constructor(
    readonly fn: FuncDef,
    readonly funcIndex: Map<string, number>,
    readonly globalIndex: Map<string, number>,
  ) {}

  index(map: Map<string, number>, tok: Node, what: string): number {
    if (typeof tok !== "string") throw new WatError(`expected a ${what} name or index, got a list`);
    if (tok.startsWith("$")) {
      const i = map.get(tok);
      if (i === undefined) throw new WatError(`unknown ${what} ${tok}`);
      return i;
    }
    return Number(parseInt64(tok));
  }

  label(tok: Node): number {
    if (typeof tok === "string" && tok.startsWith("$")) {
      const at = this.labels.lastIndexOf(tok);
      if (at < 0) throw new WatError(`unknown label ${tok}`);
      return this.labels.length - 1 - at;
    }
    return this.index(new Map(), tok, "label");
  }

  /** Block type: (result t)? → one byte. */
  blocktype(items: Node[], at: number): [number, number] {
    const n = items[at];
    if (Array.isArray(n) && n[0] === "result") return [n.length > 1 ? valtype(n[1]) : 0x40, at + 1];
    return [0x40, at];
  }

  /** Emits one instruction (name at items[at]) with its immediates from the following atoms; returns the next index. */
  plain(items: Node[], at: number): number {
    const name = items[at] as string;
    const op = OPS.get(name);
    if (!op) throw new WatError(`unknown instruction '${name}' in func ${this.fn.name ?? ""}`);
    const [bytes, imm, align] = op;
    this.code.bytes(bytes);
    let i = at + 1;
    const next = () => {
      const t = items[i++];
      if (t === undefined || Array.isArray(t)) throw new WatError(`${name}: missing immediate`);
      return t;
    };
    switch (imm) {
      case "":
        break;
      case "local":
        this.code.u32(this.index(this.fn.localNames, next(), "local"));
        break;
      case "global":
        this.code.u32(this.index(this.globalIndex, next(), "global"));
        break;
      case "func":
        this.code.u32(this.index(this.funcIndex, next(), "func"));
        break;
      case "label":
        this.code.u32(this.label(next()));
        break;
      case "zero":
        this.code.u8(0);
        break;
      case "i32": {
        const v = parseInt64(next());
        this.code.s64(v > 0x7fffffffn ? v - 0x100000000n : v);
        break;
      }
      case "i64":
        this.code.s64(parseInt64(next()));
        break;
      case "f32":
        this.code.f32(parseFloatLit(next()));
        break;
      case "f64":
        this.code.f64(parseFloatLit(next()));
        break;
      case "lane":
        this.code.u8(Number(parseInt64(next())));
        break;
      case "lanes16":
        // i8x16.shuffle: 16 byte indices into the two operands' 32 bytes.
        for (let k = 0; k < 16; k++) {
          const lane = Number(parseInt64(next()));
          if (!(lane >= 0 && lane < 32)) throw new WatError(`${name}: lane index ${lane} is not in 0..31`);
          this.code.u8(lane);
        }
        break;
      case "v128": {
        const shape = next();
        const lanes: Record<string, [number, (b: Bytes, s: string) => void]> = {
          i8x16: [16, (b, s) => b.u8(Number(parseInt64(s)))],
          i16x8: [8, (b, s) => b.bytes([Number(parseInt64(s)) & 0xff, (Number(parseInt64(s)) >> 8) & 0xff])],
          i32x4: [4, (b, s) => b.bytes([...new Uint8Array(new Int32Array([Number(parseInt64(s)) | 0]).buffer)])],
          f32x4: [4, (b, s) => b.f32(parseFloatLit(s))],
          f64x2: [2, (b, s) => b.f64(parseFloatLit(s))],
        };
        const l = lanes[shape];
        if (!l) throw new WatError(`v128.const: unknown shape ${shape}`);
        for (let k = 0; k < l[0]; k++) l[1](this.code, next());
        break;
      }
      case "mem": {
        let offset = 0;
        let alignLog = align ?? 0;
        while (typeof items[i] === "string" && /^(offset|align)=/.test(items[i] as string)) {
          const [k, v] = (items[i++] as string).split("=");
          if (k === "offset") offset = Number(parseInt64(v));
          else alignLog = Math.log2(Number(parseInt64(v)));
        }
        this.code.u32(alignLog).u32(offset);
        break;
      }
    }
    return i;
  }

  /** Emits a sequence of instructions in flat and/or folded form. */
  seq(items: Node[], from = 0): void {
    let i = from;
    while (i < items.length) {
      const n = items[i];
      if (Array.isArray(n)) {
        this.folded(n);
        i++;
        continue;
      }
      switch (n) {
        case "block":
        case "loop":
        case "if": {
          this.code.u8(n === "block" ? 0x02 : n === "loop" ? 0x03 : 0x04);
          i++;
          let label: string | undefined;
          if (typeof items[i] === "string" && (items[i] as string).startsWith("$")) label = items[i++] as string;
          const [bt, j] = this.blocktype(items, i);
          this.code.u8(bt);
          this.labels.push(label);
          i = j;
          break;
        }
        case "else":
          this.code.u8(0x05);
          i++;
          if (typeof items[i] === "string" && (items[i] as string).startsWith("$")) i++;
          break;
        case "end":
          this.code.u8(0x0b);
          this.labels.pop();
          i++;
          if (typeof items[i] === "string" && (items[i] as string).startsWith("$")) i++;
          break;
        default:
          i = this.plain(items, i);
      }
    }
  }

  folded(list: Node[]): void {
    const head = list[0];
    if (typeof head !== "string") throw new WatError("expected an instruction name at the head of a folded expression");
    if (head === "block" || head === "loop") {
      let i = 1;
      let label: string | undefined;
      if (typeof list[i] === "string" && (list[i] as string).startsWith("$")) label = list[i++] as string;
      const [bt, j] = this.blocktype(list, i);
      this.code.u8(head === "block" ? 0x02 : 0x03).u8(bt);
      this.labels.push(label);
      this.seq(list, j);
      this.labels.pop();
      this.code.u8(0x0b);
      return;
    }
    if (head === "if") {
      let i = 1;
      let label: string | undefined;
      if (typeof list[i] === "string" && (list[i] as string).startsWith("$")) label = list[i++] as string;
      const [bt, j] = this.blocktype(list, i);
      i = j;
      // Condition: every folded expression before (then ...).
      while (i < list.length && !(Array.isArray(list[i]) && (list[i] as Node[])[0] === "then")) {
        const c = list[i++];
        if (!Array.isArray(c)) throw new WatError("if: the condition must be folded expressions");
        this.folded(c);
      }
      const thenPart = list[i++] as Node[] | undefined;
      if (!thenPart) throw new WatError("if: missing (then ...)");
      this.code.u8(0x04).u8(bt);
      this.labels.push(label);
      this.seq(thenPart, 1);
      const elsePart = list[i] as Node[] | undefined;
      if (elsePart) {
        if (!Array.isArray(elsePart) || elsePart[0] !== "else") throw new WatError("if: expected (else ...)");
        this.code.u8(0x05);
        this.seq(elsePart, 1);
      }
      this.labels.pop();
      this.code.u8(0x0b);
      return;
    }
    // Operands first (the nested lists), then the instruction with its immediates (the atoms).
    const atoms: Node[] = [head];
    for (let k = 1; k < list.length; k++) {
      const x = list[k];
      if (Array.isArray(x)) this.folded(x);
      else atoms.push(x);
    }
    const end = this.plain(atoms, 0);
    if (end !== atoms.length) throw new WatError(`${head}: unexpected ${JSON.stringify(atoms.slice(end))}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Module

/**
 * Assembles WAT source text (the subset described in the module documentation) into a
 * WebAssembly binary.
 *
 * @param src the text of one `(module ...)`
 * @returns the module's bytes
 * @throws WatError on anything outside the subset or malformed, saying what and where
 *
 * @example
 * ```ts
 * const bytes = assembleWat('(module (func (export "add") (param $a i32) (param $b i32) (result i32) ' +
 *   "(i32.add (local.get $a) (local.get $b))))");
 * const { instance } = await WebAssembly.instantiate(bytes);
 * (instance.exports.add as (a: number, b: number) => number)(2, 3); // 5
 * ```
 */
export function assembleWat(src: string): Uint8Array {
  const top = parse(src);
  if (top.length !== 1 || !Array.isArray(top[0]) || top[0][0] !== "module") {
    throw new WatError("expected exactly one (module ...)");
  }
  const fields = (top[0] as Node[]).slice(1).filter((f): f is Node[] => Array.isArray(f));

  const types: string[] = [];
  const typeOf = (params: number[], results: number[]): number => {
    const key = `${params.join(",")}:${results.join(",")}`;
    let i = types.indexOf(key);
    if (i < 0) i = types.push(key) - 1;
    return i;
  };
  const imports: number[][] = [];
  const funcs: FuncDef[] = [];
  const funcIndex = new Map<string, number>();
  const globalIndex = new Map<string, number>();
  const globals: number[][] = [];
  const exports: number[][] = [];
  let memory: number[] | undefined;

  const limits = (items: Node[], at: number): number[] => {
    const nums = items.slice(at).filter((x): x is string => typeof x === "string" && /^[0-9]/.test(x)).map(Number);
    if (nums.length === 0) throw new WatError("memory: missing its minimum size (pages)");
    return nums.length > 1 ? [0x01, ...new Bytes().u32(nums[0]).u32(nums[1]).b] : [0x00, ...new Bytes().u32(nums[0]).b];
  };

  for (const f of fields) {
    const kind = f[0];
    if (kind === "memory") {
      let i = 1;
      if (typeof f[i] === "string" && (f[i] as string).startsWith("$")) i++;
      const exp = f.find((x) => Array.isArray(x) && x[0] === "export") as Node[] | undefined;
      if (exp) exports.push(new Bytes().name(unquote(exp[1])).u8(0x02).u32(0).b);
      memory = limits(f.filter((x) => !Array.isArray(x)), i);
    } else if (kind === "import") {
      const desc = f[3] as Node[];
      if (!Array.isArray(desc) || desc[0] !== "memory") throw new WatError("only memory imports are supported");
      let i = 1;
      if (typeof desc[i] === "string" && (desc[i] as string).startsWith("$")) i++;
      imports.push(new Bytes().name(unquote(f[1])).name(unquote(f[2])).u8(0x02).bytes(limits(desc, i)).b);
    } else if (kind === "global") {
      let i = 1;
      if (typeof f[i] === "string" && (f[i] as string).startsWith("$")) {
        globalIndex.set(f[i++] as string, globals.length);
      }
      const t = f[i++];
      const mutable = Array.isArray(t) && t[0] === "mut";
      const vt = valtype(mutable ? (t as Node[])[1] : t);
      const init = new FuncEncoder(
        { exports: [], params: [], results: [], locals: [], localNames: new Map(), body: [] },
        funcIndex,
        globalIndex,
      );
      init.seq(f.slice(i));
      globals.push([vt, mutable ? 1 : 0, ...init.code.b, 0x0b]);
    } else if (kind === "func") {
      const fn: FuncDef = { exports: [], params: [], results: [], locals: [], localNames: new Map(), body: [] };
      let i = 1;
      if (typeof f[i] === "string" && (f[i] as string).startsWith("$")) fn.name = f[i++] as string;
      let nLocals = 0;
      for (; i < f.length; i++) {
        const x = f[i];
        if (!Array.isArray(x)) break;
        if (x[0] === "export") fn.exports.push(unquote(x[1]));
        else if (x[0] === "param" || x[0] === "local") {
          const into = x[0] === "param" ? fn.params : fn.locals;
          if (typeof x[1] === "string" && x[1].startsWith("$")) {
            fn.localNames.set(x[1], nLocals++);
            into.push(valtype(x[2]));
          } else {
            for (const t of x.slice(1)) (into.push(valtype(t)), nLocals++);
          }
        } else if (x[0] === "result") fn.results.push(...x.slice(1).map(valtype));
        else break;
      }
      fn.body = f.slice(i);
      if (fn.name) funcIndex.set(fn.name, funcs.length);
      funcs.push(fn);
    } else {
      throw new WatError(`unsupported module field (${String(kind)} ...)`);
    }
  }

  const funcTypes = funcs.map((fn) => typeOf(fn.params, fn.results));
  funcs.forEach((fn, k) => {
    for (const e of fn.exports) exports.push(new Bytes().name(e).u8(0x00).u32(k).b);
  });
  const bodies = funcs.map((fn) => {
    const enc = new FuncEncoder(fn, funcIndex, globalIndex);
    enc.seq(fn.body);
    enc.code.u8(0x0b);
    // Locals, run-length encoded by type.
    const runs: [number, number][] = [];
    for (const t of fn.locals) {
      if (runs.length && runs[runs.length - 1][1] === t) runs[runs.length - 1][0]++;
      else runs.push([1, t]);
    }
    const body = new Bytes().u32(runs.length);
    for (const [n, t] of runs) body.u32(n).u8(t);
    body.bytes(enc.code.b);
    return new Bytes().u32(body.b.length).bytes(body.b).b;
  });

  const out = new Bytes().bytes([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  const section = (id: number, content: number[]) => out.u8(id).u32(content.length).bytes(content);
  section(
    1,
    new Bytes().vec(types.map((key) => {
      const [p, r] = key.split(":").map((s) => (s ? s.split(",").map(Number) : []));
      return new Bytes().u8(0x60).vec(p.map((x) => [x])).vec(r.map((x) => [x])).b;
    })).b,
  );
  if (imports.length) section(2, new Bytes().vec(imports).b);
  section(3, new Bytes().vec(funcTypes.map((t) => new Bytes().u32(t).b)).b);
  if (memory) section(5, new Bytes().vec([memory]).b);
  if (globals.length) section(6, new Bytes().vec(globals).b);
  if (exports.length) section(7, new Bytes().vec(exports).b);
  section(10, new Bytes().vec(bodies).b);
  return new Uint8Array(out.b);
}

/**
 * The TypeScript module text that holds `bytes` for `import`: a base64 string decoded once.
 *
 * @param bytes the assembled module
 * @param source path of the `.wat` source, named in the header comment
 */
export function wasmModuleText(bytes: Uint8Array, source: string): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  const b64 = btoa(bin);
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 100) lines.push(`"${b64.slice(i, i + 100)}"`);
  return `/**
 * GENERATED by \`deno run -A scripts/wat.ts ${source} <this file>\` from ${source}: do not edit;
 * edit the .wat source and regenerate (tests check that the two agree).
 *
 * @module
 */

/** The assembled WebAssembly module, base64. */
const BASE64 = ${lines.join(" +\n  ")};

/** \`Uint8Array.fromBase64\` where the engine has it (a native decode: ~0.3 ms here, against 4-9 ms for \`atob\` and a loop at start-up). */
const fromBase64 = (Uint8Array as unknown as { fromBase64?: (s: string) => Uint8Array<ArrayBuffer> }).fromBase64;

/** The module's bytes (${bytes.length}). */
export function wasmBytes(): Uint8Array<ArrayBuffer> {
  if (fromBase64) return fromBase64(BASE64);
  const s = atob(BASE64);
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}
`;
}

if (import.meta.main) {
  const [src, dst] = Deno.args;
  if (!src || !dst) {
    console.error("usage: deno run -A scripts/wat.ts SOURCE.wat OUTPUT.ts");
    Deno.exit(2);
  }
  const bytes = assembleWat(await Deno.readTextFile(src));
  if (!WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)) {
    console.error(`${src}: assembled, but the engine rejects the module`);
    Deno.exit(1);
  }
  await Deno.writeTextFile(dst, wasmModuleText(bytes, src));
  console.log(`${dst}: ${bytes.length} bytes`);
}
