import { describe, expect, test } from 'vitest';
import { CliArgumentError } from '../errors.js';
import { DEFAULT_BENCH_OPTIONS, benchHelp, formatBench, parseBenchArgs, runBench, syntheticSet } from './bench.js';

describe('bnmlp bench', () => {
  test('defaults are the issue’s figures: 3072-50-30-10, batch 100, 50,000 samples, 10,000 for inference', () => {
    const { options } = parseBenchArgs([]);
    expect(options).toEqual(DEFAULT_BENCH_OPTIONS);
    expect(options).toMatchObject({ samples: 50_000, batch: 100, hidden: [50, 30], inference: 10_000 });
  });

  test('options parse and bad values name the flag', () => {
    expect(parseBenchArgs(['--samples', '400', '--hidden', '8,4', '--torch', 'off', '--json']).options).toMatchObject({ samples: 400, hidden: [8, 4], torch: 'off' });
    expect(() => parseBenchArgs(['--batch', '0'])).toThrow(CliArgumentError);
    expect(() => parseBenchArgs(['--hidden', '8,x'])).toThrow(/--hidden/);
    expect(() => parseBenchArgs(['--samples', '10', '--batch', '20'])).toThrow(/--batch/);
    expect(() => parseBenchArgs(['--backend', 'gpu'])).toThrow(/--backend/);
    expect(parseBenchArgs(['--kernels', 'simd128']).options.kernels).toBe('simd128');
    expect(() => parseBenchArgs(['--kernels', 'avx'])).toThrow(/--kernels.*auto, relaxed-simd, simd128, off/);
    expect(benchHelp()).toContain('--torch');
  });

  test('synthetic data has unit variance and labels in range', () => {
    const { x, labels } = syntheticSet(200, 3);
    let sum = 0;
    let sq = 0;
    for (const v of x.data) {
      sum += v;
      sq += v * v;
    }
    const mean = sum / x.data.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(sq / x.data.length - mean * mean).toBeCloseTo(1, 1);
    expect(labels.every((y) => y >= 0 && y < 10)).toBe(true);
    expect(new Set(labels).size).toBe(10);
  });

  test('a small run reports every figure', async () => {
    const result = await runBench({ ...DEFAULT_BENCH_OPTIONS, samples: 400, warmup: 2, inference: 300, torch: 'off', backend: 'cpu' });
    expect(result.backend).toBe('cpu');
    expect(result.stepsPerEpoch).toBe(4);
    expect(result.msPerStep.median).toBeGreaterThan(0);
    expect(result.epochSeconds).toBeGreaterThan(0);
    expect(result.inferenceSamplesPerSecond).toBeGreaterThan(0);
    expect(result.peakRssBytes).toBeGreaterThan(0);
    expect(result.peer).toEqual({ skipped: 'disabled (--torch off)' });
    expect(result.ratioToPeer).toBeNull();
    expect(result.wasmKernels).toBeNull();
    const text = formatBench(result);
    for (const label of ['backend:', 'train step:', 'epoch:', 'inference:', 'peak RSS:', 'pytorch peer:']) expect(text).toContain(label);
  }, 120_000);

  test('on wasm it names the wasm-kernel build that ran, or that tfjs ops ran', async () => {
    const small = { ...DEFAULT_BENCH_OPTIONS, samples: 200, warmup: 1, inference: 100, torch: 'off', backend: 'wasm' } as const;
    const withKernels = await runBench({ ...small, kernels: 'simd128' });
    expect(withKernels.wasmKernels).toBe('simd128');
    expect(formatBench(withKernels)).toContain('backend:            wasm (kernels: simd128)');
    const withoutKernels = await runBench({ ...small, kernels: 'off' });
    expect(withoutKernels.wasmKernels).toBeNull();
    expect(formatBench(withoutKernels)).toContain('wasm (kernels: off, tfjs ops)');
  }, 120_000);
});
