import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import * as tf from '@tensorflow/tfjs-core';
import { costAndGradients, forward } from './api.js';
import { cloneModel, disposeModel, modelValues, parameterEntries, type CoreModel } from './model.js';
import { createMomentumState, disposeMomentumState, trainStep } from './train-step.js';
import { availableBackends, useBackend } from './test-support/backends.js';
import { caseArbitrary, caseData, coreModelOf, referenceMatrix, referenceOf, type Case } from './test-support/arbitraries.js';
import { expectClose, forwardLimit, roundingBounds, runningAverageLimits, UNIT_ROUNDOFF } from './test-support/compare.js';

const backends = await availableBackends();
console.info(`train-step suite backends: ${backends.join(', ')}`);

const small: Case = { inputDim: 4, hiddenDims: [5], classes: 3, batch: 8, batchNorm: true, bnAffine: true, lambda: 0.01, seed: 3 };
const smallCases = caseArbitrary({ maxInput: 16, maxWidth: 12, maxBatch: 16, maxDepth: 3 });

function velocities(state: ReturnType<typeof createMomentumState>): Record<string, Float32Array> {
  return Object.fromEntries([...state.velocity].map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]));
}

/** The reference Gradients object holding the core's own float32 gradients (to drive ref.momentumStep with them). */
function asReferenceGradients(model: CoreModel, gradients: Record<string, { values: Float32Array }>): ref.Gradients {
  return {
    layers: model.layers.map((layer, l) => {
      const n = l + 1;
      const vec = (name: string) => (gradients[name] ? Float64Array.from(gradients[name].values) : null);
      return { W: { rows: layer.W.shape[0], cols: layer.W.shape[1], data: vec(`W${n}`)! }, b: vec(`b${n}`)!, gamma: vec(`gamma${n}`), beta: vec(`beta${n}`) };
    }),
    input: { rows: 0, cols: 0, data: new Float64Array(0) },
  };
}

describe.each(backends)('trainStep on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  test('1000 steps leave tf.memory() numTensors and numBytes unchanged', () => {
    // Arrange
    const data = caseData(small);
    const model = coreModelOf(data);
    const state = createMomentumState(model);
    try {
      trainStep(model, state, data.x, data.labels, { lambda: 0.01, learningRate: 0.05, momentum: 0.9 }); // warm-up (kernels, backend caches)
      const before = tf.memory();

      // Act: both paths (with and without reading the loss back)
      for (let step = 0; step < 1000; step++) trainStep(model, state, data.x, data.labels, { lambda: 0.01, learningRate: 0.05, momentum: 0.9 }, { returnLoss: step % 2 === 0 });

      // Assert
      const after = tf.memory();
      expect(after.numTensors).toBe(before.numTensors);
      expect(after.numBytes).toBe(before.numBytes);
    } finally {
      disposeModel(model);
      disposeMomentumState(state);
    }
  });

  test('returnLoss gives the mean cross-entropy before the step, as costAndGradients computes it', () => {
    fc.assert(
      fc.property(smallCases, (c) => {
        // Arrange
        const data = caseData(c);
        const model = coreModelOf(data);
        const state = createMomentumState(model);
        const net = referenceOf(model);
        try {
          const expected = costAndGradients(model, data.x, data.labels, c.lambda).loss;

          // Act
          const result = trainStep(model, state, data.x, data.labels, { lambda: c.lambda, learningRate: 0.1, momentum: 0.9 }, { returnLoss: true });

          // Assert
          const bounds = roundingBounds(net, ref.forward(net, referenceMatrix(data.x), 'train'), data.labels);
          expectClose(`returnLoss (${backend})`, 'loss', [1], [result.loss!], [expected], forwardLimit(bounds));
        } finally {
          disposeModel(model);
          disposeMomentumState(state);
        }
      }),
    );
  });

  test('returnLoss is the loss (not the cost) from before the update, and null unless asked for', () => {
    // Arrange: λ and η large enough that the penalty and the step each move the value far beyond rounding.
    const c = { ...small, lambda: 0.5 };
    const data = caseData(c);
    const model = coreModelOf(data);
    const probe = cloneModel(model);
    const state = createMomentumState(model);
    const probeState = createMomentumState(probe);
    const net = referenceOf(model);
    try {
      const before = costAndGradients(model, data.x, data.labels, c.lambda);
      const limit = forwardLimit(roundingBounds(net, ref.forward(net, referenceMatrix(data.x), 'train'), data.labels));

      // Act
      const silent = trainStep(probe, probeState, data.x, data.labels, { lambda: c.lambda, learningRate: 0.5, momentum: 0 });
      const result = trainStep(model, state, data.x, data.labels, { lambda: c.lambda, learningRate: 0.5, momentum: 0 }, { returnLoss: true });
      const after = costAndGradients(model, data.x, data.labels, c.lambda);

      // Assert
      expect(silent.loss).toBeNull();
      expectClose(`returnLoss (${backend})`, 'loss before the step', [1], [result.loss!], [before.loss], limit);
      // …which is neither the cost (penalty 0.5·‖W‖² apart) nor the loss after the step.
      expect(Math.abs(before.cost - before.loss)).toBeGreaterThan(1e3 * limit.tolerance);
      expect(Math.abs(after.loss - before.loss)).toBeGreaterThan(1e3 * limit.tolerance);
    } finally {
      for (const m of [model, probe]) disposeModel(m);
      for (const s of [state, probeState]) disposeMomentumState(s);
    }
  });

  test('learningRate 0 and momentum 0: parameters and buffers unchanged bit for bit; running averages avg = α·avg + (1 − α)·batch', () => {
    fc.assert(
      fc.property(caseArbitrary({ maxInput: 16, maxWidth: 12, maxBatch: 16, maxDepth: 3, minDepth: 2, batchNorm: true }), fc.double({ min: 0, max: 1, noNaN: true }), (c, alpha) => {
        // Arrange: a non-default α (runningAverageKeep), so swapping α and 1 − α is caught.
        const base = caseData(c);
        const data = { ...base, config: { ...base.config, runningAverageKeep: alpha } };
        const model = coreModelOf(data);
        const state = createMomentumState(model);
        const net = referenceOf(model);
        try {
          const before = modelValues(model);
          const statistics = ref.forward(net, referenceMatrix(data.x), 'train');

          // Act
          trainStep(model, state, data.x, data.labels, { lambda: c.lambda, learningRate: 0, momentum: 0 });

          // Assert
          const after = modelValues(model);
          for (const e of parameterEntries(model)) expect(after[e.layer][e.kind], `${e.name} after a step with η = 0`).toEqual(before[e.layer][e.kind]);
          for (const [name, v] of Object.entries(velocities(state))) expect(v.every((x) => x === 0), `velocity ${name}`).toBe(true);
          const bounds = roundingBounds(net, statistics, data.labels);
          after.forEach((layer, l) => {
            if (!layer.runningMean) return;
            const { mean, variance } = statistics.layers[l].batchNorm!;
            const limits = runningAverageLimits(bounds, l, alpha);
            const formula = (avg: Float32Array, batch: Float64Array) => Array.from(avg, (a, j) => alpha * a + (1 - alpha) * batch[j]);
            expectClose(`η = 0 step (${backend})`, `runningMean${l + 1}`, [mean.length], layer.runningMean, formula(before[l].runningMean!, mean), limits.mean);
            expectClose(`η = 0 step (${backend})`, `runningVar${l + 1}`, [variance.length], layer.runningVar!, formula(before[l].runningVar!, variance), limits.variance);
          });
        } finally {
          disposeModel(model);
          disposeMomentumState(state);
        }
      }),
    );
  });

  test('momentum buffers follow v = ρv + ηg and θ −= v, as the reference momentumStep given the same gradients', () => {
    // Arrange: a hand-sized network, three steps so the history matters; ρ and η not powers of 2.
    const c: Case = { inputDim: 3, hiddenDims: [4], classes: 3, batch: 5, batchNorm: true, bnAffine: true, lambda: 0.03, seed: 17 };
    const sgd = { learningRate: 0.3, momentum: 0.7 };
    const data = caseData(c);
    const model = coreModelOf(data);
    const state = createMomentumState(model);
    try {
      for (let step = 1; step <= 3; step++) {
        const grads = costAndGradients(model, data.x, data.labels, c.lambda).gradients;
        const net = referenceOf(model);
        const velocity: ref.Velocity = Object.fromEntries(Object.entries(velocities(state)).map(([name, v]) => [name, Float64Array.from(v)]));
        const previous = Object.fromEntries(Object.entries(velocity).map(([name, v]) => [name, Float64Array.from(v)]));

        // Act
        trainStep(model, state, data.x, data.labels, { lambda: c.lambda, ...sgd });
        ref.momentumStep(net, velocity, asReferenceGradients(model, grads), sgd);

        // Assert. Both sides use the same gradient g, so only float32 rounding separates them:
        // v = fl(fl(ρ̃·v) + fl(η̃·g)) with ρ̃, η̃ the float32 scalars, ≤ 3u(ρ|v| + η|g|) from exact;
        // θ − v rounds once more, by ≤ u|θ − v|.
        const after = modelValues(model);
        const now = velocities(state);
        for (const p of ref.parameters(net)) {
          const size = Math.max(...Array.from(previous[p.name], (v, i) => sgd.momentum * Math.abs(v) + sgd.learningRate * Math.abs(grads[p.name].values[i])));
          const vLimit = { tolerance: 0, absolute: 3 * UNIT_ROUNDOFF * size };
          expectClose(`momentum step ${step} (${backend})`, `v ${p.name}`, p.shape, now[p.name], velocity[p.name], vLimit);
          const thetaSize = Math.max(...Array.from(p.values, Math.abs));
          expectClose(`momentum step ${step} (${backend})`, p.name, p.shape, after[p.layer][p.kind]!, p.values, { tolerance: 0, absolute: vLimit.absolute + UNIT_ROUNDOFF * thetaSize });
        }
        // The buffers are not trivially 0 (b before BN has gradient 0, so its buffer stays 0).
        expect(Math.max(...Array.from(now.W1, Math.abs))).toBeGreaterThan(0);
      }
    } finally {
      disposeModel(model);
      disposeMomentumState(state);
    }
  });

  test('a tf.Tensor2D input gives the same results as the same data as a Float32Matrix, and stays usable', () => {
    // Arrange
    const data = caseData(small);
    const x = tf.tensor2d(data.x.data, [data.x.rows, data.x.cols], 'float32');
    const fromMatrix = coreModelOf(data);
    const fromTensor = cloneModel(fromMatrix);
    const stateM = createMomentumState(fromMatrix);
    const stateT = createMomentumState(fromTensor);
    const sgd = { lambda: 0.01, learningRate: 0.1, momentum: 0.9 };
    try {
      for (const mode of ['train', 'inference'] as const) {
        // Act
        const pM = forward(fromMatrix, data.x, mode);
        const pT = forward(fromTensor, x, mode);
        // Assert
        expect(pT.dataSync()).toEqual(pM.dataSync());
        tf.dispose([pM, pT]);
      }
      const cgM = costAndGradients(fromMatrix, data.x, data.labels, 0.01, { inputGradient: true });
      const cgT = costAndGradients(fromTensor, x, data.labels, 0.01, { inputGradient: true });
      expect(cgT).toEqual(cgM);
      const lossM = trainStep(fromMatrix, stateM, data.x, data.labels, sgd, { returnLoss: true });
      const lossT = trainStep(fromTensor, stateT, x, data.labels, sgd, { returnLoss: true });
      expect(lossT).toEqual(lossM);
      expect(modelValues(fromTensor)).toEqual(modelValues(fromMatrix));
      expect(velocities(stateT)).toEqual(velocities(stateM));

      // The caller's tensor was neither disposed nor changed.
      expect(x.isDisposed).toBe(false);
      expect(x.dataSync()).toEqual(data.x.data);
    } finally {
      x.dispose();
      for (const m of [fromMatrix, fromTensor]) disposeModel(m);
      for (const s of [stateM, stateT]) disposeMomentumState(s);
    }
  });
});
