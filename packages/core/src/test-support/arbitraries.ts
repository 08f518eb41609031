import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import { forwardTrace } from '../network.js';
import { referenceReluSigns, reluSigns, sameSigns } from './compare.js';
import { forward as referenceForward, networkFromWeights, type Matrix, type Mode, type Network } from '@bnmlp/reference';
import { createPrng, nextInt, nextNormal, nextUniform } from '../prng.js';
import { layerDims, resolveConfig, type NetworkConfig } from '../config.js';
import { modelFromValues, hasBatchNorm, type CoreModel, type LayerValues } from '../model.js';
import { modelToWeights } from '../weights-format.js';
import type { Float32Matrix } from '../api.js';

/** Architecture and data shape drawn by the property tests (constraints, not filters). */
export interface Case {
  readonly inputDim: number;
  readonly hiddenDims: number[];
  readonly classes: number;
  readonly batch: number;
  readonly batchNorm: boolean;
  readonly bnAffine: boolean;
  readonly lambda: number;
  readonly seed: number;
}

export interface CaseLimits {
  readonly maxDepth?: number;
  /** At least this many linear layers (default 1: softmax regression allowed). */
  readonly minDepth?: number;
  readonly maxWidth?: number;
  readonly minBatch?: number;
  readonly maxBatch?: number;
  readonly maxInput?: number;
  readonly maxClasses?: number;
  /** Force batch norm on or off; both when absent. */
  readonly batchNorm?: boolean;
}

/** depth 1-5, widths 1-64, batch 2-128, input dim 1-256, BN on/off, γ/β on/off, λ ≥ 0 (the ranges). */
export function caseArbitrary(limits: CaseLimits = {}): fc.Arbitrary<Case> {
  return fc.record({
    inputDim: fc.integer({ min: 1, max: limits.maxInput ?? 256 }),
    hiddenDims: fc.array(fc.integer({ min: 1, max: limits.maxWidth ?? 64 }), { minLength: (limits.minDepth ?? 1) - 1, maxLength: (limits.maxDepth ?? 5) - 1 }),
    classes: fc.integer({ min: 2, max: limits.maxClasses ?? 10 }),
    batch: fc.integer({ min: limits.minBatch ?? 2, max: limits.maxBatch ?? 128 }),
    batchNorm: limits.batchNorm === undefined ? fc.boolean() : fc.constant(limits.batchNorm),
    bnAffine: fc.boolean(),
    lambda: fc.oneof(fc.constant(0), fc.double({ min: 1e-4, max: 1, noNaN: true })),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  });
}

export interface CaseData {
  readonly config: NetworkConfig;
  readonly values: LayerValues[];
  readonly x: Float32Matrix;
  readonly labels: Int32Array;
}

/**
 * Weights (He init), random non-default b, γ, β and running averages (so their paths are
 * exercised), X ~ N(0, 1) and random labels, all from the case's seed; float32 throughout so
 * core and reference see identical numbers.
 */
export function caseData(c: Case): CaseData {
  const prng = createPrng(c.seed);
  const config = resolveConfig('caseData', { inputDim: c.inputDim, hiddenDims: c.hiddenDims, classes: c.classes, batchNorm: c.batchNorm, bnAffine: c.bnAffine });
  const normal = (n: number, mean: number, std: number) => Float32Array.from({ length: n }, () => mean + std * nextNormal(prng));
  const values = layerDims(config).map(([dIn, dOut], l): LayerValues => {
    const bn = hasBatchNorm(config, l);
    return {
      W: normal(dIn * dOut, 0, Math.sqrt(2 / dIn)),
      b: normal(dOut, 0, 0.1),
      gamma: bn && config.bnAffine ? normal(dOut, 1, 0.2) : null,
      beta: bn && config.bnAffine ? normal(dOut, 0, 0.2) : null,
      runningMean: bn ? normal(dOut, 0, 0.3) : null,
      runningVar: bn ? Float32Array.from({ length: dOut }, () => 0.5 + Math.abs(nextNormal(prng))) : null,
    };
  });
  const x = { rows: c.batch, cols: c.inputDim, data: normal(c.batch * c.inputDim, 0, 1) };
  const labels = Int32Array.from({ length: c.batch }, () => nextInt(prng, c.classes));
  return { config, values, x, labels };
}

export function coreModelOf(data: CaseData): CoreModel {
  return modelFromValues(data.config, data.values);
}

/** The reference network on the core model's exact weights, through the shared weights format. */
export function referenceOf(model: CoreModel): Network {
  return networkFromWeights(modelToWeights(model));
}

export function referenceMatrix(x: Float32Matrix): Matrix {
  return { rows: x.rows, cols: x.cols, data: Float64Array.from(x.data) };
}

/** The core's ReLU input signs for a batch (hidden layers, row-major), to compare with the reference's. */
export function coreReluSigns(model: CoreModel, x: Float32Matrix, mode: 'train' | 'inference'): Uint8Array {
  return tf.tidy(() => {
    const trace = forwardTrace(model, tf.tensor2d(x.data, [x.rows, x.cols]), mode);
    return reluSigns(trace.layers.slice(0, -1).map((t) => t.preActivation.dataSync()));
  });
}

/** η in [1e-4, 0.5]. */
export const learningRateArbitrary = fc.double({ min: 1e-4, max: 0.5, noNaN: true });
/** ρ: 0 (plain SGD) or a realistic momentum in [0.01, 0.99] (no subnormals, which float32 flushes to 0). */
export const momentumArbitrary = fc.oneof(fc.constant(0), fc.double({ min: 0.01, max: 0.99, noNaN: true }));

/**
 * Inputs far from 0 (the reference batch-norm test's E[x²] − E[x]² trap, moved to the network's
 * input): feature j is ±10^e_j + 0.1·N(0, 1) with e_j uniform in [4, maxExponent], maxExponent in
 * [4, 7] (so shrinking moves toward offsets of 1e4). Rounded to float32 like every core input.
 */
/**
 * Core and reference put every ReLU input on the same side of 0 for this batch. Where they do not,
 * an input lies within float32 rounding of a kink and the two may legitimately disagree by a whole
 * gradient entry (compare.ts); the suites skip such cases and count them.
 */
export function sameReluSides(model: CoreModel, net: Network, x: Float32Matrix, mode: Mode): boolean {
  return sameSigns(coreReluSigns(model, x, mode), referenceReluSigns(referenceForward(net, referenceMatrix(x), mode)));
}

export interface OffsetInputs {
  readonly maxExponent: number;
  readonly seed: number;
}

export const offsetInputsArbitrary: fc.Arbitrary<OffsetInputs> = fc.record({
  maxExponent: fc.double({ min: 4, max: 7, noNaN: true }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

/** The case's data with X replaced by offset inputs (same weights and labels). */
export function withOffsetInputs(data: CaseData, offsets: OffsetInputs): CaseData {
  const prng = createPrng(offsets.seed);
  const { rows, cols } = data.x;
  const centers = Array.from({ length: cols }, () => (nextUniform(prng) < 0.5 ? -1 : 1) * 10 ** (4 + (offsets.maxExponent - 4) * nextUniform(prng)));
  const x = Float32Array.from({ length: rows * cols }, (_, i) => centers[i % cols] + 0.1 * nextNormal(prng));
  return { ...data, x: { rows, cols, data: x } };
}
