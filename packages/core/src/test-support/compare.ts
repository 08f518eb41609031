import { expect } from 'vitest';
import * as ref from '@bnmlp/reference';

/*
Tolerances: float32 core against the float64 reference, in one place.

float32's unit roundoff is u = 2⁻²⁴ ≈ 6e-8. Every comparison allows
    |core − reference| ≤ tolerance × scale + ROUNDING_BOUND_FACTOR · u · bound
where scale is the reference tensor's largest |entry| and bound comes from a running-error
analysis: the same forward and backward passes repeated on magnitudes, i.e. on the sizes of the
terms float32 adds up before they cancel (roundingBounds). A computed sum Σ tᵢ of m terms is off by
at most ~m·u·Σ|tᵢ| and typically √m·u·Σ|tᵢ|.

- The relative part (forward 1e-4, gradients 2e-3 of scale) covers well-conditioned batches: there
  each layer adds ~√m·u ≈ 1e-6 (m ≤ 256), and BN's backward (ĝ − mean(ĝ) − ŝ·mean(ĝŝ)) loses a
  digit or two more. Observed: ≤ 1% of either limit; a wrong formula errs by ≳ 1e-1.
- The bound covers values that are cancellations, where float32 keeps the absolute error of the
  large terms but not their size. fast-check found each of these:
  · BN with 2 rows nearly equal in a feature: σ is tiny, ŝ = (s − μ)/σ amplifies the scores'
    rounding (probabilities off by 9e-3 with hiddenDims [26,35,61,41], batch 2);
  · a ReLU output that is a small difference of large terms (hiddenDims [58, 2], no BN);
  · BN scale invariance: a weight feeding BN through a width-1 layer has a gradient orthogonal to
    itself, ~1e-6 out of terms ~1e-1 (hiddenDims [1,1] and [1,23,…]);
  · a saturated softmax (p ≈ 1 − 1e-5 after a large step: k = 1, 2 classes, batch 2, η ≈ 0.2):
    p − y carries ~u of absolute error whatever its size, so the upstream magnitude is
    |p − y| + 1/k.
- ReLU kinks are not rounding: where a ReLU input lies within rounding of 0, float32 and float64 can
  take different sides and legitimately disagree by a whole gradient entry. Such cases are skipped
  and counted (fast-check preconditions), as the reference's gradient check skips kink entries.
*/
export const TOLERANCES = {
  forward: 1e-4,
  gradient: 2e-3,
} as const;
export const ROUNDING_BOUND_FACTOR = 4;
/** float32 unit roundoff u = 2⁻²⁴. */
export const UNIT_ROUNDOFF = 2 ** -24;

export interface Limit {
  /** Relative to the scale. */
  readonly tolerance: number;
  /** Lower bound on the scale. */
  readonly minScale?: number;
  /** Added to tolerance × scale. */
  readonly absolute?: number;
}

export interface RoundingBounds {
  /** For every entry of the logits (so of the probabilities, whose error is at most the logits'). */
  readonly logits: number;
  /** Per parameter name: for every entry of its gradient. */
  readonly gradients: Record<string, number>;
  /** Per layer: the training-mode batch statistics' error magnitudes (null without BN or in inference mode). */
  readonly batchStatistics: readonly (BatchStatisticsBounds | null)[];
}

function maxOf(a: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, a[i]);
  return max;
}

function mapEntries(m: ref.Matrix, f: (v: number, j: number, i: number) => number): ref.Matrix {
  return { rows: m.rows, cols: m.cols, data: m.data.map((v, i) => f(v, i % m.cols, i)) };
}

const absMatrix = (m: ref.Matrix): ref.Matrix => mapEntries(m, Math.abs);
const absVector = (a: Float64Array | null) => a && a.map(Math.abs);

export interface RoundingBoundsOptions {
  /**
   * Carry the forward pass's own error through every later stage (robustness.test.ts). Off by
   * default, which is what equivalence.test.ts uses: for well-conditioned batches these terms are
   * far below the relative part of the limits. With inputs offset by 1e4–1e7 (spread 0.1) the
   * forward pass itself is ill-conditioned and fast-check found three gaps in the default bounds:
   *  1. p enters the backward pass as (p − y)/n with the logits' error, not ~u: softmax's Jacobian
   *     diag(p) − ppᵀ has rows of 1-norm 2pⱼ(1 − pⱼ) ≤ ½, so |δp| ≤ ½ max|δz|, i.e. the upstream
   *     magnitude gains logits/2. Missed: ∂J/∂b2 off by 2.3e-3 against a limit of 4.3e-4
   *     ({inputDim 1, hiddenDims [1], batch 2, BN without γ/β, seed 0}, offsets {4, 16674481}).
   *  2. The batch mean μ carries the error of every row's scores, u·mean_i Tᵢ, not u·|μ|; the
   *     two differ when rows have very different term sizes (a ReLU-zeroed row next to a row with
   *     an amplified error). ŝᵢ's magnitude becomes (Tᵢ + mean T)/σ̃ + |ŝᵢ|·r with
   *  3. r = mean_i(|sᵢ − μ|(Tᵢ + mean T))/σ̃², σ̃'s relative error in units of u (through σ²,
   *     whose bound also keeps the second-order term once the error exceeds the spread);
   *     it also scales BN's backward output (÷σ̃). Missed by 2 and 3: runningMean2 off by 1.1e-2
   *     ({inputDim 3, hiddenDims [1, 1], batch 2, BN without γ/β, λ 1e-4, seed 0}, offsets {4, 910836133}).
   * Inference mode normalizes with the stored running averages (exact inputs), so 2 and 3 apply to
   * training-mode passes only.
   */
  readonly propagateForwardError?: boolean;
  /**
   * The backward pass's products with first-order error propagation (gradient-check.test.ts): for
   * a product ab, M(ab) = |a|·M(b) + M(a)·|b| + c·u·M(a)·M(b) with |a|, |b| the float64 values,
   * instead of M(a)·M(b). The coarser bound squares BN's ŝ bound in ŝ·mean(ĝ ⊙ ŝ) — (T + |μ|)/σ̃,
   * ~100× |ŝ| on a feature with σ² ~ 10ε. Measured over caseArbitrary() (equivalence.test.ts's
   * space, 1000 cases per backend): the coarser bound (this option off) exceeds the parameter's
   * largest gradient entry, i.e. the comparison is vacuous, for 18 % of the parameters; with this
   * option for 0.3–0.6 %, and the core still passes with ≤ 3 % of the limit used. On by default;
   * `false` gives the coarser bound.
   */
  readonly firstOrderProducts?: boolean;
}

/** Per BN layer (training mode): error magnitudes of the batch statistics, max over features. */
export interface BatchStatisticsBounds {
  readonly mean: number;
  readonly variance: number;
}

/** Running-error magnitudes of a reference forward pass (training or inference mode) and its backward pass. */
export function roundingBounds(net: ref.Network, forward: ref.ForwardResult, labels: ArrayLike<number>, options: RoundingBoundsOptions = {}): RoundingBounds {
  const full = options.propagateForwardError ?? false;
  // Forward on magnitudes: each layer's input, and ŝ's term magnitude (T + |μ|)/σ̃ on BN layers.
  const inputs: ref.Matrix[] = [];
  const xhats: (ref.Matrix | null)[] = [];
  const sigmaErrors: (Float64Array | null)[] = [];
  const batchStatistics: (BatchStatisticsBounds | null)[] = [];
  let m = absMatrix(forward.layers[0].input);
  let logits = m;
  net.layers.forEach((layer, l) => {
    const cache = forward.layers[l];
    inputs.push(m);
    let pre = ref.linearForward(m, absMatrix(layer.W), absVector(layer.b)!);
    let xhat: ref.Matrix | null = null;
    let sigmaError: Float64Array | null = null;
    let stats: BatchStatisticsBounds | null = null;
    if (layer.bn && cache.batchNorm) {
      const { mean, variance, normalized } = cache.batchNorm;
      const sigma = (j: number) => Math.sqrt(variance[j] + net.config.eps);
      if (forward.mode === 'train') {
        // The batch statistics' error magnitudes (items 2 and 3 of RoundingBoundsOptions).
        const d = pre.cols;
        const meanT = new Float64Array(d);
        pre.data.forEach((t, i) => (meanT[i % d] += t / pre.rows));
        const varianceError = new Float64Array(d);
        // σ² = mean((s − μ)²) with each s − μ off by eᵢ = c·u·(Tᵢ + mean T): off by mean(2|s − μ|eᵢ + eᵢ²),
        // here in units of c·u. The second-order term matters once eᵢ ≳ |s − μ| (offsets ≳ 1e6).
        const c = ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF;
        pre.data.forEach((t, i) => {
          const e = t + meanT[i % d];
          varianceError[i % d] += (2 * Math.abs(cache.scores.data[i] - mean[i % d]) * e + c * e * e) / pre.rows;
        });
        sigmaError = varianceError.map((e, j) => e / (2 * sigma(j) ** 2));
        stats = { mean: maxOf(meanT), variance: maxOf(varianceError) };
        if (full) {
          const r = sigmaError;
          xhat = mapEntries(pre, (v, j, i) => (v + meanT[j]) / sigma(j) + Math.abs(normalized.data[i]) * r[j]);
        }
      }
      xhat ??= mapEntries(pre, (v, j) => (v + Math.abs(mean[j])) / sigma(j));
      pre = ref.scaleShiftForward(xhat, absVector(layer.bn.gamma), absVector(layer.bn.beta));
    }
    xhats.push(xhat);
    sigmaErrors.push(full ? sigmaError : null);
    batchStatistics.push(stats);
    logits = pre;
    m = mapEntries(pre, (v, _j, i) => (cache.preActivation.data[i] > 0 ? v : 0));
  });
  // Backward on magnitudes.
  const { rows: n, cols: k } = forward.probs;
  const inherited = full ? maxOf(logits.data) / 2 : 0;
  let g = mapEntries(forward.probs, (p, j, i) => (Math.abs(p - (labels[Math.floor(i / k)] === j ? 1 : 0)) + 1 / k + inherited) / n);
  const gradients: Record<string, number> = {};
  if (options.firstOrderProducts ?? true) {
    firstOrderBackward(net, forward, labels, g, inputs, xhats, sigmaErrors, gradients);
    return { logits: maxOf(logits.data), gradients, batchStatistics };
  }
  for (let l = net.layers.length - 1; l >= 0; l--) {
    const layer = net.layers[l];
    const cache = forward.layers[l];
    const name = (p: string) => `${p}${l + 1}`;
    if (l < net.layers.length - 1) g = ref.reluBackward(g, cache.preActivation);
    const xhat = xhats[l];
    if (layer.bn && cache.batchNorm && xhat) {
      const { dGamma, dBeta, dXhat } = ref.scaleShiftBackward(g, xhat, absVector(layer.bn.gamma));
      if (layer.bn.gamma) gradients[name('gamma')] = maxOf(dGamma);
      if (layer.bn.beta) gradients[name('beta')] = maxOf(dBeta);
      const d = g.cols;
      const meanG = new Float64Array(d);
      const meanGXhat = new Float64Array(d);
      dXhat.data.forEach((v, i) => {
        meanG[i % d] += v / n;
        meanGXhat[i % d] += (v * xhat.data[i]) / n;
      });
      const variance = cache.batchNorm.variance;
      const r = sigmaErrors[l];
      g = mapEntries(dXhat, (v, j, i) => ((v + meanG[j] + xhat.data[i] * meanGXhat[j]) / Math.sqrt(variance[j] + net.config.eps)) * (1 + (r ? r[j] : 0)));
    }
    const { dW, db, dX } = ref.linearBackward(g, inputs[l], absMatrix(layer.W));
    gradients[name('W')] = maxOf(dW.data);
    gradients[name('b')] = maxOf(db);
    g = dX;
  }
  return { logits: maxOf(logits.data), gradients, batchStatistics };
}

/**
 * The backward pass on magnitudes with first-order products (RoundingBoundsOptions.firstOrderProducts):
 * alongside each magnitude M(a) it carries the float64 value a, and a product ab gets
 * M(ab) = |a|·M(b) + M(a)·|b| + c·u·M(a)·M(b) instead of M(a)·M(b).
 */
function firstOrderBackward(
  net: ref.Network, forward: ref.ForwardResult, labels: ArrayLike<number>, upstream: ref.Matrix,
  inputs: ref.Matrix[], xhats: (ref.Matrix | null)[], sigmaErrors: (Float64Array | null)[], gradients: Record<string, number>,
): void {
  const c = ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF;
  const n = forward.probs.rows;
  let g = upstream;
  let value = ref.crossEntropyBackward(forward.probs, labels);
  for (let l = net.layers.length - 1; l >= 0; l--) {
    const layer = net.layers[l];
    const cache = forward.layers[l];
    const name = (p: string) => `${p}${l + 1}`;
    if (l < net.layers.length - 1) {
      g = ref.reluBackward(g, cache.preActivation);
      value = ref.reluBackward(value, cache.preActivation);
    }
    const xhat = xhats[l];
    if (layer.bn && cache.batchNorm && xhat) {
      const s = cache.batchNorm.normalized.data;
      const d = g.cols;
      const gamma = layer.bn.gamma;
      const sigma = (j: number) => Math.sqrt(cache.batchNorm!.variance[j] + net.config.eps);
      const dGamma = new Float64Array(d);
      const dBeta = new Float64Array(d);
      g.data.forEach((m, i) => {
        dGamma[i % d] += m * Math.abs(s[i]) + Math.abs(value.data[i]) * xhat.data[i] + c * m * xhat.data[i];
        dBeta[i % d] += m;
      });
      if (gamma) gradients[name('gamma')] = maxOf(dGamma);
      if (layer.bn.beta) gradients[name('beta')] = maxOf(dBeta);
      const dXhatM = mapEntries(g, (m, j) => (gamma ? Math.abs(gamma[j]) : 1) * m);
      const dXhat = mapEntries(value, (v, j) => (gamma ? gamma[j] : 1) * v);
      if (forward.mode === 'train') {
        // (ĝ − mean ĝ − ŝ·m)/σ̃ with m = mean(ĝ ⊙ ŝ)
        const meanGM = new Float64Array(d);
        const m = new Float64Array(d);
        const mM = new Float64Array(d);
        dXhatM.data.forEach((gm, i) => {
          const j = i % d;
          meanGM[j] += gm / n;
          m[j] += (dXhat.data[i] * s[i]) / n;
          mM[j] += (gm * Math.abs(s[i]) + Math.abs(dXhat.data[i]) * xhat.data[i] + c * gm * xhat.data[i]) / n;
        });
        const r = sigmaErrors[l];
        g = mapEntries(dXhatM, (gm, j, i) => {
          const product = Math.abs(s[i]) * mM[j] + xhat.data[i] * Math.abs(m[j]) + c * xhat.data[i] * mM[j];
          return ((gm + meanGM[j] + product) / sigma(j)) * (1 + (r ? r[j] : 0));
        });
        value = ref.batchNormBackward(dXhat, cache.batchNorm, net.config.eps);
      } else {
        g = mapEntries(dXhatM, (gm, j) => gm / sigma(j));
        value = mapEntries(dXhat, (v, j) => v / sigma(j));
      }
    }
    const h = cache.input;
    const hM = inputs[l];
    const dW = new Float64Array(layer.W.data.length);
    const dOut = g.cols;
    for (let i = 0; i < g.rows; i++)
      for (let a = 0; a < h.cols; a++) {
        const hv = Math.abs(h.data[i * h.cols + a]);
        const hm = hM.data[i * h.cols + a];
        for (let b = 0; b < dOut; b++) {
          const gm = g.data[i * dOut + b];
          dW[a * dOut + b] += hv * gm + hm * Math.abs(value.data[i * dOut + b]) + c * hm * gm;
        }
      }
    const db = new Float64Array(dOut);
    g.data.forEach((gm, i) => (db[i % dOut] += gm));
    gradients[name('W')] = maxOf(dW);
    gradients[name('b')] = maxOf(db);
    const next = ref.linearBackward(g, hM, absMatrix(layer.W));
    value = ref.linearBackward(value, h, layer.W).dX;
    g = next.dX;
  }
}

/** The limit for probabilities (and cost, loss, running averages): scale at least 1. */
export function forwardLimit(bounds: RoundingBounds): Limit {
  return { tolerance: TOLERANCES.forward, minScale: 1, absolute: ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF * bounds.logits };
}

/**
 * The limits for a BN layer's running averages after one update avg = α·avg + (1 − α)·batch: the
 * batch statistics' rounding bound scaled by (1 − α), plus forwardLimit's relative part.
 */
export function runningAverageLimits(bounds: RoundingBounds, layer: number, runningAverageKeep: number): { mean: Limit; variance: Limit } {
  const stats = bounds.batchStatistics[layer];
  const absolute = (e: number) => (1 - runningAverageKeep) * ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF * e;
  return {
    mean: { tolerance: TOLERANCES.forward, minScale: 1, absolute: absolute(stats?.mean ?? 0) },
    variance: { tolerance: TOLERANCES.forward, minScale: 1, absolute: absolute(stats?.variance ?? 0) },
  };
}

/** Per parameter, the limit for its gradient, scaled by `factor` (η for momentum buffers and updates). */
export function gradientLimits(bounds: RoundingBounds, factor = 1): Record<string, Limit> {
  return Object.fromEntries(
    Object.entries(bounds.gradients).map(([name, b]) => [name, { tolerance: TOLERANCES.gradient, absolute: factor * ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF * b }]),
  );
}

/** Largest absolute error of θ_after − θ_before in float32: θ − v rounds to half an ulp of θ, on both sides. */
export function float32UpdateAllowance(before: ArrayLike<number>): number {
  return 2 * UNIT_ROUNDOFF * maxOf(Array.from(before, Math.abs));
}

export function reluSigns(preActivations: readonly ArrayLike<number>[]): Uint8Array {
  const total = preActivations.reduce((n, a) => n + a.length, 0);
  const signs = new Uint8Array(total);
  let k = 0;
  for (const a of preActivations) for (let i = 0; i < a.length; i++) signs[k++] = a[i] > 0 ? 1 : 0;
  return signs;
}

export function sameSigns(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function referenceReluSigns(result: ref.ForwardResult): Uint8Array {
  return reluSigns(result.layers.slice(0, -1).map((c) => c.preActivation.data));
}

export interface Comparison {
  readonly maxAbs: number;
  readonly maxRel: number;
  readonly worstIndex: number;
  readonly scale: number;
  /** maxAbs / the limit it was held to (≤ 1 passes). */
  readonly usedOfLimit: number;
}

function formatIndex(shape: readonly number[], flat: number): string {
  if (flat < 0) return '';
  return shape.length === 2 ? `[${Math.floor(flat / shape[1])},${flat % shape[1]}]` : `[${flat}]`;
}

/**
 * The one comparison behind the core-vs-reference tests. Fails with a message naming the stage,
 * the tensor, its shape, the worst entry with both values, and the worst abs/rel errors against
 * the limit.
 */
export function expectClose(stage: string, name: string, shape: readonly number[], actual: ArrayLike<number>, expected: ArrayLike<number>, limitSpec: Limit): Comparison {
  expect(actual.length, `${stage} ${name}: length`).toBe(expected.length);
  let scale = limitSpec.minScale ?? 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  const limit = limitSpec.tolerance * scale + (limitSpec.absolute ?? 0);
  let maxAbs = 0;
  let maxRel = 0;
  let worstIndex = -1;
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    if (!(diff <= maxAbs)) {
      maxAbs = Number.isNaN(diff) ? Infinity : diff;
      worstIndex = i;
    }
    maxRel = Math.max(maxRel, diff / Math.max(1e-8, Math.abs(actual[i]) + Math.abs(expected[i])));
  }
  if (!(maxAbs <= limit)) {
    const i = worstIndex;
    throw new Error(
      `${stage} mismatch for ${name}${formatIndex(shape, i)} (shape [${shape.join(',')}]): core ${actual[i]}, reference ${expected[i]}; ` +
        `worst abs err ${maxAbs.toExponential(3)} > limit ${limit.toExponential(3)} (${limitSpec.tolerance} × scale ${scale.toExponential(3)}` +
        `${limitSpec.absolute ? ` + rounding bound ${limitSpec.absolute.toExponential(2)}` : ''}); worst rel err ${maxRel.toExponential(3)}`,
    );
  }
  return { maxAbs, maxRel, worstIndex, scale, usedOfLimit: maxAbs === 0 ? 0 : maxAbs / limit };
}
