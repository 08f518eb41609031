import type { TrainConfigInput } from '@bnmlp/trainer';

/*
The model report's (DD2424 Assignment 3) experiments with its exact hyperparameters. Momentum
ρ = 0.8 and batch 100 throughout, He initialisation, η decayed per epoch.
*/

export interface Preset {
  readonly name: string;
  readonly description: string;
  readonly config: TrainConfigInput;
}

const base = { batchSize: 100 } as const;

export const PRESETS: Readonly<Record<string, Preset>> = {
  'report-best': {
    name: 'report-best',
    description: "the report's best network: 3 layers [50, 30] with BN, η 0.012721, decay 0.99, λ 0.000192, ρ 0.8, 20 epochs",
    config: {
      ...base,
      network: { hiddenDims: [50, 30], batchNorm: true },
      optimizer: { learningRate: 0.012721, momentum: 0.8, lambda: 0.000192, schedule: { kind: 'step-decay', decay: 0.99 } },
      epochs: 20,
    },
  },
  'compare-bn': {
    name: 'compare-bn',
    description: 'the BN-vs-no-BN comparison: 3 layers [50, 30], η 0.01, decay 0.99, ρ 0.8, λ 0, 15 epochs',
    config: {
      ...base,
      network: { hiddenDims: [50, 30], batchNorm: true },
      optimizer: { learningRate: 0.01, momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 0.99 } },
      epochs: 15,
    },
  },
  'lr-sweep': {
    name: 'lr-sweep',
    description: 'the learning-rate comparison: 2 layers [50], λ 1e-4, ρ 0.8, 10 epochs (η set per run)',
    config: {
      ...base,
      network: { hiddenDims: [50], batchNorm: true },
      optimizer: { learningRate: 0.029202, momentum: 0.8, lambda: 1e-4, schedule: { kind: 'step-decay', decay: 1 } },
      epochs: 10,
    },
  },
  overfit: {
    name: 'overfit',
    description: 'the sanity check: 100 training images, ρ 0.8, λ 0, 400 epochs (depth and BN set per run)',
    config: {
      ...base,
      network: { hiddenDims: [50, 30], batchNorm: true },
      optimizer: { learningRate: 0.01, momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 1 } },
      epochs: 400,
      data: { trainCount: 100, test: false },
    },
  },
  'search-coarse': {
    name: 'search-coarse',
    description: 'the coarse random search: 5,000 training / 1,000 validation images, 10 epochs, [50, 30] BN',
    config: {
      ...base,
      network: { hiddenDims: [50, 30], batchNorm: true },
      optimizer: { learningRate: 0.01, momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 0.99 } },
      epochs: 10,
      data: { trainCount: 5000, validationCount: 1000, test: false },
    },
  },
  'search-fine': {
    name: 'search-fine',
    description: 'the fine random search: 10,000 training / 1,000 validation images, 15 epochs, [50, 30] BN',
    config: {
      ...base,
      network: { hiddenDims: [50, 30], batchNorm: true },
      optimizer: { learningRate: 0.01, momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 0.99 } },
      epochs: 15,
      data: { trainCount: 10000, validationCount: 1000, test: false },
    },
  },
};

/** The overfit check's networks: 2, 3 and 4 layers. */
export const OVERFIT_DEPTHS: ReadonlyArray<{ readonly layers: number; readonly hiddenDims: readonly number[] }> = [
  { layers: 2, hiddenDims: [50] },
  { layers: 3, hiddenDims: [50, 30] },
  { layers: 4, hiddenDims: [50, 30, 20] },
];

/** The learning-rate sweep's η values (large, medium, small). */
export const LR_SWEEP_RATES: readonly number[] = [0.40573, 0.029202, 0.003215];

/** The coarse search's log10 ranges, and how many trials each stage draws by default. */
export const SEARCH_DEFAULTS = {
  coarse: { learningRate: [1e-3, 1e-1] as [number, number], lambda: [1e-5, 1e-2] as [number, number], trials: 12 },
  fine: { trials: 8 },
} as const;

/** Deep-merges plain objects (arrays and values of `over` replace those of `base`). */
export function mergeConfig<T extends object>(base: T, over: object): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const current = out[key];
    out[key] =
      value && typeof value === 'object' && !Array.isArray(value) && current && typeof current === 'object' && !Array.isArray(current) ? mergeConfig(current, value) : value;
  }
  return out as T;
}
