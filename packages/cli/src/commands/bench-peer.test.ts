import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { isSkipped, parsePeerEpoch, parsePeerPeak, parsePeerSteps, PEER_SCRIPT, PEER_SETTINGS, peerEpochArgs, peerStepsArgs, PYTHON, runPeerScript } from './bench-peer.js';
import { compareTrainerPeer, formatTrainerPeer } from './bench-trainer.js';

// The peer itself runs only where /usr/bin/python3 has torch (CI does not install it).
const torchMissing = !existsSync(PYTHON) ? `${PYTHON} not found` : spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0 ? `${PYTHON} has no torch` : null;

describe('the PyTorch peer script', () => {
  test('is the project’s own script, shipped with the package', () => {
    expect(PEER_SCRIPT.endsWith(join('packages', 'cli', 'scripts', 'torch_peer.py'))).toBe(true);
    expect(existsSync(PEER_SCRIPT)).toBe(true);
    const manifest = JSON.parse(readFileSync(join(PEER_SCRIPT, '..', '..', 'package.json'), 'utf8')) as { files: string[] };
    expect(manifest.files).toContain('scripts/torch_peer.py');
  });

  test('arguments: epoch mode with inference, steps mode with every row in one process', () => {
    expect(peerEpochArgs({ threads: 2, hidden: [50, 30], batch: 100, samples: 50_000, epochs: 1, evalSamples: 10_000, evalBatch: 1000 })).toEqual([
      '--mode', 'epoch', '--threads', '2', '--hidden', '50,30', '--batch', '100', '--samples', '50000', '--epochs', '1', '--eval', '10000', '--eval-batch', '1000',
    ]);
    expect(peerEpochArgs({ threads: 1, blasThreads: 1, hidden: [5], batch: 10, samples: 60, epochs: 1, evalSamples: 0, evalBatch: 20 }).slice(0, 6)).toEqual([
      '--mode', 'epoch', '--threads', '1', '--blas-threads', '1',
    ]);
    const args = peerStepsArgs({ threads: 1, samples: 100, inputs: 8, rows: [{ batch: 4, hidden: [3], steps: 5, warmup: 2 }] });
    expect(args.slice(0, 8)).toEqual(['--mode', 'steps', '--threads', '1', '--samples', '100', '--inputs', '8']);
    expect(JSON.parse(args[args.indexOf('--rows') + 1])).toEqual([{ batch: 4, hidden: [3], steps: 5, warmup: 2 }]);
  });

  test('its JSON lines parse (fixed lines)', () => {
    const epoch = parsePeerEpoch({ peer: 'pytorch', version: '1.13.0', threads: 1, blas_threads: 2, ms_per_step: 1.6, ms_per_step_median: 1.5, epoch_s: 0.8, eval_samples_per_s: 90000, maxrss_kb: 1000 });
    expect(epoch).toEqual({ peer: 'pytorch', version: '1.13.0', threads: 1, blasThreads: 2, msPerStep: 1.6, msPerStepMedian: 1.5, epochSeconds: 0.8, evalSamplesPerSecond: 90000, peakRssBytes: 1024000 });
    // The shared script's line (no median step, no inference): its mean step stands in.
    expect(parsePeerEpoch({ peer: 'pytorch', version: 'x', threads: 1, ms_per_step: 1.6, epoch_s: 0.8 })).toMatchObject({ msPerStepMedian: 1.6, evalSamplesPerSecond: null, peakRssBytes: null, blasThreads: null });
    expect(parsePeerSteps({ version: 'x', threads: 2, batch: 32, hidden: [50, 30], steps: 10, ms_per_step: 0.7, maxrss_kb: 2 })).toEqual({ version: 'x', threads: 2, batch: 32, hidden: [50, 30], steps: 10, msPerStep: 0.7, peakRssBytes: 2048 });
    expect(parsePeerPeak({ version: 'x', threads: 2, blas_threads: 2, size: 2048, gflops: 80.5 })).toEqual({ version: 'x', threads: 2, blasThreads: 0, blasRan: 2, size: 2048, gflops: 80.5 });
    expect(parsePeerPeak({ version: 'x', threads: 1, size: 64, gflops: 1 }, 1)).toMatchObject({ blasThreads: 1, blasRan: null });
  });

  test('a missing python or script is a skip with the reason, not an error', () => {
    expect(runPeerScript(['--mode', 'peak'], { python: '/nonexistent/python3' })).toEqual({ skipped: '/nonexistent/python3 not found' });
    expect(runPeerScript(['--mode', 'peak'], { script: '/nonexistent/peer.py' })).toEqual({ skipped: 'the peer script /nonexistent/peer.py is missing' });
  });

  test('the trainer epoch beside PyTorch’s: ratios to its faster setting and to 1 thread', () => {
    const run = (threads: number, epochSeconds: number) => ({ peer: 'pytorch' as const, version: '1.13.0', threads, blasThreads: 2, msPerStep: 1, msPerStepMedian: 1, epochSeconds, evalSamplesPerSecond: null, peakRssBytes: null });
    const [oneThread, twoThreads, oneCore] = PEER_SETTINGS;
    const p = compareTrainerPeer([1.2, 1.3, 1.25], new Map([
      [oneThread, [run(1, 1.0), run(1, 1.1), run(1, 1.05)]], [twoThreads, [run(2, 0.8), run(2, 0.9), run(2, 0.7)]], [oneCore, [run(1, 0.95), run(1, 1.0), run(1, 0.9)]],
    ]));
    expect(p.ratioBest).toMatchObject({ threads: 2, blasThreads: 0 });
    expect(p.ratioBest.ratio.runs).toEqual([1.2 / 0.8, 1.3 / 0.9, 1.25 / 0.7]);
    expect(p.ratio1Thread.runs).toEqual([1.2 / 1.0, 1.3 / 1.1, 1.25 / 1.05]);
    const line = formatTrainerPeer({ pytorch: p, stepsPerEpoch: 500, trainerEpochSeconds: 1.25 })!;
    expect(line).toMatch(
      /^trainer: epoch ÷ PyTorch 1\.13\.0's epoch \(shuffle, gather, 500 steps\): 1\.50× \(1\.44–1\.79\) its best \(2 threads; target ≤ 0\.8\), 1\.19× \(1\.18–1\.20\) on 1 thread; PyTorch 1\.05 s on 1 thread \(OpenBLAS 2\), 0\.80 s on 2 threads \(OpenBLAS 2\), 0\.95 s on 1 thread, OpenBLAS 1$/,
    );
    expect(formatTrainerPeer({ pytorch: { skipped: 'no torch' }, stepsPerEpoch: 500, trainerEpochSeconds: 1 })).toBe("trainer: PyTorch's epoch: skipped: no torch");
    expect(formatTrainerPeer({ pytorch: null, stepsPerEpoch: 500, trainerEpochSeconds: 1 })).toBeNull();
  });

  describe.skipIf(torchMissing !== null)(`run for real${torchMissing ? ` (skipped: ${torchMissing})` : ''}`, () => {
    test('--mode peak, steps and epoch print their JSON', () => {
      const peak = runPeerScript(['--mode', 'peak', '--threads', '1', '--size', '64']);
      if (isSkipped(peak)) throw new Error(peak.skipped);
      expect(parsePeerPeak(peak[0])).toMatchObject({ threads: 1, size: 64, gflops: expect.any(Number) });
      expect(peak[0].maxrss_kb).toBeGreaterThan(0);

      const rows = [{ batch: 4, hidden: [6, 5], steps: 3, warmup: 1 }, { batch: 8, hidden: [7], steps: 2, warmup: 0 }];
      const steps = runPeerScript(peerStepsArgs({ threads: 2, samples: 40, inputs: 12, rows }));
      if (isSkipped(steps)) throw new Error(steps.skipped);
      expect(steps.map(parsePeerSteps)).toMatchObject([{ threads: 2, batch: 4, hidden: [6, 5], steps: 3 }, { threads: 2, batch: 8, hidden: [7], steps: 2 }]);
      for (const line of steps) expect(line.ms_per_step).toBeGreaterThan(0);

      const epoch = runPeerScript(peerEpochArgs({ threads: 1, hidden: [5], batch: 10, samples: 60, epochs: 1, evalSamples: 30, evalBatch: 20, inputs: 12 }));
      if (isSkipped(epoch)) throw new Error(epoch.skipped);
      expect(Object.keys(epoch[0])).toEqual(expect.arrayContaining(['peer', 'version', 'threads', 'hidden', 'bn', 'batch', 'samples', 'ms_per_step', 'epoch_s', 'ms_per_step_median', 'eval_samples_per_s', 'maxrss_kb']));
      expect(parsePeerEpoch(epoch[0])).toMatchObject({ threads: 1, evalSamplesPerSecond: expect.any(Number) });
      expect(epoch[0]).toMatchObject({ eval_samples: 30, eval_batch: 20 });
    }, 60_000);

    test("--blas-threads sets OpenBLAS's own pool, which --threads leaves at its default, and every line says what it ran with", () => {
      const pinned = runPeerScript(['--mode', 'peak', '--threads', '1', '--blas-threads', '1', '--size', '64']);
      const left = runPeerScript(['--mode', 'peak', '--threads', '1', '--size', '64']);
      if (isSkipped(pinned) || isSkipped(left)) throw new Error('the peer did not run');
      expect(pinned[0]).toMatchObject({ threads: 1, blas_threads: 1 });
      // OpenBLAS's default is one thread per core it may use (os.cpu_count() at most).
      expect(left[0]).toMatchObject({ threads: 1, blas_threads: expect.any(Number) });
      expect(left[0].blas_threads).toBeGreaterThanOrEqual(1);
    }, 60_000);
  });
});
