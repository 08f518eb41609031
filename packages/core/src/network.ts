import * as tf from '@tensorflow/tfjs-core';
import {
  batchNormReluBackward, batchNormReluForward, batchNormReluInference, denseInputGradient, denseMomentumStep, denseScores, denseWeightGradient, softmaxCrossEntropy, sumOfSquares,
  threadedMomentumStepOfRows,
} from './wasm-kernels.js';
import type { RowsRef } from './dense-threads.js';
import type { CoreModel } from './model.js';

// The hand-written float32 forward and backward passes, op for op the math of
// @bnmlp/reference (ops.ts, batch-norm.ts). All functions here expect to run inside tf.tidy and
// never validate: the public entry points in api.ts do that once.
//
// On the wasm backend, matMul with transposeA/transposeB takes a slow path, so transposes are
// explicit (see the benchmark notes in README), and the first layer's large products run in our
// own kernels (wasm-kernels.ts), as do training-mode BN + ReLU.

export type Mode = 'train' | 'inference';

export interface LayerTrace {
  readonly input: tf.Tensor2D;
  /** ŝ (BN layers) — the normalized scores. */
  readonly normalized: tf.Tensor2D | null;
  /** 1 / sqrt(σ² + ε) per feature (BN layers). */
  readonly invStd: tf.Tensor1D | null;
  /** Batch mean and biased variance (training-mode BN layers), for the running averages. */
  readonly batchMean: tf.Tensor1D | null;
  readonly batchVar: tf.Tensor1D | null;
  /** The ReLU's input (hidden layers); the logits on the last layer. */
  readonly preActivation: tf.Tensor2D;
}

export interface ForwardTrace {
  readonly layers: LayerTrace[];
  readonly logits: tf.Tensor2D;
}

/**
 * `firstScores`: layer 1's x·W + b when the caller computed it already (inference straight from
 * rows in memory, see threadedScoresOfRows); x is then only the trace's record of the input.
 */
export function forwardTrace(model: CoreModel, x: tf.Tensor2D, mode: Mode, firstScores: tf.Tensor2D | null = null): ForwardTrace {
  const { eps } = model.config;
  const traces: LayerTrace[] = [];
  let h = x;
  model.layers.forEach((layer, l) => {
    const scores = l === 0 && firstScores ? firstScores : denseScores(h, layer.W, layer.b, mode === 'inference');
    let trace: LayerTrace = { input: h, normalized: null, invStd: null, batchMean: null, batchVar: null, preActivation: scores };
    let relu: tf.Tensor2D | null = null;
    // Training-mode BN + ReLU (BN layers are hidden layers) in one wasm kernel where available (same math as below).
    const hidden = l < model.layers.length - 1;
    const fused = mode === 'train' && hidden && layer.runningMean && layer.runningVar ? batchNormReluForward(scores, layer.gamma, layer.beta, eps) : null;
    if (fused) {
      trace = {
        input: h, normalized: fused.normalized, invStd: fused.invStd, batchMean: fused.mean, batchVar: fused.variance, preActivation: fused.pre,
      };
      relu = fused.relu;
    } else if (layer.runningMean && layer.runningVar) {
      let mean: tf.Tensor1D;
      let variance: tf.Tensor1D;
      let centered: tf.Tensor2D;
      if (mode === 'train') {
        // Two-pass variance: mean first, then mean of squared deviations (no E[x²] − E[x]² cancellation).
        mean = tf.mean(scores, 0);
        centered = tf.sub(scores, mean);
        variance = tf.mean(tf.square(centered), 0);
      } else {
        mean = layer.runningMean;
        variance = layer.runningVar;
        centered = tf.sub(scores, mean);
      }
      const invStd = tf.rsqrt(tf.add(variance, eps)) as tf.Tensor1D;
      const normalized = tf.mul(centered, invStd) as tf.Tensor2D;
      let pre = normalized;
      if (layer.gamma) pre = tf.mul(pre, layer.gamma);
      if (layer.beta) pre = tf.add(pre, layer.beta);
      trace = {
        input: h,
        normalized,
        invStd,
        batchMean: mode === 'train' ? mean : null,
        batchVar: mode === 'train' ? variance : null,
        preActivation: pre,
      };
    }
    traces.push(trace);
    if (hidden) h = relu ?? tf.relu(trace.preActivation);
  });
  return { layers: traces, logits: traces[traces.length - 1].preActivation };
}

/**
 * The logits of forwardTrace(model, x, 'inference', firstScores), without the rest of the trace
 * (predict): a hidden BN layer's normalize, scale, shift and ReLU run as one kernel where
 * available, the same float32 operations in the same order, so the same bits. With predict's
 * log-softmax moved into its own loop, a 1,000-row chunk of the report network runs 8 tfjs
 * kernels after x·W instead of about 22: 2.3 → 1.2 ms (.scratch timers, 2026-12-02).
 */
export function inferenceLogits(model: CoreModel, x: tf.Tensor2D, firstScores: tf.Tensor2D | null = null): tf.Tensor2D {
  const { eps } = model.config;
  const last = model.layers.length - 1;
  let h = x;
  for (const [l, layer] of model.layers.entries()) {
    const scores = l === 0 && firstScores ? firstScores : denseScores(h, layer.W, layer.b, true);
    const fused = l < last && layer.runningMean && layer.runningVar
      ? batchNormReluInference(scores, layer.runningMean, layer.runningVar, eps, layer.gamma, layer.beta)
      : null;
    if (fused) {
      h = fused;
      continue;
    }
    // Anything else (no kernels, a network without BN): the layer as forwardTrace computes it.
    const one = forwardTrace({ ...model, layers: [layer] }, h, 'inference', scores);
    if (l === last) return one.logits;
    h = tf.relu(one.logits);
  }
  throw new Error('inferenceLogits: a model has at least one layer');
}

export interface LayerGradientTensors {
  /** null when the momentum step of W was fused into the backward pass (`weightSteps`). */
  W: tf.Tensor2D | null;
  /** null for the bias before training-mode BN: exactly 0 (Note [BN backward through batch statistics], @bnmlp/reference batch-norm.ts). */
  b: tf.Tensor1D | null;
  gamma: tf.Tensor1D | null;
  beta: tf.Tensor1D | null;
}

/** Momentum settings and each layer's W velocity, for a backward pass that steps W itself. */
export interface FusedWeightSteps {
  readonly learningRate: number;
  readonly momentum: number;
  readonly velocity: readonly tf.Tensor2D[];
  /**
   * The batch as rows, when layer 1's x·W ran on the kernel threads from them (the trace's input
   * is then only a placeholder): its weight step reads them there too.
   */
  readonly firstLayerRows?: RowsRef;
}

export interface BackwardResult {
  readonly layers: LayerGradientTensors[];
  /** ∂J/∂X, with `needInputGradient`. */
  readonly input: tf.Tensor2D | null;
  /** With `weightSteps`: each layer's new W and W velocity (v' = ρv + η∂J/∂W, W' = W − v'), for the caller to assign. */
  readonly weightSteps: Array<{ w: tf.Tensor2D; v: tf.Tensor2D }> | null;
  /** The mean cross-entropy, when the loss layer's kernel computed it on the way (else null: use lossTensors). */
  readonly crossEntropy: tf.Scalar | null;
}

/**
 * Gradients of J = mean CE + λ Σ‖W‖² given one-hot labels. `needInputGradient` adds ∂J/∂X
 * (tests only: the first layer's G Wᵀ is skipped otherwise). With `weightSteps` the W gradients
 * are not returned (W: null) but folded into each W's momentum step (see denseMomentumStep).
 */
export function backwardTrace(
  model: CoreModel, trace: ForwardTrace, oneHot: tf.Tensor2D, lambda: number, mode: Mode, needInputGradient = false,
  weightSteps?: FusedWeightSteps,
): BackwardResult {
  const steps: Array<{ w: tf.Tensor2D; v: tf.Tensor2D }> | null = weightSteps ? new Array(model.layers.length) : null;
  const n = oneHot.shape[0];
  const grads: LayerGradientTensors[] = new Array(model.layers.length);
  // ∂(mean CE)/∂logits = (softmax − Y) / n; the kernel also gives the mean CE.
  const top = softmaxCrossEntropy(trace.logits, oneHot);
  let g = top ? top.gradient : (tf.div(tf.sub(tf.softmax(trace.logits), oneHot), n) as tf.Tensor2D);
  for (let l = model.layers.length - 1; l >= 0; l--) {
    const layer = model.layers[l];
    const t = trace.layers[l];
    let dGamma: tf.Tensor1D | null = null;
    let dBeta: tf.Tensor1D | null = null;
    let dB: tf.Tensor1D | null;
    // ReLU and training-mode BN backward in one wasm kernel where available (same math as below).
    const hidden = l < model.layers.length - 1;
    const fused = mode === 'train' && hidden && t.normalized && t.invStd ? batchNormReluBackward(g, t.preActivation, t.normalized, t.invStd, layer.gamma) : null;
    if (!fused && hidden) g = tf.mul(g, tf.step(t.preActivation, 0)) as tf.Tensor2D;
    if (fused) {
      if (layer.gamma) dGamma = fused.dGamma;
      if (layer.beta) dBeta = fused.dBeta;
      g = fused.gS;
      dB = null;
    } else if (t.normalized && t.invStd) {
      if (layer.gamma) dGamma = tf.sum(tf.mul(g, t.normalized), 0) as tf.Tensor1D;
      if (layer.beta) dBeta = tf.sum(g, 0) as tf.Tensor1D;
      const gHat = layer.gamma ? (tf.mul(g, layer.gamma) as tf.Tensor2D) : g;
      if (mode === 'train') {
        // Note [BN backward through batch statistics] (@bnmlp/reference batch-norm.ts):
        // ∂J/∂s = (1/σ̃) (ĝ − mean(ĝ) − ŝ · mean(ĝ ⊙ ŝ)).
        const meanG = tf.mean(gHat, 0);
        const meanGXhat = tf.mean(tf.mul(gHat, t.normalized), 0);
        g = tf.mul(tf.sub(tf.sub(gHat, meanG), tf.mul(t.normalized, meanGXhat)), t.invStd) as tf.Tensor2D;
        dB = null;
      } else {
        g = tf.mul(gHat, t.invStd) as tf.Tensor2D;
        dB = tf.sum(g, 0) as tf.Tensor1D;
      }
    } else {
      // The loss layer's bias gradient comes with the loss kernel's gradient where that ran.
      dB = top && l === model.layers.length - 1 ? top.biasGradient : (tf.sum(g, 0) as tf.Tensor1D);
    }
    let dW: tf.Tensor2D | null = null;
    if (steps && weightSteps) {
      const { learningRate, momentum, velocity, firstLayerRows } = weightSteps;
      const settings = { lambda, learningRate, momentum };
      const rows = l === 0 ? firstLayerRows : undefined;
      steps[l] = (rows && threadedMomentumStepOfRows(rows, g, layer.W, velocity[l], settings)) ||
        denseMomentumStep(rows ? tf.tensor2d(rows.rows.subarray(0, n * layer.W.shape[0]), [n, layer.W.shape[0]]) : t.input, g, layer.W, velocity[l], settings);
    } else {
      dW = denseWeightGradient(t.input, g, layer.W, lambda);
    }
    grads[l] = { W: dW, b: dB, gamma: dGamma, beta: dBeta };
    if (l > 0 || needInputGradient) g = denseInputGradient(g, layer.W);
  }
  return { layers: grads, input: needInputGradient ? g : null, weightSteps: steps, crossEntropy: top ? top.loss : null };
}

/** Mean cross-entropy from logits via log-softmax (finite for huge logits), and the L2 term. */
export function lossTensors(model: CoreModel, logits: tf.Tensor2D, oneHot: tf.Tensor2D, lambda: number): { loss: tf.Scalar; penalty: tf.Scalar } {
  const loss = tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  const penalty = lambda === 0 ? tf.scalar(0) : (tf.mul(tf.addN(model.layers.map((layer) => sumOfSquares(layer.W))), lambda) as tf.Scalar);
  return { loss, penalty };
}
