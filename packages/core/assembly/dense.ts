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

// Blocking of denseForwardPacked: rows of a per tile, terms of the k-sum per pass, and 8-column
// panels per group. A pass reads a block of at most KC × 8·PANEL_GROUP floats of the packed W
// (64 KiB, stays in L2) for every 4 rows of a. The unblocked kernel it replaced streamed all of W
// (600 KiB at 3072 × 50, more than this machine's 512 KiB L2) from L3 for every 4 rows: 16–19
// GFLOP/s on one thread against 21–33 blocked (3072-50, 50 rows; .scratch measurements of
// 2026-12-01, noisy host). MC, KC and PANEL_GROUP were picked from 64/128/256, 128/256/384/512
// and 4/8/16 on the same host; differences between the neighbours were within its noise.
const MC = 64;
const KC = 256;
const PANEL_GROUP = 8;

/**
 * Floats the `tile` of denseForwardPacked must hold: MC rows × 8 columns of each panel in a group
 * (the partial sums), then MC × KC for the block of a packed 4 rows at a time (packRows4).
 */
export function forwardTileFloats(): i32 {
  return MC * PANEL_GROUP * 8 + MC * KC;
}

/**
 * Rows [0, rows) of a's block at `a` (row stride rowA bytes), terms [0, kLen), into `packed` 4
 * rows at a time: for each term p the 4 rows' a[·, p], 16 bytes; a last group of fewer than 4
 * rows is padded with rows of 0 (their sums are computed and dropped). The register block then
 * reads its 4 broadcasts from one address at constant offsets, instead of from 4 rows 12 KiB
 * apart (at k = 3072 all 4 fall in one L1 set), and no row takes a 1-row path. In the report
 * network's x·W this made the caller's 50-row half of a train step 0.87–0.90× as long, and
 * inference's 500-row blocks 0.91–0.93× (.scratch A/B of 2026-12-02: 5 and 3 runs, each the
 * median of 16 alternating pairs).
 */
function packRows4(a: usize, rowA: usize, packed: usize, rows: i32, kLen: i32): void {
  const k4 = kLen & ~3;
  let dst = packed;
  for (let r = 0; r < rows; r += 4) {
    // Rows past the last are read from a zero vector in place of a.
    const last = rows - r;
    for (let p = 0; p < k4; p += 4) {
      const off = <usize>p << 2;
      const at = a + <usize>r * rowA + off;
      const r0 = v128.load(at);
      const r1 = last > 1 ? v128.load(at + rowA) : f32x4.splat(0);
      const r2 = last > 2 ? v128.load(at + 2 * rowA) : f32x4.splat(0);
      const r3 = last > 3 ? v128.load(at + 3 * rowA) : f32x4.splat(0);
      const t0 = v128.shuffle<i32>(r0, r1, 0, 4, 1, 5), t1 = v128.shuffle<i32>(r2, r3, 0, 4, 1, 5);
      const t2 = v128.shuffle<i32>(r0, r1, 2, 6, 3, 7), t3 = v128.shuffle<i32>(r2, r3, 2, 6, 3, 7);
      v128.store(dst, v128.shuffle<i64>(t0, t1, 0, 2));
      v128.store(dst, v128.shuffle<i64>(t0, t1, 1, 3), 16);
      v128.store(dst, v128.shuffle<i64>(t2, t3, 0, 2), 32);
      v128.store(dst, v128.shuffle<i64>(t2, t3, 1, 3), 48);
      dst += 64;
    }
    for (let p = k4; p < kLen; p++) {
      const at = a + <usize>r * rowA + (<usize>p << 2);
      for (let i = 0; i < 4; i++) store<f32>(dst + (<usize>i << 2), i < last ? load<f32>(at + <usize>i * rowA) : 0);
      dst += 16;
    }
  }
}

/**
 * The layout denseForwardPacked reads W[k×n] in: panels of 8 columns, panel q holding rows 0..k−1
 * of columns 8q..8q+7 contiguously (k × 8 floats), columns past n as 0 (their lanes are computed
 * and dropped: any value would do, but garbage could be denormal, which x86 runs slowly). Packs rows
 * [rowBegin, rowEnd) of W (row stride n): a thread can pack the rows it just computed.
 */
export function packPanels(w: usize, packed: usize, k: i32, n: i32, rowBegin: i32, rowEnd: i32): void {
  const panels = (n + 7) >> 3;
  const full = n >> 3;
  const rowW = <usize>n << 2;
  // Panel by panel: the writes run contiguously (k × 32 bytes per panel), the reads stride down W.
  for (let q = 0; q < panels; q++) {
    let src = w + <usize>rowBegin * rowW + (<usize>q << 5);
    let dst = packed + ((<usize>q * k + rowBegin) << 5);
    if (q < full) {
      for (let row = rowBegin; row < rowEnd; row++) {
        v128.store(dst, v128.load(src));
        v128.store(dst, v128.load(src, 16), 16);
        src += rowW;
        dst += 32;
      }
    } else {
      const cols = n - (q << 3);
      for (let row = rowBegin; row < rowEnd; row++) {
        for (let c = 0; c < 8; c++) store<f32>(dst + (<usize>c << 2), c < cols ? load<f32>(src + (<usize>c << 2)) : 0);
        src += rowW;
        dst += 32;
      }
    }
  }
}

/**
 * out[m×n] = a[m×k] · W + bias[n] (bias = 0: no bias), W packed by packPanels, out row stride n.
 * `tile`: scratch of forwardTileFloats() floats, for the partial sums and the packed block of a.
 * Every entry is one sum in a fixed order: 0, then the k terms a[i,p]·W[p,j] in order of p
 * (madd), then + bias; packing a only moves its values, so it keeps every bit.
 * Partial sums wait in the tile between passes over k and are reloaded exactly, so any split of
 * the rows across threads gives the same bits (and so did the unblocked kernel this replaced).
 * Register block: 4 rows of a × 8 columns (one panel; 8 accumulators: V8 spills with more).
 * n < 8 takes the scalar path.
 */
export function denseForwardPacked(a: usize, packed: usize, bias: usize, out: usize, tile: usize, m: i32, k: i32, n: i32): void {
  if (n < 8) {
    denseForwardPackedScalar(a, packed, bias, out, m, k, n);
    return;
  }
  const panels = (n + 7) >> 3;
  const rowA = <usize>k << 2;
  const rowOut = <usize>n << 2;
  const packedA = tile + (<usize>(MC * PANEL_GROUP * 8) << 2);
  for (let i0 = 0; i0 < m; i0 += MC) {
    const rows = min(MC, m - i0);
    for (let q0 = 0; q0 < panels; q0 += PANEL_GROUP) {
      const groupPanels = min(PANEL_GROUP, panels - q0);
      const tileRow = <usize>groupPanels << 5;
      for (let k0 = 0; k0 < k; k0 += KC) {
        const kEnd = min(k, k0 + KC);
        const kLen = kEnd - k0;
        const first = k0 == 0;
        // Packed again for each group of 8 panels (n > 64 only): a read and a write of each value
        // of x per 64 multiply-adds with it, against an MC × k packed copy that would not stay in L2.
        packRows4(a + <usize>i0 * rowA + (<usize>k0 << 2), rowA, packedA, rows, kLen);
        for (let r = 0; r < rows; r += 4) {
          const pa0 = packedA + ((<usize>r * kLen) << 2);
          const paEnd = pa0 + (<usize>kLen << 4);
          for (let q = 0; q < groupPanels; q++) {
            let t = tile + <usize>r * tileRow + (<usize>q << 5);
            let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
            let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
            let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
            let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
            if (!first) {
              c00 = v128.load(t); c01 = v128.load(t, 16); t += tileRow;
              c10 = v128.load(t); c11 = v128.load(t, 16); t += tileRow;
              c20 = v128.load(t); c21 = v128.load(t, 16); t += tileRow;
              c30 = v128.load(t); c31 = v128.load(t, 16);
            }
            let pb = packed + ((<usize>(q0 + q) * k + k0) << 5);
            for (let pa = pa0; pa < paEnd; pa += 16) {
              const b0 = v128.load(pb);
              const b1 = v128.load(pb, 16);
              let x = v128.load32_splat(pa);
              c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
              x = v128.load32_splat(pa, 4);
              c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
              x = v128.load32_splat(pa, 8);
              c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
              x = v128.load32_splat(pa, 12);
              c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
              pb += 32;
            }
            t = tile + <usize>r * tileRow + (<usize>q << 5);
            v128.store(t, c00); v128.store(t, c01, 16); t += tileRow;
            v128.store(t, c10); v128.store(t, c11, 16); t += tileRow;
            v128.store(t, c20); v128.store(t, c21, 16); t += tileRow;
            v128.store(t, c30); v128.store(t, c31, 16);
          }
        }
      }
      // The tile's sums + bias into out, only the columns below n.
      const col0 = q0 << 3;
      const cols = min(groupPanels << 3, n - col0);
      for (let r = 0; r < rows; r++) {
        const t = tile + <usize>r * tileRow;
        const o = out + <usize>(i0 + r) * rowOut + (<usize>col0 << 2);
        const bs = bias + (<usize>col0 << 2);
        let j = 0;
        for (; j + 4 <= cols; j += 4) {
          const off = <usize>j << 2;
          let s = v128.load(t + off);
          if (bias != 0) s = f32x4.add(s, v128.load(bs + off));
          v128.store(o + off, s);
        }
        for (; j < cols; j++) {
          const off = <usize>j << 2;
          let s = load<f32>(t + off);
          if (bias != 0) s += load<f32>(bs + off);
          store<f32>(o + off, s);
        }
      }
    }
  }
}

/** n < 8 (one panel): plain float32 sums, s += a·w in order (a multiply, then an add), then + bias. */
function denseForwardPackedScalar(a: usize, packed: usize, bias: usize, out: usize, m: i32, k: i32, n: i32): void {
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s: f32 = 0;
      for (let p = 0; p < k; p++) {
        s += load<f32>(a + ((<usize>i * k + p) << 2)) * load<f32>(packed + ((<usize>p << 5) + (<usize>j << 2)));
      }
      if (bias != 0) s += load<f32>(bias + (<usize>j << 2));
      store<f32>(out + ((<usize>i * n + j) << 2), s);
    }
  }
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
 * `packed` ≠ 0: rows [rowBegin, rowEnd) of outW are also written packed there (the layout of
 * packPanels, for the next x·W), from the registers as each block is stored: packPanels after
 * the step re-read outW once per panel, 0.1–0.14 ms per 1,536 × 50 rows just written
 * (.scratch measurement of 2026-12-01).
 */
export function denseWeightStep(
  a: usize, g: usize, w: usize, v: usize, outW: usize, outV: usize, scratch: usize,
  m: i32, k: i32, n: i32, decay: f32, learningRate: f32, momentum: f32, fused: i32, rowBegin: i32, rowEnd: i32, packed: usize,
): void {
  if (n < 8) {
    denseWeightStepScalar(a, g, w, v, outW, outV, m, k, n, decay, learningRate, momentum, fused, rowBegin, rowEnd);
    if (packed != 0) packPanels(outW, packed, k, n, rowBegin, rowEnd);
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
        weightBlock4(scratch + (<usize>q << 2), 64, g, rowG, w, v, outW, outV, packed, p + q, m, k, n, decayV, lrV, rhoV, fused);
      }
    }
  }
  for (; p + 4 <= rowEnd; p += 4) {
    weightBlock4(a + (<usize>p << 2), rowA, g, rowG, w, v, outW, outV, packed, p, m, k, n, decayV, lrV, rhoV, fused);
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
      const panel = packed != 0 && j + 8 <= n ? packed + ((<usize>(j >> 3) * k + p) << 5) : 0;
      finishWeightPair(c00, c01, w, v, outW, outV, <usize>p * rowG + col, panel, decayV, lrV, rhoV, fused);
    }
    if (packed != 0 && (n & 7) != 0) packLastPanel(outW, packed, p, k, n);
  }
}

/**
 * Row `row` of W's last, partial panel (columns 8·⌊n/8⌋..n − 1, then 0s) into `packed`, read from
 * outW: the block that computed those columns started at n − 8, not at the panel's edge.
 */
// @ts-ignore: decorator
@inline function packLastPanel(outW: usize, packed: usize, row: i32, k: i32, n: i32): void {
  const first = n & ~7;
  const cols = n - first;
  const src = outW + ((<usize>row * n + first) << 2);
  const dst = packed + ((<usize>(first >> 3) * k + row) << 5);
  for (let c = 0; c < 8; c++) store<f32>(dst + (<usize>c << 2), c < cols ? load<f32>(src + (<usize>c << 2)) : 0);
}

/**
 * Rows p..p+3 of dW (columns p..p+3 of a, given as `a` with row stride `strideA`), all columns;
 * with `packed` ≠ 0, also those rows of outW packed (see denseWeightStep).
 */
// @ts-ignore: decorator
@inline function weightBlock4(
  a: usize, strideA: usize, g: usize, rowG: usize, w: usize, v: usize, outW: usize, outV: usize, packed: usize, p: i32,
  m: i32, k: i32, n: i32, decayV: v128, lrV: v128, rhoV: v128, fused: i32,
): void {
  const rowOff = <usize>p * rowG;
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
    // A whole panel's columns: its 4 rows are 4 consecutive 32-byte pieces of the packed panel.
    const panel = packed != 0 && j + 8 <= n ? packed + ((<usize>(j >> 3) * k + p) << 5) : 0;
    finishWeightPair(c00, c01, w, v, outW, outV, base, panel, decayV, lrV, rhoV, fused);
    finishWeightPair(c10, c11, w, v, outW, outV, base + rowG, panel == 0 ? 0 : panel + 32, decayV, lrV, rhoV, fused);
    finishWeightPair(c20, c21, w, v, outW, outV, base + 2 * rowG, panel == 0 ? 0 : panel + 64, decayV, lrV, rhoV, fused);
    finishWeightPair(c30, c31, w, v, outW, outV, base + 3 * rowG, panel == 0 ? 0 : panel + 96, decayV, lrV, rhoV, fused);
  }
  if (packed != 0 && (n & 7) != 0) {
    for (let r = 0; r < 4; r++) packLastPanel(outW, packed, p + r, k, n);
  }
}

/** Entries off..off+7 of the step (see denseWeightStep); the new W also to `panel` when ≠ 0. */
// @ts-ignore: decorator
@inline function finishWeightPair(
  c0: v128, c1: v128, w: usize, v: usize, outW: usize, outV: usize, off: usize, panel: usize,
  decay: v128, lr: v128, rho: v128, fused: i32,
): void {
  const w0 = v128.load(w + off);
  const w1 = v128.load(w + off, 16);
  const d0 = madd(decay, w0, c0);
  const d1 = madd(decay, w1, c1);
  if (fused) {
    const v0 = madd(lr, d0, f32x4.mul(rho, v128.load(v + off)));
    const v1 = madd(lr, d1, f32x4.mul(rho, v128.load(v + off, 16)));
    const nw0 = f32x4.sub(w0, v0);
    const nw1 = f32x4.sub(w1, v1);
    v128.store(outV + off, v0);
    v128.store(outV + off, v1, 16);
    v128.store(outW + off, nw0);
    v128.store(outW + off, nw1, 16);
    if (panel != 0) {
      v128.store(panel, nw0);
      v128.store(panel, nw1, 16);
    }
  } else {
    v128.store(outW + off, d0);
    v128.store(outW + off, d1, 16);
    if (panel != 0) {
      v128.store(panel, d0);
      v128.store(panel, d1, 16);
    }
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
