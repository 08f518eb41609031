import { describe, expect, it } from 'vitest';
import { formatSearchBench } from './bench-search.js';

describe('formatSearchBench', () => {
  it('names both ratios, their runs and the target', () => {
    const line = formatSearchBench({
      trials: 8, seconds: { oneWorkerOneCore: 30.5, twoWorkers: 17.25, oneWorkerAllCores: 20 }, allCoresThreads: 2,
      ratio: 17.25 / 30.5, ratioThreaded: 17.25 / 20, meanTrialSeconds: 3.123,
    });
    expect(line).toBe(
      'search: 8 trials (3.12 s each): 2 workers 17.25 s ÷ 1 worker on one core 30.50 s = 0.57× (target ≤ 0.6); ÷ 1 worker with 2 kernel threads 20.00 s = 0.86×',
    );
  });
});
