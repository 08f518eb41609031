import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WeightsFile } from '@bnmlp/core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TrainerArgumentError } from './errors.js';
import { compareTrialRecords, drawTrials, fineRanges, runSearch, searchIdOf, type SearchEvent, type SearchSpec, type TrialRecord } from './search.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from './train-config.js';
import type { RunSummary } from './training.js';
import { InProcessExecutor, type TrialFunction } from './trial-executor.js';
import { TrialAbortedError, type TrialSpec, type TrialStatus } from './trial.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-search-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const freshPath = (name: string) => join(tmp, `${counter++}`, name);

const baseConfig: TrainConfigInput = {
  network: { hiddenDims: [8] },
  optimizer: { learningRate: 0.01, lambda: 0 },
  epochs: 3,
  batchSize: 10,
  data: { dims: 50, validationCount: 10 },
};

function spec(overrides: Partial<SearchSpec> = {}): SearchSpec {
  return {
    stage: 'coarse',
    baseConfig,
    ranges: { learningRate: { min: 1e-3, max: 1e-1 }, lambda: { min: 1e-5, max: 1e-2 } },
    trials: 6,
    seed: 11,
    ...overrides,
  };
}

function summary(status: RunSummary['status'], train: number | null, validation: number | null): RunSummary {
  const metrics = (accuracy: number | null) => (accuracy === null ? null : { cost: 1, loss: 1, accuracy });
  return {
    status, epochs: 3, steps: 9, train: metrics(train), validation: metrics(validation), test: null, bestValidationEpoch: validation === null ? null : 3,
    seconds: 0.01, backend: 'fake', droppedRows: 0, divergence: null, notes: [],
  };
}

function record(index: number, learningRate: number, lambda: number, status: TrialStatus, train: number | null, validation: number | null): TrialRecord {
  const config = parseTrainConfig({ ...baseConfig, optimizer: { learningRate, lambda } });
  return {
    searchId: 's', trialId: `t${index}`, index, status, config, history: [], error: status === 'completed' ? null : `${status} on purpose`, seconds: 0.01, worker: 'local',
    summary: status === 'failed' ? null : summary(status === 'completed' ? 'completed' : 'diverged', train, validation),
  };
}

/** Validation accuracy peaks at η = 1e-2, λ = 1e-4 (log space), so the ranking is known in advance. */
function fakeAccuracy(config: TrainConfig): number {
  return 0.5 - 0.1 * Math.abs(Math.log10(config.optimizer.learningRate) + 2) - 0.05 * Math.abs(Math.log10(config.optimizer.lambda) + 4);
}

const fakeWeights = { format: 'bnmlp-weights', version: 1, dtype: 'float32', byteOrder: 'little-endian', config: {}, layers: [] } as unknown as WeightsFile;

interface FakeOptions {
  /** Trial indices that diverge, or whose trial function throws (a crash). */
  readonly diverge?: readonly number[];
  readonly crash?: readonly number[];
  /** Each trial takes this long (and can be aborted meanwhile). */
  readonly delayMs?: number;
}

/** A trial function that trains nothing: it answers from the config and counts its calls. */
function fakeTrials(options: FakeOptions = {}): { run: TrialFunction; calls: TrialSpec[] } {
  const calls: TrialSpec[] = [];
  const run: TrialFunction = async (trial, { signal, onEvent, worker }) => {
    calls.push(trial);
    if (options.delayMs) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.delayMs);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      if (signal?.aborted) throw new TrialAbortedError(trial.trialId);
    }
    onEvent?.({ kind: 'step', epoch: 1, step: 1, stepsPerEpoch: 1, globalStep: 1, totalSteps: 1, loss: 2 });
    if (options.crash?.includes(trial.index)) throw new Error('simulated crash');
    const diverged = options.diverge?.includes(trial.index) ?? false;
    const accuracy = fakeAccuracy(trial.config);
    return {
      searchId: trial.searchId, trialId: trial.trialId, index: trial.index, config: trial.config, worker: worker ?? 'local', seconds: 0.001, history: [],
      status: diverged ? 'diverged' : 'completed',
      summary: diverged ? summary('diverged', null, null) : summary('completed', accuracy + 0.1, accuracy),
      weights: diverged ? null : fakeWeights,
      error: diverged ? 'the training loss became NaN' : null,
    };
  };
  return { run, calls };
}

function readLines(path: string): unknown[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
}

function expectArgumentError(fn: () => unknown, argument: string) {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(TrainerArgumentError);
    expect((error as TrainerArgumentError).argument).toBe(argument);
    return;
  }
  expect.fail(`expected a TrainerArgumentError for ${argument}`);
}

describe('drawTrials', () => {
  test('is deterministic: the same spec gives the same configs and ids; ids are distinct 16-hex-digit hashes', () => {
    const first = drawTrials(spec());
    const again = drawTrials(spec());

    expect(again).toEqual(first);
    expect(first).toHaveLength(6);
    expect(new Set(first.map((t) => t.trialId)).size).toBe(6);
    for (const [i, trial] of first.entries()) {
      expect(trial.trialId).toMatch(/^[0-9a-f]{16}$/);
      expect(trial.index).toBe(i);
      expect(trial.searchId).toBe(searchIdOf(spec()));
    }
    expect(first[0].searchId).toMatch(/^coarse-[0-9a-f]{16}$/);
  });

  test('draws within the ranges and changes only η and λ of the base config', () => {
    const ranges = { learningRate: { min: 0.002, max: 0.03 }, lambda: { min: 3e-6, max: 4e-6 } };
    const base = parseTrainConfig(baseConfig);

    const trials = drawTrials(spec({ ranges, trials: 200 }));

    for (const { config } of trials) {
      expect(config.optimizer.learningRate).toBeGreaterThanOrEqual(ranges.learningRate.min);
      expect(config.optimizer.learningRate).toBeLessThanOrEqual(ranges.learningRate.max);
      expect(config.optimizer.lambda).toBeGreaterThanOrEqual(ranges.lambda.min);
      expect(config.optimizer.lambda).toBeLessThanOrEqual(ranges.lambda.max);
      expect({ ...config, optimizer: { ...config.optimizer, learningRate: 0, lambda: 0 } }).toEqual({ ...base, optimizer: { ...base.optimizer, learningRate: 0, lambda: 0 } });
    }
  });

  test('is log-uniform: log10 of the draws has its quartiles where a uniform draw over [−4, 0] has them', () => {
    const draws = drawTrials(spec({ ranges: { learningRate: { min: 1e-4, max: 1 }, lambda: { min: 1e-4, max: 1 } }, trials: 2000 }));

    for (const key of ['learningRate', 'lambda'] as const) {
      const logs = draws.map((t) => Math.log10(t.config.optimizer[key])).sort((a, b) => a - b);
      const quantile = (q: number) => logs[Math.floor(q * (logs.length - 1))];
      // A uniform draw in linear space would put the median near 10^−0.3, not at the geometric mean 10^−2.
      expect(Math.abs(quantile(0.5) - -2)).toBeLessThan(0.12);
      expect(Math.abs(quantile(0.25) - -3)).toBeLessThan(0.12);
      expect(Math.abs(quantile(0.75) - -1)).toBeLessThan(0.12);
    }
  });

  test('a different seed draws different values and ids; the search id names what defines the search', () => {
    const a = drawTrials(spec());

    const b = drawTrials(spec({ seed: 12 }));

    expect(b.map((t) => t.config.optimizer.learningRate)).not.toEqual(a.map((t) => t.config.optimizer.learningRate));
    expect(b[0].searchId).not.toBe(a[0].searchId);
    expect(new Set([...a, ...b].map((t) => t.trialId)).size).toBe(12);
    expect(searchIdOf(spec({ stage: 'fine' }))).not.toBe(searchIdOf(spec()));
    expect(searchIdOf(spec({ trials: 7 }))).not.toBe(searchIdOf(spec()));
    expect(searchIdOf(spec({ ranges: { learningRate: { min: 1e-3, max: 2e-1 }, lambda: { min: 1e-5, max: 1e-2 } } }))).not.toBe(searchIdOf(spec()));
    expect(searchIdOf(spec({ baseConfig: { ...baseConfig, epochs: 4 } }))).not.toBe(searchIdOf(spec()));
    // The base's η and λ are drawn over, so they do not make another search.
    expect(searchIdOf(spec({ baseConfig: { ...baseConfig, optimizer: { learningRate: 0.5, lambda: 0.1 } } }))).toBe(searchIdOf(spec()));
    expect(searchIdOf(spec({ searchId: 'queue-7' }))).toBe('queue-7');
  });

  test('a config drawn twice (single-point ranges) still gets distinct ids', () => {
    const trials = drawTrials(spec({ ranges: { learningRate: { min: 0.01, max: 0.01 }, lambda: { min: 1e-4, max: 1e-4 } }, trials: 3 }));

    expect(trials.map((t) => t.config.optimizer.learningRate)).toEqual([0.01, 0.01, 0.01]);
    expect(new Set(trials.map((t) => t.trialId)).size).toBe(3);
  });

  test('rejects unusable specs with TrainerArgumentError naming the argument', () => {
    const lr = (min: number, max: number) => ({ learningRate: { min, max }, lambda: { min: 1e-5, max: 1e-2 } });

    expectArgumentError(() => drawTrials(spec({ ranges: lr(0.1, 0.01) })), 'spec.ranges.learningRate');
    expectArgumentError(() => drawTrials(spec({ ranges: lr(0, 0.01) })), 'spec.ranges.learningRate.min');
    expectArgumentError(() => drawTrials(spec({ ranges: lr(1e-3, Infinity) })), 'spec.ranges.learningRate.max');
    expectArgumentError(() => drawTrials(spec({ ranges: { learningRate: { min: 1e-3, max: 1e-1 }, lambda: { min: -1, max: 1e-2 } } })), 'spec.ranges.lambda.min');
    expectArgumentError(() => drawTrials(spec({ trials: 0 })), 'spec.trials');
    expectArgumentError(() => drawTrials(spec({ trials: 2.5 })), 'spec.trials');
    expectArgumentError(() => drawTrials(spec({ stage: 'a/b' })), 'spec.stage');
    expectArgumentError(() => drawTrials(spec({ seed: -1 })), 'spec.seed');
    expectArgumentError(
      () => drawTrials(spec({ baseConfig: { ...baseConfig, optimizer: { learningRate: 0.01, schedule: { kind: 'cyclical', etaMin: 1e-5, etaMax: 1e-1, stepSize: 10, cycles: 1 } } } })),
      'spec.baseConfig.optimizer.schedule',
    );
  });
});

describe('fineRanges', () => {
  const results = [
    record(0, 1e-3, 1e-5, 'completed', 0.30, 0.28),
    record(1, 1e-2, 1e-4, 'completed', 0.45, 0.40),
    record(2, 3e-2, 1e-3, 'completed', 0.44, 0.39),
    record(3, 5e-3, 3e-4, 'completed', 0.42, 0.37),
    record(4, 0.5, 1e-2, 'diverged', null, null),
    record(5, 0.2, 1e-2, 'failed', null, null),
  ];

  test('spans the top-k completed trials in log space, widened by the margin on each side', () => {
    const ranges = fineRanges(results, { top: 3, margin: 0.5 });

    expect(Math.log10(ranges.learningRate.min)).toBeCloseTo(Math.log10(5e-3) - 0.5, 12);
    expect(Math.log10(ranges.learningRate.max)).toBeCloseTo(Math.log10(3e-2) + 0.5, 12);
    expect(Math.log10(ranges.lambda.min)).toBeCloseTo(-4 - 0.5, 12);
    expect(Math.log10(ranges.lambda.max)).toBeCloseTo(-3 + 0.5, 12);
  });

  test('one best trial and no margin give a single-point range that is still valid for drawTrials', () => {
    const ranges = fineRanges(results, { top: 1, margin: 0 });

    expect(ranges.learningRate.min).toBeCloseTo(1e-2, 15);
    expect(ranges.learningRate.max).toBeGreaterThanOrEqual(ranges.learningRate.min);
    expect(drawTrials(spec({ stage: 'fine', ranges, trials: 2 }))).toHaveLength(2);
  });

  test('ignores failed and diverged trials, and refuses results with no completed trial', () => {
    const ranges = fineRanges(results, { top: 10, margin: 0 });

    expect(ranges.learningRate.max).toBeCloseTo(3e-2, 15);
    expectArgumentError(() => fineRanges(results.slice(4)), 'results');
    expectArgumentError(() => fineRanges(results, { top: 0 }), 'options.top');
    expectArgumentError(() => fineRanges(results, { margin: -1 }), 'options.margin');
  });
});

describe('compareTrialRecords', () => {
  test('orders by validation accuracy, then training accuracy, then draw order; diverged then failed last', () => {
    const records = [
      record(0, 1e-2, 1e-4, 'failed', null, null),
      record(1, 1e-2, 1e-4, 'completed', 0.5, 0.3),
      record(2, 1e-2, 1e-4, 'diverged', null, null),
      record(3, 1e-2, 1e-4, 'completed', 0.6, 0.3),
      record(4, 1e-2, 1e-4, 'completed', 0.2, 0.4),
      record(5, 1e-2, 1e-4, 'completed', 0.6, 0.3),
      record(6, 1e-2, 1e-4, 'completed', 0.9, null),
    ];

    const order = [...records].sort(compareTrialRecords).map((r) => r.index);

    expect(order).toEqual([4, 3, 5, 1, 6, 2, 0]);
  });
});

describe('runSearch (fake trials, in process)', () => {
  test('appends one line per trial as it ends, keeps weights out of the lines, and returns sorted rows', async () => {
    const resultsPath = freshPath('results.jsonl');
    const weightsDir = join(resultsPath, '..', 'weights');
    const fake = fakeTrials();
    const linesAtEachEnd: number[] = [];
    const events: SearchEvent[] = [];

    const outcome = await runSearch(spec(), {
      executor: new InProcessExecutor({ runTrial: fake.run }), resultsPath, weightsDir,
      onEvent: (event) => {
        events.push(event);
        if (event.kind === 'trial-end') linesAtEachEnd.push(readLines(resultsPath).length);
      },
    });

    expect(linesAtEachEnd).toEqual([1, 2, 3, 4, 5, 6]);
    const lines = readLines(resultsPath) as Array<Record<string, unknown>>;
    expect(lines.map((l) => l.index)).toEqual([0, 1, 2, 3, 4, 5]);
    for (const line of lines) {
      expect(Object.keys(line).sort()).toEqual(['config', 'error', 'history', 'index', 'searchId', 'seconds', 'status', 'summary', 'trialId', 'worker']);
      expect(JSON.parse(readFileSync(join(weightsDir, `${line.trialId}.json`), 'utf8'))).toEqual(fakeWeights);
    }
    expect(outcome).toMatchObject({ total: 6, ran: 6, aborted: false });
    expect(outcome.results.map((r) => r.index)).toEqual([0, 1, 2, 3, 4, 5]);
    const accuracies = outcome.rows.map((r) => r.validationAccuracy!);
    expect(accuracies).toEqual([...accuracies].sort((a, b) => b - a));
    expect(outcome.best!.trialId).toBe(outcome.rows[0].trialId);
    expect(outcome.best!.config.optimizer.learningRate).toBe(outcome.rows[0].learningRate);
    // Progress: every trial starts and ends, its training events come tagged, ends count up to the total.
    expect(events.filter((e) => e.kind === 'trial-start')).toHaveLength(6);
    expect(events.filter((e) => e.kind === 'trial').map((e) => (e as { trialId: string }).trialId)).toEqual(outcome.results.map((r) => r.trialId));
    expect(events.filter((e) => e.kind === 'trial-end').map((e) => (e as { done: number }).done)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test('run again, it resumes: nothing already recorded runs again and the outcome is the same', async () => {
    const resultsPath = freshPath('results.jsonl');
    const first = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: fakeTrials().run }), resultsPath });
    const again = fakeTrials();

    const second = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: again.run }), resultsPath });

    expect(again.calls).toHaveLength(0);
    expect(second.ran).toBe(0);
    expect(second.rows).toEqual(first.rows);
    expect(readLines(resultsPath)).toHaveLength(6);
    expect(second.notes.join('\n')).toMatch(/6 of 6 trials are already/);
  });

  test('a partial last line (a crash mid-append) is ignored with a note, cut off, and its trial runs again', async () => {
    const resultsPath = freshPath('results.jsonl');
    await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: fakeTrials().run }), resultsPath });
    const text = readFileSync(resultsPath, 'utf8');
    const lastLineStart = text.lastIndexOf('\n', text.length - 2) + 1;
    writeFileSync(resultsPath, text.slice(0, lastLineStart + 40));
    const again = fakeTrials();

    const outcome = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: again.run }), resultsPath });

    expect(again.calls.map((t) => t.index)).toEqual([5]);
    expect(outcome.notes.join('\n')).toMatch(/last line is incomplete/);
    expect(readLines(resultsPath).map((l) => (l as { index: number }).index)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(outcome.results).toHaveLength(6);
  });

  test('a diverged and a crashed trial are recorded with their errors, sort last, and the search goes on', async () => {
    const resultsPath = freshPath('results.jsonl');
    const fake = fakeTrials({ diverge: [1], crash: [2] });

    const outcome = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: fake.run }), resultsPath });

    expect(fake.calls).toHaveLength(6);
    expect(outcome.results.map((r) => r.status)).toEqual(['completed', 'diverged', 'failed', 'completed', 'completed', 'completed']);
    expect(outcome.rows.map((r) => r.status)).toEqual(['completed', 'completed', 'completed', 'completed', 'diverged', 'failed']);
    expect(outcome.rows[4].error).toMatch(/NaN/);
    expect(outcome.rows[5].error).toMatch(/simulated crash/);
    expect(readLines(resultsPath)).toHaveLength(6);
    expect(existsSync(join(resultsPath, '..', 'weights'))).toBe(false);
  });

  test('abort stops dispatching and the running trial; finished results stay, and a rerun runs only the rest', async () => {
    const resultsPath = freshPath('results.jsonl');
    const controller = new AbortController();
    const fake = fakeTrials({ delayMs: 30 });
    const onEvent = (event: SearchEvent) => {
      // Abort while the third trial runs.
      if (event.kind === 'trial-start' && event.index === 2) setTimeout(() => controller.abort(), 5);
    };

    const outcome = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: fake.run }), resultsPath, signal: controller.signal, onEvent });

    expect(outcome.aborted).toBe(true);
    expect(fake.calls.map((t) => t.index)).toEqual([0, 1, 2]);
    expect(outcome.results.map((r) => r.index)).toEqual([0, 1]);
    expect(readLines(resultsPath)).toHaveLength(2);
    const rest = fakeTrials();
    const resumed = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: rest.run }), resultsPath });
    expect(rest.calls.map((t) => t.index)).toEqual([2, 3, 4, 5]);
    expect(resumed).toMatchObject({ aborted: false, ran: 4 });
    expect(resumed.results).toHaveLength(6);
  });

  test("another search's lines in the same file are left alone", async () => {
    const resultsPath = freshPath('results.jsonl');
    await runSearch(spec({ stage: 'fine' }), { executor: new InProcessExecutor({ runTrial: fakeTrials().run }), resultsPath });
    const coarse = fakeTrials();

    const outcome = await runSearch(spec(), { executor: new InProcessExecutor({ runTrial: coarse.run }), resultsPath });

    expect(coarse.calls).toHaveLength(6);
    expect(outcome.results.every((r) => r.searchId === searchIdOf(spec()))).toBe(true);
    expect(outcome.notes.join('\n')).toMatch(/6 line\(s\) belong to other searches/);
    expect(readLines(resultsPath)).toHaveLength(12);
  });

  test('rejects missing options with TrainerArgumentError', async () => {
    const executor = new InProcessExecutor({ runTrial: fakeTrials().run });

    await expect(runSearch(spec(), { executor, resultsPath: '' })).rejects.toMatchObject({ argument: 'options.resultsPath' });
    await expect(runSearch(spec(), { executor: {} as InProcessExecutor, resultsPath: freshPath('r.jsonl') })).rejects.toMatchObject({ argument: 'options.executor' });
    await expect(runSearch(spec({ trials: -3 }), { executor, resultsPath: freshPath('r.jsonl') })).rejects.toBeInstanceOf(TrainerArgumentError);
  });
});
