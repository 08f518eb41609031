import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { pngSize } from '../report/render.js';
import { sweepFigure } from '../report/sweep-figure.js';
import { ratioSpread, spread } from './bench-common.js';
import {
  DEFAULT_SWEEP_OPTIONS, nativeFloatLanes, FLOP_FORMULA, formatBackend, formatSweep, runSweep, sweepFigurePoints, timedSteps, trainStepFlops, wasmSimdCeiling, writeSweep,
  type SweepOptions, type SweepResult, type SweepRow,
} from './bench-sweep.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the sweep’s FLOP count', () => {
  test('per layer 2·m·k·n forward and 2·m·k·n weight gradient, plus 2·m·k·n input gradient after the first layer', () => {
    // 3072-50-30-10, batch 100: 2·100·(2·3072·50 + 3·50·30 + 3·30·10).
    expect(trainStepFlops(100, 3072, [50, 30])).toBe(2 * 100 * (2 * 3072 * 50 + 3 * 50 * 30 + 3 * 30 * 10));
    expect(trainStepFlops(100, 3072, [50, 30])).toBe(62_520_000);
    // No hidden layer: one layer, no input gradient.
    expect(trainStepFlops(8, 16, [], 4)).toBe(2 * 8 * 16 * 4 * 2);
    // Linear in the batch.
    expect(trainStepFlops(500, 3072, [2000, 1000])).toBe(5 * trainStepFlops(100, 3072, [2000, 1000]));
    expect(trainStepFlops(500, 3072, [2000, 1000]) / 1e9).toBeCloseTo(18.32, 2);
    expect(FLOP_FORMULA).toMatch(/2·m·k·n for x·W, 2·m·k·n for the weight gradient, and 2·m·k·n for the input gradient on layers after the first/);
  });

  test('defaults: batch 32, 100, 500 × hidden 50,30 / 500,300 / 2000,1000, 3072 inputs, 3 repeats, sgemm 2048³', () => {
    expect(DEFAULT_SWEEP_OPTIONS).toMatchObject({ batches: [32, 100, 500], hiddens: [[50, 30], [500, 300], [2000, 1000]], inputDim: 3072, repeat: 3, peakSize: 2048, targetSeconds: 0.5, maxSteps: 300, warmupSeconds: 0.5 });
  });

  test('native float lanes from /proc/cpuinfo flags: 16 with avx512f, 8 with avx2 or avx, else 4', () => {
    expect(nativeFloatLanes('processor : 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n')).toBe(16);
    expect(nativeFloatLanes('flags : fpu sse2 avx avx2 fma\n')).toBe(8);
    expect(nativeFloatLanes('flags : fpu sse2 sse4_2\n')).toBe(4);
    expect(nativeFloatLanes('')).toBe(4);
  });

  test('timed steps: about the target time, within [minSteps, maxSteps]', () => {
    const o = { targetSeconds: 1, minSteps: 3, maxSteps: 10 };
    expect(timedSteps(1, o)).toBe(10);
    expect(timedSteps(150, o)).toBe(7);
    expect(timedSteps(900, o)).toBe(3);
    expect(timedSteps(5000, o)).toBe(3);
    expect(timedSteps(0, o)).toBe(10);
  });
});

function row(batch: number, hidden: number[], ours: number[], one: number[], two: number[], peak: number): SweepRow {
  const flops = trainStepFlops(batch, 3072, hidden);
  const pytorch = [{ threads: 1, msPerStep: spread(one) }, { threads: 2, msPerStep: spread(two) }];
  const best = pytorch.reduce((a, b) => (b.msPerStep.median < a.msPerStep.median ? b : a));
  const bnmlp = spread(ours);
  const gflops = { bnmlp: flops / bnmlp.median / 1e6, pytorch: flops / best.msPerStep.median / 1e6 };
  return {
    batch, hidden, flops, steps: [10, 10, 10], warmup: [50, 48, 51], bnmlp, pytorch,
    best: { ...best, ratio: ratioSpread(ours, best.msPerStep.runs) }, ratio1Thread: ratioSpread(ours, one),
    gflops, fractionOfPeak: { bnmlp: gflops.bnmlp / peak, pytorch: gflops.pytorch / peak },
  };
}

function fakeSweep(): SweepResult {
  return {
    format: 'bnmlp-bench-sweep', version: 1, options: DEFAULT_SWEEP_OPTIONS, backend: 'wasm', wasmKernels: 'relaxed-simd', threads: 2, threadsReason: null, flopFormula: FLOP_FORMULA,
    peer: { script: '/x/torch_peer.py', version: '1.13.0' },
    peak: {
      version: '1.13.0', size: 2048, machineGflops: 80, machineThreads: 2, nativeLanes: 8, kernelThreads: 2, wasmSimdCeilingGflops: 40,
      settings: [
        { version: '1.13.0', threads: 1, blasThreads: 0, blasRan: 2, size: 2048, gflops: 78 },
        { version: '1.13.0', threads: 2, blasThreads: 0, blasRan: 2, size: 2048, gflops: 80 },
        { version: '1.13.0', threads: 1, blasThreads: 1, blasRan: 1, size: 2048, gflops: 45 },
      ],
    },
    rows: [row(32, [50, 30], [0.5, 0.6, 0.55], [0.7, 0.72, 0.71], [0.8, 0.9, 0.85], 80), row(500, [2000, 1000], [600, 620, 610], [500, 510, 505], [300, 320, 310], 80)],
    seconds: 150,
  };
}

test("the wasm ceiling is 4/lanes of one core's sgemm (OpenBLAS on 1 thread, not torch's 1 thread alone) × our threads", () => {
  const peak = (threads: number, blasThreads: number, gflops: number) => ({ version: 'x', threads, blasThreads, blasRan: blasThreads || 2, size: 2048, gflops });
  expect(wasmSimdCeiling([peak(1, 0, 120), peak(2, 0, 110), peak(1, 1, 66)], 8, 2)).toBe(66);
  expect(wasmSimdCeiling([peak(1, 0, 120), peak(2, 0, 110)], 8, 2)).toBe(120);
});

describe('the sweep’s summary', () => {
  test('a fixed result: the table of ms/step side by side with the ratio and GFLOP/s with the share of the machine peak', () => {
    const text = formatSweep(fakeSweep());
    expect(text).toContain('backend:      wasm (kernels: relaxed-simd, 2 threads)');
    expect(text).toContain(
      'machine peak: 80.0 GFLOP/s = the largest of PyTorch sgemm 2048³ on 1 thread (OpenBLAS 2) 78.0, 2 threads (OpenBLAS 2) 80.0, 1 thread, OpenBLAS 1 45.0 GFLOP/s (measured in this run)',
    );
    expect(text).toContain("this CPU's widest vectors 8 (/proc/cpuinfo), so bnmlp's kernels can reach about 4/8 of one core's sgemm × 2 threads ≈ 40.0 GFLOP/s (50% of the machine peak)");
    expect(text).toContain(`FLOP:         ${FLOP_FORMULA}`);
    const lines = text.split('\n');
    const header = lines.find((l) => l.startsWith('batch'))!;
    for (const column of ['hidden', 'GFLOP/step', 'steps', 'bnmlp ms/step', 'PyTorch ms/step', 'bnmlp ÷ PyTorch', 'bnmlp GFLOP/s', 'PyTorch GFLOP/s']) expect(header).toContain(column);
    // batch 32: ours 0.55 against PyTorch's 1 thread (0.71, faster than 2 threads' 0.85).
    const small = lines.find((l) => /^ +32 {2}50,30 /.test(l))!;
    expect(small).toMatch(/0\.550 +0\.710 \(1\) +0\.77× \(0\.71–0\.83\)/);
    const flops32 = trainStepFlops(32, 3072, [50, 30]);
    expect(small).toContain(`${(flops32 / 0.55 / 1e6).toFixed(1)} (${((100 * flops32) / 0.55 / 1e6 / 80).toFixed(0)}%)`);
    // batch 500: PyTorch's 2 threads win (310 ms); ours 610 ms: ~1.97×.
    const big = lines.find((l) => /^ +500 {2}2000,1000 /.test(l))!;
    expect(big).toMatch(/18\.318 +10 +610 +310 \(2\) +1\.97× \(1\.94–2\.00\)/);
    expect(text).toContain('sweep took 150 s');
  });

  test('without the peer: bnmlp only, and why', () => {
    const r = fakeSweep();
    const text = formatSweep({
      ...r, peer: { skipped: 'disabled (--torch off)' }, peak: { skipped: 'disabled (--torch off)' },
      rows: r.rows.map((x) => ({ ...x, pytorch: null, best: null, ratio1Thread: null, gflops: { ...x.gflops, pytorch: null }, fractionOfPeak: null })),
    });
    expect(text).toContain('pytorch peer: skipped: disabled (--torch off)');
    expect(text).toContain('machine peak: not measured (disabled (--torch off))');
    expect(text).not.toContain('PyTorch ms/step');
    expect(text).not.toContain('%)');
  });

  test('the backend line names the threads, or why there are fewer', () => {
    expect(formatBackend('wasm', 'simd128', 1, null)).toBe('wasm (kernels: simd128, 1 thread)');
    expect(formatBackend('wasm', 'relaxed-simd', 1, 'SharedArrayBuffer is unavailable')).toBe('wasm (kernels: relaxed-simd, 1 thread: SharedArrayBuffer is unavailable)');
    expect(formatBackend('wasm', null, 1, 'no kernel build runs')).toBe('wasm (kernels: off, tfjs ops)');
    expect(formatBackend('cpu', null, 1, null)).toBe('cpu');
  });

  test('the figure: ms/step against the hidden widths, a colour per batch, a dash per implementation, log y', () => {
    const points = sweepFigurePoints(fakeSweep());
    expect(points).toHaveLength(4);
    const spec = sweepFigure(points, { title: 't', hiddenOrder: ['50,30', '2000,1000'] }) as unknown as {
      encoding: { x: { field: string; sort: string[] }; y: { field: string; scale: { type: string } }; color: { field: string; scale: { domain: string[] } }; strokeDash: { field: string; scale: { domain: string[] } } };
      data: { values: unknown[] };
    };
    expect(spec.encoding.x).toMatchObject({ field: 'hidden', sort: ['50,30', '2000,1000'] });
    expect(spec.encoding.y).toMatchObject({ field: 'msPerStep', scale: { type: 'log' } });
    expect(spec.encoding.color.scale.domain).toEqual(['batch 32', 'batch 500']);
    expect(spec.encoding.strokeDash.scale.domain).toEqual(['bnmlp', 'PyTorch (faster of 1, 2 threads)']);
    expect(spec.data.values).toHaveLength(4);
  });
});

describe('a real tiny sweep (cpu backend, no peer)', () => {
  test('measures every row, writes sweep.json and the figure', async () => {
    const options: SweepOptions = {
      ...DEFAULT_SWEEP_OPTIONS, batches: [4, 8], hiddens: [[6], [5, 4]], inputDim: 16, samples: 64, repeat: 2,
      targetSeconds: 0.005, minSteps: 2, maxSteps: 4, warmupSeconds: 0, maxWarmup: 2, backend: 'cpu', torch: 'off', threads: 1,
    };
    const result = await runSweep(options);
    expect(result.backend).toBe('cpu');
    expect(result.peer).toEqual({ skipped: 'disabled (--torch off)' });
    expect(result.peak).toEqual({ skipped: 'disabled (--torch off)' });
    expect(result.rows.map((r) => [r.batch, r.hidden])).toEqual([[4, [6]], [8, [6]], [4, [5, 4]], [8, [5, 4]]]);
    for (const r of result.rows) {
      expect(r.bnmlp.runs).toHaveLength(2);
      expect(r.bnmlp.median).toBeGreaterThan(0);
      expect(r.steps.every((s) => s >= 2 && s <= 4)).toBe(true);
      expect(r.warmup).toEqual([2, 2]);
      expect(r.flops).toBe(trainStepFlops(r.batch, 16, r.hidden));
      expect(r.pytorch).toBeNull();
    }
    expect(formatSweep(result)).toContain('16-hidden-10 with BN');
    const dir = mkdtempSync(join(tmpdir(), 'bnmlp-sweep-test-'));
    dirs.push(dir);
    const written = await writeSweep(dir, result);
    expect(JSON.parse(readFileSync(written.json, 'utf8'))).toMatchObject({ format: 'bnmlp-bench-sweep', rows: expect.any(Array) });
    for (const file of [written.figure.svg, written.figure.png, written.figure.spec]) expect(existsSync(file)).toBe(true);
    expect(readFileSync(written.figure.svg, 'utf8')).toContain('<svg');
    expect(pngSize(readFileSync(written.figure.png)).width).toBeGreaterThan(400);
  }, 60_000);

  test('a batch larger than the data is refused', async () => {
    await expect(runSweep({ ...DEFAULT_SWEEP_OPTIONS, batches: [100], hiddens: [[4]], inputDim: 8, samples: 50, backend: 'cpu', torch: 'off', threads: 1 })).rejects.toThrow(/samples/);
  });
});
