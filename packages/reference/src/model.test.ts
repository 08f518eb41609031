import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromRows, type Matrix } from './matrix.js';
import { accuracy, cost, costAndGradients, forward, updateRunningAverages } from './model.js';
import { cloneNetwork, createNetwork, type Network } from './network.js';
import { crossEntropyForward, l2Penalty } from './ops.js';
import { createPrng, nextNormal } from './prng.js';
import { buildNetworkCase, FULL_LIMITS, networkCaseArb, randomizeRunningAverages, randomizeShifts, randomMatrix, seedArb } from './test-support/arbitraries.js';
import { expectAllFinite, expectArgumentError, maxAbsDiff } from './test-support/assertions.js';

/** Batch norm on and at least one hidden (BN) layer. */
const bnCaseArb = networkCaseArb({ ...FULL_LIMITS, batchNorm: true, minDepth: 2 });

/** One hidden BN layer, everything explicit, for hand computations. */
function smallBnNet(): { net: Network; x: Matrix; labels: number[] } {
  const net = createNetwork({ inputDim: 2, hiddenDims: [2], classes: 2, runningAverageKeep: 0.7 });
  net.layers[0].W.data.set([1, -1, 2, 0.5]);
  net.layers[0].b.set([0.25, -0.5]);
  net.layers[0].bn!.gamma!.set([1.5, -0.75]);
  net.layers[0].bn!.beta!.set([0.1, 0.2]);
  net.layers[0].bn!.runningMean.set([0.3, -0.2]);
  net.layers[0].bn!.runningVar.set([2, 0.5]);
  net.layers[1].W.data.set([1, -2, 0.5, 1]);
  net.layers[1].b.set([0.1, -0.1]);
  return { net, x: fromRows([[1, 2], [-1, 0.5], [0, -1]]), labels: [0, 1, 1] };
}

/** Scores of the first layer by hand: s_ij = Σ_k x_ik W_kj + b_j. */
function handScores(net: Network, x: Matrix): number[][] {
  const { W, b } = net.layers[0];
  return Array.from({ length: x.rows }, (_, i) =>
    Array.from({ length: W.cols }, (_, j) => b[j] + Array.from({ length: x.cols }, (_, k) => x.data[i * x.cols + k] * W.data[k * W.cols + j]).reduce((a, c) => a + c, 0)),
  );
}

describe('forward and cost', () => {
  it('cost = mean cross-entropy of the logits + λ Σ‖W‖², accuracy from the argmax', () => {
    const { net, x, labels } = smallBnNet();

    const result = forward(net, x, 'train');
    const c = cost(net, x, labels, 0.3);

    expect(c.loss).toBe(crossEntropyForward(result.logits, labels));
    expect(c.cost).toBe(c.loss + l2Penalty(net.layers.map((l) => l.W), 0.3));
    expect(c.accuracy).toBe(accuracy(result.probs, labels));
  });

  it('accuracy counts rows whose argmax is the label (first index wins ties)', () => {
    const probs = fromRows([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.1, 0.9]]);

    expect(accuracy(probs, [1, 1, 0, 0])).toBe(0.5);
  });

  it('the λ term adds exactly 2λW to each weight gradient and nothing to b, γ, β', () => {
    fc.assert(
      fc.property(networkCaseArb(), (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);

        const withL2 = costAndGradients(net, x, labels, lambda).gradients.layers;
        const without = costAndGradients(net, x, labels, 0).gradients.layers;

        net.layers.forEach((layer, l) => {
          expect(Array.from(withL2[l].W.data)).toEqual(Array.from(without[l].W.data, (g, i) => g + 2 * lambda * layer.W.data[i]));
          expect(withL2[l].b).toEqual(without[l].b);
          expect(withL2[l].gamma).toEqual(without[l].gamma);
          expect(withL2[l].beta).toEqual(without[l].beta);
        });
      }),
    );
  });
});

describe('batch norm in the network', () => {
  it('training-mode probs are unchanged when every hidden layer’s scores become c·s + t and ε becomes c²ε', () => {
    // BN(c s + t; c² ε) = BN(s; ε) per layer, so each ReLU sees the same input and the logits match.
    fc.assert(
      fc.property(bnCaseArb, fc.double({ min: 1e-2, max: 1e2, noNaN: true }), seedArb, (spec, c, shiftSeed) => {
        const { net, x } = buildNetworkCase(spec);
        const scaled = cloneNetwork({ ...net, config: { ...net.config, eps: net.config.eps * c * c } });
        const prng = createPrng(shiftSeed);
        scaled.layers.slice(0, -1).forEach((layer) => {
          for (let i = 0; i < layer.W.data.length; i++) layer.W.data[i] *= c;
          for (let j = 0; j < layer.b.length; j++) layer.b[j] = c * layer.b[j] + 10 * nextNormal(prng);
        });

        const before = forward(net, x, 'train').probs;
        const after = forward(scaled, x, 'train').probs;

        expect(maxAbsDiff(after.data, before.data)).toBeLessThan(1e-8);
      }),
    );
  });

  it('the bias before batch norm has gradient exactly 0 in training mode', () => {
    fc.assert(
      fc.property(bnCaseArb, (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);

        const grads = costAndGradients(net, x, labels, lambda, 'train').gradients.layers;

        for (const g of grads.slice(0, -1)) expect(g.b.every((v) => v === 0)).toBe(true);
        // The output layer has no BN after it: its bias gradient is the plain column sum.
        expect(grads[grads.length - 1].b.some((v) => v !== 0)).toBe(true);
      }),
    );
  });

  it('with fixed (running) statistics the bias before BN does get a gradient (inference mode)', () => {
    const { net, x, labels } = smallBnNet();

    const b1 = costAndGradients(net, x, labels, 0, 'inference').gradients.layers[0].b;

    expect(b1.some((v) => Math.abs(v) > 1e-3)).toBe(true);
  });
});

describe('running averages', () => {
  it('updateRunningAverages applies avg = α·avg + (1 − α)·batch with the biased batch variance', () => {
    const { net, x } = smallBnNet();
    const alpha = net.config.runningAverageKeep;
    const s = handScores(net, x);
    const n = s.length;
    const batchMean = [0, 1].map((j) => s.reduce((a, row) => a + row[j], 0) / n);
    const batchVar = [0, 1].map((j) => s.reduce((a, row) => a + (row[j] - batchMean[j]) ** 2, 0) / n);

    updateRunningAverages(net, forward(net, x, 'train'));

    const bn = net.layers[0].bn!;
    expect(maxAbsDiff(bn.runningMean, [alpha * 0.3 + (1 - alpha) * batchMean[0], alpha * -0.2 + (1 - alpha) * batchMean[1]])).toBeLessThan(1e-14);
    expect(maxAbsDiff(bn.runningVar, [alpha * 2 + (1 - alpha) * batchVar[0], alpha * 0.5 + (1 - alpha) * batchVar[1]])).toBeLessThan(1e-14);
  });

  it('α = 1 keeps the running averages and α = 0 replaces them with the batch statistics', () => {
    const { net, x } = smallBnNet();
    const keep = cloneNetwork({ ...net, config: { ...net.config, runningAverageKeep: 1 } });
    const replace = cloneNetwork({ ...net, config: { ...net.config, runningAverageKeep: 0 } });
    const stats = forward(net, x, 'train').layers[0].batchNorm!;

    updateRunningAverages(keep, forward(keep, x, 'train'));
    updateRunningAverages(replace, forward(replace, x, 'train'));

    expect(keep.layers[0].bn).toEqual(net.layers[0].bn);
    expect(replace.layers[0].bn!.runningMean).toEqual(stats.mean);
    expect(replace.layers[0].bn!.runningVar).toEqual(stats.variance);
  });

  it('training-mode output does not depend on the stored running averages', () => {
    fc.assert(
      fc.property(bnCaseArb, seedArb, (spec, seed) => {
        const { net, x } = buildNetworkCase(spec);
        const other = cloneNetwork(net);
        randomizeRunningAverages(other, seed);

        expect(forward(other, x, 'train').probs).toEqual(forward(net, x, 'train').probs);
      }),
    );
  });

  it('inference mode normalizes with the running averages (hand computation)', () => {
    const { net, x } = smallBnNet();
    const { eps } = net.config;
    const bn = net.layers[0].bn!;
    const h = handScores(net, x).map((row) =>
      row.map((s, j) => Math.max(0, bn.gamma![j] * ((s - bn.runningMean[j]) / Math.sqrt(bn.runningVar[j] + eps)) + bn.beta![j])),
    );
    const W2 = net.layers[1].W.data;
    const b2 = net.layers[1].b;
    const expected = h.flatMap((row) => {
      const z = [0, 1].map((j) => b2[j] + row[0] * W2[j] + row[1] * W2[2 + j]);
      const m = Math.max(...z);
      const e = z.map((v) => Math.exp(v - m));
      return e.map((v) => v / (e[0] + e[1]));
    });

    const probs = forward(net, x, 'inference').probs;

    expect(maxAbsDiff(probs.data, expected)).toBeLessThan(1e-14);
  });

  it('inference output changes when the running averages change', () => {
    fc.assert(
      fc.property(bnCaseArb, seedArb, (spec, seed) => {
        const { net, x } = buildNetworkCase(spec);
        const other = cloneNetwork(net);
        randomizeRunningAverages(other, seed);
        // Only the first BN layer's change is guaranteed to reach the output (later ReLUs may be dead).
        const before = forward(net, x, 'inference');
        const after = forward(other, x, 'inference');

        expect(after.layers[0].preActivation.data).not.toEqual(before.layers[0].preActivation.data);
      }),
    );
  });

  it('forward, cost and costAndGradients, in either mode, change nothing in the network', () => {
    fc.assert(
      fc.property(bnCaseArb, seedArb, (spec, seed) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        randomizeRunningAverages(net, seed);
        const snapshot = cloneNetwork(net);

        for (const mode of ['train', 'inference'] as const) {
          forward(net, x, mode);
          cost(net, x, labels, lambda, mode);
          costAndGradients(net, x, labels, lambda, mode);
        }

        expect(net).toEqual(snapshot);
      }),
    );
  });

  it('an inference-mode result holds copies of the running statistics, not the live buffers', () => {
    // Regression: the cache used to alias runningMean/runningVar, so a later update rewrote it.
    const { net, x } = smallBnNet();
    const inference = forward(net, x, 'inference');
    const recorded = Float64Array.from(inference.layers[0].batchNorm!.mean);

    updateRunningAverages(net, forward(net, x, 'train'));

    expect(inference.layers[0].batchNorm!.mean).toEqual(recorded);
    expect(net.layers[0].bn!.runningMean).not.toEqual(recorded);
  });

  it('updateRunningAverages rejects an inference-mode result', () => {
    const { net, x } = smallBnNet();

    expectArgumentError(() => updateRunningAverages(net, forward(net, x, 'inference')), {
      op: 'updateRunningAverages', argument: 'result', expected: 'a training-mode forward result', actual: "mode 'inference'",
    });
  });
});

describe('edge cases', () => {
  it('a batch of identical rows: variance 0, ε dominates, the BN layer outputs exactly β and everything is finite', () => {
    const prng = createPrng(9);
    const net = createNetwork({ inputDim: 3, hiddenDims: [4], classes: 3 }, { kind: 'he' }, prng);
    randomizeShifts(net, prng);
    const row = [0.3, -1.2, 2.5];
    const x = fromRows([row, row, row, row]);

    const result = forward(net, x, 'train');
    const grads = costAndGradients(net, x, [0, 1, 2, 0], 0.1).gradients;

    const bn = result.layers[0].batchNorm!;
    expect(Array.from(bn.variance)).toEqual([0, 0, 0, 0]);
    for (let i = 0; i < 4; i++) expect(Array.from(result.layers[0].preActivation.data.subarray(i * 4, i * 4 + 4))).toEqual(Array.from(net.layers[0].bn!.beta!));
    expectAllFinite(result.probs.data);
    for (const g of grads.layers) for (const values of [g.W.data, g.b, g.gamma!, g.beta!].filter(Boolean)) expectAllFinite(values);
  });

  it('huge logits (weights × 1e6 → |logits| ~ 1e6) give finite cost and gradients in both modes', () => {
    const prng = createPrng(4);
    const net = createNetwork({ inputDim: 5, hiddenDims: [6], classes: 4 }, { kind: 'he' }, prng);
    for (let i = 0; i < net.layers[1].W.data.length; i++) net.layers[1].W.data[i] *= 1e6;
    const x = randomMatrix(prng, 8, 5);
    const labels = [0, 1, 2, 3, 0, 1, 2, 3];

    for (const mode of ['train', 'inference'] as const) {
      const result = costAndGradients(net, x, labels, 0.01, mode);

      expect(Math.max(...Array.from(result.forward.logits.data, Math.abs))).toBeGreaterThan(1e4);
      expect(Number.isFinite(result.cost)).toBe(true);
      expectAllFinite(result.forward.probs.data);
      for (const g of result.gradients.layers) for (const values of [g.W.data, g.b, g.gamma!, g.beta!]) expectAllFinite(values ?? []);
      expectAllFinite(result.gradients.input.data);
    }
  });
});

describe('validation', () => {
  const net = createNetwork({ inputDim: 4, hiddenDims: [3], classes: 3 });
  const x = randomMatrix(createPrng(1), 5, 4);
  const labels = [0, 1, 2, 0, 1];

  it('rejects a batch of 1 in training mode with batch norm (its batch variance is 0)', () => {
    const one = randomMatrix(createPrng(2), 1, 4);
    const fields = { argument: 'X', expected: 'at least 2 rows in training mode with batch norm (batch variance of 1 row is 0)', actual: '1 row' };

    expectArgumentError(() => forward(net, one, 'train'), { op: 'forward', ...fields });
    expectArgumentError(() => cost(net, one, [0], 0), { op: 'cost', ...fields });
    expectArgumentError(() => costAndGradients(net, one, [0], 0), { op: 'costAndGradients', ...fields });
  });

  it('accepts a batch of 1 in inference mode, without batch norm, or with no hidden layer', () => {
    const one = randomMatrix(createPrng(2), 1, 4);
    const noBn = createNetwork({ inputDim: 4, hiddenDims: [3], classes: 3, batchNorm: false });
    const linear = createNetwork({ inputDim: 4, hiddenDims: [], classes: 3 });

    expectAllFinite(forward(net, one, 'inference').probs.data);
    expectAllFinite(forward(noBn, one, 'train').probs.data);
    expectAllFinite(forward(linear, one, 'train').probs.data);
  });

  it('rejects X with the wrong number of columns or inconsistent data', () => {
    expectArgumentError(() => forward(net, randomMatrix(createPrng(3), 5, 2)), { op: 'forward', argument: 'X', expected: 'a matrix with 4 columns (inputDim)', actual: '5x2' });
    expectArgumentError(() => forward(net, { rows: 5, cols: 4, data: new Float64Array(19) }), { argument: 'X', expected: 'data of length rows*cols = 20', actual: 'Float64Array(19)' });
    expectArgumentError(() => forward(net, { rows: 0, cols: 4, data: new Float64Array(0) }, 'inference'), { argument: 'X', expected: 'at least one row', actual: '0 rows' });
  });

  it('rejects labels out of range, non-integer, or of the wrong length', () => {
    expectArgumentError(() => cost(net, x, [0, 3, 2, 0, 1], 0), { op: 'cost', argument: 'labels[1]', expected: 'an integer in [0, 2]', actual: '3' });
    expectArgumentError(() => cost(net, x, [0, 1, -1, 0, 1], 0), { argument: 'labels[2]', actual: '-1' });
    expectArgumentError(() => costAndGradients(net, x, [0, 1, 2, 0.5, 1], 0), { op: 'costAndGradients', argument: 'labels[3]', actual: '0.5' });
    expectArgumentError(() => cost(net, x, [0, 1], 0), { argument: 'labels', expected: 'length 5 (rows of X)', actual: 'length 2' });
  });

  it('rejects a negative, NaN or infinite λ', () => {
    expectArgumentError(() => cost(net, x, labels, -1), { op: 'cost', argument: 'lambda', expected: 'a finite number >= 0', actual: '-1' });
    expectArgumentError(() => costAndGradients(net, x, labels, NaN), { op: 'costAndGradients', argument: 'lambda', actual: 'NaN' });
    expectArgumentError(() => cost(net, x, labels, Infinity), { argument: 'lambda', actual: 'Infinity' });
  });

  it('the error message names op, argument, expectation and value', () => {
    const error = expectArgumentError(() => cost(net, x, labels, -1), {});

    expect(error.message).toBe("cost: argument 'lambda' must be a finite number >= 0, got -1");
  });
});
