import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, MAX_KERNEL_THREADS } from '@bnmlp/core';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { TrainerArgumentError } from './errors.js';
import { drawTrials, type SearchSpec } from './search.js';
import { parseTrainConfig, type TrainConfigInput } from './train-config.js';
import type { TrainingEvent } from './training.js';
import { InProcessExecutor, kernelThreadsPerProcess, LocalProcessExecutor, PreparedDataCache, TrialWorkerError, type TrialExecutor } from './trial-executor.js';
import type { TrialResult, TrialSpec } from './trial.js';
import { tinyCifarDir } from './test-support/paths.js';

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const childEntry = join(packageDir, 'dist', 'trial-process.js');

/** Newest modification time of the sources the built child is made of. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'test-support') newest = Math.max(newest, newestSource(path));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

let tmp: string;
beforeAll(async () => {
  // The children run the built dist/trial-process.js: `pnpm test` builds first; a direct `vitest run` may find it stale.
  if (!existsSync(childEntry) || statSync(childEntry).mtimeMs < newestSource(join(packageDir, 'src'))) {
    // Type errors elsewhere in the package (work in progress) still emit JavaScript: the freshness check below decides.
    spawnSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: packageDir, stdio: 'ignore' });
  }
  expect(existsSync(childEntry) && statSync(childEntry).mtimeMs >= newestSource(join(packageDir, 'src')), `${childEntry} is built from the current sources`).toBe(true);
  await initBackend('cpu');
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-executor-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Every executor a test makes is closed, even when the test fails.
const executors: TrialExecutor[] = [];
function track<T extends TrialExecutor>(executor: T): T {
  executors.push(executor);
  return executor;
}
afterEach(async () => {
  await Promise.all(executors.splice(0).map((e) => e.close()));
});

const tinyBase: TrainConfigInput = {
  network: { hiddenDims: [8] },
  optimizer: { learningRate: 0.01 },
  epochs: 3,
  batchSize: 10,
  seed: 5,
  data: { dims: 50, validationCount: 10 },
};

function tinySpec(trials: number): SearchSpec {
  return { stage: 'test', baseConfig: tinyBase, ranges: { learningRate: { min: 1e-3, max: 1e-1 }, lambda: { min: 1e-5, max: 1e-2 } }, trials, seed: 3 };
}

interface Collected {
  readonly results: Map<string, TrialResult>;
  readonly events: Array<{ trialId: string; event: TrainingEvent }>;
  readonly starts: Array<{ trial: TrialSpec; worker: string }>;
}

async function runAll(executor: TrialExecutor, trials: readonly TrialSpec[], signal?: AbortSignal, onEvent?: (trialId: string, event: TrainingEvent, worker: string) => void): Promise<Collected> {
  const collected: Collected = { results: new Map(), events: [], starts: [] };
  const workerOf = new Map<string, string>();
  await executor.run(
    trials,
    {
      onStart: (trial, worker) => {
        collected.starts.push({ trial, worker });
        workerOf.set(trial.trialId, worker);
      },
      onEvent: (trialId, event) => {
        collected.events.push({ trialId, event });
        onEvent?.(trialId, event, workerOf.get(trialId)!);
      },
      onResult: (result) => {
        collected.results.set(result.trialId, result);
      },
    },
    signal,
  );
  return collected;
}

const pidOf = (worker: string) => Number(worker.slice(worker.lastIndexOf(':') + 1));

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What must be equal bit for bit between two runs of a trial: all but wall times (any key ending in 'seconds') and the worker's name. */
function reproducible(result: TrialResult): unknown {
  const withoutTimes = (value: unknown): unknown =>
    Array.isArray(value)
      ? value.map(withoutTimes)
      : value && typeof value === 'object'
        ? Object.fromEntries(Object.entries(value).filter(([key]) => !/seconds$/i.test(key)).map(([key, v]) => [key, withoutTimes(v)]))
        : value;
  return withoutTimes({ ...result, worker: null });
}

describe('LocalProcessExecutor', () => {
  test('children give the same bits (history, weights) as the in-process executor on the same backend', async () => {
    const trials = drawTrials(tinySpec(4));
    const inProcess = await runAll(track(new InProcessExecutor({ dataDir: tinyCifarDir, backend: 'cpu' })), trials);
    const pool = track(new LocalProcessExecutor({ workers: 2, dataDir: tinyCifarDir, backend: 'cpu' }));

    const pooled = await runAll(pool, trials);

    expect([...pooled.results.keys()].sort()).toEqual(trials.map((t) => t.trialId).sort());
    for (const trial of trials) {
      const mine = inProcess.results.get(trial.trialId)!;
      const theirs = pooled.results.get(trial.trialId)!;
      expect(mine.status, mine.error ?? '').toBe('completed');
      expect(theirs.summary!.backend).toBe('cpu');
      // Weights are base64 of the float32 bytes: equal strings are equal bits.
      expect(theirs.weights).toEqual(mine.weights);
      expect(reproducible(theirs)).toEqual(reproducible(mine));
    }
    // Two children, living across trials (not one process per trial): every trial ran in one of them.
    // (How the 4 trials split between them depends on which child starts first.)
    expect(pool.workerPids()).toHaveLength(2);
    for (const result of pooled.results.values()) expect(pool.workerPids()).toContain(pidOf(result.worker));
  });

  test('a child killed mid-trial gives a failed result with the signal and is replaced; the others complete; no child outlives close()', async () => {
    const trials = drawTrials(tinySpec(6));
    // The victim goes first (so trials are left when it dies) and trains long enough to be killed while it runs.
    const victim: TrialSpec = { ...trials[0], config: { ...trials[0].config, epochs: 2000 } };
    const others = trials.slice(1);
    const pool = track(new LocalProcessExecutor({ workers: 2, dataDir: tinyCifarDir, backend: 'cpu' }));
    const killed: number[] = [];

    const collected = await runAll(pool, [victim, ...others], undefined, (trialId, event, worker) => {
      if (trialId === victim.trialId && event.kind === 'step' && killed.length === 0) {
        killed.push(pidOf(worker));
        process.kill(pidOf(worker), 'SIGKILL');
      }
    });

    const failed = collected.results.get(victim.trialId)!;
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/killed by signal SIGKILL/);
    expect(pidOf(failed.worker)).toBe(killed[0]);
    for (const trial of others) expect(collected.results.get(trial.trialId)!.status).toBe('completed');
    const seenPids = new Set(collected.starts.map((s) => pidOf(s.worker)));
    const livePids = pool.workerPids();
    expect(livePids).not.toContain(killed[0]);
    expect(livePids).toHaveLength(2);

    await pool.close();

    expect(pool.workerPids()).toEqual([]);
    for (const pid of new Set([...seenPids, ...livePids])) expect(isRunning(pid), `pid ${pid}`).toBe(false);
  });

  test('abort stops the running trials without results and resolves; the children serve the next run', async () => {
    const trials = drawTrials(tinySpec(3)).map((t) => ({ ...t, config: { ...t.config, epochs: 2000 } }));
    const pool = track(new LocalProcessExecutor({ workers: 2, dataDir: tinyCifarDir, backend: 'cpu', stopGraceMs: 5000 }));
    const controller = new AbortController();
    const stepping = new Set<string>();
    let abortedAt = 0;

    const collected = await runAll(pool, trials, controller.signal, (trialId, event) => {
      if (event.kind === 'step') stepping.add(trialId);
      if (stepping.size === 2 && !controller.signal.aborted) {
        abortedAt = performance.now();
        controller.abort();
      }
    });

    expect(collected.results.size).toBe(0);
    expect(collected.starts).toHaveLength(2);
    // The children stopped their trials when told (well before the 5 s grace period ran out), so they live on.
    expect(performance.now() - abortedAt).toBeLessThan(2500);
    expect(pool.workerPids()).toHaveLength(2);
    const next = await runAll(pool, drawTrials(tinySpec(2)));
    expect([...next.results.values()].map((r) => r.status)).toEqual(['completed', 'completed']);
  });

  test("step events are thinned to the interval; 'start' and every 'epoch-end' still arrive", async () => {
    const [trial] = drawTrials(tinySpec(1));
    const pool = track(new LocalProcessExecutor({ workers: 1, dataDir: tinyCifarDir, backend: 'cpu', eventIntervalMs: 60_000 }));

    const collected = await runAll(pool, [{ ...trial, config: { ...trial.config, epochs: 5 } }]);

    const kinds = collected.events.map((e) => e.event.kind);
    expect(kinds.filter((k) => k === 'start')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'epoch-end')).toHaveLength(5);
    // 3 steps per epoch: the first step, then only each epoch's last one.
    const steps = collected.events.flatMap((e) => (e.event.kind === 'step' ? [e.event.globalStep] : []));
    expect(steps).toEqual([1, 3, 6, 9, 12, 15]);
  });

  test('a child that cannot start makes run() reject with TrialWorkerError (the search cannot go on)', async () => {
    const entry = join(tmp, 'exits.mjs');
    writeFileSync(entry, 'process.exit(5);\n');
    const pool = track(new LocalProcessExecutor({ workers: 1, entry }));

    const run = runAll(pool, drawTrials(tinySpec(1)));

    await expect(run).rejects.toBeInstanceOf(TrialWorkerError);
    await expect(run).rejects.toThrow(/exited with code 5/);
  });

  test('rejects bad options with TrainerArgumentError, and a missing child entry with TrialWorkerError', () => {
    expect(() => new LocalProcessExecutor({ workers: 0 })).toThrow(expect.objectContaining({ argument: 'options.workers' }));
    expect(() => new LocalProcessExecutor({ workers: 1.5 })).toThrow(TrainerArgumentError);
    expect(() => new LocalProcessExecutor({ backend: 'gpu' as 'cpu' })).toThrow(expect.objectContaining({ argument: 'options.backend' }));
    expect(() => new LocalProcessExecutor({ stopGraceMs: -1 })).toThrow(expect.objectContaining({ argument: 'options.stopGraceMs' }));
    expect(() => new LocalProcessExecutor({ entry: join(tmp, 'nowhere.js') })).toThrow(TrialWorkerError);
    for (const bad of [0, 9, 1.5, 'all'])
      expect(() => new LocalProcessExecutor({ kernelThreads: bad as number })).toThrow(expect.objectContaining({ argument: 'options.kernelThreads' }));
  });

  test('each of n pooled processes gets its share of the cores for kernel threads (at least 1)', () => {
    const cores = availableParallelism();
    expect(kernelThreadsPerProcess(1)).toBe(Math.min(cores, MAX_KERNEL_THREADS));
    expect(kernelThreadsPerProcess(cores)).toBe(1);
    expect(kernelThreadsPerProcess(cores * 3)).toBe(1);
    expect(kernelThreadsPerProcess(2)).toBe(Math.min(MAX_KERNEL_THREADS, Math.max(1, Math.floor(cores / 2))));
  });

  test('a machine with more cores than MAX_KERNEL_THREADS gives each process at most that many (configureKernelThreads refuses more)', () => {
    expect([kernelThreadsPerProcess(1, 16), kernelThreadsPerProcess(2, 16), kernelThreadsPerProcess(3, 16), kernelThreadsPerProcess(1, 64)]).toEqual([MAX_KERNEL_THREADS, 8, 5, MAX_KERNEL_THREADS]);
    expect(MAX_KERNEL_THREADS).toBe(8);
    expect([kernelThreadsPerProcess(1, 2), kernelThreadsPerProcess(2, 2), kernelThreadsPerProcess(3, 2)]).toEqual([2, 1, 1]);
  });
});

describe('PreparedDataCache', () => {
  test('reuses the data for the same data spec, prepares it again when the spec (or a random selection seed) changes', () => {
    const cache = new PreparedDataCache(tinyCifarDir);
    const config = parseTrainConfig(tinyBase);

    const first = cache.tryGet(config);
    const sameData = cache.tryGet({ ...config, optimizer: { ...config.optimizer, learningRate: 0.5 }, seed: 9 });
    const otherDims = cache.tryGet({ ...config, data: { ...config.data, dims: 20 } });
    const random = cache.tryGet({ ...config, data: { ...config.data, selection: 'random' } });
    const randomOtherSeed = cache.tryGet({ ...config, seed: 9, data: { ...config.data, selection: 'random' } });

    expect(first).toBeDefined();
    expect(sameData).toBe(first);
    expect(otherDims!.train.x.cols).toBe(20);
    expect(randomOtherSeed).not.toBe(random);
    expect(new PreparedDataCache().tryGet(config)).toBeUndefined();
  });
});
