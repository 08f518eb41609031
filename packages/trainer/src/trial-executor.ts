import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  allowRelaxedSimd, backendInfo, BACKEND_NAMES, configureKernelThreads, configureWasmKernels, initBackend, MAX_KERNEL_THREADS, WASM_KERNEL_CHOICES, wasmKernelStatus,
  type BackendName, type WasmKernelChoice,
} from '@bnmlp/core';
import type { PreparedData } from './dataset.js';
import { TrainerArgumentError } from './errors.js';
import { resolveRunData } from './run-folder.js';
import { canonicalJson } from './search.js';
import { parseTrainConfig } from './train-config.js';
import type { TrainingEvent } from './training.js';
import { runTrial, TrialAbortedError, type RunTrialOptions, type TrialResult, type TrialSpec } from './trial.js';

/*
The seam between a search and whatever runs its trials: trial specs (data) in, results (data) out.
Here: one after another in this process, and a pool of child processes on this machine. A queue
(BullMQ) is another implementation of the same interface.
*/

export interface TrialHandlers {
  /** A trial was handed to a worker (`worker` names it as results do: host:pid, or 'local'). */
  onStart?(trial: TrialSpec, worker: string): void;
  /** Training events of a running trial; an executor may thin out 'step' events. */
  onEvent?(trialId: string, event: TrainingEvent): void;
  /** Called once for every trial that ends (completed, diverged or failed), one call at a time: the executor awaits each. */
  onResult(result: TrialResult): void | Promise<void>;
}

export interface TrialExecutor {
  /** For output ('in-process', 'local-process', …). */
  readonly name: string;
  /** Trials it runs at once. */
  readonly concurrency: number;
  /**
   * Runs the trials and resolves when each has been reported to onResult, or, after `signal`
   * aborts, as soon as no trial runs any more (an aborted trial is not reported: it has no
   * result). Rejects only when the executor itself cannot go on (a worker cannot start, a
   * handler threw); a trial that crashes is a 'failed' result.
   */
  run(trials: readonly TrialSpec[], handlers: TrialHandlers, signal?: AbortSignal): Promise<void>;
  /** Releases workers; the executor cannot run trials afterwards. */
  close(): Promise<void>;
}

/** How a process that runs trials sets up TensorFlow.js (the same setup gives the same bits). */
export interface BackendSetup {
  readonly backend: BackendName | 'auto';
  /** Which wasm kernels run (@bnmlp/core configureWasmKernels); null: the process default (env BNMLP_WASM_KERNELS, else 'auto'). */
  readonly wasmKernels: WasmKernelChoice | null;
  /** Allow relaxed SIMD (@bnmlp/core allowRelaxedSimd, a process-wide V8 flag). */
  readonly relaxedSimd: boolean;
  /**
   * Threads of the dense kernels (@bnmlp/core configureKernelThreads); null: the process default
   * (env BNMLP_THREADS, else all cores). Any count gives the same bits; it only sets the speed.
   */
  readonly kernelThreads?: number | 'auto' | null;
}

export interface BackendSetupOptions {
  readonly backend?: BackendName | 'auto';
  readonly wasmKernels?: WasmKernelChoice | null;
  readonly relaxedSimd?: boolean;
  /** See BackendSetup.kernelThreads. A pool of processes defaults to its share of the cores each. */
  readonly kernelThreads?: number | 'auto' | null;
}

/**
 * Kernel threads per process when `processes` run at once on `cores` (default: this machine's):
 * their share of the cores, at least 1 and at most MAX_KERNEL_THREADS (a trial process refuses more).
 */
export function kernelThreadsPerProcess(processes: number, cores = availableParallelism()): number {
  return Math.min(MAX_KERNEL_THREADS, Math.max(1, Math.floor(cores / processes)));
}

/** Applies a backend setup to this process; returns the backend now in use. */
export async function applyBackendSetup(setup: BackendSetup): Promise<BackendName> {
  // In the bnmlp CLI's order: the V8 flag first, so an 'auto' kernel choice can pick relaxed SIMD.
  if (setup.relaxedSimd) allowRelaxedSimd();
  const info = await initBackend(setup.backend);
  if (setup.wasmKernels) configureWasmKernels(setup.wasmKernels);
  if (setup.kernelThreads !== undefined && setup.kernelThreads !== null) configureKernelThreads(setup.kernelThreads);
  return info.name;
}

/** A worker process cannot be started, or its entry file is missing. */
export class TrialWorkerError extends Error {
  override readonly name = 'TrialWorkerError';
  constructor(
    /** host:pid of the worker, or null when none started. */
    readonly worker: string | null,
    readonly reason: string,
  ) {
    super(`trial worker${worker ? ` ${worker}` : ''}: ${reason}`);
  }
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : typeof value === 'number' || value === null || value === undefined ? String(value) : JSON.stringify(value);
}

function checkBackendOptions(op: string, options: BackendSetupOptions): void {
  if (options.backend !== undefined && options.backend !== 'auto' && !BACKEND_NAMES.includes(options.backend))
    throw new TrainerArgumentError(op, 'options.backend', `'auto' or one of ${BACKEND_NAMES.join(', ')}`, describe(options.backend));
  if (options.wasmKernels !== undefined && options.wasmKernels !== null && !WASM_KERNEL_CHOICES.includes(options.wasmKernels))
    throw new TrainerArgumentError(op, 'options.wasmKernels', `one of ${WASM_KERNEL_CHOICES.join(', ')}`, describe(options.wasmKernels));
  if (options.relaxedSimd !== undefined && typeof options.relaxedSimd !== 'boolean') throw new TrainerArgumentError(op, 'options.relaxedSimd', 'a boolean', describe(options.relaxedSimd));
  const threads = options.kernelThreads;
  if (threads !== undefined && threads !== null && threads !== 'auto' && !(Number.isInteger(threads) && threads >= 1 && threads <= MAX_KERNEL_THREADS))
    throw new TrainerArgumentError(op, 'options.kernelThreads', `'auto', null or an integer in [1, ${MAX_KERNEL_THREADS}]`, describe(threads));
}

function checkTrials(op: string, trials: readonly TrialSpec[]): void {
  if (!Array.isArray(trials)) throw new TrainerArgumentError(op, 'trials', 'an array of trial specs', describe(trials));
  const ids = new Set<string>();
  trials.forEach((trial, i) => {
    if (!trial || typeof trial.trialId !== 'string' || typeof trial.searchId !== 'string' || !trial.config)
      throw new TrainerArgumentError(op, `trials[${i}]`, 'a trial spec { searchId, trialId, index, config }', describe(trial));
    if (ids.has(trial.trialId)) throw new TrainerArgumentError(op, `trials[${i}].trialId`, 'an id not repeated in the list', `'${trial.trialId}' (repeated)`);
    ids.add(trial.trialId);
  });
}

/** A 'failed' result for a trial that produced none of its own (its worker died, it threw). */
export function failedTrialResult(trial: TrialSpec, worker: string, error: string, seconds: number): TrialResult {
  return { searchId: trial.searchId, trialId: trial.trialId, index: trial.index, status: 'failed', config: trial.config, summary: null, history: [], weights: null, error, seconds, worker };
}

/**
 * Keeps the prepared data of the last data spec seen, so consecutive trials on the same data read
 * and standardise it once. The key is what prepareData depends on: the directory, the data spec,
 * and the seed when rows are chosen at random.
 */
export class PreparedDataCache {
  private key: string | null = null;
  private data: PreparedData | null = null;

  constructor(private readonly dataDir?: string) {}

  /** The data for a trial's config, or undefined when it cannot be prepared (runTrial then fails the trial with the reason). */
  tryGet(configInput: unknown): PreparedData | undefined {
    try {
      const config = parseTrainConfig(configInput);
      // As runTrial does: a directory that does not exist here (the config came from another machine) gives way to ours.
      const dir = config.data.dir && existsSync(config.data.dir) ? config.data.dir : (this.dataDir ?? null);
      const key = canonicalJson({ dir: dir && resolve(dir), data: { ...config.data, dir: null }, seed: config.data.selection === 'random' ? config.seed : null });
      if (key !== this.key) {
        this.clear();
        this.data = resolveRunData({ ...config, data: { ...config.data, dir } }, undefined).data;
        this.key = key;
      }
      return this.data!;
    } catch {
      return undefined;
    }
  }

  clear(): void {
    this.key = null;
    this.data = null;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export type TrialFunction = (trial: TrialSpec, options: RunTrialOptions) => Promise<TrialResult>;

export interface InProcessExecutorOptions extends BackendSetupOptions {
  /** Data directory for trials whose config.data.dir is null. */
  readonly dataDir?: string;
  /** Names this runner in results (default 'local'). */
  readonly worker?: string;
  /** Replaces runTrial (tests); it is given no prepared data. */
  readonly runTrial?: TrialFunction;
}

/**
 * Runs trials one after another in this process: no process overhead (`--workers 1`, tests).
 * The backend is set up before the first trial when any of backend, wasmKernels or relaxedSimd
 * is given; otherwise trials run on whatever this process has.
 */
export class InProcessExecutor implements TrialExecutor {
  readonly name = 'in-process';
  readonly concurrency = 1;
  private readonly worker: string;
  private readonly trial: TrialFunction;
  private readonly cache: PreparedDataCache | null;
  private setup: BackendSetup | null;
  private closed = false;

  constructor(private readonly options: InProcessExecutorOptions = {}) {
    const op = 'InProcessExecutor';
    if (!options || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', 'an options object', describe(options));
    checkBackendOptions(op, options);
    if (options.runTrial !== undefined && typeof options.runTrial !== 'function') throw new TrainerArgumentError(op, 'options.runTrial', 'a function', describe(options.runTrial));
    this.worker = options.worker ?? 'local';
    this.trial = options.runTrial ?? runTrial;
    this.cache = options.runTrial ? null : new PreparedDataCache(options.dataDir);
    const wantsSetup = options.backend !== undefined || options.wasmKernels !== undefined || options.relaxedSimd !== undefined || options.kernelThreads !== undefined;
    this.setup = wantsSetup
      ? { backend: options.backend ?? 'auto', wasmKernels: options.wasmKernels ?? null, relaxedSimd: options.relaxedSimd ?? false, kernelThreads: options.kernelThreads ?? null }
      : null;
  }

  async run(trials: readonly TrialSpec[], handlers: TrialHandlers, signal?: AbortSignal): Promise<void> {
    checkTrials('InProcessExecutor.run', trials);
    if (this.closed) throw new TrialWorkerError(this.worker, 'the executor is closed');
    if (this.setup) {
      await applyBackendSetup(this.setup);
      this.setup = null;
    }
    for (const trial of trials) {
      if (signal?.aborted) return;
      handlers.onStart?.(trial, this.worker);
      const started = performance.now();
      let result: TrialResult;
      try {
        result = await this.trial(trial, {
          dataDir: this.options.dataDir, signal, worker: this.worker, data: this.cache?.tryGet(trial.config),
          onEvent: (event) => handlers.onEvent?.(trial.trialId, event),
        });
      } catch (error) {
        if (error instanceof TrialAbortedError || signal?.aborted) return;
        result = failedTrialResult(trial, this.worker, `the trial threw: ${errorMessage(error)}`, (performance.now() - started) / 1000);
      }
      await handlers.onResult(result);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cache?.clear();
  }
}

/* The pool's IPC protocol: plain JSON messages. */

export type TrialProcessRequest =
  | { readonly type: 'init'; readonly setup: BackendSetup; readonly dataDir: string | null; readonly eventIntervalMs: number }
  | { readonly type: 'run'; readonly trial: TrialSpec }
  | { readonly type: 'abort'; readonly trialId: string }
  | { readonly type: 'exit' };

export type TrialProcessReply =
  | { readonly type: 'ready'; readonly backend: string }
  | { readonly type: 'init-failed'; readonly message: string }
  | { readonly type: 'event'; readonly trialId: string; readonly event: TrainingEvent }
  | { readonly type: 'result'; readonly result: TrialResult }
  | { readonly type: 'aborted'; readonly trialId: string };

export interface LocalProcessExecutorOptions extends BackendSetupOptions {
  /** Child processes, each running one trial at a time (default os.availableParallelism()). */
  readonly workers?: number;
  /** Data directory for trials whose config.data.dir is null. */
  readonly dataDir?: string;
  /** After an abort or close, how long a child may take to stop before it is killed (default 3000 ms). */
  readonly stopGraceMs?: number;
  /** Step events per trial are sent at most this often (default 100 ms: ~10/s). */
  readonly eventIntervalMs?: number;
  /** Node.js options for the children (e.g. --max-old-space-size=4096); default none. */
  readonly execArgv?: readonly string[];
  /** The child entry (default: the built trial-process.js beside this module, or in ../dist from the sources). */
  readonly entry?: string;
}

/** The built child entry: beside this module in dist/, or in ../dist when this module runs from src/ (tests). */
export function defaultTrialProcessEntry(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'trial-process.js');
  return existsSync(sibling) ? sibling : join(here, '..', 'dist', 'trial-process.js');
}

type TrialOutcome = { readonly kind: 'result'; readonly result: TrialResult } | { readonly kind: 'abandoned' };

/** How many characters of a child's stderr are kept to explain its death. */
const STDERR_TAIL_CHARS = 4000;

/** One child process and the trial it runs. */
class PoolWorker {
  readonly pid: number;
  readonly label: string;
  readonly ready: Promise<string>;
  readonly exited: Promise<void>;
  alive = true;
  private stderrTail = '';
  private current: {
    readonly trial: TrialSpec;
    readonly handlers: TrialHandlers;
    readonly started: number;
    readonly settle: (outcome: TrialOutcome) => void;
    abandoning: boolean;
  } | null = null;
  private onReady: ((backend: string) => void) | null = null;
  private onInitFailed: ((error: Error) => void) | null = null;

  constructor(
    private readonly child: ChildProcess,
    init: TrialProcessRequest,
    private readonly stopGraceMs: number,
  ) {
    this.pid = child.pid ?? -1;
    this.label = `${hostname()}:${this.pid}`;
    this.ready = new Promise<string>((resolveReady, rejectReady) => {
      this.onReady = resolveReady;
      this.onInitFailed = rejectReady;
    });
    // Nobody may be waiting when a child dies before it was asked for: keep that from being an unhandled rejection.
    this.ready.catch(() => {});
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
    });
    child.on('message', (message: TrialProcessReply) => this.receive(message));
    this.exited = new Promise<void>((resolveExit) => {
      const ended = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
        if (!this.alive) return;
        this.alive = false;
        const how = spawnError ? `could not start (${spawnError.message})` : code !== null ? `exited with code ${code}` : `was killed by signal ${signal}`;
        const lastOutput = this.lastOutput();
        const reason = `worker process ${this.label} ${how}${lastOutput ? `; its last output: ${lastOutput}` : ''}`;
        this.onInitFailed?.(new TrialWorkerError(this.label, reason));
        this.finish((current) =>
          current.abandoning ? { kind: 'abandoned' } : { kind: 'result', result: failedTrialResult(current.trial, this.label, `${reason} while running the trial`, (performance.now() - current.started) / 1000) },
        );
        resolveExit();
      };
      // 'close', not 'exit': by then its stderr and IPC messages have all been read.
      child.on('close', (code, signal) => ended(code, signal));
      // Spawning itself failed (no 'close' follows when there never was a process).
      child.on('error', (error) => {
        if (child.pid === undefined) ended(null, null, error);
      });
    });
    this.send(init);
  }

  private lastOutput(): string {
    const lines = this.stderrTail.trim().split('\n').filter((l) => l.trim() !== '');
    return lines.slice(-3).join(' | ').slice(-600);
  }

  private send(message: TrialProcessRequest): void {
    if (!this.alive || !this.child.connected) return;
    // A failed send means the child is gone: its 'close' handler reports that.
    this.child.send(message, () => {});
  }

  private finish(outcome: (current: NonNullable<PoolWorker['current']>) => TrialOutcome): void {
    const current = this.current;
    if (!current) return;
    this.current = null;
    current.settle(outcome(current));
  }

  private receive(message: TrialProcessReply): void {
    switch (message?.type) {
      case 'ready':
        this.onReady?.(message.backend);
        this.onInitFailed = null;
        return;
      case 'init-failed':
        this.onInitFailed?.(new TrialWorkerError(this.label, `could not set up: ${message.message}`));
        this.onInitFailed = null;
        return;
      case 'event':
        if (this.current && message.trialId === this.current.trial.trialId) this.current.handlers.onEvent?.(message.trialId, message.event);
        return;
      case 'result':
        if (this.current && message.result?.trialId === this.current.trial.trialId) this.finish(() => ({ kind: 'result', result: message.result }));
        return;
      case 'aborted':
        if (this.current && message.trialId === this.current.trial.trialId) this.finish(() => ({ kind: 'abandoned' }));
        return;
    }
  }

  /** Runs one trial; resolves with its result, a 'failed' one when the child dies, or 'abandoned' when stopped by `stop`. */
  runTrial(trial: TrialSpec, handlers: TrialHandlers, stop: AbortSignal): Promise<TrialOutcome> {
    return new Promise<TrialOutcome>((settle) => {
      let killTimer: NodeJS.Timeout | null = null;
      const onStop = () => {
        if (this.current) this.current.abandoning = true;
        this.send({ type: 'abort', trialId: trial.trialId });
        killTimer = setTimeout(() => this.kill(), this.stopGraceMs);
      };
      this.current = {
        trial, handlers, started: performance.now(), abandoning: false,
        settle: (outcome) => {
          stop.removeEventListener('abort', onStop);
          if (killTimer) clearTimeout(killTimer);
          settle(outcome);
        },
      };
      if (!this.alive) {
        this.finish(() => ({ kind: 'result', result: failedTrialResult(trial, this.label, `worker process ${this.label} had ended before the trial started`, 0) }));
        return;
      }
      stop.addEventListener('abort', onStop, { once: true });
      handlers.onStart?.(trial, this.label);
      this.send({ type: 'run', trial });
      if (stop.aborted) onStop();
    });
  }

  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }

  /** Asks the child to exit, kills it after the grace period, and resolves once it is gone (reaped). */
  async stop(): Promise<void> {
    if (this.current) this.current.abandoning = true;
    this.send({ type: 'exit' });
    const timer = setTimeout(() => this.kill(), this.stopGraceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * A pool of child processes on this machine (`child_process.fork` of the built trial-process.js),
 * each running one trial at a time and living until close(). Children set up the backend as told
 * (by default as this process has it), so a trial gives the same bits as in this process on the
 * same backend. A child that dies mid-trial makes that trial 'failed' (with the exit code or
 * signal) and is replaced; the others go on.
 */
export class LocalProcessExecutor implements TrialExecutor {
  readonly name = 'local-process';
  readonly concurrency: number;
  private readonly setup: BackendSetup;
  private readonly dataDir: string | null;
  private readonly stopGraceMs: number;
  private readonly eventIntervalMs: number;
  private readonly execArgv: string[];
  private readonly entry: string;
  private readonly slots: Array<PoolWorker | null>;
  private running: AbortController | null = null;
  private closed = false;

  constructor(options: LocalProcessExecutorOptions = {}) {
    const op = 'LocalProcessExecutor';
    if (!options || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', 'an options object', describe(options));
    const workers = options.workers ?? availableParallelism();
    if (typeof workers !== 'number' || !Number.isSafeInteger(workers) || workers < 1) throw new TrainerArgumentError(op, 'options.workers', 'a positive integer', describe(workers));
    checkBackendOptions(op, options);
    for (const name of ['stopGraceMs', 'eventIntervalMs'] as const) {
      const value = options[name];
      if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0)) throw new TrainerArgumentError(op, `options.${name}`, 'a number of milliseconds >= 0', describe(value));
    }
    if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) throw new TrainerArgumentError(op, 'options.dataDir', 'a folder path', describe(options.dataDir));
    this.concurrency = workers;
    // Mirror this process by default: the same setup is what makes a child's bits equal to ours.
    const kernels = options.wasmKernels === undefined ? wasmKernelStatus() : null;
    this.setup = {
      backend: options.backend ?? backendInfo()?.name ?? 'auto',
      wasmKernels: options.wasmKernels === undefined ? kernels!.choice : options.wasmKernels,
      relaxedSimd: options.relaxedSimd ?? (kernels ?? wasmKernelStatus()).variant === 'relaxed-simd',
      // Each child its share of the cores: more kernel threads than cores only slow every trial.
      kernelThreads: options.kernelThreads === undefined ? kernelThreadsPerProcess(workers) : options.kernelThreads,
    };
    this.dataDir = options.dataDir ? resolve(options.dataDir) : null;
    this.stopGraceMs = options.stopGraceMs ?? 3000;
    this.eventIntervalMs = options.eventIntervalMs ?? 100;
    this.execArgv = [...(options.execArgv ?? [])];
    this.entry = options.entry ?? defaultTrialProcessEntry();
    if (!existsSync(this.entry)) throw new TrialWorkerError(null, `the child entry ${this.entry} does not exist: build @bnmlp/trainer first (pnpm --filter @bnmlp/trainer build)`);
    this.slots = Array.from({ length: workers }, () => null);
  }

  /** Pids of the live child processes. */
  workerPids(): number[] {
    return this.slots.filter((w): w is PoolWorker => !!w && w.alive).map((w) => w.pid);
  }

  private spawn(): PoolWorker {
    // execArgv given explicitly: a child must not inherit its parent's loaders or inspector flags (vitest's, say).
    const child = fork(this.entry, [], { execArgv: this.execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
    return new PoolWorker(child, { type: 'init', setup: this.setup, dataDir: this.dataDir, eventIntervalMs: this.eventIntervalMs }, this.stopGraceMs);
  }

  /** The slot's live, set-up worker, starting a fresh one when there is none (first use, or the last one died). */
  private async workerFor(slot: number): Promise<PoolWorker> {
    let worker = this.slots[slot];
    if (!worker || !worker.alive) {
      worker = this.spawn();
      this.slots[slot] = worker;
    }
    await worker.ready;
    return worker;
  }

  async run(trials: readonly TrialSpec[], handlers: TrialHandlers, signal?: AbortSignal): Promise<void> {
    checkTrials('LocalProcessExecutor.run', trials);
    if (this.closed) throw new TrialWorkerError(null, 'the executor is closed');
    if (this.running) throw new TrialWorkerError(null, 'the executor is already running trials (one run at a time)');
    // Stops the run on the caller's abort, and on a failure of our own (a handler threw, a worker cannot start).
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) stop.abort();
    this.running = stop;
    const queue = [...trials];
    let failure: { error: unknown } | null = null;
    const fail = (error: unknown) => {
      failure ??= { error };
      stop.abort();
    };
    // One result at a time, in the order they end.
    let reported: Promise<void> = Promise.resolve();
    const report = (result: TrialResult) => {
      const next = reported.then(() => handlers.onResult(result));
      reported = next.catch(() => {});
      return next;
    };
    const lane = async (slot: number) => {
      while (queue.length > 0 && !stop.signal.aborted) {
        const worker = await this.workerFor(slot);
        // Another lane may have taken the last trial while this worker started.
        const trial = queue.shift();
        if (!trial || stop.signal.aborted) {
          if (trial) queue.unshift(trial);
          return;
        }
        const outcome = await worker.runTrial(trial, handlers, stop.signal);
        if (outcome.kind === 'result') await report(outcome.result);
      }
    };
    try {
      const lanes = Math.min(this.concurrency, trials.length);
      await Promise.all(Array.from({ length: lanes }, (_, slot) => lane(slot).catch(fail)));
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.running = null;
    }
    if (failure) throw (failure as { error: unknown }).error;
  }

  /** Ends every child (asked first, killed after the grace period) and resolves when all are gone. */
  async close(): Promise<void> {
    this.closed = true;
    this.running?.abort();
    await Promise.all(this.slots.map((worker) => worker?.stop()));
    this.slots.fill(null);
  }
}
