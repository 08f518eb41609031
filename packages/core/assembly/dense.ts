// Dense-layer kernels for the tfjs wasm backend (AssemblyScript, wasm SIMD-128).
//
// They run inside the tfjs wasm module's own memory (imported), so every pointer below is a
// byte offset of a tfjs tensor's data: no copies in or out. The module has no data segments,
// no globals in memory and no allocator: it only reads and writes the buffers it is given.
// All matrices are row-major float32.

// a·b + c. Built twice (scripts/build-wasm.mjs): with relaxed SIMD this is one f32x4.relaxed_madd
// (an FMA on x86 with FMA3, else mul + add), without it a plain mul then add.
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

/**
 * out[m×n] = a[m×k] · b[k×n] + bias[n] (bias = 0: no bias).
 * Register block: 4 rows of a × 8 columns of b (8 accumulators). The last column block starts
 * at n − 8 and overlaps the previous one, so n need not be a multiple of 8 (the overlap is
 * written twice with the same value).
 */
export function denseForward(a: usize, b: usize, bias: usize, out: usize, m: i32, k: i32, n: i32): void {
  denseForwardStrided(a, b, bias, out, m, k, n, n);
}

/**
 * denseForward with rows of b and out `stride` ≥ n floats apart. A stride that is a multiple of 4
 * keeps every 16-byte load of b aligned: with n = 50 (rows 200 bytes apart) misaligned loads cost
 * about a quarter of the time. Every entry is the same sum as with stride n.
 */
export function denseForwardStrided(a: usize, b: usize, bias: usize, out: usize, m: i32, k: i32, n: i32, stride: i32): void {
  if (n < 8) {
    denseForwardScalar(a, b, bias, out, m, k, n, stride);
    return;
  }
  const rowA = <usize>k << 2;
  const rowB = <usize>stride << 2;
  let i = 0;
  for (; i + 4 <= m; i += 4) {
    const a0 = a + <usize>i * rowA;
    const a1 = a0 + rowA;
    const a2 = a1 + rowA;
    const a3 = a2 + rowA;
    const o0 = out + <usize>i * rowB;
    for (let j = 0; j < n; j += 8) {
      const col = <usize>min(j, n - 8) << 2;
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
      let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
      let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
      let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
      let pb = b + col;
      for (let p = 0; p < k; p++) {
        const b0 = v128.load(pb);
        const b1 = v128.load(pb, 16);
        const off = <usize>p << 2;
        let x = v128.load32_splat(a0 + off);
        c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
        x = v128.load32_splat(a1 + off);
        c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
        x = v128.load32_splat(a2 + off);
        c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
        x = v128.load32_splat(a3 + off);
        c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
        pb += rowB;
      }
      if (bias != 0) {
        const s0 = v128.load(bias + col);
        const s1 = v128.load(bias + col, 16);
        c00 = f32x4.add(c00, s0); c01 = f32x4.add(c01, s1);
        c10 = f32x4.add(c10, s0); c11 = f32x4.add(c11, s1);
        c20 = f32x4.add(c20, s0); c21 = f32x4.add(c21, s1);
        c30 = f32x4.add(c30, s0); c31 = f32x4.add(c31, s1);
      }
      let po = o0 + col;
      v128.store(po, c00); v128.store(po, c01, 16); po += rowB;
      v128.store(po, c10); v128.store(po, c11, 16); po += rowB;
      v128.store(po, c20); v128.store(po, c21, 16); po += rowB;
      v128.store(po, c30); v128.store(po, c31, 16);
    }
  }
  for (; i < m; i++) {
    const a0 = a + <usize>i * rowA;
    const o0 = out + <usize>i * rowB;
    for (let j = 0; j < n; j += 8) {
      const col = <usize>min(j, n - 8) << 2;
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
      let pb = b + col;
      for (let p = 0; p < k; p++) {
        const x = v128.load32_splat(a0 + (<usize>p << 2));
        c00 = madd(x, v128.load(pb), c00);
        c01 = madd(x, v128.load(pb, 16), c01);
        pb += rowB;
      }
      if (bias != 0) {
        c00 = f32x4.add(c00, v128.load(bias + col));
        c01 = f32x4.add(c01, v128.load(bias + col, 16));
      }
      v128.store(o0 + col, c00);
      v128.store(o0 + col, c01, 16);
    }
  }
}

function denseForwardScalar(a: usize, b: usize, bias: usize, out: usize, m: i32, k: i32, n: i32, stride: i32): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s: f32 = 0;
      for (let p = 0; p < k; p++) {
        s += load<f32>(a + ((<usize>i * k + p) << 2)) * load<f32>(b + ((<usize>p * stride + j) << 2));
      }
      if (bias != 0) s += load<f32>(bias + (<usize>j << 2));
      store<f32>(out + ((<usize>i * stride + j) << 2), s);
    }
  }
}

/** Copies `rows` rows of `cols` floats from src (rows srcStride floats apart) to dst (dstStride apart). */
export function copyRows(src: usize, srcStride: i32, dst: usize, dstStride: i32, rows: i32, cols: i32): void {
  const bytes = <usize>cols << 2;
  for (let i = 0; i < rows; i++) memory.copy(dst + ((<usize>i * dstStride) << 2), src + ((<usize>i * srcStride) << 2), bytes);
}

/**
 * The weight gradient of a dense layer, dW[k×n] = a[m×k]ᵀ · g[m×n] + decay·w, read straight
 * from a and g (no transpose). With `fused` = 1 it is not stored: the momentum step is applied
 * instead, v' = ρ·v + η·dW and w' = w − v', written to outV and outW. With `fused` = 0, dW goes
 * to outW (v and outV unused).
 * Only rows [rowBegin, rowEnd) of dW are computed and written (a thread's part; 0, k: all).
 * Every entry is the same sum in the same order whatever the range, so a split across threads
 * gives the bits of one call over all rows.
 * Register block: 4 rows of dW (4 consecutive columns of a, one v128 load) × 8 columns.
 */
export function denseWeightStep(
  a: usize, g: usize, w: usize, v: usize, outW: usize, outV: usize, scratch: usize,
  m: i32, k: i32, n: i32, decay: f32, learningRate: f32, momentum: f32, fused: i32, rowBegin: i32, rowEnd: i32,
): void {
  if (n < 8) {
    denseWeightStepScalar(a, g, w, v, outW, outV, m, k, n, decay, learningRate, momentum, fused, rowBegin, rowEnd);
    return;
  }
  const rowA = <usize>k << 2;
  const rowG = <usize>n << 2;
  const decayV = f32x4.splat(decay);
  const lrV = f32x4.splat(learningRate);
  const rhoV = f32x4.splat(momentum);
  let p = rowBegin;
  // Columns of a are read down the rows, rowA bytes apart: with rows of 3072 floats (12 KiB) all
  // of them fall in one L1 set. So 16 columns at a time (one cache line per row) are first copied
  // to `scratch` (m × 16 floats, contiguous) and the 4 × 8 blocks read from there.
  if (scratch != 0) {
    for (; p + 16 <= rowEnd; p += 16) {
      let src = a + (<usize>p << 2);
      let dst = scratch;
      for (let i = 0; i < m; i++) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
        v128.store(dst, v128.load(src, 32), 32);
        v128.store(dst, v128.load(src, 48), 48);
        src += rowA;
        dst += 64;
      }
      for (let q = 0; q < 16; q += 4) {
        weightBlock4(scratch + (<usize>q << 2), 64, g, rowG, w, v, outW, outV, <usize>(p + q) * rowG, m, n, decayV, lrV, rhoV, fused);
      }
    }
  }
  for (; p + 4 <= rowEnd; p += 4) {
    weightBlock4(a + (<usize>p << 2), rowA, g, rowG, w, v, outW, outV, <usize>p * rowG, m, n, decayV, lrV, rhoV, fused);
  }
  for (; p < rowEnd; p++) {
    for (let j = 0; j < n; j += 8) {
      const col = <usize>min(j, n - 8) << 2;
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
      let pa = a + (<usize>p << 2);
      let pg = g + col;
      for (let i = 0; i < m; i++) {
        const x = v128.load32_splat(pa);
        c00 = madd(x, v128.load(pg), c00);
        c01 = madd(x, v128.load(pg, 16), c01);
        pa += rowA;
        pg += rowG;
      }
      finishWeightPair(c00, c01, w, v, outW, outV, <usize>p * rowG + col, decayV, lrV, rhoV, fused);
    }
  }
}

/** Rows p..p+3 of dW (columns p..p+3 of a, given as `a` with row stride `strideA`), all columns. */
// @ts-ignore: decorator
@inline function weightBlock4(
  a: usize, strideA: usize, g: usize, rowG: usize, w: usize, v: usize, outW: usize, outV: usize, rowOff: usize,
  m: i32, n: i32, decayV: v128, lrV: v128, rhoV: v128, fused: i32,
): void {
  for (let j = 0; j < n; j += 8) {
    const col = <usize>min(j, n - 8) << 2;
    let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
    let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
    let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
    let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
    let pa = a;
    let pg = g + col;
    for (let i = 0; i < m; i++) {
      const g0 = v128.load(pg);
      const g1 = v128.load(pg, 16);
      // Broadcast loads rather than one load and four shuffles: shuffles share a port with FMA.
      let x = v128.load32_splat(pa);
      c00 = madd(x, g0, c00); c01 = madd(x, g1, c01);
      x = v128.load32_splat(pa, 4);
      c10 = madd(x, g0, c10); c11 = madd(x, g1, c11);
      x = v128.load32_splat(pa, 8);
      c20 = madd(x, g0, c20); c21 = madd(x, g1, c21);
      x = v128.load32_splat(pa, 12);
      c30 = madd(x, g0, c30); c31 = madd(x, g1, c31);
      pa += strideA;
      pg += rowG;
    }
    const base = rowOff + col;
    finishWeightPair(c00, c01, w, v, outW, outV, base, decayV, lrV, rhoV, fused);
    finishWeightPair(c10, c11, w, v, outW, outV, base + rowG, decayV, lrV, rhoV, fused);
    finishWeightPair(c20, c21, w, v, outW, outV, base + 2 * rowG, decayV, lrV, rhoV, fused);
    finishWeightPair(c30, c31, w, v, outW, outV, base + 3 * rowG, decayV, lrV, rhoV, fused);
  }
}

// @ts-ignore: decorator
@inline function finishWeightPair(
  c0: v128, c1: v128, w: usize, v: usize, outW: usize, outV: usize, off: usize,
  decay: v128, lr: v128, rho: v128, fused: i32,
): void {
  const w0 = v128.load(w + off);
  const w1 = v128.load(w + off, 16);
  const d0 = madd(decay, w0, c0);
  const d1 = madd(decay, w1, c1);
  if (fused) {
    const v0 = madd(lr, d0, f32x4.mul(rho, v128.load(v + off)));
    const v1 = madd(lr, d1, f32x4.mul(rho, v128.load(v + off, 16)));
    v128.store(outV + off, v0);
    v128.store(outV + off, v1, 16);
    v128.store(outW + off, f32x4.sub(w0, v0));
    v128.store(outW + off, f32x4.sub(w1, v1), 16);
  } else {
    v128.store(outW + off, d0);
    v128.store(outW + off, d1, 16);
  }
}

function denseWeightStepScalar(
  a: usize, g: usize, w: usize, v: usize, outW: usize, outV: usize,
  m: i32, k: i32, n: i32, decay: f32, learningRate: f32, momentum: f32, fused: i32, rowBegin: i32, rowEnd: i32,
): void {
  for (let p = rowBegin; p < rowEnd; p++) {
    for (let j = 0; j < n; j++) {
      let s: f32 = 0;
      for (let i = 0; i < m; i++) {
        s += load<f32>(a + ((<usize>i * k + p) << 2)) * load<f32>(g + ((<usize>i * n + j) << 2));
      }
      const off = (<usize>p * n + j) << 2;
      const d = s + decay * load<f32>(w + off);
      if (fused) {
        const nv = momentum * load<f32>(v + off) + learningRate * d;
        store<f32>(outV + off, nv);
        store<f32>(outW + off, load<f32>(w + off) - nv);
      } else {
        store<f32>(outW + off, d);
      }
    }
  }
}
