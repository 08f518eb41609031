import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isFile } from '@bnmlp/trainer';

/*
The PyTorch peer of `bnmlp bench`: packages/cli/scripts/torch_peer.py (shipped with the package,
beside dist/), run by /usr/bin/python3 when it has torch. One process per call; every call returns
the parsed result, or `{ skipped: why }` (torch off, no python, no torch, the peer failed).
*/

export const PYTHON = '/usr/bin/python3';
/** The thread settings of the sweep's per-row steps (OpenBLAS at its default, as the shared script). */
export const PEER_THREADS: readonly number[] = [1, 2];

/**
 * A thread setting of the peer: torch's own threads, and OpenBLAS's for the matrix products (0:
 * its default, one per core). They are separate pools: torch.set_num_threads(1) alone, as the
 * shared peer script runs, still multiplies on every core (sgemm 2048³ at 107–126 GFLOP/s
 * against 66–72 with OpenBLAS on 1 thread, 2026-12-02), so one core is 1 and 1.
 */
export interface PeerThreads {
  readonly threads: number;
  readonly blasThreads: number;
}

/**
 * The settings of the core and trainer suites and of the sweep's machine peak: the shared
 * script's 1 and 2 threads (the "1 thread"), and one core (1 thread, OpenBLAS on 1). Each
 * is measured; ours is compared with "1 thread", with one core and with the fastest.
 */
export const PEER_SETTINGS: readonly PeerThreads[] = [
  { threads: 1, blasThreads: 0 },
  { threads: 2, blasThreads: 0 },
  { threads: 1, blasThreads: 1 },
];

/** The shared script's "1 thread" (the bar) and one core, among measured settings. */
export const isOneThread = (s: PeerThreads): boolean => s.threads === 1 && s.blasThreads === 0;
export const isOneCore = (s: PeerThreads): boolean => s.threads === 1 && s.blasThreads === 1;

/** "1 thread", "2 threads", "1 thread, OpenBLAS 1"; with the count OpenBLAS ran with when it was left at its default and reported it. */
export function peerThreadsLabel(setting: PeerThreads, blasRan: number | null = null): string {
  const torch = `${setting.threads} thread${setting.threads === 1 ? '' : 's'}`;
  if (setting.blasThreads > 0) return `${torch}, OpenBLAS ${setting.blasThreads}`;
  return blasRan === null ? torch : `${torch} (OpenBLAS ${blasRan})`;
}
/** The peer script, from dist/commands/ or src/commands/ alike. */
export const PEER_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'torch_peer.py');

export interface Skipped {
  readonly skipped: string;
}

export function isSkipped(value: unknown): value is Skipped {
  return typeof value === 'object' && value !== null && 'skipped' in value;
}

/** Why the peer cannot run at all (cached: asking again would not change the answer), or null. */
let unavailable: string | null = null;

/** Runs the peer script with `args`; its JSON lines, or why not. */
export function runPeerScript(args: readonly string[], options: { python?: string; script?: string } = {}): Array<Record<string, unknown>> | Skipped {
  const python = options.python ?? PYTHON;
  const script = options.script ?? PEER_SCRIPT;
  if (!options.python && !options.script && unavailable) return { skipped: unavailable };
  const cannot = (why: string): Skipped => {
    if (!options.python && !options.script) unavailable = why;
    return { skipped: why };
  };
  if (!isFile(script)) return cannot(`the peer script ${script} is missing`);
  if (!isFile(python)) return cannot(`${python} not found`);
  const run = spawnSync(python, [script, ...args], { encoding: 'utf8', maxBuffer: 16 << 20, timeout: 30 * 60_000 });
  if (run.error) return { skipped: `the peer could not run: ${run.error.message}` };
  if (run.status !== 0) {
    if (/No module named '?torch'?/.test(run.stderr)) return cannot(`${python} has no torch (apt-get install -y python3-torch libopenblas0-pthread)`);
    return { skipped: `the peer failed (exit ${run.status ?? run.signal}): ${run.stderr.trim().split('\n').pop() ?? ''}` };
  }
  const lines: Array<Record<string, unknown>> = [];
  for (const line of run.stdout.split('\n')) {
    if (!line.trim().startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed.peer === 'pytorch') lines.push(parsed);
    } catch {
      // not one of the peer's lines
    }
  }
  if (lines.length === 0) return { skipped: `the peer printed no result: ${run.stdout.slice(0, 200)}` };
  return lines;
}

const rss = (line: Record<string, unknown>) => (typeof line.maxrss_kb === 'number' ? line.maxrss_kb * 1024 : null);

/** One `--mode epoch` run: the shared script's figures, the median step, and inference. */
export interface PeerEpoch {
  readonly peer: 'pytorch';
  readonly version: string;
  readonly threads: number;
  /** The threads OpenBLAS ran the products on (null: not reported, or not OpenBLAS). */
  readonly blasThreads: number | null;
  /** Median epoch seconds / steps (the shared script's ms_per_step). */
  readonly msPerStep: number;
  /** Median of the timed steps' own times. */
  readonly msPerStepMedian: number;
  readonly epochSeconds: number;
  /** model.eval() + torch.no_grad() throughput, or null when not asked for. */
  readonly evalSamplesPerSecond: number | null;
  readonly peakRssBytes: number | null;
}

export interface PeerEpochOptions {
  readonly threads: number;
  /** OpenBLAS's threads (0 or absent: its default). */
  readonly blasThreads?: number;
  readonly hidden: readonly number[];
  readonly batch: number;
  readonly samples: number;
  readonly epochs: number;
  /** Samples for the inference throughput (0: none). */
  readonly evalSamples: number;
  /** Rows per inference chunk (our predict's chunkSize). */
  readonly evalBatch: number;
  readonly inputs?: number;
  readonly seed?: number;
}

export function peerEpochArgs(o: PeerEpochOptions): string[] {
  return [
    '--mode', 'epoch', '--threads', String(o.threads), ...(o.blasThreads ? ['--blas-threads', String(o.blasThreads)] : []), '--hidden', o.hidden.join(','), '--batch', String(o.batch), '--samples', String(o.samples),
    '--epochs', String(o.epochs), '--eval', String(o.evalSamples), '--eval-batch', String(o.evalBatch),
    ...(o.inputs === undefined ? [] : ['--inputs', String(o.inputs)]), ...(o.seed === undefined ? [] : ['--seed', String(o.seed)]),
  ];
}

export function parsePeerEpoch(line: Record<string, unknown>): PeerEpoch {
  return {
    peer: 'pytorch',
    version: String(line.version),
    threads: Number(line.threads),
    blasThreads: typeof line.blas_threads === 'number' ? line.blas_threads : null,
    msPerStep: Number(line.ms_per_step),
    msPerStepMedian: Number(line.ms_per_step_median ?? line.ms_per_step),
    epochSeconds: Number(line.epoch_s),
    evalSamplesPerSecond: typeof line.eval_samples_per_s === 'number' ? line.eval_samples_per_s : null,
    peakRssBytes: rss(line),
  };
}

export function peerEpoch(options: PeerEpochOptions): PeerEpoch | Skipped {
  const out = runPeerScript(peerEpochArgs(options));
  return isSkipped(out) ? out : parsePeerEpoch(out[0]);
}

/** A sweep row for `--mode steps`. */
export interface PeerStepsRow {
  readonly batch: number;
  readonly hidden: readonly number[];
  readonly steps: number;
  readonly warmup: number;
}

export interface PeerStepsResult {
  readonly version: string;
  readonly threads: number;
  readonly batch: number;
  readonly hidden: readonly number[];
  readonly steps: number;
  /** Median over the timed steps. */
  readonly msPerStep: number;
  readonly peakRssBytes: number | null;
}

export interface PeerStepsOptions {
  readonly threads: number;
  readonly rows: readonly PeerStepsRow[];
  readonly samples: number;
  readonly inputs: number;
  readonly seed?: number;
}

export function peerStepsArgs(o: PeerStepsOptions): string[] {
  return [
    '--mode', 'steps', '--threads', String(o.threads), '--samples', String(o.samples), '--inputs', String(o.inputs),
    '--rows', JSON.stringify(o.rows.map((r) => ({ batch: r.batch, hidden: r.hidden, steps: r.steps, warmup: r.warmup }))),
    ...(o.seed === undefined ? [] : ['--seed', String(o.seed)]),
  ];
}

export function parsePeerSteps(line: Record<string, unknown>): PeerStepsResult {
  return {
    version: String(line.version),
    threads: Number(line.threads),
    batch: Number(line.batch),
    hidden: (line.hidden as number[]).map(Number),
    steps: Number(line.steps),
    msPerStep: Number(line.ms_per_step),
    peakRssBytes: rss(line),
  };
}

/** All rows in one process (one python start-up per thread setting and repeat). */
export function peerSteps(options: PeerStepsOptions): PeerStepsResult[] | Skipped {
  const out = runPeerScript(peerStepsArgs(options));
  if (isSkipped(out)) return out;
  if (out.length !== options.rows.length) return { skipped: `the peer reported ${out.length} of ${options.rows.length} rows` };
  return out.map(parsePeerSteps);
}

export interface PeerPeak {
  readonly version: string;
  readonly threads: number;
  /** The setting asked for: OpenBLAS's threads (0: its default). */
  readonly blasThreads: number;
  /** What OpenBLAS ran with, as reported (null: not OpenBLAS). */
  readonly blasRan: number | null;
  readonly size: number;
  readonly gflops: number;
}

export function parsePeerPeak(line: Record<string, unknown>, blasThreads = 0): PeerPeak {
  return {
    version: String(line.version), threads: Number(line.threads), blasThreads, blasRan: typeof line.blas_threads === 'number' ? line.blas_threads : null,
    size: Number(line.size), gflops: Number(line.gflops),
  };
}

/** PyTorch sgemm size³ GFLOP/s (median of 5) on a thread setting. */
export function peerPeak(setting: PeerThreads, size = 2048): PeerPeak | Skipped {
  const blas = setting.blasThreads ? ['--blas-threads', String(setting.blasThreads)] : [];
  const out = runPeerScript(['--mode', 'peak', '--threads', String(setting.threads), ...blas, '--size', String(size)]);
  return isSkipped(out) ? out : parsePeerPeak(out[0], setting.blasThreads);
}
