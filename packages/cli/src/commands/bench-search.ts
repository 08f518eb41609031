import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelThreadsPerProcess, LocalProcessExecutor, runSearch } from '@bnmlp/trainer';
import { writeFullSizeSet } from './bench-trainer.js';

/*
The search figure for `bnmlp bench`: the same 8 short trials (3-layer [50, 30] BN, 5,000
generated training images, 10 epochs) as a whole search each time, wall time, on
- 1 worker process on one core (1 kernel thread),
- 2 worker processes, 1 kernel thread each (a pool's default on 2 cores: its share of the cores),
- 1 worker process with a kernel thread per core (a one-worker pool's default).
2 workers ÷ 1 worker on one core is what the second core buys a search (target ≤ 0.6×): the
target was set before the kernels had threads. 2 workers ÷ 1 worker with 2 kernel threads says
which way a search should spend the second core.
*/

export interface SearchBenchResult {
  readonly trials: number;
  readonly seconds: { readonly oneWorkerOneCore: number; readonly twoWorkers: number; readonly oneWorkerAllCores: number };
  /** Kernel threads of the one-worker-with-every-core run. */
  readonly allCoresThreads: number;
  /** 2 workers ÷ 1 worker on one core (target ≤ 0.6). */
  readonly ratio: number;
  /** 2 workers ÷ 1 worker with a kernel thread per core. */
  readonly ratioThreaded: number;
  readonly meanTrialSeconds: number;
}

async function timeSearch(dataDir: string, workers: number, kernelThreads: number, trials: number, seed: number, resultsDir: string): Promise<{ seconds: number; trialSeconds: number[] }> {
  const executor = new LocalProcessExecutor({ workers, dataDir, kernelThreads });
  const started = performance.now();
  try {
    const outcome = await runSearch(
      {
        stage: `bench-${workers}-${kernelThreads}`,
        baseConfig: { network: { hiddenDims: [50, 30] }, optimizer: { learningRate: 0.01, momentum: 0.8 }, epochs: 10, batchSize: 100, seed, data: { trainCount: 5000, validationCount: 1000, test: false } },
        ranges: { learningRate: { min: 1e-3, max: 5e-2 }, lambda: { min: 1e-5, max: 1e-2 } },
        trials, seed,
      },
      { executor, resultsPath: join(resultsDir, `results-${workers}-${kernelThreads}.jsonl`) },
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
    const allCoresThreads = kernelThreadsPerProcess(1);
    const run = (workers: number, threads: number, label: string) => {
      onProgress(`search: ${options.trials} trials on ${label}`);
      return timeSearch(join(dir, 'data'), workers, threads, options.trials, options.seed, dir);
    };
    const oneCore = await run(1, 1, '1 worker process, 1 kernel thread');
    const two = await run(2, kernelThreadsPerProcess(2), '2 worker processes');
    const allCores = await run(1, allCoresThreads, `1 worker process, ${allCoresThreads} kernel threads`);
    const all = [...oneCore.trialSeconds, ...two.trialSeconds, ...allCores.trialSeconds];
    return {
      trials: options.trials,
      seconds: { oneWorkerOneCore: oneCore.seconds, twoWorkers: two.seconds, oneWorkerAllCores: allCores.seconds },
      allCoresThreads,
      ratio: two.seconds / oneCore.seconds,
      ratioThreaded: two.seconds / allCores.seconds,
      meanTrialSeconds: all.reduce((a, b) => a + b, 0) / all.length,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatSearchBench(r: SearchBenchResult): string {
  const s = r.seconds;
  return (
    `search: ${r.trials} trials (${r.meanTrialSeconds.toFixed(2)} s each): 2 workers ${s.twoWorkers.toFixed(2)} s ÷ 1 worker on one core ${s.oneWorkerOneCore.toFixed(2)} s = ${r.ratio.toFixed(2)}× (target ≤ 0.6); ` +
    `÷ 1 worker with ${r.allCoresThreads} kernel threads ${s.oneWorkerAllCores.toFixed(2)} s = ${r.ratioThreaded.toFixed(2)}×`
  );
}
