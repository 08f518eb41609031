import { describe, expect, test } from 'vitest';
import { MAX_KERNEL_THREADS } from '@bnmlp/core';
import { CliArgumentError } from '../errors.js';
import { formatRatio, ratioSpread, spread, syntheticSet } from './bench-common.js';
import { PEER_SETTINGS, type PeerEpoch } from './bench-peer.js';
import { DEFAULT_BENCH_OPTIONS, benchHelp, comparePeer, formatBench, parseBenchArgs, runBench, type BenchResult, type BenchRun } from './bench.js';

const peerRun = (threads: number, msPerStepMedian: number, epochSeconds: number, evalSamplesPerSecond: number | null, blasThreads = 2): PeerEpoch => ({
  peer: 'pytorch', version: '1.13.0', threads, blasThreads, msPerStep: msPerStepMedian * 1.1, msPerStepMedian, epochSeconds, evalSamplesPerSecond, peakRssBytes: 800 * 2 ** 20,
});

const ourRun = (ms: number, epoch: number, inference: number): BenchRun => ({ msPerStep: { median: ms, p10: ms * 0.9, p90: ms * 1.2 }, epochSeconds: epoch, inferenceSamplesPerSecond: inference });

/**
 * A fixed result of 3 repeats: ours 1.0–1.2 ms/step; PyTorch 1.5–2.0 ms on 1 thread, 0.9–1.1 ms
 * on 2 (OpenBLAS at its default, 2), 2.2–2.6 ms on one core (1 thread, OpenBLAS 1).
 */
function fakeResult(): BenchResult {
  const runs = [ourRun(1.0, 0.55, 100_000), ourRun(1.2, 0.6, 90_000), ourRun(1.1, 0.58, 95_000)];
  const [oneThread, twoThreads, oneCore] = PEER_SETTINGS;
  const peer = new Map([
    [oneThread, [peerRun(1, 2.0, 1.0, 80_000), peerRun(1, 1.5, 0.8, 85_000), peerRun(1, 1.6, 0.85, 82_000)]],
    [twoThreads, [peerRun(2, 1.0, 0.6, 120_000), peerRun(2, 1.1, 0.62, 110_000), peerRun(2, 0.9, 0.5, 100_000)]],
    [oneCore, [peerRun(1, 2.2, 1.1, 50_000, 1), peerRun(1, 2.6, 1.3, 40_000, 1), peerRun(1, 2.4, 1.2, 45_000, 1)]],
  ]);
  return {
    format: 'bnmlp-bench', version: 3, options: DEFAULT_BENCH_OPTIONS, backend: 'wasm', wasmKernels: 'relaxed-simd', threads: 2, threadsReason: null,
    architecture: '3072-50-30-10 with BN', stepsPerEpoch: 500, runs,
    msPerStep: { ...spread(runs.map((r) => r.msPerStep.median)), p10: 0.9, p90: 1.4 },
    epochSeconds: spread(runs.map((r) => r.epochSeconds)),
    inferenceSamplesPerSecond: spread(runs.map((r) => r.inferenceSamplesPerSecond)),
    peakRssBytes: 700 * 2 ** 20,
    peer: comparePeer(runs, peer),
  };
}

describe('bnmlp bench', () => {
  test('defaults are the issue’s figures: 3072-50-30-10, batch 100, 50,000 samples, 10,000 for inference, 3 repeats, auto threads', () => {
    const parsed = parseBenchArgs([]);
    expect(parsed.options).toEqual(DEFAULT_BENCH_OPTIONS);
    expect(parsed.options).toMatchObject({ samples: 50_000, batch: 100, hidden: [50, 30], inference: 10_000, repeat: 3, threads: 'auto' });
    expect(parsed).toMatchObject({ sweep: false, out: null, suite: 'all', json: false });
  });

  test('options parse and bad values name the flag', () => {
    expect(parseBenchArgs(['--samples', '400', '--hidden', '8,4', '--torch', 'off', '--json']).options).toMatchObject({ samples: 400, hidden: [8, 4], torch: 'off' });
    expect(() => parseBenchArgs(['--batch', '0'])).toThrow(CliArgumentError);
    expect(() => parseBenchArgs(['--hidden', '8,x'])).toThrow(/--hidden/);
    expect(() => parseBenchArgs(['--hidden', '8,,4'])).toThrow(/--hidden/);
    expect(() => parseBenchArgs(['--samples', '10', '--batch', '20'])).toThrow(/--batch/);
    expect(() => parseBenchArgs(['--backend', 'gpu'])).toThrow(/--backend/);
    expect(parseBenchArgs(['--kernels', 'simd128']).options.kernels).toBe('simd128');
    expect(() => parseBenchArgs(['--kernels', 'avx'])).toThrow(/--kernels.*auto, relaxed-simd, simd128, off/);
    expect(benchHelp()).toContain('--torch');
  });

  test('--threads is auto or 1 to MAX_KERNEL_THREADS; --repeat is at least 1', () => {
    expect(parseBenchArgs(['--threads', '1']).options.threads).toBe(1);
    expect(parseBenchArgs(['--threads', String(MAX_KERNEL_THREADS)]).options.threads).toBe(MAX_KERNEL_THREADS);
    expect(parseBenchArgs(['--threads', 'auto']).options.threads).toBe('auto');
    for (const bad of ['0', String(MAX_KERNEL_THREADS + 1), '1.5', 'two', ''])
      expect(() => parseBenchArgs(['--threads', bad])).toThrow(new RegExp(`option --threads must be 'auto' or an integer from 1 to ${MAX_KERNEL_THREADS}, got '${bad}'`));
    expect(parseBenchArgs(['--repeat', '5']).options.repeat).toBe(5);
    for (const bad of ['0', '-1', '2.5', 'x', '']) expect(() => parseBenchArgs(['--repeat', bad])).toThrow(/option --repeat must be an integer >= 1/);
  });

  test('--sweep takes --repeat, --out, --threads, --torch, --json; the core and trainer sizes are refused by name', () => {
    const parsed = parseBenchArgs(['--sweep', '--repeat', '1', '--out', 'figs', '--threads', '2', '--torch', 'off', '--json']);
    expect(parsed).toMatchObject({ sweep: true, out: 'figs', json: true, options: { repeat: 1, threads: 2, torch: 'off' } });
    for (const [flag, value] of [['--batch', '32'], ['--hidden', '8'], ['--samples', '100'], ['--epochs', '2'], ['--warmup', '1'], ['--inference', '10'], ['--suite', 'core']])
      expect(() => parseBenchArgs(['--sweep', flag, value])).toThrow(new RegExp(`option ${flag} must be left out with --sweep`));
    expect(() => parseBenchArgs(['--out', 'figs'])).toThrow(/option --out must be given with --sweep/);
    expect(() => parseBenchArgs(['--sweep', '--out', ' '])).toThrow(/option --out must be a directory/);
    expect(() => parseBenchArgs(['--sweep=yes'])).toThrow(/--sweep/);
  });

  test('--help says what runs: the project peer script, its thread settings, the ratios and the sweep', () => {
    const help = benchHelp();
    for (const text of ['packages/cli/scripts/torch_peer.py', '/usr/bin/python3', 'on 1 and on 2 threads', '--repeat', '--threads', '--sweep', '--out', 'sweep.json', 'PyTorch sgemm 2048³', '2·m·k·n'])
      expect(help).toContain(text);
    expect(help).not.toContain('shared/bench');
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
    expect(syntheticSet(5, 1, 7).x).toMatchObject({ rows: 5, cols: 7 });
  });

  test('ratios pair the repeats: ours ÷ the peer on 1 thread and on its faster setting, per figure', () => {
    const r = fakeResult();
    if (!('ratios' in r.peer)) throw new Error('expected a peer comparison');
    const x = r.peer.ratios;
    expect(x.step1Thread.runs).toEqual([1.0 / 2.0, 1.2 / 1.5, 1.1 / 1.6]);
    expect(x.stepBest.threads).toBe(2);
    expect(x.stepBest.ratio.runs.map((v) => +v.toFixed(6))).toEqual([1, +(1.2 / 1.1).toFixed(6), +(1.1 / 0.9).toFixed(6)]);
    expect(x.epochBest.threads).toBe(2);
    expect(x.epoch1Thread.median).toBeCloseTo(0.58 / 0.85, 10);
    // Inference: higher is better, so the best setting is the one with the most samples/s.
    expect(x.inferenceBest).toMatchObject({ threads: 2 });
    expect(x.inferenceBest!.ratio.runs).toEqual([100_000 / 120_000, 90_000 / 110_000, 95_000 / 100_000]);
    // One core: the setting with OpenBLAS on 1 thread, never the "1 thread".
    expect(x.step1Core!.runs).toEqual([1.0 / 2.2, 1.2 / 2.6, 1.1 / 2.4]);
    expect(x.inference1Core!.runs).toEqual([100_000 / 50_000, 90_000 / 40_000, 95_000 / 45_000]);
    expect(r.peer.settings.map((s) => [s.threads, s.blasThreads, s.blasRan])).toEqual([[1, 0, 2], [2, 0, 2], [1, 1, 1]]);
    expect(r.peer.settings.map((s) => s.peakRssBytes)).toEqual([800 * 2 ** 20, 800 * 2 ** 20, 800 * 2 ** 20]);
  });

  test('the summary of a fixed result: backend with threads, medians with ranges, every ratio with its target', () => {
    const text = formatBench(fakeResult());
    expect(text).toContain('backend:            wasm (kernels: relaxed-simd, 2 threads)');
    expect(text).toContain('repeats:            3 (ours, then PyTorch on each thread setting, interleaved; medians, ranges min–max over the repeats)');
    expect(text).toContain('train step:         1.100 ms median (1.000–1.200)');
    expect(text).toContain('epoch:              0.58 s (0.55–0.60 s)');
    expect(text).toContain('inference:          95,000 samples/s (90,000–100,000) over 10000 samples, chunks of 1000, median of 5');
    expect(text).toContain('pytorch peer:       torch 1.13.0, scripts/torch_peer.py --mode epoch');
    expect(text).toMatch(/ {2}1 thread \(OpenBLAS 2\): +1\.600 ms\/step \(1\.500–2\.000\), 0\.85 s\/epoch \(0\.80–1\.00 s\), 82,000 samples\/s inference, peak RSS 800 MiB/);
    expect(text).toMatch(/ {2}2 threads \(OpenBLAS 2\): +1\.000 ms\/step/);
    expect(text).toMatch(/ {2}1 thread, OpenBLAS 1: +2\.400 ms\/step/);
    expect(text).toContain(`ratio, one core:    train step ${formatRatio(ratioSpread([1.0, 1.2, 1.1], [2.2, 2.6, 2.4]))} PyTorch's on 1 thread with OpenBLAS on 1, inference ${formatRatio(ratioSpread([100_000, 90_000, 95_000], [50_000, 40_000, 45_000]))} its samples/s (ours on 2 threads)`);
    expect(text).toContain(`ratio, train step:  ${formatRatio(ratioSpread([1.0, 1.2, 1.1], [2.0, 1.5, 1.6]))} PyTorch's on 1 thread (target ≤ 0.75); ${formatRatio(ratioSpread([1.0, 1.2, 1.1], [1.0, 1.1, 0.9]))} PyTorch's best (2 threads; target ≤ 1)`);
    expect(text).toMatch(/ratio, epoch: +[\d.]+× \([\d.]+–[\d.]+\) PyTorch's best \(2 threads\); [\d.]+× \([\d.]+–[\d.]+\) on 1 thread/);
    expect(text).toMatch(/ratio, inference: +0\.83× \(0\.82–0\.95\) PyTorch's samples\/s at its best \(2 threads; target ≥ 1\); higher is better/);
    const failed = formatBench({ ...fakeResult(), threads: 1, threadsReason: 'SharedArrayBuffer is unavailable', peer: { skipped: '/usr/bin/python3 has no torch' } });
    expect(failed).toContain('backend:            wasm (kernels: relaxed-simd, 1 thread: SharedArrayBuffer is unavailable)');
    expect(failed).toContain('pytorch peer:       skipped: /usr/bin/python3 has no torch');
    expect(failed).not.toContain('ratio,');
  });

  test('one repeat prints no ranges', () => {
    const one = fakeResult();
    const runs = one.runs.slice(0, 1);
    const text = formatBench({ ...one, runs, msPerStep: { ...spread([1.0]), p10: 0.9, p90: 1.2 }, epochSeconds: spread([0.55]), inferenceSamplesPerSecond: spread([100_000]), peer: { skipped: 'disabled (--torch off)' } });
    expect(text).toContain('repeats:            1\n');
    expect(text).toContain('train step:         1.000 ms median (p10');
    expect(text).toContain('epoch:              0.55 s\n');
  });

  test('a small run reports every figure', async () => {
    const result = await runBench({ ...DEFAULT_BENCH_OPTIONS, samples: 400, warmup: 2, inference: 300, torch: 'off', backend: 'cpu', repeat: 2 });
    expect(result.backend).toBe('cpu');
    expect(result.stepsPerEpoch).toBe(4);
    expect(result.runs).toHaveLength(2);
    expect(result.msPerStep.median).toBeGreaterThan(0);
    expect(result.msPerStep.runs).toHaveLength(2);
    expect(result.epochSeconds.median).toBeGreaterThan(0);
    expect(result.inferenceSamplesPerSecond.median).toBeGreaterThan(0);
    expect(result.peakRssBytes).toBeGreaterThan(0);
    expect(result.peer).toEqual({ skipped: 'disabled (--torch off)' });
    expect(result.wasmKernels).toBeNull();
    expect(result.threads).toBe(1);
    const text = formatBench(result);
    for (const label of ['backend:', 'train step:', 'epoch:', 'inference:', 'peak RSS:', 'pytorch peer:']) expect(text).toContain(label);
  }, 120_000);

  test('on wasm it names the wasm-kernel build that ran and its threads, or that tfjs ops ran', async () => {
    const small = { ...DEFAULT_BENCH_OPTIONS, samples: 200, warmup: 1, inference: 100, torch: 'off', backend: 'wasm', repeat: 1, threads: 1 } as const;
    const withKernels = await runBench({ ...small, kernels: 'simd128' });
    expect(withKernels.wasmKernels).toBe('simd128');
    expect(withKernels.threads).toBe(1);
    expect(formatBench(withKernels)).toContain('backend:            wasm (kernels: simd128, 1 thread)');
    const withoutKernels = await runBench({ ...small, kernels: 'off' });
    expect(withoutKernels.wasmKernels).toBeNull();
    expect(formatBench(withoutKernels)).toContain('wasm (kernels: off, tfjs ops)');
  }, 120_000);
});
