import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cloneNetwork, createNetwork, initStd, layerDims, parameters, resolveConfig, type InitScheme } from './network.js';
import { createPrng } from './prng.js';
import { networkCaseArb, seedArb } from './test-support/arbitraries.js';
import { expectArgumentError } from './test-support/assertions.js';

function sampleStd(values: Float64Array): number {
  let mean = 0;
  for (const v of values) mean += v;
  mean /= values.length;
  let sq = 0;
  for (const v of values) sq += (v - mean) ** 2;
  return Math.sqrt(sq / values.length);
}

describe('createNetwork', () => {
  // 300 × 400 weights: the sample std's relative standard error is 1/sqrt(2·120000) ≈ 0.2 %.
  const dIn = 300;
  const dOut = 400;
  const bigLayer = (init: InitScheme) => createNetwork({ inputDim: dIn, hiddenDims: [], classes: dOut }, init, createPrng(11)).layers[0].W.data;

  it.each([
    ['he', { kind: 'he' } as InitScheme, Math.sqrt(2 / dIn)],
    ['xavier', { kind: 'xavier' } as InitScheme, Math.sqrt(2 / (dIn + dOut))],
    ['normal(0.05)', { kind: 'normal', sigma: 0.05 } as InitScheme, 0.05],
  ])('%s init draws weights with the scheme’s standard deviation (within 2 %%)', (_name, init, expectedStd) => {
    const weights = bigLayer(init);

    expect(Math.abs(sampleStd(weights) / expectedStd - 1)).toBeLessThan(0.02);
  });

  it('initStd follows the formulas He sqrt(2/dIn), Xavier sqrt(2/(dIn+dOut)), normal sigma', () => {
    expect(initStd({ kind: 'he' }, 8, 3)).toBe(Math.sqrt(2 / 8));
    expect(initStd({ kind: 'xavier' }, 8, 3)).toBe(Math.sqrt(2 / 11));
    expect(initStd({ kind: 'normal', sigma: 0.3 }, 8, 3)).toBe(0.3);
  });

  it('each layer uses its own fan-in (He): std of a later layer follows its dIn, not the input’s', () => {
    const net = createNetwork({ inputDim: 10, hiddenDims: [200], classes: 300 }, { kind: 'he' }, createPrng(5));

    expect(Math.abs(sampleStd(net.layers[1].W.data) / Math.sqrt(2 / 200) - 1)).toBeLessThan(0.03);
  });

  it('is deterministic for a seed, differs across seeds, and advances the given PRNG', () => {
    fc.assert(
      fc.property(networkCaseArb(), seedArb, (spec, seed) => {
        const config = { inputDim: spec.inputDim, hiddenDims: spec.hiddenDims, classes: spec.classes, batchNorm: spec.batchNorm };
        const prngA = createPrng(seed);

        const a = createNetwork(config, { kind: 'he' }, prngA);
        const b = createNetwork(config, { kind: 'he' }, createPrng(seed));
        const c = createNetwork(config, { kind: 'he' }, createPrng(seed + 1));

        expect(a).toEqual(b);
        expect(a.layers[0].W.data).not.toEqual(c.layers[0].W.data);
        expect(prngA).not.toEqual(createPrng(seed));
      }),
    );
  });

  it('starts with b = 0, γ = 1, β = 0, running mean 0, running variance 1, BN on hidden layers only', () => {
    const net = createNetwork({ inputDim: 3, hiddenDims: [4, 2], classes: 5 });

    expect(layerDims(net.config)).toEqual([[3, 4], [4, 2], [2, 5]]);
    expect(net.layers.map((l) => [l.W.rows, l.W.cols])).toEqual([[3, 4], [4, 2], [2, 5]]);
    for (const layer of net.layers.slice(0, 2)) {
      expect(Array.from(layer.b)).toEqual(new Array(layer.b.length).fill(0));
      expect(Array.from(layer.bn!.gamma!)).toEqual(new Array(layer.b.length).fill(1));
      expect(Array.from(layer.bn!.beta!)).toEqual(new Array(layer.b.length).fill(0));
      expect(Array.from(layer.bn!.runningMean)).toEqual(new Array(layer.b.length).fill(0));
      expect(Array.from(layer.bn!.runningVar)).toEqual(new Array(layer.b.length).fill(1));
    }
    expect(net.layers[2].bn).toBeNull();
  });

  it('bnAffine false keeps running averages but no γ/β; batchNorm false has no BN state', () => {
    const noAffine = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, bnAffine: false });
    const noBn = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2, batchNorm: false });

    expect(noAffine.layers[0].bn).toMatchObject({ gamma: null, beta: null });
    expect(noAffine.layers[0].bn!.runningVar).toHaveLength(3);
    expect(noBn.layers[0].bn).toBeNull();
  });

  it('fills defaults ε = 1e-5, α = 0.9, BN with affine', () => {
    expect(resolveConfig({ inputDim: 1, hiddenDims: [], classes: 2 })).toEqual({
      inputDim: 1, hiddenDims: [], classes: 2, batchNorm: true, bnAffine: true, eps: 1e-5, runningAverageKeep: 0.9,
    });
  });

  it('rejects invalid configurations, naming the argument, the expectation and the value', () => {
    const base = { inputDim: 2, hiddenDims: [3], classes: 2 };
    expectArgumentError(() => createNetwork({ ...base, inputDim: 0 }), { op: 'createNetwork', argument: 'inputDim', expected: 'a positive integer', actual: '0' });
    expectArgumentError(() => createNetwork({ ...base, classes: 2.5 }), { argument: 'classes', actual: '2.5' });
    expectArgumentError(() => createNetwork({ ...base, hiddenDims: [3, -1] }), { argument: 'hiddenDims[1]', actual: '-1' });
    expectArgumentError(() => createNetwork({ ...base, eps: 0 }), { argument: 'eps', expected: 'a finite number > 0', actual: '0' });
    expectArgumentError(() => createNetwork({ ...base, eps: Infinity }), { argument: 'eps', actual: 'Infinity' });
    expectArgumentError(() => createNetwork({ ...base, runningAverageKeep: 1.5 }), { argument: 'runningAverageKeep', expected: 'a number in [0, 1]', actual: '1.5' });
    expectArgumentError(() => createNetwork({ ...base, runningAverageKeep: NaN }), { argument: 'runningAverageKeep', actual: 'NaN' });
    // From JSON (weights files), wrong types must not slip through as truthy/iterable values.
    expectArgumentError(() => createNetwork({ ...base, batchNorm: 'false' as unknown as boolean }), { argument: 'batchNorm', expected: 'a boolean', actual: '"false"' });
    expectArgumentError(() => createNetwork({ ...base, hiddenDims: 3 as unknown as number[] }), { argument: 'hiddenDims', actual: '3' });
  });

  it('rejects invalid init schemes instead of producing NaN weights', () => {
    const config = { inputDim: 2, hiddenDims: [], classes: 2 };
    expectArgumentError(() => createNetwork(config, { kind: 'normal', sigma: NaN }), { op: 'createNetwork', argument: 'init.sigma', actual: 'NaN' });
    expectArgumentError(() => createNetwork(config, { kind: 'normal', sigma: -1 }), { argument: 'init.sigma', actual: '-1' });
    expectArgumentError(() => createNetwork(config, { kind: 'lecun' } as unknown as InitScheme), { argument: 'init.kind', actual: '"lecun"' });
  });
});

describe('cloneNetwork', () => {
  it('deep-copies parameters and running averages (no shared buffers)', () => {
    const net = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2 }, { kind: 'he' }, createPrng(3));

    const copy = cloneNetwork(net);
    expect(copy).toEqual(net);
    copy.layers[0].W.data[0] += 1;
    copy.layers[0].b[0] += 1;
    copy.layers[0].bn!.gamma![0] += 1;
    copy.layers[0].bn!.beta![0] += 1;
    copy.layers[0].bn!.runningMean[0] += 1;
    copy.layers[0].bn!.runningVar[0] += 1;
    (copy.config.hiddenDims as number[])[0] = 99;

    expect(copy).not.toEqual(net);
    expect(net).toEqual(createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2 }, { kind: 'he' }, createPrng(3)));
  });
});

describe('parameters', () => {
  it('lists W, b, gamma, beta per layer with 1-based names, live storage, and no running averages', () => {
    const net = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 4 });

    const refs = parameters(net);
    refs[0].values[0] = 42;

    expect(refs.map((r) => [r.name, r.kind, r.layer, r.shape])).toEqual([
      ['W1', 'W', 0, [2, 3]],
      ['b1', 'b', 0, [3]],
      ['gamma1', 'gamma', 0, [3]],
      ['beta1', 'beta', 0, [3]],
      ['W2', 'W', 1, [3, 4]],
      ['b2', 'b', 1, [4]],
    ]);
    expect(net.layers[0].W.data[0]).toBe(42);
  });
});
