import { ReferenceArgumentError, describeValue } from './errors.js';
import { cloneMatrix, zeros, type Matrix } from './matrix.js';
import { createPrng, nextNormal, type Prng } from './prng.js';

/**
 * Architecture and batch-norm conventions. k = hiddenDims.length + 1 linear layers:
 * `{Linear → BatchNorm → ReLU} × (k−1) → Linear → softmax`.
 *
 * Conventions (shared with @bnmlp/core):
 * - Samples are rows: X is n × inputDim, W_l is dIn × dOut, scores S = X W + b.
 * - BatchNorm normalizes with the biased batch variance (divide by n) and ε inside the sqrt:
 *   ŝ = (s − μ) / sqrt(σ² + ε).
 * - Running averages: avg = α·avg + (1 − α)·batch, where `runningAverageKeep` is α
 *   (PyTorch's `momentum` m equals 1 − α). The running variance stores the biased batch variance.
 */
export interface NetworkConfig {
  readonly inputDim: number;
  readonly hiddenDims: readonly number[];
  readonly classes: number;
  /** BatchNorm after every hidden linear layer. */
  readonly batchNorm: boolean;
  /** Learnable per-feature scale γ and shift β after normalization (the 2017 course version has none). */
  readonly bnAffine: boolean;
  /** ε inside the square root. */
  readonly eps: number;
  /** α in avg = α·avg + (1 − α)·batch. */
  readonly runningAverageKeep: number;
}

export interface BatchNormState {
  gamma: Float64Array | null;
  beta: Float64Array | null;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

export interface Layer {
  W: Matrix;
  b: Float64Array;
  /** Present on hidden layers when config.batchNorm. */
  bn: BatchNormState | null;
}

export interface Network {
  readonly config: NetworkConfig;
  readonly layers: Layer[];
}

export type InitScheme =
  | { readonly kind: 'he' }
  | { readonly kind: 'xavier' }
  /** Every weight ~ N(0, sigma²): the report's sensitivity-to-initialization experiments. */
  | { readonly kind: 'normal'; readonly sigma: number };

export const DEFAULT_CONFIG = {
  batchNorm: true,
  bnAffine: true,
  eps: 1e-5,
  runningAverageKeep: 0.9,
} as const;

export type NetworkConfigInput = Pick<NetworkConfig, 'inputDim' | 'hiddenDims' | 'classes'> &
  Partial<Omit<NetworkConfig, 'inputDim' | 'hiddenDims' | 'classes'>>;

/** Defaults filled in and every field validated; `op` names the caller in errors (e.g. networkFromWeights). */
export function resolveConfig(input: NetworkConfigInput, op = 'createNetwork'): NetworkConfig {
  if (!Array.isArray(input.hiddenDims))
    throw new ReferenceArgumentError(op, 'hiddenDims', 'an array of positive integers', describeValue(input.hiddenDims));
  const config: NetworkConfig = { ...DEFAULT_CONFIG, ...input, hiddenDims: [...input.hiddenDims] };
  const positiveInt = (name: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw new ReferenceArgumentError(op, name, 'a positive integer', describeValue(v));
  };
  positiveInt('inputDim', config.inputDim);
  positiveInt('classes', config.classes);
  config.hiddenDims.forEach((d, i) => positiveInt(`hiddenDims[${i}]`, d));
  // A weights file's "false" string would otherwise be truthy.
  for (const name of ['batchNorm', 'bnAffine'] as const)
    if (typeof config[name] !== 'boolean') throw new ReferenceArgumentError(op, name, 'a boolean', describeValue(config[name]));
  if (!(config.eps > 0) || !Number.isFinite(config.eps))
    throw new ReferenceArgumentError(op, 'eps', 'a finite number > 0', describeValue(config.eps));
  if (!(config.runningAverageKeep >= 0 && config.runningAverageKeep <= 1))
    throw new ReferenceArgumentError(op, 'runningAverageKeep', 'a number in [0, 1]', describeValue(config.runningAverageKeep));
  return config;
}

export function layerDims(config: NetworkConfig): Array<[number, number]> {
  const dims = [config.inputDim, ...config.hiddenDims, config.classes];
  return dims.slice(0, -1).map((d, l) => [d, dims[l + 1]]);
}

export function initStd(scheme: InitScheme, dIn: number, dOut: number): number {
  switch (scheme.kind) {
    case 'he':
      return Math.sqrt(2 / dIn);
    case 'xavier':
      return Math.sqrt(2 / (dIn + dOut));
    case 'normal':
      return scheme.sigma;
  }
}

function validateInit(init: InitScheme): void {
  const op = 'createNetwork';
  const kind = (init as { kind?: unknown } | null)?.kind;
  if (kind !== 'he' && kind !== 'xavier' && kind !== 'normal')
    throw new ReferenceArgumentError(op, 'init.kind', "'he', 'xavier' or 'normal'", describeValue(kind));
  // An unknown kind or a bad sigma would otherwise give NaN weights silently.
  if (init.kind === 'normal' && !(Number.isFinite(init.sigma) && init.sigma >= 0))
    throw new ReferenceArgumentError(op, 'init.sigma', 'a finite number >= 0', describeValue(init.sigma));
}

/**
 * A new network: W ~ N(0, std²) by the init scheme, drawn row by row from `prng` (layer 1 first);
 * b = 0, γ = 1, β = 0, running mean 0, running variance 1.
 */
export function createNetwork(configInput: NetworkConfigInput, init: InitScheme = { kind: 'he' }, prng: Prng = createPrng(0)): Network {
  const config = resolveConfig(configInput);
  validateInit(init);
  const dims = layerDims(config);
  const layers = dims.map(([dIn, dOut], l): Layer => {
    const std = initStd(init, dIn, dOut);
    const W = zeros(dIn, dOut);
    for (let i = 0; i < W.data.length; i++) W.data[i] = std * nextNormal(prng);
    const hidden = l < dims.length - 1;
    const bn: BatchNormState | null =
      hidden && config.batchNorm
        ? {
            gamma: config.bnAffine ? new Float64Array(dOut).fill(1) : null,
            beta: config.bnAffine ? new Float64Array(dOut) : null,
            runningMean: new Float64Array(dOut),
            runningVar: new Float64Array(dOut).fill(1),
          }
        : null;
    return { W, b: new Float64Array(dOut), bn };
  });
  return { config, layers };
}

export function cloneNetwork(net: Network): Network {
  return {
    config: { ...net.config, hiddenDims: [...net.config.hiddenDims] },
    layers: net.layers.map((layer) => ({
      W: cloneMatrix(layer.W),
      b: Float64Array.from(layer.b),
      bn: layer.bn && {
        gamma: layer.bn.gamma && Float64Array.from(layer.bn.gamma),
        beta: layer.bn.beta && Float64Array.from(layer.bn.beta),
        runningMean: Float64Array.from(layer.bn.runningMean),
        runningVar: Float64Array.from(layer.bn.runningVar),
      },
    })),
  };
}

export type ParameterKind = 'W' | 'b' | 'gamma' | 'beta';

/** One trainable parameter, named as the report names them: W1, b1, gamma1, beta1 (1-based layers). */
export interface ParameterRef {
  readonly name: string;
  readonly kind: ParameterKind;
  /** 0-based layer index. */
  readonly layer: number;
  readonly shape: readonly number[];
  /** The live storage: writing into it changes the network. */
  readonly values: Float64Array;
}

/** Every trainable parameter, layer by layer: W, b, gamma, beta. Running averages are not parameters. */
export function parameters(net: Network): ParameterRef[] {
  const refs: ParameterRef[] = [];
  net.layers.forEach((layer, l) => {
    const n = l + 1;
    refs.push({ name: `W${n}`, kind: 'W', layer: l, shape: [layer.W.rows, layer.W.cols], values: layer.W.data });
    refs.push({ name: `b${n}`, kind: 'b', layer: l, shape: [layer.b.length], values: layer.b });
    if (layer.bn?.gamma) refs.push({ name: `gamma${n}`, kind: 'gamma', layer: l, shape: [layer.bn.gamma.length], values: layer.bn.gamma });
    if (layer.bn?.beta) refs.push({ name: `beta${n}`, kind: 'beta', layer: l, shape: [layer.bn.beta.length], values: layer.bn.beta });
  });
  return refs;
}
