import { CoreArgumentError, describeValue } from './errors.js';

/**
 * Same architecture and conventions as @bnmlp/reference (see its network.ts):
 * `{Linear → BatchNorm → ReLU} × hiddenDims.length → Linear → softmax`, samples as rows,
 * W is dIn × dOut, biased batch variance, ε inside the sqrt, running averages
 * avg = α·avg + (1 − α)·batch with α = runningAverageKeep (PyTorch momentum = 1 − α).
 */
export interface NetworkConfig {
  readonly inputDim: number;
  readonly hiddenDims: readonly number[];
  readonly classes: number;
  readonly batchNorm: boolean;
  readonly bnAffine: boolean;
  readonly eps: number;
  readonly runningAverageKeep: number;
}

export type NetworkConfigInput = Pick<NetworkConfig, 'inputDim' | 'hiddenDims' | 'classes'> &
  Partial<Omit<NetworkConfig, 'inputDim' | 'hiddenDims' | 'classes'>>;

export const DEFAULT_CONFIG = { batchNorm: true, bnAffine: true, eps: 1e-5, runningAverageKeep: 0.9 } as const;

export type InitScheme = { readonly kind: 'he' } | { readonly kind: 'xavier' } | { readonly kind: 'normal'; readonly sigma: number };

export function resolveConfig(op: string, input: NetworkConfigInput): NetworkConfig {
  if (typeof input !== 'object' || input === null) throw new CoreArgumentError(op, 'config', 'an object', describeValue(input));
  const config: NetworkConfig = { ...DEFAULT_CONFIG, ...input, hiddenDims: Array.isArray(input.hiddenDims) ? [...input.hiddenDims] : input.hiddenDims };
  const positiveInt = (name: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new CoreArgumentError(op, `config.${name}`, 'a positive integer', describeValue(v));
  };
  positiveInt('inputDim', config.inputDim);
  positiveInt('classes', config.classes);
  if (!Array.isArray(config.hiddenDims)) throw new CoreArgumentError(op, 'config.hiddenDims', 'an array of positive integers', describeValue(config.hiddenDims));
  config.hiddenDims.forEach((d, i) => positiveInt(`hiddenDims[${i}]`, d));
  if (typeof config.batchNorm !== 'boolean') throw new CoreArgumentError(op, 'config.batchNorm', 'a boolean', describeValue(config.batchNorm));
  if (typeof config.bnAffine !== 'boolean') throw new CoreArgumentError(op, 'config.bnAffine', 'a boolean', describeValue(config.bnAffine));
  if (!(config.eps > 0) || !Number.isFinite(config.eps)) throw new CoreArgumentError(op, 'config.eps', 'a finite number > 0', describeValue(config.eps));
  if (!(config.runningAverageKeep >= 0 && config.runningAverageKeep <= 1))
    throw new CoreArgumentError(op, 'config.runningAverageKeep', 'a number in [0, 1]', describeValue(config.runningAverageKeep));
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

export function validateInit(op: string, init: InitScheme): void {
  const kinds = ['he', 'xavier', 'normal'];
  if (!init || !kinds.includes(init.kind)) throw new CoreArgumentError(op, 'init.kind', `one of ${kinds.join(', ')}`, describeValue(init?.kind));
  if (init.kind === 'normal' && !(init.sigma >= 0 && Number.isFinite(init.sigma)))
    throw new CoreArgumentError(op, 'init.sigma', 'a finite number >= 0', describeValue(init.sigma));
}
