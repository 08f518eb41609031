import * as tf from '@tensorflow/tfjs-core';
import { validateFloat32Matrix, validateLabels, validateRowCount, type Float32Matrix, type Labels } from './api.js';
import { CoreArgumentError, describeValue } from './errors.js';
import type { CoreModel } from './model.js';
import { forwardTrace } from './network.js';
import { threadedScoresOfRows } from './wasm-kernels.js';

export interface PredictionResult {
  /** n × classes, row-major. */
  readonly probabilities: Float32Array;
  readonly predictions: Int32Array;
  /** Mean cross-entropy and accuracy, when labels were given. */
  readonly loss: number | null;
  readonly accuracy: number | null;
}

/**
 * Inference-mode (running averages) predictions over a large set, `chunkSize` rows at a time so
 * memory stays bounded by one chunk's activations. Rows are read from views of X: no copy of X.
 */
export function predict(model: CoreModel, x: Float32Matrix, options: { labels?: Labels; chunkSize?: number } = {}): PredictionResult {
  const op = 'predict';
  const { inputDim, classes } = model.config;
  validateFloat32Matrix(op, x, inputDim);
  validateRowCount(op, model, x.rows, 'inference');
  const chunkSize = options.chunkSize ?? 1000;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new CoreArgumentError(op, 'chunkSize', 'a positive integer', describeValue(chunkSize));
  if (options.labels) validateLabels(op, options.labels, x.rows, classes);

  const probabilities = new Float32Array(x.rows * classes);
  const predictions = new Int32Array(x.rows);
  let lossSum = 0;
  for (let start = 0; start < x.rows; start += chunkSize) {
    const rows = Math.min(chunkSize, x.rows - start);
    const view = x.data.subarray(start * inputDim, (start + rows) * inputDim);
    const logProbs = tf.tidy(() => {
      // On the kernel threads, layer 1 reads the rows straight from X (one copy, no tensor of the chunk).
      const firstScores = threadedScoresOfRows(view, rows, model.layers[0].W, model.layers[0].b);
      const input = firstScores ? tf.zeros([0, inputDim]) as tf.Tensor2D : tf.tensor2d(view, [rows, inputDim], 'float32');
      return tf.logSoftmax(forwardTrace(model, input, 'inference', firstScores).logits);
    });
    const logP = logProbs.dataSync() as Float32Array;
    logProbs.dispose();
    for (let i = 0; i < rows; i++) {
      let best = 0;
      for (let j = 0; j < classes; j++) {
        probabilities[(start + i) * classes + j] = Math.exp(logP[i * classes + j]);
        if (logP[i * classes + j] > logP[i * classes + best]) best = j;
      }
      predictions[start + i] = best;
      // −log p_y from log-softmax: finite even where p_y itself underflows to 0.
      if (options.labels) lossSum -= logP[i * classes + options.labels[start + i]];
    }
  }
  if (!options.labels) return { probabilities, predictions, loss: null, accuracy: null };
  let correct = 0;
  for (let i = 0; i < x.rows; i++) if (predictions[i] === options.labels[i]) correct++;
  return { probabilities, predictions, loss: lossSum / x.rows, accuracy: correct / x.rows };
}
