import { existsSync } from 'node:fs';
import { disposeModel, modelToWeights, type WeightsFile } from '@bnmlp/core';
import type { PreparedData } from './dataset.js';
import { resolveRunData } from './run-folder.js';
import { parseTrainConfig, type TrainConfig } from './train-config.js';
import { trainNetwork, type EpochRecord, type RunSummary, type TrainingEvent } from './training.js';

/*
A trial is one full training run of a search, described by data only (so it can cross a process
or a queue) and answered by data only (so results travel back without a shared disk).
*/

export interface TrialSpec {
  /** The search this trial belongs to (stable across restarts of the same search). */
  readonly searchId: string;
  /** Derived from the search id and the config: the same trial always has the same id. */
  readonly trialId: string;
  /** 0-based position in the search's draw order. */
  readonly index: number;
  /** data.dir may be null (the runner picks its default data); data.checksums, when set, are checked before training. */
  readonly config: TrainConfig;
}

export type TrialStatus = 'completed' | 'diverged' | 'failed';

export interface TrialResult {
  readonly searchId: string;
  readonly trialId: string;
  readonly index: number;
  readonly status: TrialStatus;
  readonly config: TrainConfig;
  /** null when the trial failed before training ended. */
  readonly summary: RunSummary | null;
  readonly history: readonly EpochRecord[];
  /** Final weights (the bnmlp weights format), null when the trial failed. */
  readonly weights: WeightsFile | null;
  /** Why the trial diverged or failed. */
  readonly error: string | null;
  readonly seconds: number;
  /** Who ran it (host:pid, or 'local'). */
  readonly worker: string;
}

export interface RunTrialOptions {
  /** Data directory when the trial's config.data.dir is null (or not present on this machine). */
  readonly dataDir?: string;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: TrainingEvent) => void;
  /** Names this runner in results (default 'local'). */
  readonly worker?: string;
  /** Data already prepared for this trial's data spec (a worker serving many trials on the same data). */
  readonly data?: PreparedData;
}

/**
 * Runs one trial in memory (no files) and answers with data: a completed or diverged run, or a
 * failure (bad data, checksum mismatch, an exception) with its message. Aborting rejects with
 * TrialAbortedError: an abandoned trial has no result and is run again elsewhere.
 */
export async function runTrial(spec: TrialSpec, options: RunTrialOptions = {}): Promise<TrialResult> {
  const started = performance.now();
  const base = { searchId: spec.searchId, trialId: spec.trialId, index: spec.index, config: spec.config, worker: options.worker ?? 'local' };
  let outcome;
  try {
    const config = parseTrainConfig(spec.config, `trial ${spec.trialId}`);
    // A config made on another machine names a directory that may not exist here: the worker's own data then, checked by checksums.
    const local = config.data.dir && !existsSync(config.data.dir) ? { ...config, data: { ...config.data, dir: null } } : config;
    const data = options.data ?? resolveRunData(local, options.dataDir).data;
    outcome = await trainNetwork(config, data, { signal: options.signal, onEvent: options.onEvent });
  } catch (error) {
    return { ...base, status: 'failed', summary: null, history: [], weights: null, error: (error as Error).message, seconds: (performance.now() - started) / 1000 };
  }
  try {
    if (outcome.status === 'aborted') throw new TrialAbortedError(spec.trialId);
    const weights = outcome.status === 'completed' ? modelToWeights(outcome.model) : null;
    return {
      ...base, status: outcome.status, summary: outcome.summary, history: outcome.history, weights,
      error: outcome.summary.divergence?.message ?? null, seconds: (performance.now() - started) / 1000,
    };
  } finally {
    disposeModel(outcome.model);
  }
}

/** A trial stopped by its AbortSignal before it ended. */
export class TrialAbortedError extends Error {
  override readonly name = 'TrialAbortedError';
  constructor(readonly trialId: string) {
    super(`trial ${trialId} was stopped before it ended`);
  }
}
