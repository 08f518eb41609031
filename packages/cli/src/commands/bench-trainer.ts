import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel, createMomentumState, disposeModel, disposeMomentumState, trainStep } from '@bnmlp/core';
import { CIFAR_PIXELS, CIFAR_RECORD_BYTES, MiniBatcher, parseTrainConfig, prepareData, trainNetwork, type PreparedData } from '@bnmlp/trainer';
import { formatRatio, ratioSpread, spread, type Spread } from './bench-common.js';
import { isOneThread, isSkipped, PEER_SETTINGS, peerThreadsLabel, type PeerEpoch, type PeerThreads, type Skipped } from './bench-peer.js';

/*
The trainer's figures for `bnmlp bench`: reading and standardising a full-size CIFAR-10 binary set
(60,000 generated images, the official file sizes), the memory the standardised training split
holds, and a trainer epoch (shuffle, batch gather, steps, divergence checks; evaluation excluded)
beside the core's bare train steps over the same data and beside the PyTorch peer's epoch of the
same shapes (shuffle, gather, steps; on the core suite's settings: 1 and 2 threads, and one core),
interleaved, medians. Figures, not tests.
*/

export interface TrainerBenchOptions {
  readonly epochs: number;
  readonly batch: number;
  readonly hidden: readonly number[];
  readonly seed: number;
  /** Records per generated file (10,000 = official). */
  readonly recordsPerFile: number;
  /**
   * One timed PyTorch epoch of `samples` rows on a thread setting (bench-peer.ts peerEpoch), run
   * once per epoch and setting of PEER_SETTINGS, interleaved with ours; null or absent: no peer.
   */
  readonly peer?: ((setting: PeerThreads, samples: number) => PeerEpoch | Skipped) | null;
}

/** The trainer epoch beside PyTorch's (each thread setting), repeat by repeat. */
export interface TrainerPeerComparison {
  readonly version: string;
  readonly settings: ReadonlyArray<PeerThreads & { readonly blasRan: number | null; readonly epochSeconds: Spread }>;
  /** Trainer epoch ÷ PyTorch's epoch on its fastest setting (target ≤ 0.8), and on 1 thread (OpenBLAS at its default). */
  readonly ratioBest: PeerThreads & { readonly ratio: Spread };
  readonly ratio1Thread: Spread;
}

export interface TrainerBenchResult {
  readonly images: number;
  readonly readSeconds: { readonly median: number; readonly runs: readonly number[] };
  /** RSS growth while preparing the data (float32 splits held), and the bytes of the float32 arrays themselves. */
  readonly preparedRssBytes: number;
  readonly preparedArrayBytes: number;
  readonly bareEpochSeconds: number;
  readonly trainerEpochSeconds: number;
  /** trainer / bare − 1. */
  readonly trainerOverhead: number;
  readonly stepsPerEpoch: number;
  readonly peakRssBytes: number;
  /** Null when no peer was asked for. */
  readonly pytorch: TrainerPeerComparison | Skipped | null;
}

/** Trainer epochs against the peer's, per thread setting (one run of each per repeat). */
export function compareTrainerPeer(trainerSeconds: readonly number[], peerRuns: ReadonlyMap<PeerThreads, readonly PeerEpoch[]>): TrainerPeerComparison {
  const settings = [...peerRuns.entries()].map(([{ threads, blasThreads }, runs]) => ({
    threads, blasThreads, blasRan: runs[0]?.blasThreads ?? null, epochSeconds: spread(runs.map((r) => r.epochSeconds)),
  }));
  const best = settings.reduce((a, b) => (b.epochSeconds.median < a.epochSeconds.median ? b : a));
  const one = settings.find(isOneThread) ?? settings[0];
  return {
    version: [...peerRuns.values()][0][0].version,
    settings,
    ratioBest: { threads: best.threads, blasThreads: best.blasThreads, ratio: ratioSpread(trainerSeconds, best.epochSeconds.runs) },
    ratio1Thread: ratioSpread(trainerSeconds, one.epochSeconds.runs),
  };
}

/** Writes a CIFAR-10 binary set of generated images: data_batch_1..5, test_batch, batches.meta.txt. */
export function writeFullSizeSet(dir: string, recordsPerFile: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  let state = (seed ^ 0x2545f491) >>> 0 || 1;
  for (const name of ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']) {
    // Random pixel bytes (xorshift32, 4 at a time), then the label byte of every record.
    const words = new Uint32Array(Math.ceil((recordsPerFile * CIFAR_RECORD_BYTES) / 4));
    for (let i = 0; i < words.length; i++) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      words[i] = state >>> 0;
    }
    const bytes = new Uint8Array(words.buffer, 0, recordsPerFile * CIFAR_RECORD_BYTES);
    for (let r = 0; r < recordsPerFile; r++) bytes[r * CIFAR_RECORD_BYTES] = r % 10;
    writeFileSync(join(dir, `${name}.bin`), bytes);
  }
  writeFileSync(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function bareEpoch(data: PreparedData, options: TrainerBenchOptions): Promise<number> {
  const model = createModel({ inputDim: CIFAR_PIXELS, hiddenDims: options.hidden, classes: 10, batchNorm: true }, { seed: options.seed });
  const state = createMomentumState(model);
  const batcher = new MiniBatcher(data.train, options.batch, options.seed, { keepRemainder: true, minBatchRows: 2 });
  try {
    const started = performance.now();
    batcher.shuffle();
    for (let i = 0; i < batcher.batchesPerEpoch; i++) {
      const b = batcher.batch(i);
      // The next batch gathered during the step (as trainNetwork does).
      batcher.prefetchDuring(i + 1 < batcher.batchesPerEpoch ? i + 1 : null, () => trainStep(model, state, b.x, b.labels, { lambda: 1e-4, learningRate: 0.01, momentum: 0.8 }));
    }
    return (performance.now() - started) / 1000;
  } finally {
    batcher.dispose();
    disposeModel(model);
    disposeMomentumState(state);
  }
}

export async function runTrainerBench(options: TrainerBenchOptions, onProgress: (message: string) => void = () => {}): Promise<TrainerBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bnmlp-bench-data-'));
  try {
    onProgress(`writing a full-size CIFAR-10 binary set (${6 * options.recordsPerFile} generated images)`);
    writeFullSizeSet(dir, options.recordsPerFile, options.seed);
    const config = parseTrainConfig({ network: { hiddenDims: options.hidden }, optimizer: { learningRate: 0.01, lambda: 1e-4 }, epochs: 1, batchSize: options.batch, seed: options.seed, data: { validationCount: 0 } });
    const readRuns: number[] = [];
    let data: PreparedData | null = null;
    let preparedRssBytes = 0;
    for (let run = 0; run < 3; run++) {
      onProgress(`reading and standardising it (${run + 1} of 3)`);
      data = null;
      gc();
      const before = process.memoryUsage().rss;
      const started = performance.now();
      data = prepareData(config.data, dir, options.seed);
      readRuns.push((performance.now() - started) / 1000);
      gc();
      preparedRssBytes = Math.max(preparedRssBytes, process.memoryUsage().rss - before);
    }
    const prepared = data!;
    const preparedArrayBytes = [prepared.train, prepared.validation, prepared.test].reduce((sum, s) => sum + (s ? s.x.data.byteLength + s.labels.byteLength : 0), 0);
    const bare: number[] = [];
    const trainer: number[] = [];
    const peerRuns = new Map<PeerThreads, PeerEpoch[]>(PEER_SETTINGS.map((t) => [t, []]));
    let peerSkip: Skipped | null = null;
    let stepsPerEpoch = 0;
    for (let e = 0; e < options.epochs; e++) {
      onProgress(`epoch ${e + 1} of ${options.epochs}: bare train steps`);
      bare.push(await bareEpoch(prepared, options));
      onProgress(`epoch ${e + 1} of ${options.epochs}: trainer epoch`);
      const outcome = await trainNetwork(config, { ...prepared, validation: null, test: null });
      disposeModel(outcome.model);
      trainer.push(outcome.history[0].stepSeconds);
      stepsPerEpoch = outcome.history[0].steps;
      for (const setting of PEER_SETTINGS) {
        if (!options.peer || peerSkip) break;
        onProgress(`epoch ${e + 1} of ${options.epochs}: PyTorch's epoch on ${peerThreadsLabel(setting)}`);
        const run = options.peer(setting, prepared.train.x.rows);
        if (isSkipped(run)) peerSkip = run;
        else peerRuns.get(setting)!.push(run);
      }
    }
    const bareEpochSeconds = median(bare);
    const trainerEpochSeconds = median(trainer);
    return {
      images: 6 * options.recordsPerFile,
      readSeconds: { median: median(readRuns), runs: readRuns },
      preparedRssBytes, preparedArrayBytes,
      bareEpochSeconds, trainerEpochSeconds, trainerOverhead: trainerEpochSeconds / bareEpochSeconds - 1,
      stepsPerEpoch,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      pytorch: !options.peer ? null : (peerSkip ?? compareTrainerPeer(trainer, peerRuns)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/** The trainer-vs-PyTorch line, or null when no peer was asked for. */
export function formatTrainerPeer(r: Pick<TrainerBenchResult, 'pytorch' | 'stepsPerEpoch' | 'trainerEpochSeconds'>): string | null {
  const p = r.pytorch;
  if (p === null) return null;
  if (isSkipped(p)) return `trainer: PyTorch's epoch: skipped: ${p.skipped}`;
  return (
    `trainer: epoch ÷ PyTorch ${p.version}'s epoch (shuffle, gather, ${r.stepsPerEpoch} steps): ${formatRatio(p.ratioBest.ratio)} its best (${peerThreadsLabel(p.ratioBest)}; target ≤ 0.8), ` +
    `${formatRatio(p.ratio1Thread)} on 1 thread; PyTorch ${p.settings.map((s) => `${s.epochSeconds.median.toFixed(2)} s on ${peerThreadsLabel(s, s.blasRan)}`).join(', ')}`
  );
}

export function formatTrainerBench(r: TrainerBenchResult): string {
  const peer = formatTrainerPeer(r);
  return [
    `trainer: read + standardise ${r.images.toLocaleString('en-US')} images (binary, official sizes): ${r.readSeconds.median.toFixed(2)} s median (${r.readSeconds.runs.map((s) => s.toFixed(2)).join(', ')})`,
    `trainer: standardised splits held: ${mib(r.preparedArrayBytes)} of float32 arrays, RSS +${mib(r.preparedRssBytes)}`,
    `trainer: epoch of ${r.stepsPerEpoch} steps: trainer ${r.trainerEpochSeconds.toFixed(2)} s vs bare train steps ${r.bareEpochSeconds.toFixed(2)} s (overhead ${(100 * r.trainerOverhead).toFixed(1)}%, medians)`,
    ...(peer ? [peer] : []),
    `trainer: peak RSS ${mib(r.peakRssBytes)} (this process)`,
  ].join('\n');
}
