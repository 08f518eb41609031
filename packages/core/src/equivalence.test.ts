import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import * as tf from '@tensorflow/tfjs-core';
import { costAndGradients, forward, type Float32Matrix } from './api.js';
import { disposeModel, modelValues, type CoreModel } from './model.js';
import { createMomentumState, disposeMomentumState, trainStep } from './train-step.js';
import { availableBackends, useBackend } from './test-support/backends.js';
import { caseArbitrary, caseData, coreModelOf, learningRateArbitrary, momentumArbitrary, referenceMatrix, referenceOf, sameReluSides } from './test-support/arbitraries.js';
import { expectClose, float32UpdateAllowance, forwardLimit, gradientLimits, roundingBounds } from './test-support/compare.js';

// Core (float32, TensorFlow.js) against the float64 reference on identical weights and batches,
// on every backend available in this run.
const backends = await availableBackends();
console.info(`equivalence suite backends: ${backends.join(', ')}`);

// Largest fraction of its limit any comparison used: how much headroom the tolerances leave.
const worst = { forward: 0, gradient: 0, update: 0, runningAverage: 0 };
function record(kind: keyof typeof worst, cmp: { usedOfLimit: number }): void {
  worst[kind] = Math.max(worst[kind], cmp.usedOfLimit);
}
let kinkSkips = 0;
let kinkChecks = 0;
afterAll(() =>
  console.info(
    `equivalence: largest fraction of limit used: forward ${worst.forward.toFixed(3)}, gradient ${worst.gradient.toFixed(3)}, ` +
      `update ${worst.update.toFixed(3)}, running averages ${worst.runningAverage.toFixed(3)}; ` +
      `skipped at ReLU kinks: ${kinkSkips} of ${kinkChecks} cases (shrinking included)`,
  ),
);

/** fast-check precondition: skip (and count) cases where float32 and float64 take different sides of a ReLU kink. */
function awayFromKinks(model: CoreModel, net: ref.Network, x: Float32Matrix, mode: ref.Mode): void {
  const clear = sameReluSides(model, net, x, mode);
  kinkChecks++;
  if (!clear) kinkSkips++;
  fc.pre(clear);
}

describe.each(backends)('core vs reference on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  test('forward probabilities in both modes agree', () => {
    fc.assert(
      fc.property(caseArbitrary(), (c) => {
        // Arrange
        const data = caseData(c);
        const model = coreModelOf(data);
        const net = referenceOf(model);
        try {
          for (const mode of ['train', 'inference'] as const) {
            awayFromKinks(model, net, data.x, mode);
            // Act
            const probs = forward(model, data.x, mode);
            const actual = probs.dataSync();
            probs.dispose();
            const expectedResult = ref.forward(net, referenceMatrix(data.x), mode);
            // Assert
            const limit = forwardLimit(roundingBounds(net, expectedResult, data.labels));
            record('forward', expectClose(`forward (${mode}, ${backend})`, 'probabilities', [c.batch, c.classes], actual, expectedResult.probs.data, limit));
          }
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  test('cost, loss, accuracy and every gradient agree', () => {
    fc.assert(
      fc.property(caseArbitrary(), (c) => {
        const data = caseData(c);
        const model = coreModelOf(data);
        const net = referenceOf(model);
        try {
          awayFromKinks(model, net, data.x, 'train');
          const core = costAndGradients(model, data.x, data.labels, c.lambda);
          const expected = ref.costAndGradients(net, referenceMatrix(data.x), data.labels, c.lambda);
          const bounds = roundingBounds(net, expected.forward, data.labels);
          expectClose(`cost (${backend})`, 'J', [1], [core.cost], [expected.cost], forwardLimit(bounds));
          expectClose(`loss (${backend})`, 'loss', [1], [core.loss], [expected.loss], forwardLimit(bounds));
          expect(core.accuracy).toBe(expected.accuracy);
          const limits = gradientLimits(bounds);
          for (const p of ref.parameters(net)) {
            const g = core.gradients[p.name];
            expect(g, `core gradient for ${p.name}`).toBeDefined();
            const cmp = expectClose(`gradient (${backend})`, p.name, p.shape, g.values, ref.gradientOf(expected.gradients, p), limits[p.name]);
            record('gradient', cmp);
          }
          // The bias before training-mode BN: exactly 0 in both.
          if (c.batchNorm) for (let l = 1; l <= c.hiddenDims.length; l++) expect(core.gradients[`b${l}`].values.every((v) => v === 0)).toBe(true);
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  test('each train step updates parameters, momentum buffers and running averages as the reference does', () => {
    fc.assert(
      fc.property(caseArbitrary(), learningRateArbitrary, momentumArbitrary, (c, learningRate, momentum) => {
        const data = caseData(c);
        const model = coreModelOf(data);
        const state = createMomentumState(model);
        const sgd = { learningRate, momentum };
        try {
          // Two steps, so the momentum history matters. Before each, the reference is synced to the
          // core's exact state, so what is compared is one step, not accumulated float32 drift.
          for (let step = 1; step <= 2; step++) {
            const net = referenceOf(model);
            const velocity: ref.Velocity = Object.fromEntries([...state.velocity].map(([name, v]) => [name, Float64Array.from(v.dataSync())]));
            awayFromKinks(model, net, data.x, 'train');
            const before = modelValues(model);
            const refResult = ref.costAndGradients(net, referenceMatrix(data.x), data.labels, c.lambda);
            const bounds = roundingBounds(net, refResult.forward, data.labels);
            const limits = gradientLimits(bounds, learningRate);

            trainStep(model, state, data.x, data.labels, { lambda: c.lambda, ...sgd });
            const refBefore = ref.cloneNetwork(net);
            ref.trainStep(net, velocity, referenceMatrix(data.x), data.labels, c.lambda, sgd);

            const after = modelValues(model);
            const label = `train step ${step} (${backend})`;
            for (const p of ref.parameters(net)) {
              const l = p.layer;
              const kind = p.kind;
              const coreUpdate = after[l][kind]!.map((v, i) => v - before[l][kind]![i]);
              const refUpdate = p.values.map((v, i) => v - ref.parameters(refBefore).find((q) => q.name === p.name)!.values[i]);
              const cmp = expectClose(label, `update of ${p.name}`, p.shape, coreUpdate, refUpdate, { ...limits[p.name], absolute: limits[p.name].absolute! + float32UpdateAllowance(before[l][kind]!) });
              record('update', cmp);
              expectClose(label, `velocity ${p.name}`, p.shape, state.velocity.get(p.name)!.dataSync(), velocity[p.name], limits[p.name]);
            }
            net.layers.forEach((layer, l) => {
              if (!layer.bn) return expect(after[l].runningMean).toBeNull();
              for (const [name, actual, expected] of [['runningMean', after[l].runningMean!, layer.bn.runningMean], ['runningVar', after[l].runningVar!, layer.bn.runningVar]] as const) {
                const cmp = expectClose(label, `${name}${l + 1}`, [actual.length], actual, expected, forwardLimit(bounds));
                record('runningAverage', cmp);
              }
            });
          }
        } finally {
          disposeModel(model);
          disposeMomentumState(state);
        }
      }),
    );
  });

  test('no tensors leak from forward, costAndGradients or trainStep', () => {
    const data = caseData({ inputDim: 8, hiddenDims: [6, 5], classes: 3, batch: 7, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 4 });
    const model = coreModelOf(data);
    const state = createMomentumState(model);
    const before = tf.memory().numTensors;
    forward(model, data.x, 'train').dispose();
    costAndGradients(model, data.x, data.labels, 0.1);
    trainStep(model, state, data.x, data.labels, { lambda: 0.1, learningRate: 0.01, momentum: 0.9 }, { returnLoss: true });
    expect(tf.memory().numTensors).toBe(before);
    disposeModel(model);
    disposeMomentumState(state);
  });
});
