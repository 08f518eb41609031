// Training-mode batch norm + ReLU, forward and backward, and the small vector updates of a train
// step, for the tfjs wasm backend. Same memory contract as dense.ts: pointers are byte offsets of
// tfjs tensors (float32, row-major); only the given outputs and scratch are written.
// The math is @bnmlp/reference's; see Note [BN backward through batch statistics] in
// packages/reference/src/batch-norm.ts. Sums over the batch accumulate in float64 (scratch).
// These tensors are small (batch × width), so the loops are scalar: what they save is the
// ~20 separate tfjs kernels per layer they replace.

/**
 * s[n×d] → batch mean and biased variance (two passes), invStd = 1/sqrt(var + eps),
 * normalized = (s − mean)·invStd, pre = γ·normalized + β (gamma/beta = 0: absent), relu = max(pre, 0).
 * scratch: d float64.
 */
export function batchNormReluForward(
  s: usize, gamma: usize, beta: usize, mean: usize, variance: usize, invStd: usize,
  normalized: usize, pre: usize, relu: usize, scratch: usize, n: i32, d: i32, eps: f32,
): void {
  const row = <usize>d << 2;
  for (let j = 0; j < d; j++) store<f64>(scratch + (<usize>j << 3), 0);
  for (let i = 0; i < n; i++) {
    const si = s + <usize>i * row;
    for (let j = 0; j < d; j++) {
      const acc = scratch + (<usize>j << 3);
      store<f64>(acc, load<f64>(acc) + <f64>load<f32>(si + (<usize>j << 2)));
    }
  }
  for (let j = 0; j < d; j++) {
    const acc = scratch + (<usize>j << 3);
    store<f32>(mean + (<usize>j << 2), <f32>(load<f64>(acc) / <f64>n));
    store<f64>(acc, 0);
  }
  for (let i = 0; i < n; i++) {
    const si = s + <usize>i * row;
    for (let j = 0; j < d; j++) {
      const acc = scratch + (<usize>j << 3);
      const c = <f64>load<f32>(si + (<usize>j << 2)) - <f64>load<f32>(mean + (<usize>j << 2));
      store<f64>(acc, load<f64>(acc) + c * c);
    }
  }
  for (let j = 0; j < d; j++) {
    const v = <f32>(load<f64>(scratch + (<usize>j << 3)) / <f64>n);
    store<f32>(variance + (<usize>j << 2), v);
    store<f32>(invStd + (<usize>j << 2), <f32>1 / Mathf.sqrt(v + eps));
  }
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = 0; j < d; j++) {
      const e = off + (<usize>j << 2);
      const jj = <usize>j << 2;
      const x = (load<f32>(s + e) - load<f32>(mean + jj)) * load<f32>(invStd + jj);
      let p = x;
      if (gamma != 0) p *= load<f32>(gamma + jj);
      if (beta != 0) p += load<f32>(beta + jj);
      store<f32>(normalized + e, x);
      store<f32>(pre + e, p);
      store<f32>(relu + e, p > 0 ? p : 0);
    }
  }
}

/**
 * Backward through ReLU and training-mode BN. gOut[n×d] = ∂J/∂relu; with the mask pre > 0,
 * gm = ∂J/∂pre. dGamma = Σ gm·ŝ, dBeta = Σ gm (written when the pointer is not 0), and
 * gS = ∂J/∂s = invStd·(ĝ − mean(ĝ) − ŝ·mean(ĝ·ŝ)) with ĝ = γ·gm.
 * scratch: 2·d float64.
 */
export function batchNormReluBackward(
  gOut: usize, pre: usize, normalized: usize, invStd: usize, gamma: usize,
  dGamma: usize, dBeta: usize, gS: usize, scratch: usize, n: i32, d: i32,
): void {
  const row = <usize>d << 2;
  const sumG = scratch;
  const sumGX = scratch + (<usize>d << 3);
  for (let j = 0; j < d; j++) {
    store<f64>(sumG + (<usize>j << 3), 0);
    store<f64>(sumGX + (<usize>j << 3), 0);
  }
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = 0; j < d; j++) {
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
  }
  for (let i = 0; i < n; i++) {
    const off = <usize>i * row;
    for (let j = 0; j < d; j++) {
      const e = off + (<usize>j << 2);
      const a = <usize>j << 3;
      const jj = <usize>j << 2;
      const scale: f64 = gamma != 0 ? <f64>load<f32>(gamma + jj) : 1;
      const g = load<f32>(pre + e) > 0 ? <f64>load<f32>(gOut + e) : 0;
      const meanGHat = scale * load<f64>(sumG + a) / <f64>n;
      const meanGHatX = scale * load<f64>(sumGX + a) / <f64>n;
      const x = <f64>load<f32>(normalized + e);
      store<f32>(gS + e, <f32>(<f64>load<f32>(invStd + jj) * (scale * g - meanGHat - x * meanGHatX)));
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
