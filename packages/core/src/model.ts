import * as tf from '@tensorflow/tfjs-core';
import { initStd, layerDims, resolveConfig, validateInit, type InitScheme, type NetworkConfig, type NetworkConfigInput } from './config.js';
import { CoreArgumentError, describeValue } from './errors.js';
import { createPrng, nextNormal, type Prng } from './prng.js';

export interface CoreLayer {
  /** dIn × dOut. */
  readonly W: tf.Variable<tf.Rank.R2>;
  readonly b: tf.Variable<tf.Rank.R1>;
  readonly gamma: tf.Variable<tf.Rank.R1> | null;
  readonly beta: tf.Variable<tf.Rank.R1> | null;
  readonly runningMean: tf.Variable<tf.Rank.R1> | null;
  readonly runningVar: tf.Variable<tf.Rank.R1> | null;
}

/** Parameters and BN running averages as float32 tf.Variables; free with disposeModel. */
export interface CoreModel {
  readonly config: NetworkConfig;
  readonly layers: readonly CoreLayer[];
}

export interface LayerValues {
  W: Float32Array;
  b: Float32Array;
  gamma: Float32Array | null;
  beta: Float32Array | null;
  runningMean: Float32Array | null;
  runningVar: Float32Array | null;
}

export type ParameterKind = 'W' | 'b' | 'gamma' | 'beta';

export interface ParameterEntry {
  /** W1, b1, gamma1, beta1, … (1-based layers, as @bnmlp/reference and the report name them). */
  readonly name: string;
  readonly kind: ParameterKind;
  readonly layer: number;
  readonly variable: tf.Variable;
}

export function hasBatchNorm(config: NetworkConfig, layer: number): boolean {
  return config.batchNorm && layer < config.hiddenDims.length;
}

/**
 * Builds variables from plain values. Each layer must have exactly the arrays its config implies:
 * W (dIn·dOut) and b (dOut) always; γ and β (dOut) on BN layers with bnAffine; the running mean
 * and variance (dOut) on every BN layer and nowhere else. A BN layer with only one of its running
 * values would be normalised by some code paths and not by others, so it is refused here.
 */
export function modelFromValues(config: NetworkConfig, values: readonly LayerValues[]): CoreModel {
  const op = 'modelFromValues';
  const dims = layerDims(config);
  if (!Array.isArray(values) || values.length !== dims.length) {
    throw new CoreArgumentError(op, 'values', `an array of ${dims.length} layers`, describeValue(values));
  }
  dims.forEach(([dIn, dOut], l) => {
    const bn = hasBatchNorm(config, l);
    const expectArray = (key: keyof LayerValues, length: number | null) => {
      const v = values[l][key];
      const ok = length === null ? v === null : v instanceof Float32Array && v.length === length;
      if (!ok) throw new CoreArgumentError(op, `values[${l}].${key}`, length === null ? 'null' : `a Float32Array(${length})`, describeValue(v));
    };
    expectArray('W', dIn * dOut);
    expectArray('b', dOut);
    expectArray('gamma', bn && config.bnAffine ? dOut : null);
    expectArray('beta', bn && config.bnAffine ? dOut : null);
    expectArray('runningMean', bn ? dOut : null);
    expectArray('runningVar', bn ? dOut : null);
  });
  // tf.variable keeps its initial tensor alive too: create it inside tidy so only the variable remains.
  const vec = (v: Float32Array | null) => (v ? tf.tidy(() => tf.variable(tf.tensor1d(v, 'float32'))) : null);
  return {
    config,
    layers: dims.map(([dIn, dOut], l) => ({
      W: tf.tidy(() => tf.variable(tf.tensor2d(values[l].W, [dIn, dOut], 'float32'))),
      b: tf.tidy(() => tf.variable(tf.tensor1d(values[l].b, 'float32'))),
      gamma: vec(values[l].gamma),
      beta: vec(values[l].beta),
      runningMean: vec(values[l].runningMean),
      runningVar: vec(values[l].runningVar),
    })),
  };
}

/**
 * Checks a CoreModel at a public entry point: every layer holds exactly the live float32 tensors
 * its config implies, with their shapes (as modelFromValues checks values). CoreModel is a plain
 * interface a caller can assemble by hand, and a layer with a running mean but no running
 * variance, say, would be normalised by some code paths and not by others.
 */
export function validateModel(op: string, model: CoreModel): void {
  if (!model || !model.config || !Array.isArray(model.layers))
    throw new CoreArgumentError(op, 'model', 'a CoreModel { config, layers }', describeValue(model));
  const { config } = model;
  const dims = layerDims(config);
  if (model.layers.length !== dims.length) throw new CoreArgumentError(op, 'model.layers', `${dims.length} layers (the config's)`, `${model.layers.length}`);
  dims.forEach(([dIn, dOut], l) => {
    const bn = hasBatchNorm(config, l);
    const layer = model.layers[l];
    const expectTensor = (key: keyof CoreLayer, shape: readonly number[] | null) => {
      const t = layer?.[key] as tf.Tensor | null | undefined;
      const name = `model.layers[${l}].${key}`;
      if (shape === null) {
        if (t !== null) throw new CoreArgumentError(op, name, 'null (the config has no such parameter here)', describeValue(t));
        return;
      }
      const ok = t instanceof tf.Tensor && t.dtype === 'float32' && t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
      if (!ok) throw new CoreArgumentError(op, name, `a float32 tensor [${shape.join(',')}]`, describeValue(t));
      if (t.isDisposed) throw new CoreArgumentError(op, name, 'a live tensor', 'a disposed tensor (was the model disposed?)');
    };
    expectTensor('W', [dIn, dOut]);
    expectTensor('b', [dOut]);
    expectTensor('gamma', bn && config.bnAffine ? [dOut] : null);
    expectTensor('beta', bn && config.bnAffine ? [dOut] : null);
    expectTensor('runningMean', bn ? [dOut] : null);
    expectTensor('runningVar', bn ? [dOut] : null);
  });
}

export interface CreateModelOptions {
  readonly init?: InitScheme;
  /** Seed for the weights; the same seed gives the same weights as @bnmlp/reference's createNetwork. */
  readonly seed?: number;
  readonly prng?: Prng;
}

/** W ~ N(0, std²) by the init scheme (drawn row by row, layer 1 first), b = 0, γ = 1, β = 0, running mean 0, variance 1. */
export function createModel(configInput: NetworkConfigInput, options: CreateModelOptions = {}): CoreModel {
  const op = 'createModel';
  const config = resolveConfig(op, configInput);
  const init = options.init ?? { kind: 'he' };
  validateInit(op, init);
  if (options.seed !== undefined && !Number.isInteger(options.seed)) throw new CoreArgumentError(op, 'seed', 'an integer', describeValue(options.seed));
  const prng = options.prng ?? createPrng(options.seed ?? 0);
  const dims = layerDims(config);
  const values = dims.map(([dIn, dOut], l): LayerValues => {
    const std = initStd(init, dIn, dOut);
    const W = new Float32Array(dIn * dOut);
    for (let i = 0; i < W.length; i++) W[i] = std * nextNormal(prng);
    const bn = hasBatchNorm(config, l);
    return {
      W,
      b: new Float32Array(dOut),
      gamma: bn && config.bnAffine ? new Float32Array(dOut).fill(1) : null,
      beta: bn && config.bnAffine ? new Float32Array(dOut) : null,
      runningMean: bn ? new Float32Array(dOut) : null,
      runningVar: bn ? new Float32Array(dOut).fill(1) : null,
    };
  });
  return modelFromValues(config, values);
}

export function modelValues(model: CoreModel): LayerValues[] {
  const read = (v: tf.Variable | null) => (v ? (v.dataSync() as Float32Array).slice() : null);
  return model.layers.map((layer) => ({
    W: read(layer.W)!,
    b: read(layer.b)!,
    gamma: read(layer.gamma),
    beta: read(layer.beta),
    runningMean: read(layer.runningMean),
    runningVar: read(layer.runningVar),
  }));
}

export function parameterEntries(model: CoreModel): ParameterEntry[] {
  const out: ParameterEntry[] = [];
  model.layers.forEach((layer, l) => {
    const n = l + 1;
    out.push({ name: `W${n}`, kind: 'W', layer: l, variable: layer.W });
    out.push({ name: `b${n}`, kind: 'b', layer: l, variable: layer.b });
    if (layer.gamma) out.push({ name: `gamma${n}`, kind: 'gamma', layer: l, variable: layer.gamma });
    if (layer.beta) out.push({ name: `beta${n}`, kind: 'beta', layer: l, variable: layer.beta });
  });
  return out;
}

export function cloneModel(model: CoreModel): CoreModel {
  return modelFromValues(model.config, modelValues(model));
}

export function disposeModel(model: CoreModel): void {
  for (const layer of model.layers) for (const v of [layer.W, layer.b, layer.gamma, layer.beta, layer.runningMean, layer.runningVar]) v?.dispose();
}
