import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { featureStatsBlock, standardizeRowsBlock } from './data-kernels.js';

/*
Statistics and standardisation of a large data set on two threads: this one and a data helper
thread.

Why: a full CIFAR-10 set is 184 million pixels, and each standardised value costs two float64
divisions: on one thread reading and standardising 60,000 images took 3.0–4.4 s (the target is
< 3 s), of which these two passes were 2–3 s. The work is cut into blocks (data-kernels.ts)
that either thread can take, claimed one at a time from a shared counter, so the result has the
same bits whichever thread took which.

The calling thread stays synchronous: it takes blocks itself and then waits with Atomics.wait
for the helper's last ones. It never depends on the helper: a helper that has not started yet
takes nothing, and blocks the helper claimed but did not finish within STALL_MS are computed
again here (the same values, so a late write by the helper changes nothing).

Each job has a helper of its own (it starts in 20–50 ms, next to jobs of 0.1–1 s), ended when
the job is done: a helper that lived on would keep the last job's buffers (614 MB for the
training split) until its own garbage collection, which an idle thread does not run. It never
keeps the process alive (unref). Only pixels and outputs on SharedArrayBuffers can be shared;
anything else runs on this thread. V8 starts no garbage collection for SharedArrayBuffer
allocations as it does for other ArrayBuffers (30 dropped 100 MB SharedArrayBuffers in a row
peaked at 3 GB RSS here, ArrayBuffers at 0.3 GB), so only what must be shared is (the readers'
raw files stay ordinary Buffers), and large shared buffers are announced to V8 (cifar.ts
sharedBuffer).
*/

export type DataJob =
  | {
      readonly kind: 'stats';
      readonly pixels: Uint8Array;
      readonly count: number;
      readonly dims: number;
      /** Outputs, dims each. */
      readonly mean: Float64Array;
      readonly std: Float64Array;
    }
  | {
      readonly kind: 'standardize';
      readonly pixels: Uint8Array;
      readonly rows: number;
      readonly dims: number;
      readonly mean: Float64Array;
      readonly divisor: Float64Array;
      /** Output, rows × dims. */
      readonly out: Float32Array;
    };

/** What one job did: for tests and benchmarks. */
export interface DataJobReport {
  readonly kind: DataJob['kind'];
  readonly blocks: number;
  /** Whether a helper thread was started for the job, and if not, why. */
  readonly helper: { readonly started: true } | { readonly started: false; readonly reason: string };
  /** Blocks the helper finished. */
  readonly helperBlocks: number;
  /** Blocks the helper claimed and had not finished within the stall time, computed again here. */
  readonly recomputedBlocks: number;
}

export interface DataJobOptions {
  /** Below this many values a helper is not worth its start-up. Default MIN_WORK_FOR_HELPER. */
  readonly minWork?: number;
  /** Milliseconds without progress after which this thread computes the helper's unfinished blocks. Default STALL_MS. */
  readonly stallMs?: number;
  /** Tests: false leaves every block to the helper (until it stalls). Default true. */
  readonly callerTakesBlocks?: boolean;
  /** Tests: the helper thread's script (given { job, control } as workerData). Default data-thread-entry.js. */
  readonly helperEntry?: string;
  /** Tests: the cores to assume. Default os.availableParallelism(). */
  readonly cores?: number;
}

/** About 2 ms of work per million values on this machine; a helper starts in 20–50 ms. */
export const MIN_WORK_FOR_HELPER = 4_000_000;
export const STALL_MS = 1000;
const STATS_BLOCK_FEATURES = 256;
const STANDARDIZE_BLOCK_ROWS = 128;
const WAIT_SLICE_MS = 20;

// Control words on a SharedArrayBuffer, one set per job: the next block to claim, blocks done,
// blocks the helper did, then one done flag per block.
const NEXT = 0;
const DONE = 1;
const HELPER_DONE = 2;
const FLAGS = 3;

export function dataJobBlocks(job: DataJob): number {
  if (job.kind === 'stats') return Math.ceil(job.dims / STATS_BLOCK_FEATURES);
  return Math.ceil(job.rows / STANDARDIZE_BLOCK_ROWS);
}

function dataJobWork(job: DataJob): number {
  if (job.kind === 'stats') return job.count * job.dims;
  return job.rows * job.dims;
}

function runBlock(job: DataJob, block: number): void {
  if (job.kind === 'stats') {
    const j0 = block * STATS_BLOCK_FEATURES;
    featureStatsBlock(job.pixels, job.count, j0, Math.min(job.dims, j0 + STATS_BLOCK_FEATURES), job.mean, job.std);
  } else {
    const i0 = block * STANDARDIZE_BLOCK_ROWS;
    standardizeRowsBlock(job.pixels, job.dims, i0, Math.min(job.rows, i0 + STANDARDIZE_BLOCK_ROWS), job.mean, job.divisor, job.out);
  }
}

/** Claims and runs blocks until none is left. Used by both threads. */
export function takeDataBlocks(job: DataJob, control: Int32Array, byHelper: boolean): void {
  const blocks = dataJobBlocks(job);
  for (let block = Atomics.add(control, NEXT, 1); block < blocks; block = Atomics.add(control, NEXT, 1)) {
    runBlock(job, block);
    Atomics.store(control, FLAGS + block, 1);
    if (byHelper) Atomics.add(control, HELPER_DONE, 1);
    Atomics.add(control, DONE, 1);
    Atomics.notify(control, DONE);
  }
}

function helperEntry(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'data-thread-entry.js');
  // Under the tests, this file is the TypeScript source; the helper runs the build.
  return existsSync(sibling) ? sibling : join(here, '..', 'dist', 'data-thread-entry.js');
}

/** Helper threads that have not ended yet (tests). */
export const liveDataHelpers = new Set<Worker>();

/** A helper thread for one job: it takes blocks until none is left, then ends, and with it every reference it held to the job's buffers. */
function startHelper(job: DataJob, control: Int32Array, entry: string): Worker | string {
  if (!existsSync(entry)) return `its entry ${entry} is missing (build @bnmlp/trainer)`;
  const worker = new Worker(entry, { workerData: { job, control } });
  // It must never keep the process alive, nor take it down.
  worker.unref();
  liveDataHelpers.add(worker);
  worker.on('error', () => {});
  worker.on('exit', () => liveDataHelpers.delete(worker));
  return worker;
}

function isShared(array: ArrayBufferView): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && array.buffer instanceof SharedArrayBuffer;
}

function whyNoHelper(job: DataJob, minWork: number, cores: number): string | null {
  const work = dataJobWork(job);
  if (work < minWork) return `${work} of work, less than ${minWork}`;
  if (cores < 2) return 'one core';
  if (!isShared(job.pixels)) return 'the pixels are not on a SharedArrayBuffer';
  const outputs = job.kind === 'stats' ? [job.mean, job.std] : [job.out];
  if (!outputs.every(isShared)) return 'the outputs are not on SharedArrayBuffers';
  if (dataJobBlocks(job) < 2) return 'one block';
  return null;
}

/** Runs a job, on this thread and a helper thread when that pays; returns what ran where. */
export function runDataJob(job: DataJob, options: DataJobOptions = {}): DataJobReport {
  const blocks = dataJobBlocks(job);
  const control = new Int32Array(new SharedArrayBuffer(4 * (FLAGS + blocks)));
  let reason = whyNoHelper(job, options.minWork ?? MIN_WORK_FOR_HELPER, options.cores ?? availableParallelism());
  const worker = reason === null ? startHelper(job, control, options.helperEntry ?? helperEntry()) : null;
  if (typeof worker === 'string') reason = worker;
  if (reason !== null || options.callerTakesBlocks !== false) takeDataBlocks(job, control, false);
  const recomputed = worker instanceof Worker ? awaitHelper(job, control, options.stallMs ?? STALL_MS) : 0;
  // Every block is done: a helper still running is late, stuck or still starting, and has nothing left to do.
  if (worker instanceof Worker) void worker.terminate();
  return {
    kind: job.kind,
    blocks,
    helper: reason === null ? { started: true } : { started: false, reason },
    helperBlocks: Atomics.load(control, HELPER_DONE),
    recomputedBlocks: recomputed,
  };
}

/** Waits for the blocks the helper claimed; after stallMs without progress, computes the unfinished ones here. */
function awaitHelper(job: DataJob, control: Int32Array, stallMs: number): number {
  const blocks = dataJobBlocks(job);
  let lastProgress = performance.now();
  for (let done = Atomics.load(control, DONE); done < blocks; ) {
    Atomics.wait(control, DONE, done, WAIT_SLICE_MS);
    const now = Atomics.load(control, DONE);
    if (now !== done) {
      done = now;
      lastProgress = performance.now();
    } else if (performance.now() - lastProgress > stallMs) {
      // Nothing can be claimed twice: what is left unclaimed is taken first, then what the helper holds.
      takeDataBlocks(job, control, false);
      let recomputed = 0;
      for (let block = 0; block < blocks; block++) {
        if (Atomics.load(control, FLAGS + block) === 1) continue;
        runBlock(job, block);
        recomputed++;
      }
      return recomputed;
    }
  }
  return 0;
}
