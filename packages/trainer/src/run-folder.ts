import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { backendInfo, disposeModel, initBackend, modelToWeights, type CoreModel, type WeightsFile } from '@bnmlp/core';
import { appendLineDurable, writeFileAtomic } from './atomic-file.js';
import { CheckpointError, readCheckpoint, writeCheckpoint, type TrainingState } from './checkpoint.js';
import { checksumsOf, prepareData, type PreparedData } from './dataset.js';
import { TrainerArgumentError } from './errors.js';
import { parseTrainConfig, type TrainConfig } from './train-config.js';
import { trainNetwork, type EpochRecord, type RunSummary, type TrainingEvent } from './training.js';

/*
A run folder (docs/run-format.md), version 1:
  run.json        { format: "bnmlp-run", version: 1, createdAt, backend, data }  written first
  config.json     the TrainConfig, with data.dir and data.checksums filled in: rerunnable as is
  history.jsonl   one EpochRecord per line, appended (fsync) as each epoch ends
  checkpoint.bin  the TrainingState after the last epoch, or at the step where the run was stopped
  weights.json    the final weights (bnmlp weights format), when the run completed
  summary.json    { format: "bnmlp-run-summary", version: 1, ...RunSummary }, when the run ended
Every file is written atomically; history.jsonl by durable single-line appends.
*/

export const RUN_FORMAT = 'bnmlp-run';
export const RUN_FORMAT_VERSION = 1;
export const RUN_FILES = {
  run: 'run.json',
  config: 'config.json',
  history: 'history.jsonl',
  checkpoint: 'checkpoint.bin',
  weights: 'weights.json',
  summary: 'summary.json',
} as const;

/** The run folder exists and holds files: pass `force` to replace them. */
export class RunFolderExistsError extends TrainerArgumentError {
  override readonly name: string = 'RunFolderExistsError';
  constructor(readonly dir: string) {
    super('startRun', 'runDir', 'a new or empty folder', `'${dir}' (it holds files; use force to replace them)`);
    this.message = `run folder ${dir} already holds files: choose another name, or force to replace it`;
  }
}

export interface RunOptions {
  /** Default data directory when config.data.dir is null. */
  readonly dataDir?: string;
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: TrainingEvent) => void;
  /** Replace an existing, non-empty run folder. */
  readonly force?: boolean;
  /** Data already prepared for this config (skips reading; the caller vouches it matches). */
  readonly data?: PreparedData;
}

export interface RunResult {
  readonly dir: string;
  readonly config: TrainConfig;
  readonly summary: RunSummary;
  readonly history: readonly EpochRecord[];
  /** Present when the run completed. */
  readonly weights: WeightsFile | null;
}

/** sha256 of a config's canonical JSON (sorted keys): what a checkpoint is tied to. */
export function configHash(config: TrainConfig): string {
  const canonical = (value: unknown): unknown =>
    Array.isArray(value) ? value.map(canonical) : value && typeof value === 'object' ? Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])])) : value;
  return createHash('sha256').update(JSON.stringify(canonical(config))).digest('hex');
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function readJson(path: string, what: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new TrainerArgumentError('readRun', what, `a readable JSON file at ${path}`, (error as NodeJS.ErrnoException).code ?? (error as Error).message);
  }
}

/** The data a config names (its dir, else `fallback`), read and checked against its checksums. */
export function resolveRunData(config: TrainConfig, fallback: string | undefined): { data: PreparedData; dir: string } {
  const dir = config.data.dir ?? fallback;
  if (!dir) throw new TrainerArgumentError('startRun', 'config.data.dir', 'a data directory (or options.dataDir)', 'null');
  return { data: prepareData(config.data, dir, config.seed), dir: resolve(dir) };
}

function prepareFolder(dir: string, force: boolean): void {
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new TrainerArgumentError('startRun', 'runDir', 'a folder path', `'${dir}' (a file)`);
    if (readdirSync(dir).length > 0) {
      if (!force) throw new RunFolderExistsError(dir);
      for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    }
  }
  mkdirSync(dir, { recursive: true });
}

async function execute(dir: string, config: TrainConfig, data: PreparedData, options: RunOptions, resume: TrainingState | null): Promise<RunResult> {
  const hash = configHash(config);
  const historyPath = join(dir, RUN_FILES.history);
  let written = resume ? resume.history.length : 0;
  const outcome = await trainNetwork(config, data, {
    signal: options.signal,
    onEvent: options.onEvent,
    resume: resume ?? undefined,
    onCheckpoint: (state) => {
      // history.jsonl first: a checkpoint never refers to epochs the history lacks.
      for (; written < state.history.length; written++) appendLineDurable(historyPath, JSON.stringify(state.history[written]));
      writeCheckpoint(join(dir, RUN_FILES.checkpoint), { configHash: hash, state });
    },
  });
  try {
    const weights = outcome.status === 'completed' ? modelToWeights(outcome.model) : null;
    if (weights) writeFileAtomic(join(dir, RUN_FILES.weights), json(weights));
    writeFileAtomic(join(dir, RUN_FILES.summary), json({ format: 'bnmlp-run-summary', version: RUN_FORMAT_VERSION, ...outcome.summary }));
    return { dir, config, summary: outcome.summary, history: outcome.history, weights };
  } finally {
    disposeModel(outcome.model as CoreModel);
  }
}

/**
 * Starts a run in `runDir`: reads the data, records the config (with the data's directory and
 * checksums) and run.json, then trains, checkpointing every epoch and on abort.
 */
export async function startRun(configInput: unknown, runDir: string, options: RunOptions = {}): Promise<RunResult> {
  const parsed = parseTrainConfig(configInput);
  const dir = resolve(runDir);
  prepareFolder(dir, options.force ?? false);
  const { data, dir: dataDir } = options.data ? { data: options.data, dir: resolve(parsed.data.dir ?? options.dataDir ?? options.data.source.dir) } : resolveRunData(parsed, options.dataDir);
  const config = parseTrainConfig({ ...parsed, data: { ...parsed.data, dir: dataDir, checksums: checksumsOf(data.source) } });
  if (!backendInfo()) await initBackend();
  writeFileAtomic(join(dir, RUN_FILES.run), json({ format: RUN_FORMAT, version: RUN_FORMAT_VERSION, createdAt: new Date().toISOString(), backend: backendInfo()?.name, data: data.source }));
  writeFileAtomic(join(dir, RUN_FILES.config), json(config));
  writeFileAtomic(join(dir, RUN_FILES.history), '');
  return execute(dir, config, data, options, null);
}

export interface RunFolder {
  readonly dir: string;
  readonly config: TrainConfig;
  readonly history: readonly EpochRecord[];
  readonly summary: (RunSummary & { format: string; version: number }) | null;
  readonly hasCheckpoint: boolean;
  readonly hasWeights: boolean;
}

/** Reads a run folder's files (validated), for reports and resume. */
export function readRunFolder(runDir: string): RunFolder {
  const dir = resolve(runDir);
  const run = readJson(join(dir, RUN_FILES.run), 'run.json') as { format?: string; version?: number };
  if (run.format !== RUN_FORMAT) throw new TrainerArgumentError('readRun', 'run.json', `format '${RUN_FORMAT}'`, JSON.stringify(run.format));
  if (run.version !== RUN_FORMAT_VERSION) throw new TrainerArgumentError('readRun', 'run.json', `version ${RUN_FORMAT_VERSION}`, String(run.version));
  const config = parseTrainConfig(readJson(join(dir, RUN_FILES.config), 'config.json'), join(dir, RUN_FILES.config));
  const historyText = existsSync(join(dir, RUN_FILES.history)) ? readFileSync(join(dir, RUN_FILES.history), 'utf8') : '';
  const history = historyText.split('\n').filter((l) => l.trim() !== '').map((line) => JSON.parse(line) as EpochRecord);
  const summaryPath = join(dir, RUN_FILES.summary);
  return {
    dir, config, history,
    summary: existsSync(summaryPath) ? (readJson(summaryPath, 'summary.json') as RunFolder['summary']) : null,
    hasCheckpoint: existsSync(join(dir, RUN_FILES.checkpoint)),
    hasWeights: existsSync(join(dir, RUN_FILES.weights)),
  };
}

/**
 * Continues a run from its checkpoint to the same bits as an uninterrupted run (same backend).
 * The data must still match the checksums in its config.
 */
export async function resumeRun(runDir: string, options: Omit<RunOptions, 'force'> = {}): Promise<RunResult> {
  const folder = readRunFolder(runDir);
  if (!folder.hasCheckpoint) throw new CheckpointError(join(folder.dir, RUN_FILES.checkpoint), 'there is no checkpoint in this run folder');
  const checkpoint = readCheckpoint(join(folder.dir, RUN_FILES.checkpoint));
  if (checkpoint.configHash !== configHash(folder.config))
    throw new CheckpointError(join(folder.dir, RUN_FILES.checkpoint), "it belongs to another config (the run's config.json changed, or the checkpoint was copied from another run)");
  if (folder.summary?.status === 'completed') throw new TrainerArgumentError('resumeRun', 'runDir', 'a run that has not completed', `'${folder.dir}' (completed)`);
  const data = options.data ?? resolveRunData(folder.config, options.dataDir).data;
  // The history file may hold epochs after the checkpoint's (a crash between the two writes): keep the checkpoint's.
  writeFileAtomic(join(folder.dir, RUN_FILES.history), checkpoint.state.history.map((r) => `${JSON.stringify(r)}\n`).join(''));
  rmSync(join(folder.dir, RUN_FILES.summary), { force: true });
  return execute(folder.dir, folder.config, data, options, checkpoint.state);
}
