;; The polyphase resampler's inner loops, in WebAssembly with 128-bit SIMD.
;;
;; Assembled by scripts/wat.ts into _kernel_wasm.ts:
;;   deno run -A scripts/wat.ts plugins/resample/kernel.wat plugins/resample/_kernel_wasm.ts
;;
;; The module exports its memory; polyphase.ts lays out in it the coefficient tables, one
;; float history buffer per channel and stage, and the int16 input and output staging areas,
;; and calls these functions once per frame (never per sample). kaiser_proto and kaiser_rows
;; compute the coefficient tables themselves, once per filter design, in an instance of their
;; own: at start-up the same loops in JavaScript run cold, and took 40-80 ms for one table.
;;
;; Every result depends only on the input samples and the filter, never on how the input was
;; cut into frames: a file resampled in one call and in chunks of any size gives identical
;; samples. That is why there are plain multiplies and adds here, never the relaxed-SIMD fused
;; multiply-add, whose rounding an engine may choose differently from one tier to the next.
(module
  (memory (export "memory") 1)

  ;; int16 → float32, one contiguous channel: dst[i] = src[i].
  (func (export "load_mono") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32) (local $v v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 1))))
    (block $b8
      (loop $l8
        (br_if $b8 (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $v (v128.load align=2 (local.get $src)))
        (v128.store align=4 (local.get $dst) (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_s (local.get $v))))
        (v128.store offset=16 align=4 (local.get $dst)
          (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_s (local.get $v))))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $l8)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 1))))
    (block $b1
      (loop $l1
        (br_if $b1 (i32.ge_u (local.get $src) (local.get $end)))
        (f32.store (local.get $dst) (f32.convert_i32_s (i32.load16_s (local.get $src))))
        (local.set $src (i32.add (local.get $src) (i32.const 2)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (br $l1))))

  ;; int16 → float32, one channel of interleaved samples: dst[i] = src[i × stride]
  ;; (src points at the channel's first sample).
  (func (export "load_chan") (param $src i32) (param $dst i32) (param $n i32) (param $stride i32)
    (local $end i32) (local $step i32)
    (local.set $step (i32.shl (local.get $stride) (i32.const 1)))
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
    (block $b
      (loop $l
        (br_if $b (i32.ge_u (local.get $dst) (local.get $end)))
        (f32.store (local.get $dst) (f32.convert_i32_s (i32.load16_s (local.get $src))))
        (local.set $src (i32.add (local.get $src) (local.get $step)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (br $l))))

  ;; int16 interleaved → float32 down-mix: dst[i] = scale × Σ_c src[i × ch + c].
  (func (export "load_mix") (param $src i32) (param $dst i32) (param $n i32) (param $ch i32) (param $scale f32)
    (local $end i32) (local $c i32) (local $sum i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n) (i32.const 2))))
    (block $b
      (loop $l
        (br_if $b (i32.ge_u (local.get $dst) (local.get $end)))
        (local.set $sum (i32.const 0))
        (local.set $c (i32.const 0))
        (loop $each
          (local.set $sum (i32.add (local.get $sum) (i32.load16_s (local.get $src))))
          (local.set $src (i32.add (local.get $src) (i32.const 2)))
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (br_if $each (i32.lt_u (local.get $c) (local.get $ch))))
        (f32.store (local.get $dst) (f32.mul (f32.convert_i32_s (local.get $sum)) (local.get $scale)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (br $l))))

  ;; float32 → int16, rounded to nearest (ties to even) and saturated, contiguous.
  (func (export "store_mono") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32) (local $v i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 1))))
    (block $b8
      (loop $l8
        (br_if $b8 (i32.ge_u (local.get $dst) (local.get $end)))
        (v128.store align=2 (local.get $dst)
          (i16x8.narrow_i32x4_s
            (i32x4.trunc_sat_f32x4_s (f32x4.nearest (v128.load align=4 (local.get $src))))
            (i32x4.trunc_sat_f32x4_s (f32x4.nearest (v128.load offset=16 align=4 (local.get $src))))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $l8)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 1))))
    (block $b1
      (loop $l1
        (br_if $b1 (i32.ge_u (local.get $dst) (local.get $end)))
        (local.set $v (i32.trunc_sat_f32_s (f32.nearest (f32.load (local.get $src)))))
        (if (i32.gt_s (local.get $v) (i32.const 32767)) (then (local.set $v (i32.const 32767))))
        (if (i32.lt_s (local.get $v) (i32.const -32768)) (then (local.set $v (i32.const -32768))))
        (i32.store16 (local.get $dst) (local.get $v))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
        (br $l1))))

  ;; float32 → int16 into one channel of interleaved output: dst[i × stride] = round(src[i]).
  (func (export "store_chan") (param $src i32) (param $dst i32) (param $n i32) (param $stride i32)
    (local $end i32) (local $step i32) (local $v i32)
    (local.set $step (i32.shl (local.get $stride) (i32.const 1)))
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n) (i32.const 2))))
    (block $b
      (loop $l
        (br_if $b (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $v (i32.trunc_sat_f32_s (f32.nearest (f32.load (local.get $src)))))
        (if (i32.gt_s (local.get $v) (i32.const 32767)) (then (local.set $v (i32.const 32767))))
        (if (i32.lt_s (local.get $v) (i32.const -32768)) (then (local.set $v (i32.const -32768))))
        (i32.store16 (local.get $dst) (local.get $v))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $dst (i32.add (local.get $dst) (local.get $step)))
        (br $l))))

  ;; The polyphase filter, exact phases. State at $st: input index (i32), phase (i32).
  ;; For each output: out[n] = Σ_k x[idx + k] × coef[phase × taps + k] (taps a multiple of 16),
  ;; then phase += sf, idx += si, and once phase reaches L: phase −= L, idx += 1.
  ;; Stops before an output would read past x[avail − 1], or after $max outputs.
  ;; Returns the number of outputs written.
  ;;
  ;; Outputs n and n + L have the same phase, and the second reads the input M = si × L + sf
  ;; samples later. So while 2L outputs fit (in $max and in the input), they are made as L pairs
  ;; (j, j + L), each pair sharing its coefficient loads: a quarter fewer loads, which bound this
  ;; loop. Each output keeps its own sums in the order of the single loop below, so every output
  ;; is the same, bit for bit, whichever loop made it.
  (func (export "fir")
    (param $st i32) (param $x i32) (param $avail i32) (param $coef i32) (param $taps i32)
    (param $L i32) (param $si i32) (param $sf i32) (param $out i32) (param $max i32) (result i32)
    (local $idx i32) (local $ph i32) (local $n i32) (local $p i32) (local $c i32) (local $e i32)
    (local $row i32) (local $lim i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $q i32) (local $j i32) (local $o i32) (local $mb i32) (local $h v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128)
    (local.set $idx (i32.load (local.get $st)))
    (local.set $ph (i32.load offset=4 (local.get $st)))
    (local.set $row (i32.shl (local.get $taps) (i32.const 2)))
    (local.set $lim (i32.sub (local.get $avail) (local.get $taps)))
    ;; M in bytes of input.
    (local.set $mb (i32.shl (i32.add (i32.mul (local.get $si) (local.get $L)) (local.get $sf)) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_s (local.get $n) (local.get $max)))
        (br_if $done (i32.gt_s (local.get $idx) (local.get $lim)))
        ;; 2L outputs as L pairs, when they fit: every output of the block reads from below
        ;; idx + 2M, so idx + 2M <= lim is enough.
        (if (i32.and
              (i32.le_s (i32.add (local.get $n) (i32.shl (local.get $L) (i32.const 1))) (local.get $max))
              (i32.le_s (i32.add (local.get $idx) (i32.shr_u (local.get $mb) (i32.const 1))) (local.get $lim)))
          (then
            (local.set $j (i32.const 0))
            (loop $pair
              (local.set $p (i32.add (local.get $x) (i32.shl (local.get $idx) (i32.const 2))))
              (local.set $q (i32.add (local.get $p) (local.get $mb)))
              (local.set $c (i32.add (local.get $coef) (i32.mul (local.get $ph) (local.get $row))))
              (local.set $e (i32.add (local.get $c) (local.get $row)))
              (local.set $a0 (v128.const i32x4 0 0 0 0))
              (local.set $a1 (v128.const i32x4 0 0 0 0))
              (local.set $a2 (v128.const i32x4 0 0 0 0))
              (local.set $a3 (v128.const i32x4 0 0 0 0))
              (local.set $b0 (v128.const i32x4 0 0 0 0))
              (local.set $b1 (v128.const i32x4 0 0 0 0))
              (local.set $b2 (v128.const i32x4 0 0 0 0))
              (local.set $b3 (v128.const i32x4 0 0 0 0))
              (loop $dot2
                (local.set $h (v128.load (local.get $c)))
                (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load align=4 (local.get $p)) (local.get $h))))
                (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (v128.load align=4 (local.get $q)) (local.get $h))))
                (local.set $h (v128.load offset=16 (local.get $c)))
                (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load offset=16 align=4 (local.get $p)) (local.get $h))))
                (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (v128.load offset=16 align=4 (local.get $q)) (local.get $h))))
                (local.set $h (v128.load offset=32 (local.get $c)))
                (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load offset=32 align=4 (local.get $p)) (local.get $h))))
                (local.set $b2 (f32x4.add (local.get $b2) (f32x4.mul (v128.load offset=32 align=4 (local.get $q)) (local.get $h))))
                (local.set $h (v128.load offset=48 (local.get $c)))
                (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load offset=48 align=4 (local.get $p)) (local.get $h))))
                (local.set $b3 (f32x4.add (local.get $b3) (f32x4.mul (v128.load offset=48 align=4 (local.get $q)) (local.get $h))))
                (local.set $p (i32.add (local.get $p) (i32.const 64)))
                (local.set $q (i32.add (local.get $q) (i32.const 64)))
                (local.set $c (i32.add (local.get $c) (i32.const 64)))
                (br_if $dot2 (i32.lt_u (local.get $c) (local.get $e))))
              (local.set $a0 (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))
              (local.set $b0 (f32x4.add (f32x4.add (local.get $b0) (local.get $b1)) (f32x4.add (local.get $b2) (local.get $b3))))
              (local.set $o (i32.add (local.get $out) (i32.shl (i32.add (local.get $n) (local.get $j)) (i32.const 2))))
              (f32.store (local.get $o)
                (f32.add
                  (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
                  (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
              (f32.store (i32.add (local.get $o) (i32.shl (local.get $L) (i32.const 2)))
                (f32.add
                  (f32.add (f32x4.extract_lane 0 (local.get $b0)) (f32x4.extract_lane 1 (local.get $b0)))
                  (f32.add (f32x4.extract_lane 2 (local.get $b0)) (f32x4.extract_lane 3 (local.get $b0)))))
              (local.set $idx (i32.add (local.get $idx) (local.get $si)))
              (local.set $ph (i32.add (local.get $ph) (local.get $sf)))
              (if (i32.ge_u (local.get $ph) (local.get $L))
                (then
                  (local.set $ph (i32.sub (local.get $ph) (local.get $L)))
                  (local.set $idx (i32.add (local.get $idx) (i32.const 1)))))
              (local.set $j (i32.add (local.get $j) (i32.const 1)))
              (br_if $pair (i32.lt_u (local.get $j) (local.get $L))))
            ;; L steps moved idx by M and brought the phase round; the second half's L outputs
            ;; move it by M more.
            (local.set $idx (i32.add (local.get $idx) (i32.shr_u (local.get $mb) (i32.const 2))))
            (local.set $n (i32.add (local.get $n) (i32.shl (local.get $L) (i32.const 1))))
            (br $next)))
        (local.set $p (i32.add (local.get $x) (i32.shl (local.get $idx) (i32.const 2))))
        (local.set $c (i32.add (local.get $coef) (i32.mul (local.get $ph) (local.get $row))))
        (local.set $e (i32.add (local.get $c) (local.get $row)))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0))
        (local.set $a3 (v128.const i32x4 0 0 0 0))
        (loop $dot
          (local.set $a0 (f32x4.add (local.get $a0)
            (f32x4.mul (v128.load align=4 (local.get $p)) (v128.load (local.get $c)))))
          (local.set $a1 (f32x4.add (local.get $a1)
            (f32x4.mul (v128.load offset=16 align=4 (local.get $p)) (v128.load offset=16 (local.get $c)))))
          (local.set $a2 (f32x4.add (local.get $a2)
            (f32x4.mul (v128.load offset=32 align=4 (local.get $p)) (v128.load offset=32 (local.get $c)))))
          (local.set $a3 (f32x4.add (local.get $a3)
            (f32x4.mul (v128.load offset=48 align=4 (local.get $p)) (v128.load offset=48 (local.get $c)))))
          (local.set $p (i32.add (local.get $p) (i32.const 64)))
          (local.set $c (i32.add (local.get $c) (i32.const 64)))
          (br_if $dot (i32.lt_u (local.get $c) (local.get $e))))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2)))
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
            (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $idx (i32.add (local.get $idx) (local.get $si)))
        (local.set $ph (i32.add (local.get $ph) (local.get $sf)))
        (if (i32.ge_u (local.get $ph) (local.get $L))
          (then
            (local.set $ph (i32.sub (local.get $ph) (local.get $L)))
            (local.set $idx (i32.add (local.get $idx) (i32.const 1)))))
        (br $next)))
    (i32.store (local.get $st) (local.get $idx))
    (i32.store offset=4 (local.get $st) (local.get $ph))
    (local.get $n))

  ;; The polyphase filter for ratios whose exact phase table would be too large: the table holds
  ;; Q + 1 rows (row j is the filter at fraction j / Q), and each output interpolates linearly
  ;; between the two rows around its exact phase: position = phase × scale (scale = Q / L),
  ;; out = A + frac × (B − A) with A, B the products with rows floor(position) and the next.
  ;; State, stepping and stopping as in fir.
  (func (export "fir_interp")
    (param $st i32) (param $x i32) (param $avail i32) (param $coef i32) (param $taps i32)
    (param $L i32) (param $si i32) (param $sf i32) (param $scale f64) (param $out i32) (param $max i32)
    (result i32)
    (local $idx i32) (local $ph i32) (local $n i32) (local $p i32) (local $c i32) (local $d i32) (local $e i32)
    (local $row i32) (local $lim i32) (local $pos f64) (local $j i32) (local $frac f32) (local $ya f32) (local $yb f32)
    (local $a0 v128) (local $a1 v128) (local $b0 v128) (local $b1 v128) (local $v0 v128) (local $v1 v128)
    (local.set $idx (i32.load (local.get $st)))
    (local.set $ph (i32.load offset=4 (local.get $st)))
    (local.set $row (i32.shl (local.get $taps) (i32.const 2)))
    (local.set $lim (i32.sub (local.get $avail) (local.get $taps)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_s (local.get $n) (local.get $max)))
        (br_if $done (i32.gt_s (local.get $idx) (local.get $lim)))
        (local.set $pos (f64.mul (f64.convert_i32_u (local.get $ph)) (local.get $scale)))
        (local.set $j (i32.trunc_f64_u (local.get $pos)))
        (local.set $frac (f32.demote_f64 (f64.sub (local.get $pos) (f64.convert_i32_u (local.get $j)))))
        (local.set $p (i32.add (local.get $x) (i32.shl (local.get $idx) (i32.const 2))))
        (local.set $c (i32.add (local.get $coef) (i32.mul (local.get $j) (local.get $row))))
        (local.set $d (i32.add (local.get $c) (local.get $row)))
        (local.set $e (local.get $d))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $b0 (v128.const i32x4 0 0 0 0))
        (local.set $b1 (v128.const i32x4 0 0 0 0))
        (loop $dot
          (local.set $v0 (v128.load align=4 (local.get $p)))
          (local.set $v1 (v128.load offset=16 align=4 (local.get $p)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $v0) (v128.load (local.get $c)))))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $v1) (v128.load offset=16 (local.get $c)))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (local.get $v0) (v128.load (local.get $d)))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (local.get $v1) (v128.load offset=16 (local.get $d)))))
          (local.set $p (i32.add (local.get $p) (i32.const 32)))
          (local.set $c (i32.add (local.get $c) (i32.const 32)))
          (local.set $d (i32.add (local.get $d) (i32.const 32)))
          (br_if $dot (i32.lt_u (local.get $c) (local.get $e))))
        (local.set $a0 (f32x4.add (local.get $a0) (local.get $a1)))
        (local.set $b0 (f32x4.add (local.get $b0) (local.get $b1)))
        (local.set $ya
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
            (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
        (local.set $yb
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $b0)) (f32x4.extract_lane 1 (local.get $b0)))
            (f32.add (f32x4.extract_lane 2 (local.get $b0)) (f32x4.extract_lane 3 (local.get $b0)))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2)))
          (f32.add (local.get $ya) (f32.mul (local.get $frac) (f32.sub (local.get $yb) (local.get $ya)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $idx (i32.add (local.get $idx) (local.get $si)))
        (local.set $ph (i32.add (local.get $ph) (local.get $sf)))
        (if (i32.ge_u (local.get $ph) (local.get $L))
          (then
            (local.set $ph (i32.sub (local.get $ph) (local.get $L)))
            (local.set $idx (i32.add (local.get $idx) (i32.const 1)))))
        (br $next)))
    (i32.store (local.get $st) (local.get $idx))
    (i32.store offset=4 (local.get $st) (local.get $ph))
    (local.get $n)
)

  ;; The single-phase filter (L = 1: an integer decimator, or no rate change), two outputs at a
  ;; time when both are due: they share every coefficient load. Same state, stepping, stopping
  ;; and sums (in the same order) as fir, so the outputs are identical to fir's.
  (func (export "fir1")
    (param $st i32) (param $x i32) (param $avail i32) (param $coef i32) (param $taps i32)
    (param $si i32) (param $out i32) (param $max i32) (result i32)
    (local $idx i32) (local $n i32) (local $p i32) (local $q i32) (local $c i32) (local $e i32)
    (local $lim i32) (local $step i32) (local $o i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $b0 v128) (local $b1 v128) (local $b2 v128) (local $b3 v128) (local $h v128)
    (local.set $idx (i32.load (local.get $st)))
    (local.set $lim (i32.sub (local.get $avail) (local.get $taps)))
    (local.set $step (i32.shl (local.get $si) (i32.const 2)))
    (local.set $e (i32.add (local.get $coef) (i32.shl (local.get $taps) (i32.const 2))))
    ;; Pairs.
    (block $pairs
      (loop $next2
        (br_if $pairs (i32.ge_s (i32.add (local.get $n) (i32.const 1)) (local.get $max)))
        (br_if $pairs (i32.gt_s (i32.add (local.get $idx) (local.get $si)) (local.get $lim)))
        (local.set $p (i32.add (local.get $x) (i32.shl (local.get $idx) (i32.const 2))))
        (local.set $q (i32.add (local.get $p) (local.get $step)))
        (local.set $c (local.get $coef))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0))
        (local.set $a3 (v128.const i32x4 0 0 0 0))
        (local.set $b0 (v128.const i32x4 0 0 0 0))
        (local.set $b1 (v128.const i32x4 0 0 0 0))
        (local.set $b2 (v128.const i32x4 0 0 0 0))
        (local.set $b3 (v128.const i32x4 0 0 0 0))
        (loop $dot2
          (local.set $h (v128.load (local.get $c)))
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load align=4 (local.get $p)) (local.get $h))))
          (local.set $b0 (f32x4.add (local.get $b0) (f32x4.mul (v128.load align=4 (local.get $q)) (local.get $h))))
          (local.set $h (v128.load offset=16 (local.get $c)))
          (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (v128.load offset=16 align=4 (local.get $p)) (local.get $h))))
          (local.set $b1 (f32x4.add (local.get $b1) (f32x4.mul (v128.load offset=16 align=4 (local.get $q)) (local.get $h))))
          (local.set $h (v128.load offset=32 (local.get $c)))
          (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (v128.load offset=32 align=4 (local.get $p)) (local.get $h))))
          (local.set $b2 (f32x4.add (local.get $b2) (f32x4.mul (v128.load offset=32 align=4 (local.get $q)) (local.get $h))))
          (local.set $h (v128.load offset=48 (local.get $c)))
          (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (v128.load offset=48 align=4 (local.get $p)) (local.get $h))))
          (local.set $b3 (f32x4.add (local.get $b3) (f32x4.mul (v128.load offset=48 align=4 (local.get $q)) (local.get $h))))
          (local.set $p (i32.add (local.get $p) (i32.const 64)))
          (local.set $q (i32.add (local.get $q) (i32.const 64)))
          (local.set $c (i32.add (local.get $c) (i32.const 64)))
          (br_if $dot2 (i32.lt_u (local.get $c) (local.get $e))))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))
        (local.set $b0 (f32x4.add (f32x4.add (local.get $b0) (local.get $b1)) (f32x4.add (local.get $b2) (local.get $b3))))
        (local.set $o (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))))
        (f32.store (local.get $o)
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
            (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
        (f32.store offset=4 (local.get $o)
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $b0)) (f32x4.extract_lane 1 (local.get $b0)))
            (f32.add (f32x4.extract_lane 2 (local.get $b0)) (f32x4.extract_lane 3 (local.get $b0)))))
        (local.set $n (i32.add (local.get $n) (i32.const 2)))
        (local.set $idx (i32.add (local.get $idx) (i32.shl (local.get $si) (i32.const 1))))
        (br $next2)))
    ;; At most one more.
    (if (i32.and (i32.lt_s (local.get $n) (local.get $max)) (i32.le_s (local.get $idx) (local.get $lim)))
      (then
        (local.set $p (i32.add (local.get $x) (i32.shl (local.get $idx) (i32.const 2))))
        (local.set $c (local.get $coef))
        (local.set $a0 (v128.const i32x4 0 0 0 0))
        (local.set $a1 (v128.const i32x4 0 0 0 0))
        (local.set $a2 (v128.const i32x4 0 0 0 0))
        (local.set $a3 (v128.const i32x4 0 0 0 0))
        (loop $dot1
          (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (v128.load align=4 (local.get $p)) (v128.load (local.get $c)))))
          (local.set $a1 (f32x4.add (local.get $a1)
            (f32x4.mul (v128.load offset=16 align=4 (local.get $p)) (v128.load offset=16 (local.get $c)))))
          (local.set $a2 (f32x4.add (local.get $a2)
            (f32x4.mul (v128.load offset=32 align=4 (local.get $p)) (v128.load offset=32 (local.get $c)))))
          (local.set $a3 (f32x4.add (local.get $a3)
            (f32x4.mul (v128.load offset=48 align=4 (local.get $p)) (v128.load offset=48 (local.get $c)))))
          (local.set $p (i32.add (local.get $p) (i32.const 64)))
          (local.set $c (i32.add (local.get $c) (i32.const 64)))
          (br_if $dot1 (i32.lt_u (local.get $c) (local.get $e))))
        (local.set $a0 (f32x4.add (f32x4.add (local.get $a0) (local.get $a1)) (f32x4.add (local.get $a2) (local.get $a3))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2)))
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $a0)) (f32x4.extract_lane 1 (local.get $a0)))
            (f32.add (f32x4.extract_lane 2 (local.get $a0)) (f32x4.extract_lane 3 (local.get $a0)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $idx (i32.add (local.get $idx) (local.get $si)))))
    (i32.store (local.get $st) (local.get $idx))
    (local.get $n))

  ;; float32 → its even and its odd samples: e[i] = src[2i], o[i] = src[2i + 1], for n samples
  ;; (when n is odd, the last one goes to e). Eight at a time: two loads, two shuffles.
  (func (export "split") (param $src i32) (param $n i32) (param $e i32) (param $o i32)
    (local $end i32) (local $a v128) (local $b v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $b8
      (loop $l8
        (br_if $b8 (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $a (v128.load align=4 (local.get $src)))
        (local.set $b (v128.load offset=16 align=4 (local.get $src)))
        (v128.store align=4 (local.get $e)
          (i8x16.shuffle 0 1 2 3 8 9 10 11 16 17 18 19 24 25 26 27 (local.get $a) (local.get $b)))
        (v128.store align=4 (local.get $o)
          (i8x16.shuffle 4 5 6 7 12 13 14 15 20 21 22 23 28 29 30 31 (local.get $a) (local.get $b)))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $e (i32.add (local.get $e) (i32.const 16)))
        (local.set $o (i32.add (local.get $o) (i32.const 16)))
        (br $l8)))
    (local.set $end (i32.add (local.get $end) (i32.shl (i32.and (local.get $n) (i32.const 7)) (i32.const 2))))
    (block $b1
      (loop $l1
        (br_if $b1 (i32.ge_u (local.get $src) (local.get $end)))
        (f32.store (local.get $e) (f32.load (local.get $src)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $e (i32.add (local.get $e) (i32.const 4)))
        (br_if $b1 (i32.ge_u (local.get $src) (local.get $end)))
        (f32.store (local.get $o) (f32.load (local.get $src)))
        (local.set $src (i32.add (local.get $src) (i32.const 4)))
        (local.set $o (i32.add (local.get $o) (i32.const 4)))
        (br $l1))))

  ;; The half-band decimator by 2, on the even (e) and odd (o) samples of its input. Output m
  ;; (the state at $st) is centred on e[m]; the filter's taps at even offsets are zero, those at
  ;; odd offsets ±(2i + 1) equal, so
  ;;   y = c0 × e[m] + Σ_{i < P} c_{i+1} × (o[m + i] + o[m − 1 − i]),
  ;; with the P + 1 coefficients at $coef, each splatted over 16 bytes (c0 first). Outputs are made
  ;; while o[m + P − 1] is held (m ≤ no − P) and fewer than $max are made: eight neighbours at a
  ;; time (two vectors of one lane each, sharing the coefficient loads, two independent sums; every
  ;; load is contiguous because e and o are apart), then four, then one at a time, with the same
  ;; operations in the same order, so an output is the same whichever loop made it.
  (func (export "hb")
    (param $st i32) (param $e i32) (param $o i32) (param $no i32) (param $coef i32) (param $p i32)
    (param $out i32) (param $max i32) (result i32)
    (local $m i32) (local $n i32) (local $lim i32) (local $a i32) (local $b i32) (local $c i32) (local $ce i32)
    (local $acc v128) (local $acc2 v128) (local $h v128) (local $s f32) (local $q i32)
    (local.set $m (i32.load (local.get $st)))
    (local.set $lim (i32.sub (local.get $no) (local.get $p)))
    (local.set $ce (i32.add (local.get $coef) (i32.shl (i32.add (local.get $p) (i32.const 1)) (i32.const 4))))
    (block $b8
      (loop $l8
        (br_if $b8 (i32.gt_s (i32.add (local.get $n) (i32.const 8)) (local.get $max)))
        (br_if $b8 (i32.gt_s (i32.add (local.get $m) (i32.const 7)) (local.get $lim)))
        (local.set $q (i32.add (local.get $e) (i32.shl (local.get $m) (i32.const 2))))
        (local.set $h (v128.load (local.get $coef)))
        (local.set $acc (f32x4.mul (local.get $h) (v128.load align=4 (local.get $q))))
        (local.set $acc2 (f32x4.mul (local.get $h) (v128.load offset=16 align=4 (local.get $q))))
        (local.set $a (i32.add (local.get $o) (i32.shl (local.get $m) (i32.const 2))))
        (local.set $b (i32.sub (local.get $a) (i32.const 4)))
        (local.set $c (i32.add (local.get $coef) (i32.const 16)))
        (loop $pairs8
          (local.set $h (v128.load (local.get $c)))
          (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $h)
            (f32x4.add (v128.load align=4 (local.get $a)) (v128.load align=4 (local.get $b))))))
          (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $h)
            (f32x4.add (v128.load offset=16 align=4 (local.get $a)) (v128.load offset=16 align=4 (local.get $b))))))
          (local.set $a (i32.add (local.get $a) (i32.const 4)))
          (local.set $b (i32.sub (local.get $b) (i32.const 4)))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $pairs8 (i32.lt_u (local.get $c) (local.get $ce))))
        (local.set $q (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))))
        (v128.store align=4 (local.get $q) (local.get $acc))
        (v128.store offset=16 align=4 (local.get $q) (local.get $acc2))
        (local.set $n (i32.add (local.get $n) (i32.const 8)))
        (local.set $m (i32.add (local.get $m) (i32.const 8)))
        (br $l8)))
    (block $b4
      (loop $l4
        (br_if $b4 (i32.gt_s (i32.add (local.get $n) (i32.const 4)) (local.get $max)))
        (br_if $b4 (i32.gt_s (i32.add (local.get $m) (i32.const 3)) (local.get $lim)))
        (local.set $acc (f32x4.mul (v128.load (local.get $coef))
          (v128.load align=4 (i32.add (local.get $e) (i32.shl (local.get $m) (i32.const 2))))))
        (local.set $a (i32.add (local.get $o) (i32.shl (local.get $m) (i32.const 2))))
        (local.set $b (i32.sub (local.get $a) (i32.const 4)))
        (local.set $c (i32.add (local.get $coef) (i32.const 16)))
        (loop $pairs4
          (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (v128.load (local.get $c))
            (f32x4.add (v128.load align=4 (local.get $a)) (v128.load align=4 (local.get $b))))))
          (local.set $a (i32.add (local.get $a) (i32.const 4)))
          (local.set $b (i32.sub (local.get $b) (i32.const 4)))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $pairs4 (i32.lt_u (local.get $c) (local.get $ce))))
        (v128.store align=4 (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))) (local.get $acc))
        (local.set $n (i32.add (local.get $n) (i32.const 4)))
        (local.set $m (i32.add (local.get $m) (i32.const 4)))
        (br $l4)))
    (block $b1
      (loop $l1
        (br_if $b1 (i32.ge_s (local.get $n) (local.get $max)))
        (br_if $b1 (i32.gt_s (local.get $m) (local.get $lim)))
        (local.set $s (f32.mul (f32.load (local.get $coef))
          (f32.load (i32.add (local.get $e) (i32.shl (local.get $m) (i32.const 2))))))
        (local.set $a (i32.add (local.get $o) (i32.shl (local.get $m) (i32.const 2))))
        (local.set $b (i32.sub (local.get $a) (i32.const 4)))
        (local.set $c (i32.add (local.get $coef) (i32.const 16)))
        (loop $pairs1
          (local.set $s (f32.add (local.get $s) (f32.mul (f32.load (local.get $c))
            (f32.add (f32.load (local.get $a)) (f32.load (local.get $b))))))
          (local.set $a (i32.add (local.get $a) (i32.const 4)))
          (local.set $b (i32.sub (local.get $b) (i32.const 4)))
          (local.set $c (i32.add (local.get $c) (i32.const 16)))
          (br_if $pairs1 (i32.lt_u (local.get $c) (local.get $ce))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 2))) (local.get $s))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $m (i32.add (local.get $m) (i32.const 1)))
        (br $l1)))
    (i32.store (local.get $st) (local.get $m))
    (local.get $n))

  ;; A filter's prototype on its grid, float64 at $dst: for 0 <= j < span,
  ;;   dst[j] = ((c2 * sinc_j) * w_j) / i0b,
  ;; sinc_j = s_j / (th * j) (1 at j = 0), with s_j = sin(j * th) by the recurrence
  ;; s_j = k2 * s_j-1 - s_j-2 (s_0 = 0, s_1 = sin1, k2 = 2 cos th), and the Kaiser window
  ;; w_j = the power series at $terms (nterms float64, highest power last) in a = b2 * (1 - u * u),
  ;; u = j / span, summed by Horner's rule from the term n the point needs: the smallest n with
  ;; a <= limit[n], the limits (nterms float64, increasing, the last infinite) following the terms;
  ;; dst[span] = 0 (the window's edge).
  ;; Every point gets the floats kaiserProto in polyphase.ts computes for it, by the same operations:
  ;; the results are identical. Two passes: the first stores c2 * sinc_j in dst[j] (the recurrence
  ;; runs from point to point); the second runs the Horner sums of four points at once, in two
  ;; float64x2 vectors, as independent chains (one point's chain, up to 41 multiply-adds long, is
  ;; latency-bound alone). A lane whose point needs fewer terms than the group's most adds +0 while
  ;; m is above its n: its sum stays 0 until m = n, where it becomes 0 * a + T[n] = T[n] exactly,
  ;; as the scalar sum starts (a >= 0). The last points of a range, fewer than four, are summed one
  ;; by one.
  ;; One call computes the points $from <= j < $to (and dst[span] when $to reaches span), the
  ;; recurrence's s_j-2, s_j-1 carried in float64 at $state (0, 0 before the first call): called on
  ;; successive ranges, it gives exactly what one call over 0..span gives. The caller calls it in
  ;; ranges because V8 runs a function's first call in its baseline code and only the calls after
  ;; its tier-up in optimized code.
  (func (export "kaiser_proto")
    (param $dst i32) (param $span i32) (param $th f64) (param $sin1 f64) (param $k2 f64)
    (param $c2 f64) (param $i0b f64) (param $b2 f64) (param $terms i32) (param $nterms i32)
    (param $from i32) (param $to i32) (param $state i32)
    (local $j i32) (local $prev f64) (local $cur f64) (local $next f64) (local $jf f64)
    (local $a f64) (local $w f64) (local $m i32) (local $n i32) (local $lim i32) (local $at i32)
    (local $aA v128) (local $aB v128) (local $nA v128) (local $nB v128) (local $wA v128) (local $wB v128)
    (local $t v128) (local $mv v128) (local $div v128)
    (local.set $lim (i32.add (local.get $terms) (i32.shl (local.get $nterms) (i32.const 3))))
    ;; Pass 1: dst[j] = c2 * sinc_j.
    (local.set $prev (f64.load (local.get $state)))
    (local.set $cur (f64.load offset=8 (local.get $state)))
    (local.set $j (local.get $from))
    (block $done1
      (loop $each1
        (br_if $done1 (i32.ge_s (local.get $j) (local.get $to)))
        (local.set $jf (f64.convert_i32_s (local.get $j)))
        (if (i32.eq (local.get $j) (i32.const 1))
          (then (local.set $cur (local.get $sin1))))
        (if (i32.gt_s (local.get $j) (i32.const 1))
          (then
            (local.set $next (f64.sub (f64.mul (local.get $k2) (local.get $cur)) (local.get $prev)))
            (local.set $prev (local.get $cur))
            (local.set $cur (local.get $next))))
        (f64.store (i32.add (local.get $dst) (i32.shl (local.get $j) (i32.const 3)))
          (f64.mul (local.get $c2)
            (if (result f64) (i32.gt_s (local.get $j) (i32.const 0))
              (then (f64.div (local.get $cur) (f64.mul (local.get $th) (local.get $jf))))
              (else (f64.const 1)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $each1)))
    (f64.store (local.get $state) (local.get $prev))
    (f64.store offset=8 (local.get $state) (local.get $cur))
    ;; Pass 2: the windows, four points at a time; dst[j] = (dst[j] * w_j) / i0b.
    (local.set $n (i32.sub (local.get $nterms) (i32.const 1)))
    (local.set $div (f64x2.splat (local.get $i0b)))
    (local.set $j (local.get $from))
    (block $done4
      (loop $each4
        (br_if $done4 (i32.gt_s (i32.add (local.get $j) (i32.const 4)) (local.get $to)))
        ;; a and n of the four points, in lanes: A = (j, j + 1), B = (j + 2, j + 3); m: the largest n.
        (local.set $a (call $kaiser_a (local.get $j) (local.get $span) (local.get $b2)))
        (local.set $n (call $kaiser_n (local.get $a) (local.get $n) (local.get $lim)))
        (local.set $m (local.get $n))
        (local.set $aA (f64x2.splat (local.get $a)))
        (local.set $nA (f64x2.splat (f64.convert_i32_s (local.get $n))))
        (local.set $a (call $kaiser_a (i32.add (local.get $j) (i32.const 1)) (local.get $span) (local.get $b2)))
        (local.set $n (call $kaiser_n (local.get $a) (local.get $n) (local.get $lim)))
        (if (i32.gt_s (local.get $n) (local.get $m)) (then (local.set $m (local.get $n))))
        (local.set $aA (f64x2.replace_lane 1 (local.get $aA) (local.get $a)))
        (local.set $nA (f64x2.replace_lane 1 (local.get $nA) (f64.convert_i32_s (local.get $n))))
        (local.set $a (call $kaiser_a (i32.add (local.get $j) (i32.const 2)) (local.get $span) (local.get $b2)))
        (local.set $n (call $kaiser_n (local.get $a) (local.get $n) (local.get $lim)))
        (if (i32.gt_s (local.get $n) (local.get $m)) (then (local.set $m (local.get $n))))
        (local.set $aB (f64x2.splat (local.get $a)))
        (local.set $nB (f64x2.splat (f64.convert_i32_s (local.get $n))))
        (local.set $a (call $kaiser_a (i32.add (local.get $j) (i32.const 3)) (local.get $span) (local.get $b2)))
        (local.set $n (call $kaiser_n (local.get $a) (local.get $n) (local.get $lim)))
        (if (i32.gt_s (local.get $n) (local.get $m)) (then (local.set $m (local.get $n))))
        (local.set $aB (f64x2.replace_lane 1 (local.get $aB) (local.get $a)))
        (local.set $nB (f64x2.replace_lane 1 (local.get $nB) (f64.convert_i32_s (local.get $n))))
        ;; Horner from m down to 0; a lane adds T[k] only for k <= its n.
        (local.set $wA (v128.const f64x2 0 0))
        (local.set $wB (v128.const f64x2 0 0))
        (local.set $mv (f64x2.splat (f64.convert_i32_s (local.get $m))))
        (block $h4
          (loop $horner4
            (local.set $t (f64x2.splat (f64.load (i32.add (local.get $terms) (i32.shl (local.get $m) (i32.const 3))))))
            (local.set $wA (f64x2.add (f64x2.mul (local.get $wA) (local.get $aA))
              (v128.and (local.get $t) (f64x2.le (local.get $mv) (local.get $nA)))))
            (local.set $wB (f64x2.add (f64x2.mul (local.get $wB) (local.get $aB))
              (v128.and (local.get $t) (f64x2.le (local.get $mv) (local.get $nB)))))
            (br_if $h4 (i32.le_s (local.get $m) (i32.const 0)))
            (local.set $m (i32.sub (local.get $m) (i32.const 1)))
            (local.set $mv (f64x2.sub (local.get $mv) (v128.const f64x2 1 1)))
            (br $horner4)))
        (local.set $at (i32.add (local.get $dst) (i32.shl (local.get $j) (i32.const 3))))
        (v128.store (local.get $at)
          (f64x2.div (f64x2.mul (v128.load (local.get $at)) (local.get $wA)) (local.get $div)))
        (v128.store offset=16 (local.get $at)
          (f64x2.div (f64x2.mul (v128.load offset=16 (local.get $at)) (local.get $wB)) (local.get $div)))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $each4)))
    ;; The last points of the range, one by one.
    (block $done1b
      (loop $each1b
        (br_if $done1b (i32.ge_s (local.get $j) (local.get $to)))
        (local.set $a (call $kaiser_a (local.get $j) (local.get $span) (local.get $b2)))
        (local.set $n (call $kaiser_n (local.get $a) (local.get $n) (local.get $lim)))
        (local.set $m (local.get $n))
        (local.set $w (f64.load (i32.add (local.get $terms) (i32.shl (local.get $m) (i32.const 3)))))
        (block $h
          (loop $horner
            (br_if $h (i32.le_s (local.get $m) (i32.const 0)))
            (local.set $m (i32.sub (local.get $m) (i32.const 1)))
            (local.set $w (f64.add (f64.mul (local.get $w) (local.get $a))
              (f64.load (i32.add (local.get $terms) (i32.shl (local.get $m) (i32.const 3))))))
            (br $horner)))
        (local.set $at (i32.add (local.get $dst) (i32.shl (local.get $j) (i32.const 3))))
        (f64.store (local.get $at) (f64.div (f64.mul (f64.load (local.get $at)) (local.get $w)) (local.get $i0b)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $each1b)))
    (if (i32.ge_s (local.get $to) (local.get $span))
      (then (f64.store (i32.add (local.get $dst) (i32.shl (local.get $span) (i32.const 3))) (f64.const 0)))))

  ;; a = b2 * (1 - u * u), u = j / span: the window's series variable at point j (see kaiser_proto).
  (func $kaiser_a (param $j i32) (param $span i32) (param $b2 f64) (result f64)
    (local $u f64)
    (local.set $u (f64.div (f64.convert_i32_s (local.get $j)) (f64.convert_i32_s (local.get $span))))
    (f64.mul (local.get $b2) (f64.sub (f64.const 1) (f64.mul (local.get $u) (local.get $u)))))

  ;; The term a point with series variable $a needs: the smallest n with a <= limit[n] (the limits at
  ;; $lim, increasing), searched from $n: down while the term below suffices, up while this one does
  ;; not (a falls as j grows, so from the previous point's n it only steps down).
  (func $kaiser_n (param $a f64) (param $n i32) (param $lim i32) (result i32)
    (block $dn
      (loop $down
        (br_if $dn (i32.le_s (local.get $n) (i32.const 0)))
        (br_if $dn (f64.gt (local.get $a)
          (f64.load (i32.add (local.get $lim) (i32.shl (i32.sub (local.get $n) (i32.const 1)) (i32.const 3))))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $down)))
    (block $up
      (loop $upl
        (br_if $up (i32.eqz (f64.gt (local.get $a)
          (f64.load (i32.add (local.get $lim) (i32.shl (local.get $n) (i32.const 3)))))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $upl)))
    (local.get $n))

  ;; A stage's coefficient table from its prototype (float64 at $proto, span + 1 points): rows x taps
  ;; float32 at $dst, tap k of row r = h(|r + (half - 1 - k) * d|) (0 from span on), each row divided
  ;; by its sum (float64, in tap order) and rounded to float32. $row: scratch for taps float64.
  ;; The same operations in the same order as kaiserRows in polyphase.ts.
  (func (export "kaiser_rows")
    (param $proto i32) (param $span i32) (param $rows i32) (param $taps i32) (param $half i32) (param $d i32)
    (param $row i32) (param $dst i32)
    (local $r i32) (local $k i32) (local $j i32) (local $v f64) (local $sum f64)
    (block $rdone
      (loop $rloop
        (br_if $rdone (i32.ge_s (local.get $r) (local.get $rows)))
        (local.set $sum (f64.const 0))
        (local.set $k (i32.const 0))
        (block $kdone
          (loop $kloop
            (br_if $kdone (i32.ge_s (local.get $k) (local.get $taps)))
            (local.set $j (i32.add (local.get $r)
              (i32.mul (i32.sub (i32.sub (local.get $half) (i32.const 1)) (local.get $k)) (local.get $d))))
            (if (i32.lt_s (local.get $j) (i32.const 0))
              (then (local.set $j (i32.sub (i32.const 0) (local.get $j)))))
            (local.set $v (f64.const 0))
            (if (i32.lt_s (local.get $j) (local.get $span))
              (then (local.set $v (f64.load (i32.add (local.get $proto) (i32.shl (local.get $j) (i32.const 3)))))))
            (f64.store (i32.add (local.get $row) (i32.shl (local.get $k) (i32.const 3))) (local.get $v))
            (local.set $sum (f64.add (local.get $sum) (local.get $v)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $kloop)))
        (local.set $k (i32.const 0))
        (block $ndone
          (loop $nloop
            (br_if $ndone (i32.ge_s (local.get $k) (local.get $taps)))
            (f32.store (local.get $dst)
              (f32.demote_f64 (f64.div (f64.load (i32.add (local.get $row) (i32.shl (local.get $k) (i32.const 3))))
                (local.get $sum))))
            (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $nloop)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rloop))))
)
