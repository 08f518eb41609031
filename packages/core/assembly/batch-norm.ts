// Training-mode batch norm + ReLU, forward and backward, and the small vector updates of a train
// step, for the tfjs wasm backend. Same memory contract as dense.ts: pointers are byte offsets of
// tfjs tensors (float32, row-major); only the given outputs and scratch are written.
// The math is @bnmlp/reference's; see Note [BN backward through batch statistics] in
// packages/reference/src/batch-norm.ts. Sums over the batch accumulate in float64 (scratch).
// These tensors are small (batch × width), so the loops are scalar: what they save is the
// ~20 separate tfjs kernels per layer they replace.

// Features run 4 at a time in SIMD (float64 sums as two f64x2 per 4 features, kept in registers
// while the loop walks down the batch), the last d mod 4 in the scalar loops. Both do the same
// operations in the same order per entry, so an entry's value does not depend on which ran it.

/** The float64 values of lanes 0, 1 (lo) and 2, 3 (hi) of an f32x4. */
// @ts-ignore: decorator
@inline function lo(x: v128): v128 { return f64x2.promote_low_f32x4(x); }
// @ts-ignore: decorator
@inline function hi(x: v128): v128 { return f64x2.promote_low_f32x4(v128.shuffle<f32>(x, x, 2, 3, 2, 3)); }
/** f32x4 of two f64x2 (each lane rounded once). */
// @ts-ignore: decorator
@inline function demote(a: v128, b: v128): v128 {
  const x = f32x4.demote_f64x2_zero(a);
  const y = f32x4.demote_f64x2_zero(b);
  return v128.shuffle<f32>(x, y, 0, 1, 4, 5);
}

/** (s − mean)·invStd, then γ· and +β (gamma/beta = 0: absent), for 4 features at jj: the op-by-op forward's order. */
// @ts-ignore: decorator
@inline function normalize4(s: usize, mean: usize, invStd: usize, jj: usize): v128 {
  return f32x4.mul(f32x4.sub(v128.load(s), v128.load(mean + jj)), v128.load(invStd + jj));
}
// @ts-ignore: decorator
@inline function scaleShift4(x: v128, gamma: usize, beta: usize, jj: usize): v128 {
  let p = x;
  if (gamma != 0) p = f32x4.mul(p, v128.load(gamma + jj));
  if (beta != 0) p = f32x4.add(p, v128.load(beta + jj));
  return p;
}
// @ts-ignore: decorator
@inline function normalize1(s: usize, mean: usize, invStd: usize, jj: usize): f32 {
  return (load<f32>(s) - load<f32>(mean + jj)) * load<f32>(invStd + jj);
}
// @ts-ignore: decorator
@inline function scaleShift1(x: f32, gamma: usize, beta: usize, jj: usize): f32 {
  let p = x;
  if (gamma != 0) p *= load<f32>(gamma + jj);
  if (beta != 0) p += load<f32>(beta + jj);
  return p;
}

/** tf.relu's ReLU, x <= 0 ? 0 : x: −0 becomes 0 and NaN passes (so a NaN input still shows in the loss). */
// @ts-ignore: decorator
@inline function relu4(p: v128): v128 {
  return v128.bitselect(f32x4.splat(0), p, f32x4.le(p, f32x4.splat(0)));
}
// @ts-ignore: decorator
@inline function relu1(p: f32): f32 {
  return p <= 0 ? 0 : p;
}

/**
 * s[n×d] → batch mean and biased variance (two passes), invStd = 1/sqrt(var + eps),
 * normalized = (s − mean)·invStd, pre = γ·normalized + β (gamma/beta = 0: absent), relu = relu1(pre).
 * scratch: d float64.
 */
export function batchNormReluForward(
  s: usize, gamma: usize, beta: usize, mean: usize, variance: usize, invStd: usize,
  normalized: usize, pre: usize, relu: usize, scratch: usize, n: i32, d: i32, eps: f32,
): void {
  const row = <usize>d << 2;
  const d4 = d & ~3;
  const count = f64x2.splat(<f64>n);
  for (let j = 0; j < d4; j += 4) {
    const jj = <usize>j << 2;
    let a0 = f64x2.splat(0), a1 = f64x2.splat(0);
    let p = s + jj;
    for (let i = 0; i < n; i++) {
      const x = v128.load(p);
      a0 = f64x2.add(a0, lo(x));
      a1 = f64x2.add(a1, hi(x));
      p += row;
    }
    const m = demote(f64x2.div(a0, count), f64x2.div(a1, count));
    v128.store(mean + jj, m);
    const m0 = lo(m), m1 = hi(m);
    a0 = f64x2.splat(0);
    a1 = f64x2.splat(0);
    p = s + jj;
    for (let i = 0; i < n; i++) {
      const x = v128.load(p);
      const c0 = f64x2.sub(lo(x), m0);
      const c1 = f64x2.sub(hi(x), m1);
      a0 = f64x2.add(a0, f64x2.mul(c0, c0));
      a1 = f64x2.add(a1, f64x2.mul(c1, c1));
      p += row;
    }
    const v = demote(f64x2.div(a0, count), f64x2.div(a1, count));
    v128.store(variance + jj, v);
    v128.store(invStd + jj, f32x4.div(f32x4.splat(1), f32x4.sqrt(f32x4.add(v, f32x4.splat(eps)))));
  }
  batchStatisticsScalar(s, mean, variance, invStd, scratch, n, d, d4, eps);
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = 0; j < d4; j += 4) {
      const e = off + (<usize>j << 2);
      const jj = <usize>j << 2;
      const x = normalize4(s + e, mean, invStd, jj);
      const p = scaleShift4(x, gamma, beta, jj);
      v128.store(normalized + e, x);
      v128.store(pre + e, p);
      v128.store(relu + e, relu4(p));
    }
    for (let j = d4; j < d; j++) {
      const e = off + (<usize>j << 2);
      const jj = <usize>j << 2;
      const x = normalize1(s + e, mean, invStd, jj);
      const p = scaleShift1(x, gamma, beta, jj);
      store<f32>(normalized + e, x);
      store<f32>(pre + e, p);
      store<f32>(relu + e, relu1(p));
    }
  }
}

/**
 * Inference-mode BN + ReLU: relu = relu1(pre) with pre = γ·((s − mean)·invStd) + β, from the
 * running mean and invStd = 1/sqrt(running var + eps) given (gamma/beta = 0: absent). The same
 * float32 operations in the same order as the op-by-op inference forward (network.ts
 * forwardTrace), so the same bits (the ReLU is tf.relu's, see relu4).
 */
export function batchNormReluInference(s: usize, mean: usize, invStd: usize, gamma: usize, beta: usize, relu: usize, n: i32, d: i32): void {
  const row = <usize>d << 2;
  const d4 = d & ~3;
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = 0; j < d4; j += 4) {
      const e = off + (<usize>j << 2);
      const jj = <usize>j << 2;
      const p = scaleShift4(normalize4(s + e, mean, invStd, jj), gamma, beta, jj);
      v128.store(relu + e, relu4(p));
    }
    for (let j = d4; j < d; j++) {
      const e = off + (<usize>j << 2);
      const jj = <usize>j << 2;
      const p = scaleShift1(normalize1(s + e, mean, invStd, jj), gamma, beta, jj);
      store<f32>(relu + e, relu1(p));
    }
  }
}

/** Mean, variance and invStd of features [j0, d), one at a time (float64 sums in scratch). */
function batchStatisticsScalar(s: usize, mean: usize, variance: usize, invStd: usize, scratch: usize, n: i32, d: i32, j0: i32, eps: f32): void {
  const row = <usize>d << 2;
  for (let j = j0; j < d; j++) store<f64>(scratch + (<usize>j << 3), 0);
  for (let i = 0; i < n; i++) {
    const si = s + <usize>i * row;
    for (let j = j0; j < d; j++) {
      const acc = scratch + (<usize>j << 3);
      store<f64>(acc, load<f64>(acc) + <f64>load<f32>(si + (<usize>j << 2)));
    }
  }
  for (let j = j0; j < d; j++) {
    const acc = scratch + (<usize>j << 3);
    store<f32>(mean + (<usize>j << 2), <f32>(load<f64>(acc) / <f64>n));
    store<f64>(acc, 0);
  }
  for (let i = 0; i < n; i++) {
    const si = s + <usize>i * row;
    for (let j = j0; j < d; j++) {
      const acc = scratch + (<usize>j << 3);
      const c = <f64>load<f32>(si + (<usize>j << 2)) - <f64>load<f32>(mean + (<usize>j << 2));
      store<f64>(acc, load<f64>(acc) + c * c);
    }
  }
  for (let j = j0; j < d; j++) {
    const v = <f32>(load<f64>(scratch + (<usize>j << 3)) / <f64>n);
    store<f32>(variance + (<usize>j << 2), v);
    store<f32>(invStd + (<usize>j << 2), <f32>1 / Mathf.sqrt(v + eps));
  }
}

/**
 * Backward through ReLU and training-mode BN. gOut[n×d] = ∂J/∂relu; with the mask pre > 0,
 * gm = ∂J/∂pre. dGamma = Σ gm·ŝ, dBeta = Σ gm (written when the pointer is not 0), and
 * gS = ∂J/∂s = invStd·(ĝ − mean(ĝ) − ŝ·mean(ĝ·ŝ)) with ĝ = γ·gm.
 * scratch: 4·d float64 (Σ gm, Σ gm·ŝ, then γ·mean(gm) and γ·mean(gm·ŝ) per feature).
 */
export function batchNormReluBackward(
  gOut: usize, pre: usize, normalized: usize, invStd: usize, gamma: usize,
  dGamma: usize, dBeta: usize, gS: usize, scratch: usize, n: i32, d: i32,
): void {
  const row = <usize>d << 2;
  const d4 = d & ~3;
  const sumG = scratch;
  const sumGX = scratch + (<usize>d << 3);
  const meanGHatOf = scratch + (<usize>d << 4);
  const meanGHatXOf = meanGHatOf + (<usize>d << 3);
  const zero = f32x4.splat(0);
  for (let j = 0; j < d4; j += 4) {
    const jj = <usize>j << 2;
    let g0 = f64x2.splat(0), g1 = f64x2.splat(0), gx0 = f64x2.splat(0), gx1 = f64x2.splat(0);
    let off: usize = jj;
    for (let i = 0; i < n; i++) {
      const g = v128.and(v128.load(gOut + off), f32x4.gt(v128.load(pre + off), zero));
      const x = v128.load(normalized + off);
      const gl = lo(g), gh = hi(g);
      g0 = f64x2.add(g0, gl);
      g1 = f64x2.add(g1, gh);
      gx0 = f64x2.add(gx0, f64x2.mul(gl, lo(x)));
      gx1 = f64x2.add(gx1, f64x2.mul(gh, hi(x)));
      off += row;
    }
    const a = <usize>j << 3;
    v128.store(sumG + a, g0); v128.store(sumG + a, g1, 16);
    v128.store(sumGX + a, gx0); v128.store(sumGX + a, gx1, 16);
  }
  for (let j = d4; j < d; j++) {
    store<f64>(sumG + (<usize>j << 3), 0);
    store<f64>(sumGX + (<usize>j << 3), 0);
  }
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = d4; j < d; j++) {
      const e = off + (<usize>j << 2);
      const g = load<f32>(pre + e) > 0 ? <f64>load<f32>(gOut + e) : 0;
      const a = <usize>j << 3;
      store<f64>(sumG + a, load<f64>(sumG + a) + g);
      store<f64>(sumGX + a, load<f64>(sumGX + a) + g * <f64>load<f32>(normalized + e));
    }
  }
  for (let j = 0; j < d; j++) {
    const a = <usize>j << 3;
    if (dBeta != 0) store<f32>(dBeta + (<usize>j << 2), <f32>load<f64>(sumG + a));
    if (dGamma != 0) store<f32>(dGamma + (<usize>j << 2), <f32>load<f64>(sumGX + a));
    const scale: f64 = gamma != 0 ? <f64>load<f32>(gamma + (<usize>j << 2)) : 1;
    store<f64>(meanGHatOf + a, scale * load<f64>(sumG + a) / <f64>n);
    store<f64>(meanGHatXOf + a, scale * load<f64>(sumGX + a) / <f64>n);
  }
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = 0; j < d4; j += 4) {
      const e = off + (<usize>j << 2);
      const a = <usize>j << 3;
      const jj = <usize>j << 2;
      const scale = gamma != 0 ? v128.load(gamma + jj) : f32x4.splat(1);
      const g = v128.and(v128.load(gOut + e), f32x4.gt(v128.load(pre + e), zero));
      const x = v128.load(normalized + e);
      const inv = v128.load(invStd + jj);
      const r0 = f64x2.mul(lo(inv), f64x2.sub(f64x2.sub(f64x2.mul(lo(scale), lo(g)), v128.load(meanGHatOf + a)), f64x2.mul(lo(x), v128.load(meanGHatXOf + a))));
      const r1 = f64x2.mul(hi(inv), f64x2.sub(f64x2.sub(f64x2.mul(hi(scale), hi(g)), v128.load(meanGHatOf + a, 16)), f64x2.mul(hi(x), v128.load(meanGHatXOf + a, 16))));
      v128.store(gS + e, demote(r0, r1));
    }
    for (let j = d4; j < d; j++) {
      const e = off + (<usize>j << 2);
      const a = <usize>j << 3;
      const jj = <usize>j << 2;
      const scale: f64 = gamma != 0 ? <f64>load<f32>(gamma + jj) : 1;
      const g = load<f32>(pre + e) > 0 ? <f64>load<f32>(gOut + e) : 0;
      const x = <f64>load<f32>(normalized + e);
      store<f32>(gS + e, <f32>(<f64>load<f32>(invStd + jj) * (scale * g - load<f64>(meanGHatOf + a) - x * load<f64>(meanGHatXOf + a))));
    }
  }
}

/** v' = ρ·v + η·g, θ' = θ − v' over len floats (g = 0: a zero gradient). */
export function momentumStep(theta: usize, v: usize, g: usize, outTheta: usize, outV: usize, len: i32, learningRate: f32, momentum: f32): void {
  for (let i = 0; i < len; i++) {
    const e = <usize>i << 2;
    let nv = momentum * load<f32>(v + e);
    if (g != 0) nv += learningRate * load<f32>(g + e);
    store<f32>(outV + e, nv);
    store<f32>(outTheta + e, load<f32>(theta + e) - nv);
  }
}

/** out = α·a + (1 − α)·b over len floats: the BN running averages. */
export function blend(a: usize, b: usize, out: usize, len: i32, alpha: f32): void {
  const beta: f32 = 1 - alpha;
  for (let i = 0; i < len; i++) {
    const e = <usize>i << 2;
    store<f32>(out + e, alpha * load<f32>(a + e) + beta * load<f32>(b + e));
  }
}

/**
 * Σ x² over len floats of x, accumulated in float64 and returned rounded once to float32 in
 * out[0]: the L2 penalty's sum. A float32 running sum over 153,600 weights drifts by ~3e-5
 * relative; this one is the float64 sum rounded once.
 */
export function sumSquares(x: usize, out: usize, len: i32): void {
  let sum: f64 = 0;
  for (let i = 0; i < len; i++) {
    const value = <f64>load<f32>(x + (<usize>i << 2));
    sum += value * value;
  }
  store<f32>(out, <f32>sum);
}

// exp and ln of our own: the standard library's use lookup tables, which would be data segments
// written into the host's memory (see the memory contract in dense.ts). Accurate to ~1e-15
// relative, far below the float32 rounding of what is stored.

/** e^x for x ≤ 0 (the log-softmax range): 2^k · e^r with |r| ≤ ln2/2, Taylor to degree 13. */
// @ts-ignore: decorator
@inline function expNonPositive(x: f64): f64 {
  if (x < -745) return 0;
  const k = Math.floor(x * 1.4426950408889634 + 0.5);
  const r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
  let p: f64 = 1.6059043836821613e-10;
  p = p * r + 2.08767569878681e-9;
  p = p * r + 2.505210838544172e-8;
  p = p * r + 2.755731922398589e-7;
  p = p * r + 2.7557319223985893e-6;
  p = p * r + 2.48015873015873e-5;
  p = p * r + 1.984126984126984e-4;
  p = p * r + 1.388888888888889e-3;
  p = p * r + 8.333333333333333e-3;
  p = p * r + 4.1666666666666664e-2;
  p = p * r + 1.6666666666666666e-1;
  p = p * r + 0.5;
  p = p * r + 1;
  p = p * r + 1;
  // 2^k in two factors, so k down to −1074 (subnormal results) stays exact.
  const k1 = <i64>k >> 1;
  const k2 = <i64>k - k1;
  return p * reinterpret<f64>((k1 + 1023) << 52) * reinterpret<f64>((k2 + 1023) << 52);
}

/** ln s for s ≥ 1 (a sum of exponentials whose largest term is 1): s = m·2^e, m in [√½, √2), 2·atanh series. */
// @ts-ignore: decorator
@inline function lnAtLeastOne(s: f64): f64 {
  const bits = reinterpret<i64>(s);
  let e = <i32>((bits >> 52) & 0x7ff) - 1023;
  let m = reinterpret<f64>((bits & 0x000fffffffffffff) | 0x3ff0000000000000);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e += 1;
  }
  const t = (m - 1) / (m + 1);
  const t2 = t * t;
  let series: f64 = 1.0 / 23;
  for (let j = 21; j >= 1; j -= 2) series = series * t2 + 1.0 / <f64>j;
  return <f64>e * 0.6931471805599453 + 2 * t * series;
}

/**
 * The loss layer in one pass over logits z[n×c] and one-hot labels y: per row the log-sum-exp
 * lse = max + ln Σ exp(z − max) in float64, then grad = (exp(z − lse) − y) / n (∂ mean CE / ∂z) and
 * loss[0] = mean over rows of −Σ y·(z − lse) (finite for any finite logits).
 */
export function softmaxCrossEntropy(z: usize, y: usize, grad: usize, loss: usize, n: i32, c: i32): void {
  let total: f64 = 0;
  const invN: f64 = 1 / <f64>n;
  for (let i = 0; i < n; i++) {
    const row = <usize>i * c << 2;
    let max = <f64>load<f32>(z + row);
    for (let j = 1; j < c; j++) max = Math.max(max, <f64>load<f32>(z + row + (<usize>j << 2)));
    let sum: f64 = 0;
    for (let j = 0; j < c; j++) sum += expNonPositive(<f64>load<f32>(z + row + (<usize>j << 2)) - max);
    const lse = max + lnAtLeastOne(sum);
    for (let j = 0; j < c; j++) {
      const e = row + (<usize>j << 2);
      const logP = <f64>load<f32>(z + e) - lse;
      const target = <f64>load<f32>(y + e);
      total -= target * logP;
      store<f32>(grad + e, <f32>((expNonPositive(logP) - target) * invN));
    }
  }
  store<f32>(loss, <f32>(total * invN));
}
