import { batchNormBackward, batchNormForward, normalize, scaleShiftBackward, scaleShiftForward, type BatchNormForward } from './batch-norm.js';
import { ReferenceArgumentError, describeValue } from './errors.js';
import type { Matrix } from './matrix.js';
import type { Network } from './network.js';
import { crossEntropyBackward, crossEntropyForward, l2Penalty, linearBackward, linearForward, reluBackward, reluForward, softmax } from './ops.js';

/**
 * 'train': batch norm uses the batch's own mean and biased variance (and needs ≥ 2 rows).
 * 'inference': batch norm uses the stored running averages.
 * Neither mode changes the network; running averages change only through updateRunningAverages.
 */
export type Mode = 'train' | 'inference';

export interface LayerCache {
  readonly input: Matrix;
  /** Linear scores S = X W + b (before batch norm). */
  readonly scores: Matrix;
  /** Batch norm's statistics and ŝ (training mode) or running-statistics ŝ (inference); null without BN. */
  readonly batchNorm: BatchNormForward | null;
  /** The ReLU's input (s̃ with BN, S without); for the last layer, the logits. */
  readonly preActivation: Matrix;
}

export interface ForwardResult {
  readonly mode: Mode;
  readonly layers: LayerCache[];
  readonly logits: Matrix;
  readonly probs: Matrix;
}

export interface LayerGradients {
  W: Matrix;
  b: Float64Array;
  gamma: Float64Array | null;
  beta: Float64Array | null;
}

export interface Gradients {
  readonly layers: LayerGradients[];
  /** ∂J/∂X, for tests (BN input-gradient invariants, directional checks). */
  readonly input: Matrix;
}

export interface CostResult {
  /** J = loss + λ Σ‖W‖². */
  readonly cost: number;
  /** Mean cross-entropy. */
  readonly loss: number;
  /** Fraction of rows whose argmax prediction equals the label. */
  readonly accuracy: number;
}

export function validateBatch(op: string, net: Network, x: Matrix, labels: ArrayLike<number> | null, mode: Mode): void {
  const { inputDim, classes, batchNorm, hiddenDims } = net.config;
  if (x.cols !== inputDim) throw new ReferenceArgumentError(op, 'X', `a matrix with ${inputDim} columns (inputDim)`, `${x.rows}x${x.cols}`);
  if (x.data.length !== x.rows * x.cols) throw new ReferenceArgumentError(op, 'X', `data of length rows*cols = ${x.rows * x.cols}`, describeValue(x.data));
  if (x.rows < 1) throw new ReferenceArgumentError(op, 'X', 'at least one row', '0 rows');
  if (mode === 'train' && batchNorm && hiddenDims.length > 0 && x.rows < 2)
    throw new ReferenceArgumentError(op, 'X', 'at least 2 rows in training mode with batch norm (batch variance of 1 row is 0)', `${x.rows} row`);
  if (labels) {
    if (labels.length !== x.rows) throw new ReferenceArgumentError(op, 'labels', `length ${x.rows} (rows of X)`, `length ${labels.length}`);
    for (let i = 0; i < labels.length; i++) {
      const y = labels[i];
      if (!Number.isInteger(y) || y < 0 || y >= classes)
        throw new ReferenceArgumentError(op, `labels[${i}]`, `an integer in [0, ${classes - 1}]`, describeValue(y));
    }
  }
}

export function forward(net: Network, x: Matrix, mode: Mode = 'train'): ForwardResult {
  validateBatch('forward', net, x, null, mode);
  const { eps } = net.config;
  const caches: LayerCache[] = [];
  let h = x;
  net.layers.forEach((layer, l) => {
    const scores = linearForward(h, layer.W, layer.b);
    let batchNorm: BatchNormForward | null = null;
    let preActivation = scores;
    if (layer.bn) {
      batchNorm =
        mode === 'train'
          ? batchNormForward(scores, eps)
          : // Copies: the result must not alias the live running averages (a later update would rewrite it).
            { mean: Float64Array.from(layer.bn.runningMean), variance: Float64Array.from(layer.bn.runningVar), normalized: normalize(scores, layer.bn.runningMean, layer.bn.runningVar, eps) };
      preActivation = scaleShiftForward(batchNorm.normalized, layer.bn.gamma, layer.bn.beta);
    }
    caches.push({ input: h, scores, batchNorm, preActivation });
    if (l < net.layers.length - 1) h = reluForward(preActivation);
  });
  const logits = caches[caches.length - 1].preActivation;
  return { mode, layers: caches, logits, probs: softmax(logits) };
}

export function costFromForward(net: Network, result: ForwardResult, labels: ArrayLike<number>, lambda: number): CostResult {
  const loss = crossEntropyForward(result.logits, labels);
  const cost = loss + l2Penalty(net.layers.map((layer) => layer.W), lambda);
  return { cost, loss, accuracy: accuracy(result.probs, labels) };
}

export function accuracy(probs: Matrix, labels: ArrayLike<number>): number {
  let correct = 0;
  for (let i = 0; i < probs.rows; i++) {
    let best = 0;
    for (let j = 1; j < probs.cols; j++) if (probs.data[i * probs.cols + j] > probs.data[i * probs.cols + best]) best = j;
    if (best === labels[i]) correct++;
  }
  return correct / probs.rows;
}

export function cost(net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, mode: Mode = 'train'): CostResult {
  validateBatch('cost', net, x, labels, mode);
  validateLambda('cost', lambda);
  return costFromForward(net, forward(net, x, mode), labels, lambda);
}

function validateLambda(op: string, lambda: number): void {
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new ReferenceArgumentError(op, 'lambda', 'a finite number >= 0', describeValue(lambda));
}

/** Gradients of J = mean CE + λ Σ‖W‖² for every parameter and the input, from a training- or inference-mode forward. */
export function backward(net: Network, result: ForwardResult, labels: ArrayLike<number>, lambda: number): Gradients {
  const { eps } = net.config;
  const grads: LayerGradients[] = new Array(net.layers.length);
  let g = crossEntropyBackward(result.probs, labels); // ∂J/∂logits
  for (let l = net.layers.length - 1; l >= 0; l--) {
    const layer = net.layers[l];
    const cache = result.layers[l];
    if (l < net.layers.length - 1) g = reluBackward(g, cache.preActivation);
    let gamma: Float64Array | null = null;
    let beta: Float64Array | null = null;
    if (layer.bn && cache.batchNorm) {
      const ss = scaleShiftBackward(g, cache.batchNorm.normalized, layer.bn.gamma);
      gamma = layer.bn.gamma ? ss.dGamma : null;
      beta = layer.bn.beta ? ss.dBeta : null;
      g =
        result.mode === 'train'
          ? batchNormBackward(ss.dXhat, cache.batchNorm, eps)
          : inferenceNormalizeBackward(ss.dXhat, layer.bn.runningVar, eps);
    }
    const { dW, db, dX } = linearBackward(g, cache.input, layer.W);
    for (let i = 0; i < dW.data.length; i++) dW.data[i] += 2 * lambda * layer.W.data[i];
    // Training-mode BN removes any per-feature shift, so ∂J/∂b = Σᵢ ∂J/∂sᵢ is exactly 0
    // (Note [BN backward through batch statistics]); summing would only leave ~1e-17 of rounding.
    const bias = layer.bn && result.mode === 'train' ? db.fill(0) : db;
    grads[l] = { W: dW, b: bias, gamma, beta };
    g = dX;
  }
  return { layers: grads, input: g };
}

/** With fixed (running) statistics, normalization is affine: ∂J/∂s = ∂J/∂ŝ / sqrt(var + ε). */
function inferenceNormalizeBackward(g: Matrix, runningVar: Float64Array, eps: number): Matrix {
  const d = g.cols;
  return { rows: g.rows, cols: d, data: g.data.map((v, i) => v / Math.sqrt(runningVar[i % d] + eps)) };
}

export interface CostAndGradients extends CostResult {
  readonly gradients: Gradients;
  readonly forward: ForwardResult;
}

/** Training-mode cost and the analytic gradient of every parameter. Changes nothing. */
export function costAndGradients(net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, mode: Mode = 'train'): CostAndGradients {
  validateBatch('costAndGradients', net, x, labels, mode);
  validateLambda('costAndGradients', lambda);
  const result = forward(net, x, mode);
  return { ...costFromForward(net, result, labels, lambda), gradients: backward(net, result, labels, lambda), forward: result };
}

/** In place: avg = α·avg + (1 − α)·batch for every BN layer, from a training-mode forward. */
export function updateRunningAverages(net: Network, result: ForwardResult): void {
  if (result.mode !== 'train') throw new ReferenceArgumentError('updateRunningAverages', 'result', "a training-mode forward result", `mode '${result.mode}'`);
  const alpha = net.config.runningAverageKeep;
  net.layers.forEach((layer, l) => {
    const stats = result.layers[l].batchNorm;
    if (!layer.bn || !stats) return;
    for (let j = 0; j < stats.mean.length; j++) {
      layer.bn.runningMean[j] = alpha * layer.bn.runningMean[j] + (1 - alpha) * stats.mean[j];
      layer.bn.runningVar[j] = alpha * layer.bn.runningVar[j] + (1 - alpha) * stats.variance[j];
    }
  });
}
