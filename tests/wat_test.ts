/**
 * Tests of the WAT assembler (scripts/wat.ts) and of the committed kernel bytes: the bytes in
 * plugins/resample/_kernel_wasm.ts are exactly what kernel.wat assembles to, and assembled
 * modules compute what their source says (control flow, memory, SIMD lanes).
 *
 * @module
 */
import assert from "node:assert/strict";
import { assembleWat, wasmModuleText, WatError } from "../scripts/wat.ts";
import { wasmBytes } from "../plugins/resample/_kernel_wasm.ts";

function run(src: string): Record<string, CallableFunction> & { memory?: WebAssembly.Memory } {
  const bytes = assembleWat(src) as Uint8Array<ArrayBuffer>;
  assert.ok(WebAssembly.validate(bytes), "the engine accepts the module");
  return new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as never;
}

Deno.test("the committed kernel bytes are kernel.wat assembled (regenerate with scripts/wat.ts after editing it)", async () => {
  const src = await Deno.readTextFile(new URL("../plugins/resample/kernel.wat", import.meta.url));
  assert.deepEqual(wasmBytes(), assembleWat(src));
  // And the generated module text is what the script writes.
  const text = await Deno.readTextFile(new URL("../plugins/resample/_kernel_wasm.ts", import.meta.url));
  assert.equal(text, wasmModuleText(assembleWat(src), "plugins/resample/kernel.wat"));
});

Deno.test("wat: folded and flat instructions, locals, loops, branches, if/else", () => {
  const m = run(`(module
    ;; sum 1..n, folded
    (func (export "sum") (param $n i32) (result i32) (local $s i32)
      (block $done
        (loop $l
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $s (i32.add (local.get $s) (local.get $n)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $l)))
      (local.get $s))
    (; factorial, flat ;)
    (func (export "fact") (param i32) (result i64) (local $r i64)
      i64.const 1
      local.set $r
      block $out
        loop $again
          local.get 0
          i32.const 2
          i32.lt_s
          br_if $out
          local.get $r
          local.get 0
          i64.extend_i32_s
          i64.mul
          local.set $r
          local.get 0
          i32.const -1
          i32.add
          local.set 0
          br $again
        end
      end
      local.get $r)
    (func (export "sign") (param $x f64) (result i32)
      (if (result i32) (f64.lt (local.get $x) (f64.const 0))
        (then (i32.const -1))
        (else (i32.const 1)))))`);
  assert.equal(m.sum(100), 5050);
  assert.equal(m.fact(20), 2432902008176640000n);
  assert.equal(m.sign(-2.5), -1);
  assert.equal(m.sign(0.5), 1);
});

Deno.test("wat: memory with offsets, globals, calls, SIMD lanes", () => {
  const m = run(`(module
    (memory (export "memory") 1)
    (global $count (mut i32) (i32.const 0))
    (func $twice (param $v f32) (result f32) (f32.mul (local.get $v) (f32.const 2)))
    (func (export "scale") (param $p i32) (result i32)
      (f32.store offset=4 (local.get $p) (call $twice (f32.load offset=4 (local.get $p))))
      (global.set $count (i32.add (global.get $count) (i32.const 1)))
      (global.get $count))
    (func (export "dot4") (param $a i32) (param $b i32) (result f32) (local $v v128)
      (local.set $v (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b))))
      (f32.add (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
               (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))
    (func (export "pack") (param $src i32) (param $dst i32)
      (v128.store (local.get $dst)
        (i16x8.narrow_i32x4_s
          (i32x4.trunc_sat_f32x4_s (f32x4.nearest (v128.load (local.get $src))))
          (i32x4.trunc_sat_f32x4_s (f32x4.nearest (v128.load offset=16 (local.get $src)))))))
    (func (export "widen") (param $src i32) (param $dst i32)
      (v128.store (local.get $dst) (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (v128.load (local.get $src))))))
    (func (export "splat") (result f32)
      (f32x4.extract_lane 3 (f32x4.add (f32x4.splat (f32.const 1.5)) (v128.const f32x4 0 0 0 0.25))))
    (func (export "unzip") (param $src i32) (param $e i32) (param $o i32) (local $a v128) (local $b v128)
      (local.set $a (v128.load (local.get $src)))
      (local.set $b (v128.load offset=16 (local.get $src)))
      (v128.store (local.get $e) (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $a) (local.get $b)))
      (v128.store (local.get $o) (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $a) (local.get $b)))))`);
  const mem = m.memory!;
  const f = new Float32Array(mem.buffer);
  f[1] = 3.25;
  assert.equal(m.scale(0), 1);
  assert.equal(m.scale(0), 2);
  assert.equal(f[1], 13);
  f.set([1, 2, 3, 4], 4);
  f.set([10, 20, 30, 40], 8);
  assert.equal(m.dot4(16, 32), 300);
  f.set([0.5, 1.5, -2.5, 40000, -40000, 7.49, -7.5, 2.5], 16);
  m.pack(64, 128);
  assert.deepEqual([...new Int16Array(mem.buffer, 128, 8)], [0, 2, -2, 32767, -32768, 7, -8, 2]);
  new Int16Array(mem.buffer, 192, 8).set([1, 2, 3, 4, -5, 6, -32768, 32767]);
  m.widen(192, 256);
  assert.deepEqual([...new Float32Array(mem.buffer, 256, 4)], [-5, 6, -32768, 32767]);
  assert.equal(m.splat(), 1.75);
  // i8x16.shuffle picks bytes of both operands: here the even and the odd floats of eight.
  new Float32Array(mem.buffer, 320, 8).set([0, 1, 2, 3, 4, 5, 6, 7]);
  m.unzip(320, 352, 368);
  assert.deepEqual([...new Float32Array(mem.buffer, 352, 8)], [0, 2, 4, 6, 1, 3, 5, 7]);
});

Deno.test("wat: errors say what is wrong", () => {
  assert.throws(
    () => assembleWat("(module (func (i32.frobnicate)))"),
    (e: Error) => e instanceof WatError && /frobnicate/.test(e.message),
  );
  assert.throws(() => assembleWat("(module (func (br $nowhere)))"), /unknown label \$nowhere/);
  assert.throws(() => assembleWat("(module (func (local.get $x)))"), /unknown local \$x/);
  assert.throws(() => assembleWat("(module (func)"), /missing '\)'/);
  assert.throws(() => assembleWat("(module (table 1 funcref))"), /unsupported module field \(table/);
  assert.throws(
    () =>
      assembleWat(
        "(module (func (param v128) (drop (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 32 (local.get 0) (local.get 0)))))",
      ),
    /i8x16.shuffle: lane index 32 is not in 0..31/,
  );
});
