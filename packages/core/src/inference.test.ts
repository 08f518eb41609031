import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import * as tf from '@tensorflow/tfjs-core';
import { forward } from './api.js';
import { predict } from './inference.js';
import { disposeModel, modelValues, type CoreModel } from './model.js';
import { availableBackends, useBackend } from './test-support/backends.js';
import { caseArbitrary, caseData, coreModelOf, referenceMatrix, referenceOf, type Case, type CaseData } from './test-support/arbitraries.js';
import { expectClose, forwardLimit, roundingBounds, type Limit } from './test-support/compare.js';

// predict (chunked, inference mode, log-softmax) against one whole-set forward pass and against
// the reference's inference-mode cost on the same weights.
const backends = await availableBackends();
console.info(`inference suite backends: ${backends.join(', ')}`);

let nearTieRows = 0;
afterAll(() => console.info(`inference: rows whose predicted class was allowed to differ (top two within the limit): ${nearTieRows}`));

function argmax(p: ArrayLike<number>, row: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (p[row * k + j] > p[row * k + best]) best = j;
  return best;
}

/** Rows whose two largest reference probabilities are within `margin`: float32 may legitimately pick either. */
function nearTies(probs: ArrayLike<number>, rows: number, k: number, margin: number): Set<number> {
  const ties = new Set<number>();
  for (let i = 0; i < rows; i++) {
    const sorted = Array.from({ length: k }, (_, j) => probs[i * k + j]).sort((a, b) => b - a);
    if (k > 1 && sorted[0] - sorted[1] <= margin) ties.add(i);
  }
  return ties;
}

function inferenceProbabilities(model: CoreModel, data: CaseData): Float32Array {
  const p = forward(model, data.x, 'inference');
  const values = p.dataSync() as Float32Array;
  p.dispose();
  return values;
}

function expectSamePredictions(label: string, actual: Int32Array, expectedProbs: ArrayLike<number>, k: number, ties: Set<number>): void {
  for (let i = 0; i < actual.length; i++) {
    const expected = argmax(expectedProbs, i, k);
    if (actual[i] !== expected) {
      expect(ties.has(i), `${label}: row ${i} predicted ${actual[i]}, expected ${expected} (not a near tie)`).toBe(true);
      nearTieRows++;
    }
  }
}

describe.each(backends)('predict on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  test.each([1000, 7])('2500 rows in chunks of %i: probabilities, predictions, loss and accuracy match one forward pass and the reference', (chunkSize) => {
    // Arrange
    const c: Case = { inputDim: 20, hiddenDims: [16, 12], classes: 5, batch: 2500, batchNorm: true, bnAffine: true, lambda: 0, seed: 77 };
    const data = caseData(c);
    const model = coreModelOf(data);
    const net = referenceOf(model);
    try {
      const whole = inferenceProbabilities(model, data);
      const expected = ref.forward(net, referenceMatrix(data.x), 'inference');
      const expectedCost = ref.cost(net, referenceMatrix(data.x), data.labels, 0, 'inference');
      const limit: Limit = forwardLimit(roundingBounds(net, expected, data.labels));
      const valuesBefore = modelValues(model);
      const tensorsBefore = tf.memory().numTensors;

      // Act
      const result = predict(model, data.x, { labels: data.labels, chunkSize });

      // Assert
      expect(tf.memory().numTensors).toBe(tensorsBefore);
      expect(modelValues(model)).toEqual(valuesBefore);
      const label = `predict, chunks of ${chunkSize} (${backend})`;
      expectClose(label, 'probabilities vs one forward', [c.batch, c.classes], result.probabilities, whole, limit);
      expectClose(label, 'probabilities vs reference', [c.batch, c.classes], result.probabilities, expected.probs.data, limit);
      const ties = nearTies(expected.probs.data, c.batch, c.classes, 2 * (limit.tolerance + limit.absolute!));
      expectSamePredictions(`${label} vs one forward`, result.predictions, whole, c.classes, ties);
      expectSamePredictions(`${label} vs reference`, result.predictions, expected.probs.data, c.classes, ties);
      expectClose(label, 'loss', [1], [result.loss!], [expectedCost.loss], limit);
      expect(Math.abs(result.accuracy! - expectedCost.accuracy)).toBeLessThanOrEqual(ties.size / c.batch);
    } finally {
      disposeModel(model);
    }
  });

  test('any chunk size gives the whole-set inference forward pass', () => {
    fc.assert(
      fc.property(caseArbitrary({ maxInput: 24, maxWidth: 16, maxBatch: 64, maxDepth: 3 }), fc.integer({ min: 1, max: 70 }), (c, chunkSize) => {
        // Arrange
        const data = caseData(c);
        const model = coreModelOf(data);
        const net = referenceOf(model);
        try {
          const whole = inferenceProbabilities(model, data);
          const expected = ref.forward(net, referenceMatrix(data.x), 'inference');
          const limit = forwardLimit(roundingBounds(net, expected, data.labels));

          // Act
          const chunked = predict(model, data.x, { chunkSize });

          // Assert
          expect(chunked.loss).toBeNull();
          expect(chunked.accuracy).toBeNull();
          expectClose(`predict, chunks of ${chunkSize} (${backend})`, 'probabilities', [c.batch, c.classes], chunked.probabilities, whole, limit);
          expectSamePredictions(`predict, chunks of ${chunkSize} (${backend})`, chunked.predictions, whole, c.classes, nearTies(expected.probs.data, c.batch, c.classes, 2 * (limit.tolerance + limit.absolute!)));
        } finally {
          disposeModel(model);
        }
      }),
    );
  });
});
