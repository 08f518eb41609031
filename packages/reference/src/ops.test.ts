import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromRows, type Matrix } from './matrix.js';
import { crossEntropyBackward, crossEntropyForward, l2Penalty, linearBackward, linearForward, reluBackward, reluForward, softmax } from './ops.js';
import { logitsWithLabelsArb } from './test-support/arbitraries.js';
import { expectAllFinite, maxAbsDiff } from './test-support/assertions.js';

const shifted = (m: Matrix, c: number): Matrix => ({ rows: m.rows, cols: m.cols, data: m.data.map((v) => v + c) });

describe('linear', () => {
  const x = fromRows([[1, 2], [3, 4]]);
  const w = fromRows([[1, 0, -1], [2, 1, 0]]);

  it('forward: S = X W + b, b broadcast over rows', () => {
    const s = linearForward(x, w, Float64Array.from([0.5, -1, 2]));

    expect(s).toEqual(fromRows([[5.5, 1, 1], [11.5, 3, -1]]));
  });

  it('backward: dW = Xᵀ G, db = column sums of G, dX = G Wᵀ', () => {
    const g = fromRows([[1, 0, 2], [-1, 1, 0]]);

    const { dW, db, dX } = linearBackward(g, x, w);

    expect(dW).toEqual(fromRows([[-2, 3, 2], [-2, 4, 4]]));
    expect(Array.from(db)).toEqual([0, 1, 2]);
    expect(dX).toEqual(fromRows([[-1, 2], [-1, -1]]));
  });
});

describe('relu', () => {
  it('forward clamps negatives (and −0) to 0', () => {
    expect(Array.from(reluForward(fromRows([[-1, 0, 2, -0, 0.5]])).data)).toEqual([0, 0, 2, 0, 0.5]);
  });

  it('backward passes the gradient only where the input is > 0 (subgradient 0 at the kink)', () => {
    const z = fromRows([[-1, 0, 2]]);

    expect(Array.from(reluBackward(fromRows([[5, 6, 7]]), z).data)).toEqual([0, 0, 7]);
  });
});

describe('softmax and cross-entropy', () => {
  const logits = fromRows([[0, Math.log(2), Math.log(3)], [5, 5, 5]]);
  const labels = [2, 0];

  it('softmax of a hand example', () => {
    const p = softmax(logits);

    expect(maxAbsDiff(p.data, [1 / 6, 1 / 3, 1 / 2, 1 / 3, 1 / 3, 1 / 3])).toBeLessThan(1e-15);
  });

  it('cross-entropy is the mean of −log p_y', () => {
    // Row 1: −log(1/2) = ln 2; row 2: −log(1/3) = ln 3.
    expect(crossEntropyForward(logits, labels)).toBeCloseTo((Math.log(2) + Math.log(3)) / 2, 15);
  });

  it('cross-entropy backward is (P − onehot(Y)) / n', () => {
    const g = crossEntropyBackward(softmax(logits), labels);

    expect(maxAbsDiff(g.data, [1 / 12, 1 / 6, -1 / 4, -1 / 3, 1 / 6, 1 / 6])).toBeLessThan(1e-15);
  });

  it('cross-entropy backward is the centered difference of cross-entropy forward', () => {
    fc.assert(
      fc.property(logitsWithLabelsArb(10), ({ logits: z, labels: y }) => {
        const analytic = crossEntropyBackward(softmax(z), y);
        const h = 1e-6;

        for (let i = 0; i < z.data.length; i++) {
          const plus = { ...z, data: Float64Array.from(z.data) };
          const minus = { ...z, data: Float64Array.from(z.data) };
          plus.data[i] += h;
          minus.data[i] -= h;
          const numeric = (crossEntropyForward(plus, y) - crossEntropyForward(minus, y)) / (plus.data[i] - minus.data[i]);
          // |∂CE/∂z| ≤ 1/n ≤ 1; truncation ~h², rounding ~ε·|CE|/h ≤ 1e-8 for |z| ≤ 10.
          expect(Math.abs(analytic.data[i] - numeric)).toBeLessThan(1e-7);
        }
      }),
    );
  });

  it('softmax, cross-entropy and its gradient are invariant to adding a constant to all logits', () => {
    fc.assert(
      fc.property(logitsWithLabelsArb(50), fc.double({ min: -1000, max: 1000, noNaN: true }), ({ logits: z, labels: y }, c) => {
        const moved = shifted(z, c);

        // Adding c rounds each logit to ulp(1050) ≈ 2e-13, which bounds the change in every output.
        expect(maxAbsDiff(softmax(moved).data, softmax(z).data)).toBeLessThan(1e-11);
        expect(Math.abs(crossEntropyForward(moved, y) - crossEntropyForward(z, y))).toBeLessThan(1e-11);
        expect(maxAbsDiff(crossEntropyBackward(softmax(moved), y).data, crossEntropyBackward(softmax(z), y).data)).toBeLessThan(1e-11);
      }),
    );
  });

  it('stays finite for huge logits (1e4 … 1e300): probabilities sum to 1, loss ≈ max − z_y', () => {
    const magnitude = fc.constantFrom(1e4, 1e6, 1e10, 1e20, 1e100, 1e300);
    fc.assert(
      fc.property(logitsWithLabelsArb(1), magnitude, ({ logits: unit, labels: y }, scale) => {
        const z: Matrix = { ...unit, data: unit.data.map((v) => v * scale) };

        const p = softmax(z);
        const loss = crossEntropyForward(z, y);
        const g = crossEntropyBackward(p, y);

        expectAllFinite(p.data);
        expectAllFinite(g.data);
        expect(Number.isFinite(loss)).toBe(true);
        expect(loss).toBeGreaterThanOrEqual(0);
        for (let i = 0; i < z.rows; i++) {
          const rowSum = p.data.subarray(i * z.cols, (i + 1) * z.cols).reduce((a, b) => a + b, 0);
          expect(Math.abs(rowSum - 1)).toBeLessThan(1e-12);
        }
        // Per row, log Σ exp z ∈ [max, max + log k], so the mean loss is within log k of mean(max − z_y).
        const meanGap = Array.from({ length: z.rows }, (_, i) => Math.max(...z.data.subarray(i * z.cols, (i + 1) * z.cols)) - z.data[i * z.cols + y[i]]).reduce((a, b) => a + b, 0) / z.rows;
        expect(loss).toBeGreaterThanOrEqual(meanGap * (1 - 1e-14));
        expect(loss).toBeLessThanOrEqual(meanGap * (1 + 1e-14) + Math.log(z.cols) + 1e-12);
      }),
    );
  });

  it('keeps full relative accuracy for confident rows (loss log1p(e^−d), gradient −p_other)', () => {
    // Regression (found by the decimal-oracle property): log(1 + t), (log + max) − z_y and p_y − 1
    // kept only ~ε/t of their relative accuracy when the right class wins by d (t = e^−d).
    for (const d of [10, 20, 30, 40]) {
      // Logits far from 0, so an (l + max) − max evaluation order would also lose the loss.
      const z = fromRows([[6.898261259679852, 6.898261259679852 - d]]);
      const t = Math.exp(-d);

      const loss = crossEntropyForward(z, [0]);
      const g = crossEntropyBackward(softmax(z), [0]);

      expect(Math.abs(loss - Math.log1p(t))).toBeLessThanOrEqual(8 * Number.EPSILON * Math.log1p(t));
      expect(Math.abs(g.data[0] + t / (1 + t))).toBeLessThanOrEqual(8 * Number.EPSILON * (t / (1 + t)));
      expect(g.data[0] + g.data[1]).toBe(0);
    }
  });

  it('a confidently right huge-logit row has loss 0 and a confidently wrong one loses the gap', () => {
    const z = fromRows([[1e6, -1e6], [1e6, -1e6]]);

    expect(crossEntropyForward(z, [0, 0])).toBe(0);
    expect(crossEntropyForward(z, [1, 1])).toBe(2e6);
  });
});

describe('l2Penalty', () => {
  it('is λ Σ w² over every matrix', () => {
    expect(l2Penalty([fromRows([[1, -2]]), fromRows([[3], [0]])], 0.5)).toBe(0.5 * (1 + 4 + 9));
  });
});
