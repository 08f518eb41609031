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
const UNIT_ROUNDOFF = 2 ** -24;

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

/** Running-error magnitudes of a reference forward pass (training or inference mode) and its backward pass. */
export function roundingBounds(net: ref.Network, forward: ref.ForwardResult, labels: ArrayLike<number>): RoundingBounds {
  // Forward on magnitudes: each layer's input, and ŝ's term magnitude (T + |μ|)/σ̃ on BN layers.
  const inputs: ref.Matrix[] = [];
  const xhats: (ref.Matrix | null)[] = [];
  let m = absMatrix(forward.layers[0].input);
  let logits = m;
  net.layers.forEach((layer, l) => {
    const cache = forward.layers[l];
    inputs.push(m);
    let pre = ref.linearForward(m, absMatrix(layer.W), absVector(layer.b)!);
    let xhat: ref.Matrix | null = null;
    if (layer.bn && cache.batchNorm) {
      const { mean, variance } = cache.batchNorm;
      xhat = mapEntries(pre, (v, j) => (v + Math.abs(mean[j])) / Math.sqrt(variance[j] + net.config.eps));
      pre = ref.scaleShiftForward(xhat, absVector(layer.bn.gamma), absVector(layer.bn.beta));
    }
    xhats.push(xhat);
    logits = pre;
    m = mapEntries(pre, (v, _j, i) => (cache.preActivation.data[i] > 0 ? v : 0));
  });
  // Backward on magnitudes.
  const { rows: n, cols: k } = forward.probs;
  let g = mapEntries(forward.probs, (p, j, i) => (Math.abs(p - (labels[Math.floor(i / k)] === j ? 1 : 0)) + 1 / k) / n);
  const gradients: Record<string, number> = {};
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
      g = mapEntries(dXhat, (v, j, i) => (v + meanG[j] + xhat.data[i] * meanGXhat[j]) / Math.sqrt(variance[j] + net.config.eps));
    }
    const { dW, db, dX } = ref.linearBackward(g, inputs[l], absMatrix(layer.W));
    gradients[name('W')] = maxOf(dW.data);
    gradients[name('b')] = maxOf(db);
    g = dX;
  }
  return { logits: maxOf(logits.data), gradients };
}

/** The limit for probabilities (and cost, loss, running averages): scale at least 1. */
export function forwardLimit(bounds: RoundingBounds): Limit {
  return { tolerance: TOLERANCES.forward, minScale: 1, absolute: ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF * bounds.logits };
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
