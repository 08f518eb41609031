import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromRows } from './matrix.js';
import { cost, costAndGradients, updateRunningAverages, type Gradients } from './model.js';
import { cloneNetwork, createNetwork, parameters } from './network.js';
import { createPrng } from './prng.js';
import { createVelocity, gradientOf, momentumStep, trainStep } from './sgd.js';
import { buildNetworkCase, FULL_LIMITS, networkCaseArb, randomMatrix } from './test-support/arbitraries.js';
import { expectArgumentError } from './test-support/assertions.js';

describe('momentumStep', () => {
  it('η changing between steps (decay, cyclical) scales only the new gradient, never the stored history (exact in binary)', () => {
    // The two common conventions agree while η is constant and differ as soon as it changes:
    //   ours:  v = ρ·v + η_t·∇, θ = θ − v          other: v = ρ·v + ∇, θ = θ − η_t·v
    const grads = (g: number): Gradients => ({ layers: [{ W: fromRows([[g, g]]), b: Float64Array.from([0, 0]), gamma: null, beta: null }], input: fromRows([[0]]) });
    const cases: Array<[string, number[], number[], number[]]> = [
      // [schedule, η_t, θ after each step (ours), θ after each step (other convention)]
      // ρ = 0.5, ∇ = 8 every step, θ₀ = 0.
      // decay η = 1, 0.5, 0.25: v = 8, 8, 6; θ = −8, −16, −22. Other: v = 8, 12, 14; θ = −8, −14, −17.5.
      ['step decay', [1, 0.5, 0.25], [-8, -16, -22], [-8, -14, -17.5]],
      // cyclical η = 0.25, 1, 0.25: v = 2, 9, 6.5; θ = −2, −11, −17.5. Other: v = 8, 12, 14; θ = −2, −14, −17.5 (equal only by coincidence at the end).
      ['cyclical', [0.25, 1, 0.25], [-2, -11, -17.5], [-2, -14, -17.5]],
    ];
    for (const [name, etas, ours, other] of cases) {
      const net = createNetwork({ inputDim: 1, hiddenDims: [], classes: 2 });
      net.layers[0].W.data.set([0, 0]);
      const velocity = createVelocity(net);
      const seen: number[] = [];
      for (const eta of etas) {
        momentumStep(net, velocity, grads(8), { learningRate: eta, momentum: 0.5 });
        seen.push(net.layers[0].W.data[0]);
      }
      expect(seen, name).toEqual(ours);
      expect(seen, `${name}: not the other convention`).not.toEqual(other);
    }
  });

  it('v = ρ·v + η·∇ then θ = θ − v, on hand values (exact in binary)', () => {
    const net = createNetwork({ inputDim: 1, hiddenDims: [], classes: 2 });
    net.layers[0].W.data.set([3, 3]);
    net.layers[0].b.set([1, -1]);
    const velocity = { W1: Float64Array.from([1, -2]), b1: Float64Array.from([0, 4]) };
    const grads: Gradients = {
      layers: [{ W: fromRows([[4, 8]]), b: Float64Array.from([2, -2]), gamma: null, beta: null }],
      input: fromRows([[0]]),
    };

    momentumStep(net, velocity, grads, { learningRate: 0.25, momentum: 0.5 });

    // W: v = 0.5·(1, −2) + 0.25·(4, 8) = (1.5, 1); θ = (3, 3) − v = (1.5, 2).
    expect(Array.from(velocity.W1)).toEqual([1.5, 1]);
    expect(Array.from(net.layers[0].W.data)).toEqual([1.5, 2]);
    // b: v = 0.5·(0, 4) + 0.25·(2, −2) = (0.5, 1.5); θ = (1, −1) − v = (0.5, −2.5).
    expect(Array.from(velocity.b1)).toEqual([0.5, 1.5]);
    expect(Array.from(net.layers[0].b)).toEqual([0.5, -2.5]);
  });

  it('createVelocity has a zero buffer per trainable parameter (none for running averages)', () => {
    const net = createNetwork({ inputDim: 2, hiddenDims: [3], classes: 2 });

    const velocity = createVelocity(net);

    expect(Object.keys(velocity)).toEqual(['W1', 'b1', 'gamma1', 'beta1', 'W2', 'b2']);
    expect(Array.from(velocity.W1)).toEqual(new Array(6).fill(0));
  });
});

describe('trainStep', () => {
  it('equals costAndGradients, then momentumStep, then updateRunningAverages with the pre-update batch statistics', () => {
    fc.assert(
      fc.property(networkCaseArb({ ...FULL_LIMITS, maxDepth: 3, maxWidth: 6, maxBatch: 8 }), (spec) => {
        const { net, x, labels, lambda } = buildNetworkCase(spec);
        const sgd = { learningRate: 0.05, momentum: 0.9 };
        const stepped = cloneNetwork(net);
        const manual = cloneNetwork(net);
        const vStepped = createVelocity(stepped);
        const vManual = createVelocity(manual);

        // Two steps, so the second uses a nonzero velocity.
        for (let step = 0; step < 2; step++) {
          const reported = trainStep(stepped, vStepped, x, labels, lambda, sgd);
          const result = costAndGradients(manual, x, labels, lambda, 'train');
          momentumStep(manual, vManual, result.gradients, sgd);
          updateRunningAverages(manual, result.forward);

          expect(reported).toEqual({ cost: result.cost, loss: result.loss, accuracy: result.accuracy });
        }

        expect(stepped).toEqual(manual);
        expect(vStepped).toEqual(vManual);
        if (net.layers.some((l) => l.bn)) expect(stepped.layers[0].bn!.runningMean).not.toEqual(net.layers[0].bn!.runningMean);
      }),
    );
  });

  it('lowers the training cost on a small separable problem', () => {
    const prng = createPrng(12);
    const net = createNetwork({ inputDim: 2, hiddenDims: [8], classes: 2 }, { kind: 'he' }, prng);
    const x = randomMatrix(prng, 32, 2);
    const labels = Array.from({ length: 32 }, (_, i) => (x.data[2 * i] + x.data[2 * i + 1] > 0 ? 1 : 0));
    const velocity = createVelocity(net);
    const before = cost(net, x, labels, 0).cost;

    for (let step = 0; step < 100; step++) trainStep(net, velocity, x, labels, 0, { learningRate: 0.1, momentum: 0.9 });

    expect(cost(net, x, labels, 0).cost).toBeLessThan(0.5 * before);
  });

  it('rejects a negative or non-finite learning rate or momentum', () => {
    const { net, x, labels } = buildNetworkCase({ inputDim: 2, hiddenDims: [2], classes: 2, batch: 3, batchNorm: true, bnAffine: true, lambda: 0, seed: 1 });
    const velocity = createVelocity(net);
    const snapshot = cloneNetwork(net);

    expectArgumentError(() => trainStep(net, velocity, x, labels, 0, { learningRate: -0.1, momentum: 0.9 }), {
      op: 'trainStep', argument: 'learningRate', expected: 'a finite number >= 0', actual: '-0.1',
    });
    expectArgumentError(() => trainStep(net, velocity, x, labels, 0, { learningRate: 0.1, momentum: NaN }), { argument: 'momentum', actual: 'NaN' });
    expect(net).toEqual(snapshot);
  });
});

describe('gradientOf', () => {
  it('picks the gradient array matching a parameter reference', () => {
    const { net, x, labels } = buildNetworkCase({ inputDim: 2, hiddenDims: [3], classes: 2, batch: 4, batchNorm: true, bnAffine: true, lambda: 0, seed: 3 });
    const grads = costAndGradients(net, x, labels, 0).gradients;
    const refs = Object.fromEntries(parameters(net).map((r) => [r.name, r]));

    expect(gradientOf(grads, refs.W1)).toBe(grads.layers[0].W.data);
    expect(gradientOf(grads, refs.gamma1)).toBe(grads.layers[0].gamma);
    expect(gradientOf(grads, refs.beta1)).toBe(grads.layers[0].beta);
    expect(gradientOf(grads, refs.b2)).toBe(grads.layers[1].b);
  });
});
