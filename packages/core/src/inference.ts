import * as tf from '@tensorflow/tfjs-core';
import { validateFloat32Matrix, validateLabels, validateRowCount, type Float32Matrix, type Labels } from './api.js';
import { CoreArgumentError, describeValue } from './errors.js';
import { validateModel, type CoreModel } from './model.js';
import { inferenceLogits } from './network.js';
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
  validateModel(op, model);
  const { inputDim, classes } = model.config;
  validateFloat32Matrix(op, x, inputDim);
  validateRowCount(op, model, x.rows, 'inference');
  const chunkSize = options.chunkSize ?? 1000;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new CoreArgumentError(op, 'chunkSize', 'a positive integer', describeValue(chunkSize));
  if (options.labels) validateLabels(op, options.labels, x.rows, classes);

  const probabilities = new Float32Array(x.rows * classes);
  const predictions = new Int32Array(x.rows);
  const exps = new Float64Array(classes);
  let lossSum = 0;
  for (let start = 0; start < x.rows; start += chunkSize) {
    const rows = Math.min(chunkSize, x.rows - start);
    const view = x.data.subarray(start * inputDim, (start + rows) * inputDim);
    const logitsTensor = tf.tidy(() => {
      // On the kernel threads, layer 1 reads the rows straight from X (one copy, no tensor of the chunk).
      const firstScores = threadedScoresOfRows(view, rows, model.layers[0].W, model.layers[0].b);
      const input = firstScores ? tf.zeros([0, inputDim]) as tf.Tensor2D : tf.tensor2d(view, [rows, inputDim], 'float32');
      return inferenceLogits(model, input, firstScores);
    });
    const logits = logitsTensor.dataSync() as Float32Array;
    logitsTensor.dispose();
    for (let i = 0; i < rows; i++) {
      // Log-softmax in float64 (tfjs's would be float32 and 6 kernels per chunk): p = e^(z − max) / Σ.
      const row = i * classes;
      let best = 0;
      for (let j = 1; j < classes; j++) if (logits[row + j] > logits[row + best]) best = j;
      const max = logits[row + best];
      let sum = 0;
      for (let j = 0; j < classes; j++) sum += (exps[j] = Math.exp(logits[row + j] - max));
      for (let j = 0; j < classes; j++) probabilities[(start + i) * classes + j] = exps[j] / sum;
      predictions[start + i] = best;
      // −log p_y = log Σ − (z_y − max): finite even where p_y itself underflows to 0.
      if (options.labels) lossSum += Math.log(sum) - (logits[row + options.labels[start + i]] - max);
    }
  }
  if (!options.labels) return { probabilities, predictions, loss: null, accuracy: null };
  let correct = 0;
  for (let i = 0; i < x.rows; i++) if (predictions[i] === options.labels[i]) correct++;
  return { probabilities, predictions, loss: lossSum / x.rows, accuracy: correct / x.rows };
}
