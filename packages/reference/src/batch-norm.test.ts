import { Decimal } from 'decimal.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { batchNormBackward, batchNormForward, batchStatistics, normalize, scaleShiftBackward, scaleShiftForward } from './batch-norm.js';
import { fromRows, type Matrix } from './matrix.js';
import { createPrng } from './prng.js';
import { offsetFeatureArb, randomMatrix, scoresArb, seedArb } from './test-support/arbitraries.js';
import { expectAllFinite, maxAbsDiff } from './test-support/assertions.js';

const EPS = 1e-5;

function column(m: Matrix, j: number): number[] {
  return Array.from({ length: m.rows }, (_, i) => m.data[i * m.cols + j]);
}

/** The exact value of a float64 (toFixed is exact with enough digits; shortest-repr strings are not). */
function exactDecimal(x: number): Decimal {
  return new Decimal(x.toFixed(60));
}

/** Biased variance of the float64 values, exactly (100 digits). */
function exactVariance(values: readonly number[]): Decimal {
  const D = Decimal.clone({ precision: 100 });
  const xs = values.map((v) => new D(exactDecimal(v)));
  const mean = xs.reduce((a, b) => a.plus(b), new D(0)).div(xs.length);
  return xs.reduce((acc, v) => acc.plus(v.minus(mean).pow(2)), new D(0)).div(xs.length);
}

describe('batchStatistics', () => {
  it('computes the mean and the biased (divide by n) variance per feature', () => {
    const { mean, variance } = batchStatistics(fromRows([[1, 10], [3, 10], [5, 10]]));

    expect(Array.from(mean)).toEqual([3, 10]);
    expect(variance[0]).toBeCloseTo(8 / 3, 15);
    expect(variance[1]).toBe(0);
  });

  it('is accurate (relative 1e-6) and non-negative for features with offsets 1e4–1e7 and spread 0.1', () => {
    fc.assert(
      fc.property(offsetFeatureArb, ({ offset, negative, rows, seed }) => {
        const center = negative ? -offset : offset;
        const s = randomMatrix(createPrng(seed), rows, 1, 0.1);
        for (let i = 0; i < rows; i++) s.data[i] += center;

        const { variance } = batchStatistics(s);
        const exact = exactVariance(column(s, 0)).toNumber();
        const normalized = batchNormForward(s, EPS).normalized;

        expect(variance[0]).toBeGreaterThanOrEqual(0);
        expect(Math.abs(variance[0] - exact)).toBeLessThanOrEqual(1e-6 * exact);
        expectAllFinite(normalized.data);
      }),
    );
  });

  it('the accuracy bound above rejects the one-pass formula E[x²] − E[x]² (so the property can fail)', () => {
    // What the two-pass implementation guards against: at offset 1e7 the squares carry
    // ulp(1e14) ≈ 0.016 of rounding, larger than the variance (≈ 0.01) itself.
    const s = randomMatrix(createPrng(3), 16, 1, 0.1);
    for (let i = 0; i < 16; i++) s.data[i] += 1e7;
    const values = column(s, 0);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const onePass = values.reduce((a, b) => a + b * b, 0) / values.length - mean * mean;

    const exact = exactVariance(values).toNumber();

    expect(Math.abs(onePass - exact)).toBeGreaterThan(1e-6 * exact);
    expect(Math.abs(batchStatistics(s).variance[0] - exact)).toBeLessThanOrEqual(1e-6 * exact);
  });
});

describe('batchNormForward', () => {
  it('puts ε inside the square root: ŝ = (s − μ) / sqrt(σ² + ε)', () => {
    // μ = 1, σ² = 1, ε = 3: ±1/sqrt(4) = ±0.5 (ε outside the root would give ±0.25).
    const { normalized } = batchNormForward(fromRows([[0], [2]]), 3);

    expect(Array.from(normalized.data)).toEqual([-0.5, 0.5]);
  });

  it('normalized output has per-feature mean 0 and variance σ²/(σ² + ε)', () => {
    fc.assert(
      fc.property(scoresArb({ maxRows: 16, maxCols: 6 }), (s) => {
        const { variance, normalized } = batchNormForward(s, EPS);

        for (let j = 0; j < s.cols; j++) {
          const { mean: m, variance: v } = batchStatistics({ rows: s.rows, cols: 1, data: Float64Array.from(column(normalized, j)) });
          expect(Math.abs(m[0])).toBeLessThan(1e-12);
          expect(Math.abs(v[0] - variance[j] / (variance[j] + EPS))).toBeLessThan(1e-12);
        }
      }),
    );
  });

  it('BN(c·s + t) with ε equals BN(s) with ε/c² for c > 0 and any per-feature shift t', () => {
    // (c s + t − (c μ + t)) / sqrt(c² σ² + ε) = (s − μ) / sqrt(σ² + ε/c²): scale and shift drop out
    // exactly when ε is rescaled, which also pins ε's place inside the root.
    const shiftArb = fc.array(fc.double({ min: -100, max: 100, noNaN: true }), { minLength: 6, maxLength: 6 });
    fc.assert(
      fc.property(scoresArb({ maxRows: 16, maxCols: 6 }), fc.double({ min: 1e-3, max: 1e3, noNaN: true }), shiftArb, (s, c, t) => {
        const moved: Matrix = { rows: s.rows, cols: s.cols, data: s.data.map((v, i) => c * v + t[i % s.cols]) };

        const a = batchNormForward(moved, EPS).normalized;
        const b = batchNormForward(s, EPS / (c * c)).normalized;

        // c·s + t rounds to ulp(|t| + c|s|) ≤ ulp(1e4) ≈ 2e-12, divided by sqrt(c²σ² + ε) ≥ sqrt(ε).
        expect(maxAbsDiff(a.data, b.data)).toBeLessThan(1e-8);
      }),
    );
  });

  it('a constant feature normalizes to exactly 0 (variance 0, ε keeps it finite)', () => {
    const s = fromRows([[7.25, 1], [7.25, 2], [7.25, 4]]);

    const { variance, normalized } = batchNormForward(s, EPS);

    expect(variance[0]).toBe(0);
    expect(column(normalized, 0)).toEqual([0, 0, 0]);
    expectAllFinite(normalized.data);
  });

  it('a constant feature has an exact mean and ŝ = 0 for any value and batch size', () => {
    // Regression: the plain rounded mean of 11 × 123.456 was 1.4e-14 off, so ŝ was 4.5e-12, not 0.
    const valueArb = fc.double({ min: -1e6, max: 1e6, noNaN: true });
    fc.assert(
      fc.property(valueArb, fc.integer({ min: 2, max: 64 }), (value, rows) => {
        const s: Matrix = { rows, cols: 1, data: new Float64Array(rows).fill(value) };

        const { mean, variance, normalized } = batchNormForward(s, EPS);

        expect(mean[0] - value).toBe(0); // (not toBe(value): the mean of −0s is +0)
        expect(variance[0]).toBe(0);
        expect(normalized.data.every((v) => v === 0)).toBe(true);
      }),
    );
  });

  it('normalize with given (running) statistics uses them, not the batch’s', () => {
    const s = fromRows([[1], [3]]);

    const out = normalize(s, Float64Array.from([2]), Float64Array.from([4 - EPS]), EPS);

    expect(Array.from(out.data)).toEqual([-0.5, 0.5]);
  });
});

describe('batchNormBackward', () => {
  it('the input gradient sums to ~0 over the batch per feature (a shift before BN changes nothing)', () => {
    fc.assert(
      fc.property(scoresArb({ maxRows: 16, maxCols: 6 }), seedArb, (s, seed) => {
        const g = randomMatrix(createPrng(seed), s.rows, s.cols);

        const forward = batchNormForward(s, EPS);
        const dS = batchNormBackward(g, forward, EPS);

        for (let j = 0; j < s.cols; j++) {
          const sum = column(dS, j).reduce((a, b) => a + b, 0);
          // Rounding scale: the magnitudes that enter (g − mean g − ŝ·mean(g ŝ)) / sqrt(σ² + ε).
          const scale = column(g, j).reduce((a, b) => a + 2 * Math.abs(b), 0) / Math.sqrt(forward.variance[j] + EPS);
          expect(Math.abs(sum)).toBeLessThan(1e-12 * scale);
        }
      }),
    );
  });

  it('equals the centered difference of J(s) = Σ g ⊙ BN(s) (batch statistics recomputed per step)', () => {
    fc.assert(
      fc.property(scoresArb({ minRows: 2, maxRows: 8, maxCols: 3, minSpread: 0.5 }), seedArb, (s, seed) => {
        const g = randomMatrix(createPrng(seed), s.rows, s.cols);
        const objective = (m: Matrix) => batchNormForward(m, EPS).normalized.data.reduce((acc, v, i) => acc + v * g.data[i], 0);
        const forward = batchNormForward(s, EPS);
        const analytic = batchNormBackward(g, forward, EPS);
        const h = 1e-6;
        // Rounding noise of the difference quotient: J's own sum (|ŝ| ≤ 1, so ≲ ε Σ|g|), plus s − μ
        // carrying ulp(|s|), amplified by 1/sqrt(σ² + ε) in ŝ (large when a column's rows nearly coincide).
        const sumAbsG = g.data.reduce((a, b) => a + Math.abs(b), 0);
        const noise = Array.from({ length: s.cols }, (_, j) => {
          const sumG = column(g, j).reduce((a, b) => a + Math.abs(b), 0);
          const maxS = Math.max(...column(s, j).map(Math.abs));
          return (4 * Number.EPSILON * (sumAbsG + (sumG * maxS) / Math.sqrt(forward.variance[j] + EPS))) / h;
        });

        for (let i = 0; i < s.data.length; i++) {
          const plus = { ...s, data: Float64Array.from(s.data) };
          const minus = { ...s, data: Float64Array.from(s.data) };
          plus.data[i] += h;
          minus.data[i] -= h;
          const numeric = (objective(plus) - objective(minus)) / (plus.data[i] - minus.data[i]);
          const a = analytic.data[i];
          expect(Math.abs(a - numeric)).toBeLessThan(1e-6 * (Math.abs(a) + Math.abs(numeric)) + noise[i % s.cols]);
        }
      }),
    );
  });

  it('a constant feature gets the finite gradient (g − mean g)/sqrt(ε)', () => {
    const s = fromRows([[5], [5], [5]]);
    const g = fromRows([[1], [2], [6]]);

    const dS = batchNormBackward(g, batchNormForward(s, EPS), EPS);

    expect(maxAbsDiff(dS.data, [-2, -1, 3].map((v) => v / Math.sqrt(EPS)))).toBeLessThan(1e-9);
  });
});

describe('scale and shift', () => {
  const xhat = fromRows([[1, 2], [3, 4]]);

  it('forward: γ ŝ + β per feature; identity without γ and β', () => {
    expect(scaleShiftForward(xhat, Float64Array.from([2, -1]), Float64Array.from([0.5, 1]))).toEqual(fromRows([[2.5, -1], [6.5, -3]]));
    expect(scaleShiftForward(xhat, null, null)).toEqual(xhat);
  });

  it('backward: ∂γ = Σ ŝ u, ∂β = Σ u, ∂ŝ = γ u', () => {
    const { dGamma, dBeta, dXhat } = scaleShiftBackward(fromRows([[1, 1], [2, 0]]), xhat, Float64Array.from([2, -1]));

    expect(Array.from(dGamma)).toEqual([7, 2]);
    expect(Array.from(dBeta)).toEqual([3, 1]);
    expect(dXhat).toEqual(fromRows([[2, -1], [4, -0]]));
  });
});
