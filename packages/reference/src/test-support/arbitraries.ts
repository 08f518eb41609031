/**
 * The shared fast-check arbitraries of the reference tests, and the builders that turn a generated
 * spec into concrete networks and batches. Specs are small records (sizes, flags, a seed); the bulk
 * random values come from the package's own seeded PRNG, so a shrunk counterexample is a handful
 * of integers that can be pasted into a regression test.
 */
import fc from 'fast-check';
import type { Matrix } from '../matrix.js';
import { forward } from '../model.js';
import { createNetwork, type Network } from '../network.js';
import { createPrng, nextInt, nextNormal, nextUniform, type Prng } from '../prng.js';

export interface NetworkCaseSpec {
  readonly inputDim: number;
  readonly hiddenDims: readonly number[];
  readonly classes: number;
  readonly batch: number;
  readonly batchNorm: boolean;
  readonly bnAffine: boolean;
  readonly lambda: number;
  readonly seed: number;
}

export interface NetworkCaseLimits {
  /** Linear layers k = hiddenDims.length + 1, so hiddenDims has at most maxDepth − 1 entries. */
  readonly maxDepth: number;
  /** At least this many linear layers (default 1). */
  readonly minDepth?: number;
  readonly maxWidth: number;
  readonly maxBatch: number;
  readonly maxInputDim: number;
  readonly maxClasses: number;
  /** Force batch norm on or off; both when absent. */
  readonly batchNorm?: boolean;
}

/** The gradient-check property's space: depth 1–5, widths 1–12, batch 2–16, input 1–20. */
export const FULL_LIMITS: NetworkCaseLimits = { maxDepth: 5, maxWidth: 12, maxBatch: 16, maxInputDim: 20, maxClasses: 6 };
/** Small enough for the 50-digit decimal oracle. */
export const SMALL_LIMITS: NetworkCaseLimits = { maxDepth: 3, maxWidth: 4, maxBatch: 5, maxInputDim: 4, maxClasses: 4 };

export const seedArb = fc.nat();

export function networkCaseArb(limits: NetworkCaseLimits = FULL_LIMITS): fc.Arbitrary<NetworkCaseSpec> {
  return fc.record({
    inputDim: fc.integer({ min: 1, max: limits.maxInputDim }),
    hiddenDims: fc.array(fc.integer({ min: 1, max: limits.maxWidth }), { minLength: (limits.minDepth ?? 1) - 1, maxLength: limits.maxDepth - 1 }),
    classes: fc.integer({ min: 2, max: limits.maxClasses }),
    batch: fc.integer({ min: 2, max: limits.maxBatch }),
    batchNorm: limits.batchNorm === undefined ? fc.boolean() : fc.constant(limits.batchNorm),
    bnAffine: fc.boolean(),
    lambda: fc.double({ min: 0, max: 1, noNaN: true }),
    seed: seedArb,
  });
}

export interface NetworkCase {
  readonly spec: NetworkCaseSpec;
  readonly net: Network;
  readonly x: Matrix;
  readonly labels: number[];
  readonly lambda: number;
}

/** Entries N(0, scale²) from the PRNG. */
export function randomMatrix(prng: Prng, rows: number, cols: number, scale = 1): Matrix {
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = scale * nextNormal(prng);
  return { rows, cols, data };
}

export function randomLabels(prng: Prng, n: number, classes: number): number[] {
  return Array.from({ length: n }, () => nextInt(prng, classes));
}

/**
 * Nonzero b, γ and β (createNetwork starts them at 0, 1, 0, where a bug in their gradients, or a
 * transposed γ/β, would go unseen).
 */
export function randomizeShifts(net: Network, prng: Prng): void {
  for (const layer of net.layers) {
    for (let j = 0; j < layer.b.length; j++) layer.b[j] = 0.5 * nextNormal(prng);
    if (layer.bn?.gamma) for (let j = 0; j < layer.bn.gamma.length; j++) layer.bn.gamma[j] = 1 + 0.5 * nextNormal(prng);
    if (layer.bn?.beta) for (let j = 0; j < layer.bn.beta.length; j++) layer.bn.beta[j] = 0.5 * nextNormal(prng);
  }
}

/** Running means ~ N(0, 1) and running variances in [0.2, 2.2): far from the defaults 0 and 1. */
export function randomizeRunningAverages(net: Network, seed: number): void {
  const prng = createPrng(seed);
  for (const layer of net.layers)
    if (layer.bn)
      for (let j = 0; j < layer.bn.runningMean.length; j++) {
        layer.bn.runningMean[j] = nextNormal(prng);
        layer.bn.runningVar[j] = 0.2 + 2 * nextUniform(prng);
      }
}

/** He-initialized weights, random shifts, X ~ N(0, 1) and uniform labels, all from `spec.seed`. */
export function buildNetworkCase(spec: NetworkCaseSpec): NetworkCase {
  const prng = createPrng(spec.seed);
  const net = createNetwork(
    { inputDim: spec.inputDim, hiddenDims: spec.hiddenDims, classes: spec.classes, batchNorm: spec.batchNorm, bnAffine: spec.bnAffine },
    { kind: 'he' },
    prng,
  );
  randomizeShifts(net, prng);
  const x = randomMatrix(prng, spec.batch, spec.inputDim);
  const labels = randomLabels(prng, spec.batch, spec.classes);
  return { spec, net, x, labels, lambda: spec.lambda };
}

/**
 * min over batch-norm features of σ²/ε for a training-mode pass (Infinity without batch norm).
 * Small values mean BN works on the scale sqrt(σ² + ε) ≈ sqrt(ε), where centered differences with
 * h = 1e-6 lose accuracy (see Note [Ill-conditioned batch norm] in gradient-check.test.ts).
 */
export function bnVarianceToEpsRatio(net: Network, x: Matrix): number {
  let ratio = Infinity;
  for (const cache of forward(net, x, 'train').layers)
    if (cache.batchNorm) for (const v of cache.batchNorm.variance) ratio = Math.min(ratio, v / net.config.eps);
  return ratio;
}

/** A score matrix whose column j is offset_j + spread_j · N(0, 1). */
export function scoresArb(limits: { maxRows: number; maxCols: number; minRows?: number; minSpread?: number }): fc.Arbitrary<Matrix> {
  return fc
    .record({
      rows: fc.integer({ min: limits.minRows ?? 2, max: limits.maxRows }),
      cols: fc.integer({ min: 1, max: limits.maxCols }),
      offset: fc.double({ min: -5, max: 5, noNaN: true }),
      spread: fc.double({ min: limits.minSpread ?? 0.05, max: 5, noNaN: true }),
      seed: seedArb,
    })
    .map(({ rows, cols, offset, spread, seed }) => {
      const prng = createPrng(seed);
      const m = randomMatrix(prng, rows, cols, spread);
      for (let i = 0; i < m.data.length; i++) m.data[i] += offset * (1 + (i % cols));
      return m;
    });
}

/** Integer-valued entries, so matrix products are exact in float64 and can be compared with toEqual. */
export function integerMatrixArb(rows: number, cols: number): fc.Arbitrary<Matrix> {
  return fc
    .array(fc.integer({ min: -1000, max: 1000 }), { minLength: rows * cols, maxLength: rows * cols })
    .map((values) => ({ rows, cols, data: Float64Array.from(values) }));
}

/** Dimensions (n, k, m) for products, 1..6 each. */
export const productDimsArb = fc.record({
  n: fc.integer({ min: 1, max: 6 }),
  k: fc.integer({ min: 1, max: 6 }),
  m: fc.integer({ min: 1, max: 6 }),
});

/** Logits with entries in [−range, range] and valid labels. */
export function logitsWithLabelsArb(range: number): fc.Arbitrary<{ logits: Matrix; labels: number[] }> {
  return fc
    .record({ rows: fc.integer({ min: 1, max: 8 }), cols: fc.integer({ min: 1, max: 8 }) })
    .chain(({ rows, cols }) =>
      fc.record({
        logits: fc
          .array(fc.double({ min: -range, max: range, noNaN: true }), { minLength: rows * cols, maxLength: rows * cols })
          .map((values) => ({ rows, cols, data: Float64Array.from(values) })),
        labels: fc.array(fc.integer({ min: 0, max: cols - 1 }), { minLength: rows, maxLength: rows }),
      }),
    );
}

/** One feature far from 0 (offset 1e4–1e7) with a small spread (0.1): the E[x²] − E[x]² trap. */
export const offsetFeatureArb = fc.record({
  offset: fc.double({ min: 1e4, max: 1e7, noNaN: true }),
  negative: fc.boolean(),
  rows: fc.integer({ min: 2, max: 64 }),
  seed: seedArb,
});
