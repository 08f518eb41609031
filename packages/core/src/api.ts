import * as tf from '@tensorflow/tfjs-core';
import { CoreArgumentError, describeValue } from './errors.js';
import { parameterEntries, validateModel, type CoreModel } from './model.js';
import { backwardTrace, forwardTrace, lossTensors, type Mode } from './network.js';

/** A row-major float32 matrix: entry (i, j) is data[i * cols + j]. */
export interface Float32Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array;
}

/** Samples as rows: a tf.Tensor2D (float32) or a Float32Matrix. */
export type InputBatch = tf.Tensor2D | Float32Matrix;
/** Class indices in [0, classes). */
export type Labels = Int32Array | Uint8Array | Uint16Array | readonly number[];

export function isTensor(x: unknown): x is tf.Tensor {
  return x instanceof tf.Tensor;
}

/** A Float32Matrix's type and shape against the model's input width (its row minimum is checked apart). */
export function validateFloat32Matrix(op: string, x: Float32Matrix, inputDim: number): void {
  if (!x || !(x.data instanceof Float32Array)) throw new CoreArgumentError(op, 'X.data', 'a Float32Array', describeValue(x?.data));
  if (x.cols !== inputDim) throw new CoreArgumentError(op, 'X.cols', `${inputDim} (inputDim)`, describeValue(x.cols));
  if (!Number.isInteger(x.rows) || x.rows < 0) throw new CoreArgumentError(op, 'X.rows', 'a non-negative integer', describeValue(x.rows));
  if (x.data.length !== x.rows * x.cols) throw new CoreArgumentError(op, 'X.data', `length rows*cols = ${x.rows * x.cols}`, `length ${x.data.length}`);
}

/** At least 1 row, or 2 in training mode with batch norm (the batch variance of 1 row is 0). */
export function validateRowCount(op: string, model: CoreModel, rows: number, mode: Mode): void {
  const { batchNorm, hiddenDims } = model.config;
  const minRows = mode === 'train' && batchNorm && hiddenDims.length > 0 ? 2 : 1;
  if (rows < minRows)
    throw new CoreArgumentError(op, 'X', minRows === 2 ? 'at least 2 rows in training mode with batch norm' : 'at least 1 row', `${rows} row${rows === 1 ? '' : 's'}`);
}

/** Validates X against the model and returns it as a tensor (`owned`: the caller must dispose it). */
export function inputTensor(op: string, model: CoreModel, x: InputBatch, mode: Mode): { tensor: tf.Tensor2D; owned: boolean } {
  validateInputBatch(op, model, x, mode);
  if (isTensor(x)) return { tensor: x, owned: false };
  return { tensor: tf.tensor2d(x.data, [x.rows, x.cols], 'float32'), owned: true };
}

/** Checks X (a float32 tensor or Float32Matrix with the model's input width and a usable row count); returns its rows. */
export function validateInputBatch(op: string, model: CoreModel, x: InputBatch, mode: Mode): number {
  validateModel(op, model);
  const { inputDim } = model.config;
  if (isTensor(x)) {
    if (x.rank !== 2 || x.shape[1] !== inputDim) throw new CoreArgumentError(op, 'X', `a rank-2 tensor [n, ${inputDim}]`, describeValue(x));
    if (x.dtype !== 'float32') throw new CoreArgumentError(op, 'X', 'dtype float32', x.dtype);
    validateRowCount(op, model, x.shape[0], mode);
    return x.shape[0];
  }
  validateFloat32Matrix(op, x, inputDim);
  validateRowCount(op, model, x.rows, mode);
  return x.rows;
}

export function validateLabels(op: string, labels: Labels, rows: number, classes: number): void {
  if (!labels || typeof (labels as ArrayLike<number>).length !== 'number') throw new CoreArgumentError(op, 'labels', 'an Int32Array, Uint8Array or number[]', describeValue(labels));
  if (labels.length !== rows) throw new CoreArgumentError(op, 'labels', `length ${rows} (rows of X)`, `length ${labels.length}`);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= classes) throw new CoreArgumentError(op, `labels[${i}]`, `an integer in [0, ${classes - 1}]`, describeValue(y));
  }
}

export function validateNonNegative(op: string, name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new CoreArgumentError(op, name, 'a finite number >= 0', describeValue(value));
}

function validateMode(op: string, mode: unknown): asserts mode is Mode {
  if (mode !== 'train' && mode !== 'inference') throw new CoreArgumentError(op, 'mode', "'train' or 'inference'", describeValue(mode));
}

export function oneHotTensor(labels: Labels, classes: number): tf.Tensor2D {
  const data = new Float32Array(labels.length * classes);
  for (let i = 0; i < labels.length; i++) data[i * classes + labels[i]] = 1;
  return tf.tensor2d(data, [labels.length, classes], 'float32');
}

/**
 * Class probabilities (softmax of the logits), as a tensor the caller must dispose. Training mode
 * uses batch statistics; inference mode the running averages. Neither changes the model.
 */
export function forward(model: CoreModel, x: InputBatch, mode: Mode = 'train'): tf.Tensor2D {
  validateMode('forward', mode);
  const input = inputTensor('forward', model, x, mode);
  try {
    return tf.tidy(() => tf.softmax(forwardTrace(model, input.tensor, mode).logits));
  } finally {
    if (input.owned) input.tensor.dispose();
  }
}

export interface GradientArray {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

export interface CostAndGradients {
  /** J = loss + λ Σ‖W‖². */
  readonly cost: number;
  readonly loss: number;
  readonly accuracy: number;
  /** By parameter name (W1, b1, gamma1, beta1, …), same layout as the parameter. */
  readonly gradients: Record<string, GradientArray>;
  /** ∂J/∂X when asked for (`inputGradient: true`). */
  readonly inputGradient: Float32Array | null;
}

/** Cost and every parameter's gradient as plain arrays (for checks and reports; trainStep is the fast path). Changes nothing. */
export function costAndGradients(
  model: CoreModel, x: InputBatch, labels: Labels, lambda: number, options: { mode?: Mode; inputGradient?: boolean } = {},
): CostAndGradients {
  const op = 'costAndGradients';
  const mode = options.mode ?? 'train';
  validateMode(op, mode);
  validateNonNegative(op, 'lambda', lambda);
  const input = inputTensor(op, model, x, mode);
  try {
    validateLabels(op, labels, input.tensor.shape[0], model.config.classes);
    let result: CostAndGradients | null = null;
    // Everything is read back inside the tidy, so no tensor outlives this call.
    tf.tidy(() => {
      const oneHot = oneHotTensor(labels, model.config.classes);
      const trace = forwardTrace(model, input.tensor, mode);
      const { loss, penalty } = lossTensors(model, trace.logits, oneHot, lambda);
      const grads = backwardTrace(model, trace, oneHot, lambda, mode, options.inputGradient ?? false);
      const predictions = tf.argMax(trace.logits, 1).dataSync();
      let correct = 0;
      for (let i = 0; i < predictions.length; i++) if (predictions[i] === labels[i]) correct++;
      const gradients: Record<string, GradientArray> = {};
      for (const entry of parameterEntries(model)) {
        const g = grads.layers[entry.layer][entry.kind];
        // null: the bias before training-mode BN, exactly 0.
        const values = g ? (g.dataSync() as Float32Array).slice() : new Float32Array(entry.variable.size);
        gradients[entry.name] = { name: entry.name, shape: entry.variable.shape, values };
      }
      const lossValue = loss.dataSync()[0];
      result = {
        cost: lossValue + penalty.dataSync()[0],
        loss: lossValue,
        accuracy: correct / predictions.length,
        gradients,
        inputGradient: grads.input ? (grads.input.dataSync() as Float32Array).slice() : null,
      };
    });
    return result!;
  } finally {
    if (input.owned) input.tensor.dispose();
  }
}
