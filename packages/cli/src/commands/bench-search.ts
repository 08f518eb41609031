import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalProcessExecutor, runSearch } from '@bnmlp/trainer';
import { writeFullSizeSet } from './bench-trainer.js';

/*
The search figure for `bnmlp bench`: the same 8 short trials (3-layer [50, 30] BN, 5,000
generated training images, 10 epochs) on 1 and on 2 worker processes, wall time of each whole
search, so the ratio shows what the second core buys (target ≤ 0.6×).
*/

export interface SearchBenchResult {
  readonly trials: number;
  readonly seconds: { readonly oneWorker: number; readonly twoWorkers: number };
  readonly ratio: number;
  readonly meanTrialSeconds: number;
}

async function timeSearch(dataDir: string, workers: number, trials: number, seed: number, resultsDir: string): Promise<{ seconds: number; trialSeconds: number[] }> {
  const executor = new LocalProcessExecutor({ workers, dataDir });
  const started = performance.now();
  try {
    const outcome = await runSearch(
      {
        stage: `bench-${workers}`,
        baseConfig: { network: { hiddenDims: [50, 30] }, optimizer: { learningRate: 0.01, momentum: 0.8 }, epochs: 10, batchSize: 100, seed, data: { trainCount: 5000, validationCount: 1000, test: false } },
        ranges: { learningRate: { min: 1e-3, max: 5e-2 }, lambda: { min: 1e-5, max: 1e-2 } },
        trials, seed,
      },
      { executor, resultsPath: join(resultsDir, `results-${workers}.jsonl`) },
    );
    return { seconds: (performance.now() - started) / 1000, trialSeconds: outcome.results.map((r) => r.seconds) };
  } finally {
    await executor.close();
  }
}

export async function runSearchBench(options: { trials: number; seed: number }, onProgress: (message: string) => void = () => {}): Promise<SearchBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bnmlp-bench-search-'));
  try {
    writeFullSizeSet(join(dir, 'data'), 2000, options.seed);
    onProgress(`search: ${options.trials} trials on 1 worker process`);
    const one = await timeSearch(join(dir, 'data'), 1, options.trials, options.seed, dir);
    onProgress(`search: ${options.trials} trials on 2 worker processes`);
    const two = await timeSearch(join(dir, 'data'), 2, options.trials, options.seed, dir);
    const all = [...one.trialSeconds, ...two.trialSeconds];
    return { trials: options.trials, seconds: { oneWorker: one.seconds, twoWorkers: two.seconds }, ratio: two.seconds / one.seconds, meanTrialSeconds: all.reduce((a, b) => a + b, 0) / all.length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatSearchBench(r: SearchBenchResult): string {
  return `search: ${r.trials} trials (${r.meanTrialSeconds.toFixed(2)} s each): 1 worker ${r.seconds.oneWorker.toFixed(2)} s, 2 workers ${r.seconds.twoWorkers.toFixed(2)} s (${r.ratio.toFixed(2)}× the time)`;
}
