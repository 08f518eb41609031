import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { BACKEND_NAMES, initBackend, MAX_KERNEL_THREADS, type BackendInfo, type BackendName, type KernelThreadsChoice } from '@bnmlp/core';
import { parseTrainConfig, startRun, type RunResult, type TrainConfig, type TrainConfigInput } from '@bnmlp/trainer';
import type { CommandContext } from '../commands/command.js';
import { resolveDataSource, type DataSource } from '../data-source.js';
import { CliArgumentError, quote } from '../errors.js';
import type { FlagSpec } from '../options.js';
import { trainingProgress, type ProgressSink } from '../progress.js';

/*
What every experiment command shares: the data, seed, backend and output flags, the progress
sink, run folders under --runs-dir that are never overwritten without --force, and the default
split of the model report (training images from the training files, validation held out from
their end, test from test_batch).
*/

/** Flags every command that prints results shares, worded once. */
export const QUIET_FLAG: FlagSpec = { flag: 'quiet', short: 'q', help: 'no progress output' };
export const JSON_FLAG: FlagSpec = { flag: 'json', help: 'print one JSON document on stdout (progress goes to stderr)' };
export const HELP_FLAG: FlagSpec = { flag: 'help', short: 'h', help: 'show this help' };

export const COMMON_FLAGS: readonly FlagSpec[] = [
  {
    flag: 'data', value: '<dir>', help: 'CIFAR-10 in any official layout (bin, py, mat), or the folder holding cifar-10-batches-*',
    default: '$BNMLP_DATA (a `bnmlp download` cache), $BNMLP_CIFAR_DIR, the shared subset, else fixtures/cifar-10-tiny',
  },
  { flag: 'seed', value: '<s>', help: 'seed of the initialisation, data order and flips', default: '0' },
  { flag: 'backend', value: '<name>', help: "'auto', 'tensorflow', 'wasm' or 'cpu'", default: 'auto' },
  { flag: 'runs-dir', value: '<dir>', help: 'where run folders are written', default: 'runs' },
  { flag: 'force', help: 'replace an existing run folder of the same name' },
  QUIET_FLAG,
  JSON_FLAG,
  HELP_FLAG,
];

export interface CommonSettings {
  readonly data: DataSource;
  readonly seed: number;
  readonly backend: BackendName | 'auto';
  readonly runsDir: string;
  readonly force: boolean;
  readonly quiet: boolean;
  readonly json: boolean;
}

type Values = Readonly<Record<string, string | boolean | undefined>>;

/** --threads: 'auto' or an integer in [1, MAX_KERNEL_THREADS]. */
export function parseThreads(op: string, text: string | undefined): KernelThreadsChoice {
  if (text === undefined || text === 'auto') return 'auto';
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < 1 || value > MAX_KERNEL_THREADS)
    throw new CliArgumentError(op, '--threads', `'auto' or an integer from 1 to ${MAX_KERNEL_THREADS}`, quote(text));
  return value;
}

export function parseInteger(op: string, flag: string, text: string | boolean | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (text === undefined) return fallback;
  const value = typeof text === 'string' && /^\+?\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isInteger(value) || value < min || value > max)
    throw new CliArgumentError(op, `--${flag}`, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, quote(String(text)));
  return value;
}

export function parseNumber(op: string, flag: string, text: string | boolean | undefined, fallback: number, rule: 'positive' | 'non-negative' | 'fraction'): number {
  if (text === undefined) return fallback;
  const value = typeof text === 'string' && text.trim() !== '' ? Number(text) : Number.NaN;
  const ok = Number.isFinite(value) && (rule === 'positive' ? value > 0 : rule === 'non-negative' ? value >= 0 : value > 0 && value <= 1);
  const expected = rule === 'positive' ? 'a finite number > 0' : rule === 'non-negative' ? 'a finite number >= 0' : 'a number in (0, 1]';
  if (!ok) throw new CliArgumentError(op, `--${flag}`, expected, quote(String(text)));
  return value;
}

export function parseWidths(op: string, flag: string, text: string | boolean | undefined, fallback: readonly number[]): number[] {
  if (text === undefined) return [...fallback];
  const raw = String(text);
  // "none" or "" is a network without hidden layers (softmax regression).
  if (raw === 'none') return [];
  const widths = raw.split(',').map((w) => (/^\+?\d+$/.test(w.trim()) ? Number(w) : Number.NaN));
  if (!widths.every((w) => Number.isInteger(w) && w >= 1)) throw new CliArgumentError(op, `--${flag}`, "comma-separated positive integers (e.g. 50,30), or 'none'", quote(raw));
  return widths;
}

export function parseChoice<T extends string>(op: string, flag: string, text: string | boolean | undefined, choices: readonly T[], fallback: T): T {
  if (text === undefined) return fallback;
  if (!choices.includes(text as T)) throw new CliArgumentError(op, `--${flag}`, choices.map(quote).join(', ').replace(/, ([^,]*)$/, ' or $1'), quote(String(text)));
  return text as T;
}

export function parseCommon(op: string, values: Values, context: CommandContext): CommonSettings {
  const data = resolveDataSource(op, '--data', typeof values.data === 'string' ? values.data : null, { env: context.env, cwd: context.cwd });
  return {
    data,
    seed: parseInteger(op, 'seed', values.seed, 0, 0, 0xffffffff),
    backend: parseChoice(op, 'backend', values.backend, ['auto', ...BACKEND_NAMES] as const, 'auto'),
    runsDir: resolve(context.cwd ?? process.cwd(), typeof values['runs-dir'] === 'string' ? values['runs-dir'] : 'runs'),
    force: values.force === true,
    quiet: values.quiet === true,
    json: values.json === true,
  };
}

export function progressSink(context: CommandContext, settings: Pick<CommonSettings, 'quiet' | 'json'>): ProgressSink {
  const line = settings.json ? (text: string) => context.stderr(`${text}\n`) : (text: string) => context.stdout(`${text}\n`);
  return { line, terminal: context.terminal ?? null, quiet: settings.quiet };
}

export async function startBackend(settings: CommonSettings): Promise<BackendInfo> {
  return initBackend(settings.backend);
}

/** The current UTC time as a folder-name part: 20261201T031104Z. */
export function folderTimestamp(): string {
  return new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** A new run folder name: the given one, or `<prefix>-<UTC timestamp>`. */
export function runFolder(settings: CommonSettings, prefix: string, name: string | null): string {
  return join(settings.runsDir, name ?? `${prefix}-${folderTimestamp()}`);
}

/** Refuses an existing, non-empty folder unless --force (then empties it). Nothing is written before this check. */
export function claimFolder(op: string, dir: string, force: boolean): void {
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    if (!force) throw new CliArgumentError(op, 'run folder', 'new (pass --force to replace it, or --name for another)', quote(dir));
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
}

/**
 * The model report's split of whatever data is there: validation is the last 5000 training images
 * (the report's) or a fifth of them when there are fewer than 25,000 (the shared subset: its 1000
 * records of data_batch_5); test from test_batch.
 */
export function reportDataSpec(poolSize: number | null): TrainConfigInput['data'] {
  const validationCount = poolSize === null ? 1000 : Math.min(5000, Math.floor(poolSize / 5));
  return { validationCount };
}

/** Training images in the data's training files (counted from file sizes, without reading them). */
export { countTrainingImages } from './pool.js';

export interface TrainedRun extends RunResult {
  readonly label: string;
}

/** One training run into `dir`, with progress; stops at Ctrl-C with a checkpoint (status 'aborted'). */
export async function trainRun(config: TrainConfig | TrainConfigInput, dir: string, label: string, settings: CommonSettings, context: CommandContext): Promise<TrainedRun> {
  const progress = trainingProgress(progressSink(context, settings), label);
  try {
    const result = await startRun(parseTrainConfig(config), dir, { dataDir: settings.data.dir, signal: context.signal, onEvent: progress.onEvent, force: true });
    return { ...result, label };
  } finally {
    progress.stop();
  }
}

/** "runs/x" relative to the working directory when inside it (for messages people copy). */
export function shownPath(path: string, context: CommandContext): string {
  const rel = relative(context.cwd ?? process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}
