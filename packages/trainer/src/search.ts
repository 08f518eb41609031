import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, truncateSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createPrng, nextUniform, type Prng } from '@bnmlp/core';
import { appendLineDurable, writeFileAtomic } from './atomic-file.js';
import { TrainerArgumentError } from './errors.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from './train-config.js';
import type { TrainingEvent } from './training.js';
import type { TrialExecutor } from './trial-executor.js';
import type { TrialResult, TrialSpec, TrialStatus } from './trial.js';

/*
Random search over η and λ (log-uniform), coarse then fine, as in the model report. A search is
data: its trials are drawn deterministically from (stage, base config, ranges, count, seed), and
every id is a hash of what defines it, so the same search command run again finds its own earlier
results (in the JSONL file, or on a queue) and runs only what is missing. Who runs a trial is the
executor's business (trial-executor.ts): in this process, a pool of child processes, a queue.
*/

/** Bounds of a log-uniform draw, in the parameter's own units (both > 0, min <= max). */
export interface LogRange {
  readonly min: number;
  readonly max: number;
}

export interface SearchRanges {
  readonly learningRate: LogRange;
  readonly lambda: LogRange;
}

export interface SearchSpec {
  /** 'coarse', 'fine', …: part of the search id, so two stages over the same ranges differ. */
  readonly stage: string;
  /** Every trial's config, with η and λ drawn (the base's own η and λ are ignored). */
  readonly baseConfig: TrainConfigInput;
  readonly ranges: SearchRanges;
  /** How many trials to draw. */
  readonly trials: number;
  /** Seeds the draws (not the training: every trial trains with baseConfig.seed). */
  readonly seed: number;
  /** Replaces the derived search id (a queue's own name, say). */
  readonly searchId?: string;
}

/** A trial's result as recorded in the results file: everything but the weights. */
export type TrialRecord = Omit<TrialResult, 'weights'>;

/** One line of a search's table, best first. */
export interface SearchRow {
  readonly trialId: string;
  readonly index: number;
  readonly learningRate: number;
  readonly lambda: number;
  /** Final-epoch accuracies; null when the trial has none (failed, diverged, no validation split). */
  readonly trainAccuracy: number | null;
  readonly validationAccuracy: number | null;
  readonly epochs: number;
  readonly status: TrialStatus;
  readonly seconds: number;
  readonly error: string | null;
}

export type SearchEvent =
  | { readonly kind: 'search-start'; readonly searchId: string; readonly total: number; readonly done: number; readonly pending: number; readonly executor: string; readonly concurrency: number }
  | { readonly kind: 'trial-start'; readonly trialId: string; readonly index: number; readonly worker: string; readonly learningRate: number; readonly lambda: number }
  /** A training event of a running trial (steps may be thinned out by the executor). */
  | { readonly kind: 'trial'; readonly trialId: string; readonly event: TrainingEvent }
  | { readonly kind: 'trial-end'; readonly record: TrialRecord; readonly done: number; readonly total: number }
  | { readonly kind: 'note'; readonly message: string };

export interface RunSearchOptions {
  readonly executor: TrialExecutor;
  /** JSONL, one TrialRecord per line: read to resume, appended to as each trial ends. */
  readonly resultsPath: string;
  /** When given, each trial's final weights go to `<weightsDir>/<trialId>.json`. */
  readonly weightsDir?: string;
  /** Stops dispatching and aborts running trials; runSearch then resolves with what finished. */
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: SearchEvent) => void;
}

export interface SearchOutcome {
  readonly searchId: string;
  /** Trials the search draws. */
  readonly total: number;
  /** Every recorded result of this search (earlier runs' too), in draw order. */
  readonly results: readonly TrialRecord[];
  /** The results as table rows, best first (failed and diverged trials last). */
  readonly rows: readonly SearchRow[];
  /** The best completed trial, or null when none completed. */
  readonly best: { readonly trialId: string; readonly config: TrainConfig } | null;
  /** Trials this call ran (the others were in the results file already). */
  readonly ran: number;
  readonly aborted: boolean;
  readonly notes: readonly string[];
}

export interface FineRangeOptions {
  /** How many of the best trials span the fine ranges (default 3). */
  readonly top?: number;
  /** Decades (log10 units) added on both sides of their span (default 0.25). */
  readonly margin?: number;
}

const ID_HEX_CHARS = 16;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Drawn values are rounded to this many significant digits, so configs and tables stay readable. */
const DRAW_DIGITS = 6;

/** JSON with object keys sorted at every level: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(canonical(value));
}

function shortHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, ID_HEX_CHARS);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : typeof value === 'number' || value === null || value === undefined ? String(value) : JSON.stringify(value);
}

function checkRange(op: string, name: string, range: LogRange | undefined): void {
  if (!range || typeof range !== 'object') throw new TrainerArgumentError(op, name, 'a range { min, max }', describe(range));
  for (const bound of ['min', 'max'] as const) {
    const value = range[bound];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new TrainerArgumentError(op, `${name}.${bound}`, 'a finite number > 0 (the draw is log-uniform)', describe(value));
  }
  if (range.min > range.max) throw new TrainerArgumentError(op, name, 'min <= max', `min ${range.min}, max ${range.max}`);
}

function checkPositiveInteger(op: string, name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new TrainerArgumentError(op, name, 'a positive integer', describe(value));
}

function checkName(op: string, name: string, value: unknown): void {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) throw new TrainerArgumentError(op, name, 'a name of letters, digits, ., _ and - (it goes into ids and file names)', describe(value));
}

interface CheckedSpec {
  readonly searchId: string;
  readonly base: TrainConfig;
}

function checkSpec(op: string, spec: SearchSpec): CheckedSpec {
  if (!spec || typeof spec !== 'object') throw new TrainerArgumentError(op, 'spec', 'a search spec', describe(spec));
  checkName(op, 'spec.stage', spec.stage);
  checkPositiveInteger(op, 'spec.trials', spec.trials);
  if (typeof spec.seed !== 'number' || !Number.isInteger(spec.seed) || spec.seed < 0 || spec.seed > 0xffffffff)
    throw new TrainerArgumentError(op, 'spec.seed', 'an integer in [0, 2^32 − 1]', describe(spec.seed));
  if (!spec.ranges || typeof spec.ranges !== 'object') throw new TrainerArgumentError(op, 'spec.ranges', '{ learningRate, lambda }', describe(spec.ranges));
  checkRange(op, 'spec.ranges.learningRate', spec.ranges.learningRate);
  checkRange(op, 'spec.ranges.lambda', spec.ranges.lambda);
  if (spec.searchId !== undefined) checkName(op, 'spec.searchId', spec.searchId);
  const base = parseTrainConfig(spec.baseConfig, `${spec.stage} search base config`);
  if (base.optimizer.schedule.kind === 'cyclical')
    throw new TrainerArgumentError(op, 'spec.baseConfig.optimizer.schedule', "'step-decay' (the search draws η, which the cyclical schedule ignores)", "'cyclical'");
  // The base's own η and λ are replaced in every trial: they do not make another search.
  const drawnAway = { ...base, optimizer: { ...base.optimizer, learningRate: 0, lambda: 0 } };
  const ranges = {
    learningRate: { min: spec.ranges.learningRate.min, max: spec.ranges.learningRate.max },
    lambda: { min: spec.ranges.lambda.min, max: spec.ranges.lambda.max },
  };
  const searchId = spec.searchId ?? `${spec.stage}-${shortHash({ stage: spec.stage, base: drawnAway, ranges, trials: spec.trials, seed: spec.seed })}`;
  return { searchId, base };
}

function drawLogUniform(prng: Prng, range: LogRange): number {
  const low = Math.log10(range.min);
  const high = Math.log10(range.max);
  const value = Number((10 ** (low + nextUniform(prng) * (high - low))).toPrecision(DRAW_DIGITS));
  return Math.min(range.max, Math.max(range.min, value));
}

/** The search's id: given, or derived from (stage, base config without η and λ, ranges, trials, seed). */
export function searchIdOf(spec: SearchSpec): string {
  return checkSpec('searchIdOf', spec).searchId;
}

/**
 * Draws the search's trials: η and λ log-uniform in their ranges (10^U(log10 min, log10 max)),
 * rounded to 6 significant digits, every other setting from the base config. Deterministic: the
 * same spec gives the same configs and ids. A trial's id is the first 16 hex digits of sha256 of
 * the canonical JSON of { searchId, config } (a repeated config, possible only when both ranges
 * are single points, is told apart by its repeat count).
 */
export function drawTrials(spec: SearchSpec): TrialSpec[] {
  const { searchId, base } = checkSpec('drawTrials', spec);
  // Mixed with a constant: the draws do not share a stream with a model initialised from the same seed.
  const prng = createPrng((spec.seed ^ 0x5ea7c4ed) >>> 0);
  const seen = new Map<string, number>();
  const trials: TrialSpec[] = [];
  for (let index = 0; index < spec.trials; index++) {
    const learningRate = drawLogUniform(prng, spec.ranges.learningRate);
    const lambda = drawLogUniform(prng, spec.ranges.lambda);
    const config: TrainConfig = { ...base, optimizer: { ...base.optimizer, learningRate, lambda } };
    const configKey = canonicalJson(config);
    const repeat = seen.get(configKey) ?? 0;
    seen.set(configKey, repeat + 1);
    const trialId = shortHash(repeat === 0 ? { searchId, config } : { searchId, config, repeat });
    trials.push({ searchId, trialId, index, config });
  }
  return trials;
}

const STATUS_ORDER: Record<TrialStatus, number> = { completed: 0, diverged: 1, failed: 2 };

function finalAccuracies(record: TrialRecord): { train: number | null; validation: number | null } {
  const summary = record.status === 'completed' ? record.summary : null;
  return { train: summary?.train?.accuracy ?? null, validation: summary?.validation?.accuracy ?? null };
}

/** Best first: completed trials by validation accuracy, then training accuracy; diverged, then failed ones last; ties in draw order. */
export function compareTrialRecords(a: TrialRecord, b: TrialRecord): number {
  const byStatus = STATUS_ORDER[a.status] - STATUS_ORDER[b.status];
  if (byStatus !== 0) return byStatus;
  const x = finalAccuracies(a);
  const y = finalAccuracies(b);
  const byValidation = (y.validation ?? -Infinity) - (x.validation ?? -Infinity);
  if (byValidation !== 0 && !Number.isNaN(byValidation)) return byValidation;
  const byTrain = (y.train ?? -Infinity) - (x.train ?? -Infinity);
  if (byTrain !== 0 && !Number.isNaN(byTrain)) return byTrain;
  return a.index - b.index;
}

export function searchRow(record: TrialRecord): SearchRow {
  const accuracies = finalAccuracies(record);
  return {
    trialId: record.trialId,
    index: record.index,
    learningRate: record.config.optimizer.learningRate,
    lambda: record.config.optimizer.lambda,
    trainAccuracy: accuracies.train,
    validationAccuracy: accuracies.validation,
    epochs: record.summary?.epochs ?? record.history.length,
    status: record.status,
    seconds: record.seconds,
    error: record.error,
  };
}

/** Table rows of a search's results, best first. */
export function searchRows(records: readonly TrialRecord[]): SearchRow[] {
  return [...records].sort(compareTrialRecords).map(searchRow);
}

/**
 * Fine ranges from a coarse search: the span of the `top` best completed trials' η and of their λ
 * in log10 space, widened by `margin` decades on each side (so a single best trial still gives a
 * range around it).
 */
export function fineRanges(results: readonly TrialRecord[], options: FineRangeOptions = {}): SearchRanges {
  const op = 'fineRanges';
  const top = options.top ?? 3;
  const margin = options.margin ?? 0.25;
  checkPositiveInteger(op, 'options.top', top);
  if (typeof margin !== 'number' || !Number.isFinite(margin) || margin < 0) throw new TrainerArgumentError(op, 'options.margin', 'a finite number of decades >= 0', describe(margin));
  if (!Array.isArray(results)) throw new TrainerArgumentError(op, 'results', 'an array of trial results', describe(results));
  const best = results.filter((r) => r.status === 'completed' && r.summary).sort(compareTrialRecords).slice(0, top);
  if (best.length === 0) throw new TrainerArgumentError(op, 'results', 'at least one completed trial', `${results.length} results, none completed`);
  const span = (values: readonly number[]): LogRange => {
    const logs = values.map(Math.log10);
    const min = 10 ** (Math.min(...logs) - margin);
    const max = 10 ** (Math.max(...logs) + margin);
    // 10^log10(v) may differ from v by an ulp: never let rounding make the range empty.
    return { min, max: Math.max(min, max) };
  };
  return {
    learningRate: span(best.map((r) => r.config.optimizer.learningRate)),
    lambda: span(best.map((r) => r.config.optimizer.lambda)),
  };
}

/** The result without its weights: what a results-file line holds. */
export function toTrialRecord(result: TrialResult): TrialRecord {
  const record: { -readonly [K in keyof TrialResult]?: TrialResult[K] } = { ...result };
  delete record.weights;
  return record as TrialRecord;
}

const STATUSES = new Set<string>(Object.keys(STATUS_ORDER));

function isTrialRecord(value: unknown): value is TrialRecord {
  if (!value || typeof value !== 'object') return false;
  const r = value as Record<string, unknown>;
  return (
    typeof r.searchId === 'string' && typeof r.trialId === 'string' && typeof r.index === 'number' && typeof r.status === 'string' && STATUSES.has(r.status) &&
    !!r.config && typeof r.config === 'object' && Array.isArray(r.history)
  );
}

export interface SearchResultsFile {
  readonly records: TrialRecord[];
  readonly notes: string[];
  /** Bytes of whole lines: what is left after dropping a partial last line (a crash mid-append). */
  readonly wholeBytes: number;
  readonly totalBytes: number;
}

/** Reads a results file (JSONL). Lines that are not results are skipped with a note; a missing file is empty. */
export function readSearchResults(path: string): SearchResultsFile {
  if (!existsSync(path)) return { records: [], notes: [], wholeBytes: 0, totalBytes: 0 };
  const bytes = readFileSync(path);
  // Only text up to the last newline is whole: appendLineDurable writes the newline with its line.
  const wholeBytes = bytes.lastIndexOf(0x0a) + 1;
  const notes: string[] = [];
  const records: TrialRecord[] = [];
  const lines = bytes.subarray(0, wholeBytes).toString('utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      notes.push(`${path}: line ${i + 1} is not JSON: ignored`);
      return;
    }
    if (isTrialRecord(value)) records.push(value);
    else notes.push(`${path}: line ${i + 1} is not a trial result: ignored`);
  });
  if (wholeBytes < bytes.length) notes.push(`${path}: its last line is incomplete (${bytes.length - wholeBytes} bytes, a run stopped while writing it): ignored`);
  return { records, notes, wholeBytes, totalBytes: bytes.length };
}

/**
 * Runs a search: draws its trials, skips those already recorded in `resultsPath`, runs the rest on
 * the executor and appends each result there (one line, fsynced) as it ends. A failed or diverged
 * trial is recorded like any other and the search goes on. On abort, resolves with what finished
 * (`aborted: true`); running it again later runs only what is missing.
 */
export async function runSearch(spec: SearchSpec, options: RunSearchOptions): Promise<SearchOutcome> {
  const op = 'runSearch';
  const trials = drawTrials(spec);
  const searchId = trials[0].searchId;
  if (!options || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', '{ executor, resultsPath, … }', describe(options));
  const { executor, resultsPath, weightsDir, signal } = options;
  if (!executor || typeof executor.run !== 'function') throw new TrainerArgumentError(op, 'options.executor', 'a TrialExecutor', describe(executor));
  if (typeof resultsPath !== 'string' || resultsPath === '') throw new TrainerArgumentError(op, 'options.resultsPath', 'a file path', describe(resultsPath));
  if (weightsDir !== undefined && (typeof weightsDir !== 'string' || weightsDir === '')) throw new TrainerArgumentError(op, 'options.weightsDir', 'a folder path', describe(weightsDir));
  const emit = (event: SearchEvent) => options.onEvent?.(event);

  mkdirSync(dirname(resultsPath), { recursive: true });
  if (weightsDir) mkdirSync(weightsDir, { recursive: true });
  const file = readSearchResults(resultsPath);
  const notes = [...file.notes];
  // A partial line would glue itself to the next append: cut it off first.
  if (file.wholeBytes < file.totalBytes) truncateSync(resultsPath, file.wholeBytes);

  const drawn = new Map(trials.map((t) => [t.trialId, t]));
  const recorded = new Map<string, TrialRecord>();
  let foreign = 0;
  for (const record of file.records) {
    if (record.searchId !== searchId || !drawn.has(record.trialId)) foreign++;
    else if (!recorded.has(record.trialId)) recorded.set(record.trialId, record);
  }
  if (foreign > 0) notes.push(`${resultsPath}: ${foreign} line(s) belong to other searches: ignored`);
  if (recorded.size > 0) notes.push(`resuming search ${searchId}: ${recorded.size} of ${trials.length} trials are already in ${resultsPath}`);
  for (const message of notes) emit({ kind: 'note', message });

  const pending = trials.filter((t) => !recorded.has(t.trialId));
  emit({ kind: 'search-start', searchId, total: trials.length, done: recorded.size, pending: pending.length, executor: executor.name, concurrency: executor.concurrency });
  let ran = 0;
  if (pending.length > 0 && !signal?.aborted) {
    const waiting = new Set(pending.map((t) => t.trialId));
    await executor.run(
      pending,
      {
        onStart: (trial, worker) =>
          emit({ kind: 'trial-start', trialId: trial.trialId, index: trial.index, worker, learningRate: trial.config.optimizer.learningRate, lambda: trial.config.optimizer.lambda }),
        onEvent: (trialId, event) => emit({ kind: 'trial', trialId, event }),
        onResult: (result) => {
          // Each trial is recorded once, whatever an executor (or a queue's redelivery) reports.
          if (!waiting.delete(result.trialId)) {
            const message = `the executor reported trial ${result.trialId} again or unasked: ignored`;
            notes.push(message);
            emit({ kind: 'note', message });
            return;
          }
          // Weights before the line: a recorded trial always has its weights file.
          if (weightsDir && result.weights) writeFileAtomic(join(weightsDir, `${result.trialId}.json`), `${JSON.stringify(result.weights, null, 2)}\n`);
          const record = toTrialRecord(result);
          appendLineDurable(resultsPath, JSON.stringify(record));
          recorded.set(record.trialId, record);
          ran++;
          emit({ kind: 'trial-end', record, done: recorded.size, total: trials.length });
        },
      },
      signal,
    );
  }
  const missing = trials.length - recorded.size;
  const aborted = missing > 0 && signal?.aborted === true;
  if (missing > 0 && !aborted) notes.push(`${missing} trial(s) have no result: the executor ended without them`);
  const results = trials.filter((t) => recorded.has(t.trialId)).map((t) => recorded.get(t.trialId)!);
  const rows = searchRows(results);
  const bestRow = rows.find((r) => r.status === 'completed');
  const best = bestRow ? { trialId: bestRow.trialId, config: recorded.get(bestRow.trialId)!.config } : null;
  return { searchId, total: trials.length, results, rows, best, ran, aborted, notes };
}
