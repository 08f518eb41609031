import {
  configureKernelThreads, configureWasmKernels, createModel, createMomentumState, disposeModel, disposeMomentumState, MAX_KERNEL_THREADS, WASM_KERNEL_CHOICES, initBackend, predict, trainStep,
  wasmKernelStatus,
  type BackendName, type KernelThreadsChoice, type WasmKernelChoice, type WasmKernelVariant,
} from '@bnmlp/core';
import { MiniBatcher } from '@bnmlp/trainer';
import { CliArgumentError, quote } from '../errors.js';
import { parseThreads } from '../experiments/common.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { CLASSES, INPUT_DIM, formatRange, formatRatio, mib, quantile, ratioSpread, spread, syntheticSet, type Spread } from './bench-common.js';
import { isOneCore, isOneThread, isSkipped, PEER_SCRIPT, PEER_SETTINGS, peerEpoch, peerThreadsLabel, type PeerEpoch, type PeerThreads, type Skipped } from './bench-peer.js';
import { DEFAULT_SWEEP_OPTIONS, formatBackend, formatSweep, runSweep, writeSweep } from './bench-sweep.js';
import { formatTrainerBench, runTrainerBench } from './bench-trainer.js';
import { formatSearchBench, runSearchBench } from './bench-search.js';
import type { Command, CommandContext } from './command.js';

export { syntheticSet } from './bench-common.js';

/*
`bnmlp bench`: the speed of one training epoch of the report's network (3072-50-30-10 with BN,
batch 100) on 50,000 CIFAR-shaped samples, and of inference, beside the PyTorch peer
(packages/cli/scripts/torch_peer.py --mode epoch, on 1 and on 2 threads as the shared script sets
them, and on one core: 1 thread with OpenBLAS's own pool on 1) measured in the same run. Figures, not a test: machines are noisy, so each repeat measures ours and then the peer on
each thread setting, and the ratios pair the figures of one repeat; medians and min–max ranges.

A step is timed from gathering its batch to the end of the in-place update (PyTorch's X[idx]
gather is inside its step too). ms/step is the median of the timed steps (per repeat; then the
median over the repeats), on both sides; epoch seconds the epoch's wall time (shuffle included).
Inference: predict() over the first `inference` samples in chunks of 1000 (PyTorch: model.eval(),
torch.no_grad(), softmax, the same chunks), median of 5 timings after a warm-up.
*/

export interface BenchOptions {
  readonly samples: number;
  readonly batch: number;
  readonly hidden: readonly number[];
  readonly epochs: number;
  readonly warmup: number;
  readonly inference: number;
  readonly backend: BackendName | 'auto';
  /** Which of our kernels run on wasm (@bnmlp/core configureWasmKernels). */
  readonly kernels: WasmKernelChoice;
  /** Threads of our dense kernels (@bnmlp/core configureKernelThreads). */
  readonly threads: KernelThreadsChoice;
  /** 'auto': run the peer when /usr/bin/python3 has torch; 'off': never. */
  readonly torch: 'auto' | 'off';
  /** Measurements of ours and of the peer (each thread setting), interleaved; medians reported. */
  readonly repeat: number;
  readonly seed: number;
}

export const DEFAULT_BENCH_OPTIONS: BenchOptions = {
  samples: 50_000,
  batch: 100,
  hidden: [50, 30],
  epochs: 1,
  // Steady state, as in a real run: V8 tiers our wasm and the tfjs engine up over the first ~1,000 steps
  // (the peer warms up with one whole epoch).
  warmup: 1000,
  inference: 10_000,
  backend: 'auto',
  kernels: 'auto',
  threads: 'auto',
  torch: 'auto',
  repeat: 3,
  seed: 0,
};

/** Rows per predict() chunk, and the peer's --eval-batch. */
export const INFERENCE_CHUNK = 1000;
/** Inference timings per repeat (the median is taken). */
export const INFERENCE_TIMINGS = 5;

/** One repeat of ours. */
export interface BenchRun {
  readonly msPerStep: { readonly median: number; readonly p10: number; readonly p90: number };
  readonly epochSeconds: number;
  readonly inferenceSamplesPerSecond: number;
}

/** The peer on one thread setting, every repeat. */
export interface PeerSetting extends PeerThreads {
  /** What OpenBLAS ran with (its default when blasThreads is 0), as the peer reported it. */
  readonly blasRan: number | null;
  readonly runs: readonly PeerEpoch[];
  /** Median step (ms_per_step_median). */
  readonly msPerStep: Spread;
  readonly epochSeconds: Spread;
  readonly evalSamplesPerSecond: Spread | null;
  readonly peakRssBytes: number | null;
}

/** Ours against one of the peer's thread settings, repeat by repeat. */
export interface PeerRatio extends PeerThreads {
  readonly ratio: Spread;
}

export interface PeerComparison {
  readonly script: string;
  readonly version: string;
  readonly settings: readonly PeerSetting[];
  readonly ratios: {
    /** Our ms/step ÷ the peer's on 1 thread (target ≤ 0.75). */
    readonly step1Thread: Spread;
    /** Our ms/step ÷ the peer's on its faster setting (target ≤ 1). */
    readonly stepBest: PeerRatio;
    /** Our epoch ÷ the peer's epoch (its faster setting; and on 1 thread). */
    readonly epochBest: PeerRatio;
    readonly epoch1Thread: Spread;
    /** Our inference throughput ÷ the peer's on its faster setting (higher is better; target ≥ 1). */
    readonly inferenceBest: PeerRatio | null;
    /** Our step and inference ÷ the peer's on one core (1 thread, OpenBLAS on 1), when measured. */
    readonly step1Core: Spread | null;
    readonly inference1Core: Spread | null;
  };
}

export interface BenchResult {
  readonly format: 'bnmlp-bench';
  /** 3: the peer's settings name OpenBLAS's threads too. */
  readonly version: 3;
  readonly options: BenchOptions;
  readonly backend: BackendName;
  /** The wasm kernel build that ran, or null (tfjs ops: kernels off, or another backend). */
  readonly wasmKernels: WasmKernelVariant | null;
  /** Threads our dense kernels ran on (1 off wasm), and why fewer than asked for, or null. */
  readonly threads: number;
  readonly threadsReason: string | null;
  readonly architecture: string;
  readonly stepsPerEpoch: number;
  readonly runs: readonly BenchRun[];
  /** Median over the repeats of each repeat's median step, its range, and p10/p90 over every timed step. */
  readonly msPerStep: Spread & { readonly p10: number; readonly p90: number };
  readonly epochSeconds: Spread;
  readonly inferenceSamplesPerSecond: Spread;
  readonly peakRssBytes: number;
  readonly peer: PeerComparison | Skipped;
}

/** The setting whose median is best (lowest, or highest with `higher`). */
function bestSetting<T>(settings: readonly T[], value: (s: T) => number, higher = false): T {
  return settings.reduce((a, b) => ((higher ? value(b) > value(a) : value(b) < value(a)) ? b : a));
}

/** The peer's settings and our ratios to them, from ours and the peer's runs (one per repeat each). */
export function comparePeer(ours: readonly BenchRun[], peerRuns: ReadonlyMap<PeerThreads, readonly PeerEpoch[]>): PeerComparison {
  const settings: PeerSetting[] = [...peerRuns.entries()].map(([{ threads, blasThreads }, runs]) => {
    const evals = runs.map((p) => p.evalSamplesPerSecond);
    return {
      threads, blasThreads, runs, blasRan: runs[0]?.blasThreads ?? null,
      msPerStep: spread(runs.map((p) => p.msPerStepMedian)),
      epochSeconds: spread(runs.map((p) => p.epochSeconds)),
      evalSamplesPerSecond: evals.every((e): e is number => e !== null) ? spread(evals) : null,
      peakRssBytes: runs.reduce<number | null>((m, p) => (p.peakRssBytes === null ? m : Math.max(m ?? 0, p.peakRssBytes)), null),
    };
  });
  // The shared script's "1 thread" (OpenBLAS left at its default), as the issue's targets use it.
  const one = settings.find(isOneThread) ?? settings[0];
  const oneCore = settings.find(isOneCore) ?? null;
  const named = (s: PeerSetting) => ({ threads: s.threads, blasThreads: s.blasThreads });
  const oursStep = ours.map((r) => r.msPerStep.median);
  const oursEpoch = ours.map((r) => r.epochSeconds);
  const oursInference = ours.map((r) => r.inferenceSamplesPerSecond);
  const bestStep = bestSetting(settings, (s) => s.msPerStep.median);
  const bestEpoch = bestSetting(settings, (s) => s.epochSeconds.median);
  const withEval = settings.filter((s) => s.evalSamplesPerSecond !== null);
  const bestEval = withEval.length > 0 ? bestSetting(withEval, (s) => s.evalSamplesPerSecond!.median, true) : null;
  return {
    script: PEER_SCRIPT,
    version: settings[0].runs[0].version,
    settings,
    ratios: {
      step1Thread: ratioSpread(oursStep, one.msPerStep.runs),
      stepBest: { ...named(bestStep), ratio: ratioSpread(oursStep, bestStep.msPerStep.runs) },
      epochBest: { ...named(bestEpoch), ratio: ratioSpread(oursEpoch, bestEpoch.epochSeconds.runs) },
      epoch1Thread: ratioSpread(oursEpoch, one.epochSeconds.runs),
      inferenceBest: bestEval ? { ...named(bestEval), ratio: ratioSpread(oursInference, bestEval.evalSamplesPerSecond!.runs) } : null,
      step1Core: oneCore ? ratioSpread(oursStep, oneCore.msPerStep.runs) : null,
      inference1Core: oneCore?.evalSamplesPerSecond ? ratioSpread(oursInference, oneCore.evalSamplesPerSecond.runs) : null,
    },
  };
}

/** Applies --backend, --kernels and --threads; throws when a forced kernel build cannot run. */
export async function setUpBackend(options: Pick<BenchOptions, 'backend' | 'kernels' | 'threads'>): Promise<BackendName> {
  const backend = (await initBackend(options.backend)).name;
  const kernels = configureWasmKernels(options.kernels);
  if (options.kernels !== 'off' && options.kernels !== 'auto' && kernels.variant !== options.kernels)
    throw new CliArgumentError('bnmlp bench', '--kernels', 'a build this runtime can run', `'${options.kernels}' (${kernels.reason})`);
  configureKernelThreads(options.threads);
  return backend;
}

export async function runBench(options: BenchOptions, onProgress: (message: string) => void = () => {}): Promise<BenchResult> {
  const backend = await setUpBackend(options);
  onProgress(`generating ${options.samples} × ${INPUT_DIM} samples`);
  const set = syntheticSet(options.samples, options.seed);
  const model = createModel({ inputDim: INPUT_DIM, hiddenDims: options.hidden, classes: CLASSES, batchNorm: true }, { seed: options.seed });
  const state = createMomentumState(model);
  const settings = { lambda: 1e-4, learningRate: 0.01, momentum: 0.9 };
  const batcher = new MiniBatcher(set, options.batch, options.seed);
  const rows = Math.min(options.inference, options.samples);
  const inferenceSet = { rows, cols: INPUT_DIM, data: set.x.data.subarray(0, rows * INPUT_DIM) };
  const runs: BenchRun[] = [];
  const allSteps: number[] = [];
  const peerRuns = new Map<PeerThreads, PeerEpoch[]>(PEER_SETTINGS.map((t) => [t, []]));
  let peerSkip: Skipped | null = options.torch === 'off' ? { skipped: 'disabled (--torch off)' } : null;
  try {
    for (let r = 0; r < options.repeat; r++) {
      const label = options.repeat > 1 ? `repeat ${r + 1} of ${options.repeat}: ` : '';
      batcher.shuffle();
      for (let i = 0; i < options.warmup; i++) {
        const b = batcher.batch(i % batcher.batchesPerEpoch);
        trainStep(model, state, b.x, b.labels, settings);
      }
      const stepMs: number[] = [];
      const epochSeconds: number[] = [];
      for (let e = 0; e < options.epochs; e++) {
        onProgress(`${label}timed epoch ${e + 1} of ${options.epochs}`);
        const epochStart = performance.now();
        batcher.shuffle();
        for (let i = 0; i < batcher.batchesPerEpoch; i++) {
          const t0 = performance.now();
          const b = batcher.batch(i);
          // As the trainer does: the next batch is gathered during the step.
          batcher.prefetchDuring(i + 1 < batcher.batchesPerEpoch ? i + 1 : null, () => trainStep(model, state, b.x, b.labels, settings));
          stepMs.push(performance.now() - t0);
        }
        epochSeconds.push((performance.now() - epochStart) / 1000);
      }
      onProgress(`${label}inference over ${rows} samples`);
      predict(model, inferenceSet, { chunkSize: INFERENCE_CHUNK }); // warm-up
      const inferenceSeconds: number[] = [];
      for (let t = 0; t < INFERENCE_TIMINGS; t++) {
        const t0 = performance.now();
        predict(model, inferenceSet, { labels: set.labels.subarray(0, rows), chunkSize: INFERENCE_CHUNK });
        inferenceSeconds.push((performance.now() - t0) / 1000);
      }
      const sorted = [...stepMs].sort((a, b) => a - b);
      allSteps.push(...stepMs);
      runs.push({
        msPerStep: { median: quantile(sorted, 0.5), p10: quantile(sorted, 0.1), p90: quantile(sorted, 0.9) },
        epochSeconds: quantile([...epochSeconds].sort((a, b) => a - b), 0.5),
        inferenceSamplesPerSecond: rows / quantile([...inferenceSeconds].sort((a, b) => a - b), 0.5),
      });
      for (const setting of PEER_SETTINGS) {
        if (peerSkip) break;
        onProgress(`${label}PyTorch peer on ${peerThreadsLabel(setting)}`);
        const peer = peerEpoch({
          threads: setting.threads, blasThreads: setting.blasThreads, hidden: options.hidden, batch: options.batch, samples: options.samples, epochs: options.epochs,
          evalSamples: rows, evalBatch: INFERENCE_CHUNK, seed: options.seed + r,
        });
        if (isSkipped(peer)) peerSkip = peer;
        else peerRuns.get(setting)!.push(peer);
      }
    }
    const peakRssBytes = process.resourceUsage().maxRSS * 1024;
    const status = wasmKernelStatus();
    const sortedSteps = allSteps.sort((a, b) => a - b);
    const onWasm = backend === 'wasm' && status.variant !== null;
    return {
      format: 'bnmlp-bench',
      version: 3,
      options,
      backend,
      wasmKernels: backend === 'wasm' ? status.variant : null,
      threads: onWasm ? status.threads : 1,
      threadsReason: onWasm ? status.threadsReason : null,
      architecture: [INPUT_DIM, ...options.hidden, CLASSES].join('-') + ' with BN',
      stepsPerEpoch: batcher.batchesPerEpoch,
      runs,
      msPerStep: { ...spread(runs.map((run) => run.msPerStep.median)), p10: quantile(sortedSteps, 0.1), p90: quantile(sortedSteps, 0.9) },
      epochSeconds: spread(runs.map((run) => run.epochSeconds)),
      inferenceSamplesPerSecond: spread(runs.map((run) => run.inferenceSamplesPerSecond)),
      peakRssBytes,
      peer: peerSkip ?? comparePeer(runs, peerRuns),
    };
  } finally {
    batcher.dispose();
    disposeModel(model);
    disposeMomentumState(state);
  }
}

const rate = (samplesPerSecond: number) => Math.round(samplesPerSecond).toLocaleString('en-US');

export function formatBench(r: BenchResult): string {
  const o = r.options;
  const repeats = r.runs.length;
  const lines = [
    `bnmlp bench: ${r.architecture}, batch ${o.batch}, ${o.samples} samples (${r.stepsPerEpoch} steps/epoch), SGD momentum 0.9, λ 1e-4`,
    `repeats:            ${repeats}${repeats > 1 ? ' (ours, then PyTorch on each thread setting, interleaved; medians, ranges min–max over the repeats)' : ''}`,
    `backend:            ${formatBackend(r.backend, r.wasmKernels, r.threads, r.threadsReason)}`,
    `train step:         ${r.msPerStep.median.toFixed(3)} ms median${formatRange(r.msPerStep, 3)} (p10 ${r.msPerStep.p10.toFixed(3)}, p90 ${r.msPerStep.p90.toFixed(3)} over all timed steps), ${o.epochs} epoch(s) per repeat after ${o.warmup} warm-up steps`,
    `epoch:              ${r.epochSeconds.median.toFixed(2)} s${formatRange(r.epochSeconds, 2, ' s')}`,
    `inference:          ${rate(r.inferenceSamplesPerSecond.median)} samples/s${repeats > 1 ? ` (${rate(r.inferenceSamplesPerSecond.min)}–${rate(r.inferenceSamplesPerSecond.max)})` : ''} over ${Math.min(o.inference, o.samples)} samples, chunks of ${INFERENCE_CHUNK}, median of ${INFERENCE_TIMINGS}`,
    `peak RSS:           ${mib(r.peakRssBytes)} (this process, data included)`,
  ];
  if (isSkipped(r.peer)) lines.push(`pytorch peer:       skipped: ${r.peer.skipped}`);
  else {
    const p = r.peer;
    lines.push(
      `pytorch peer:       torch ${p.version}, scripts/torch_peer.py --mode epoch (same data shapes, steps and inference chunks), on each setting of torch's threads` +
        ` and OpenBLAS's (which multiplies on every core unless set: "1 thread" alone is not one core)`,
    );
    for (const s of p.settings) {
      const evals = s.evalSamplesPerSecond;
      lines.push(
        `  ${`${peerThreadsLabel(s, s.blasRan)}:`.padEnd(24)}${s.msPerStep.median.toFixed(3)} ms/step${formatRange(s.msPerStep, 3)}, ${s.epochSeconds.median.toFixed(2)} s/epoch${formatRange(s.epochSeconds, 2, ' s')}` +
          `${evals ? `, ${rate(evals.median)} samples/s inference` : ''}${s.peakRssBytes ? `, peak RSS ${mib(s.peakRssBytes)}` : ''}`,
      );
    }
    const x = p.ratios;
    lines.push(
      `ratio, train step:  ${formatRatio(x.step1Thread)} PyTorch's on 1 thread (target ≤ 0.75); ${formatRatio(x.stepBest.ratio)} PyTorch's best (${peerThreadsLabel(x.stepBest)}; target ≤ 1); lower is better`,
      `ratio, epoch:       ${formatRatio(x.epochBest.ratio)} PyTorch's best (${peerThreadsLabel(x.epochBest)}); ${formatRatio(x.epoch1Thread)} on 1 thread`,
      x.inferenceBest
        ? `ratio, inference:   ${formatRatio(x.inferenceBest.ratio)} PyTorch's samples/s at its best (${peerThreadsLabel(x.inferenceBest)}; target ≥ 1); higher is better`
        : 'ratio, inference:   — (the peer measured no inference)',
    );
    if (x.step1Core)
      lines.push(
        `ratio, one core:    train step ${formatRatio(x.step1Core)} PyTorch's on 1 thread with OpenBLAS on 1` +
          `${x.inference1Core ? `, inference ${formatRatio(x.inference1Core)} its samples/s` : ''} (ours on ${r.threads} thread${r.threads === 1 ? '' : 's'})`,
      );
  }
  return `${lines.join('\n')}\n`;
}

export const BENCH_FLAGS: readonly FlagSpec[] = [
  { flag: 'samples', value: '<n>', help: 'training samples (CIFAR-shaped, generated)', default: String(DEFAULT_BENCH_OPTIONS.samples) },
  { flag: 'batch', value: '<n>', help: 'mini-batch size', default: String(DEFAULT_BENCH_OPTIONS.batch) },
  { flag: 'hidden', value: '<w,...>', help: 'hidden widths', default: DEFAULT_BENCH_OPTIONS.hidden.join(',') },
  { flag: 'epochs', value: '<n>', help: 'timed epochs per repeat', default: String(DEFAULT_BENCH_OPTIONS.epochs) },
  { flag: 'warmup', value: '<n>', help: 'untimed steps before each repeat', default: String(DEFAULT_BENCH_OPTIONS.warmup) },
  { flag: 'inference', value: '<n>', help: 'samples for the inference throughput', default: String(DEFAULT_BENCH_OPTIONS.inference) },
  { flag: 'repeat', value: '<n>', help: 'measure ours and the peer (each thread setting) n times, interleaved; medians and ranges', default: String(DEFAULT_BENCH_OPTIONS.repeat) },
  { flag: 'backend', value: '<name>', help: "'auto', 'tensorflow', 'wasm' or 'cpu' (auto: tensorflow when tfjs-node loads, else wasm, else cpu)", default: 'auto' },
  {
    flag: 'kernels', value: '<choice>',
    help: "our wasm kernels: 'auto' (relaxed-simd when the runtime has it, else simd128), 'relaxed-simd', 'simd128' or 'off' (tfjs ops)",
    default: 'auto',
  },
  {
    flag: 'threads', value: '<n|auto>',
    help: `threads of our dense kernels on wasm: 1 to ${MAX_KERNEL_THREADS}, or 'auto' (this machine's available parallelism, at most ${MAX_KERNEL_THREADS})`,
    default: 'auto',
  },
  { flag: 'torch', value: '<auto|off>', help: "run the PyTorch peer (scripts/torch_peer.py) when /usr/bin/python3 has torch ('off': never)", default: 'auto' },
  { flag: 'seed', value: '<s>', help: 'seed of the data, weights and order', default: '0' },
  { flag: 'suite', value: '<name>', help: "'core' (train step and inference vs PyTorch), 'trainer' (data reading, trainer epoch, search), or 'all'", default: 'all' },
  { flag: 'sweep', help: 'only the sweep: ms/step of bnmlp and PyTorch by batch × hidden widths, GFLOP/s (see above)' },
  { flag: 'out', value: '<dir>', help: 'with --sweep: write sweep.json and the figure (sweep.svg, sweep.png, sweep.vl.json) there' },
  { flag: 'json', help: 'print one JSON document instead of the summary' },
  { flag: 'help', short: 'h', help: 'show this help' },
];

/** Flags of the core and trainer suites, which the sweep does not use (its sizes are fixed). */
const NOT_FOR_SWEEP = ['samples', 'batch', 'hidden', 'epochs', 'warmup', 'inference', 'suite'];

function parseInteger(op: string, flag: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isInteger(value) || value < min) throw new CliArgumentError(op, `--${flag}`, `an integer >= ${min}`, quote(text));
  return value;
}

export type BenchSuite = 'core' | 'trainer' | 'all';

export interface ParsedBenchArgs {
  readonly help: boolean;
  readonly json: boolean;
  readonly suite: BenchSuite;
  /** --sweep: run only the sweep. */
  readonly sweep: boolean;
  /** --out: where the sweep writes sweep.json and its figure, or null. */
  readonly out: string | null;
  readonly options: BenchOptions;
}

export function parseBenchArgs(args: readonly string[]): ParsedBenchArgs {
  const op = 'bnmlp bench';
  const { values } = parseFlags(op, args, BENCH_FLAGS);
  const d = DEFAULT_BENCH_OPTIONS;
  const text = (flag: string) => values[flag] as string | undefined;
  const sweep = values.sweep === true;
  if (sweep)
    for (const flag of NOT_FOR_SWEEP)
      if (values[flag] !== undefined) throw new CliArgumentError(op, `--${flag}`, 'left out with --sweep (the sweep runs fixed sizes; see --help)', quote(String(values[flag])));
  const out = text('out') ?? null;
  if (out !== null && !sweep) throw new CliArgumentError(op, '--out', 'given with --sweep (only the sweep writes files)', quote(out));
  if (out !== null && out.trim() === '') throw new CliArgumentError(op, '--out', 'a directory', "''");
  const hiddenText = text('hidden');
  const hidden = hiddenText === undefined ? d.hidden : hiddenText.split(',').map((w) => (w.trim() === '' ? NaN : Number(w)));
  if (!hidden.every((w) => Number.isInteger(w) && w >= 1)) throw new CliArgumentError(op, '--hidden', 'a comma-separated list of integers >= 1', quote(hiddenText!));
  const backend = (text('backend') ?? d.backend) as BenchOptions['backend'];
  if (!['auto', 'tensorflow', 'wasm', 'cpu'].includes(backend)) throw new CliArgumentError(op, '--backend', "'auto', 'tensorflow', 'wasm' or 'cpu'", quote(backend));
  const kernels = (text('kernels') ?? d.kernels) as WasmKernelChoice;
  if (!WASM_KERNEL_CHOICES.includes(kernels)) throw new CliArgumentError(op, '--kernels', `one of ${WASM_KERNEL_CHOICES.join(', ')}`, quote(kernels));
  const torch = (text('torch') ?? d.torch) as BenchOptions['torch'];
  if (torch !== 'auto' && torch !== 'off') throw new CliArgumentError(op, '--torch', "'auto' or 'off'", quote(torch));
  const samples = parseInteger(op, 'samples', text('samples'), d.samples, 2);
  const batch = parseInteger(op, 'batch', text('batch'), d.batch, 2);
  if (batch > samples) throw new CliArgumentError(op, '--batch', `at most --samples (${samples})`, String(batch));
  const suite = (text('suite') ?? 'all') as BenchSuite;
  if (!['core', 'trainer', 'all'].includes(suite)) throw new CliArgumentError(op, '--suite', "'core', 'trainer' or 'all'", quote(suite));
  return {
    help: values.help === true,
    json: values.json === true,
    suite,
    sweep,
    out,
    options: {
      samples, batch, hidden, backend, kernels, torch,
      threads: parseThreads(op, text('threads')),
      repeat: parseInteger(op, 'repeat', text('repeat'), d.repeat, 1),
      epochs: parseInteger(op, 'epochs', text('epochs'), d.epochs, 1),
      warmup: parseInteger(op, 'warmup', text('warmup'), d.warmup, 0),
      inference: parseInteger(op, 'inference', text('inference'), d.inference, 1),
      seed: parseInteger(op, 'seed', text('seed'), d.seed, 0),
    },
  };
}

export function benchHelp(): string {
  const s = DEFAULT_SWEEP_OPTIONS;
  return [
    'Usage: bnmlp bench [options]',
    '       bnmlp bench --sweep [--repeat n] [--out dir] [--threads n|auto] [--json]',
    '',
    'Times training (ms per step, seconds per epoch) and inference (samples/s) of the report network',
    'on generated CIFAR-shaped data, reports the backend (with our kernels\' thread count) and peak',
    'RSS, and runs the PyTorch peer in the same run: packages/cli/scripts/torch_peer.py (shipped',
    'with the CLI) under /usr/bin/python3, on 1 and on 2 threads (torch.set_num_threads, as the',
    'shared peer script) and on one core (1 thread, OpenBLAS\'s pool on 1 too: it multiplies on every',
    'core otherwise), --repeat times interleaved with ours. It prints our train step ÷ PyTorch\'s on',
    '1 thread and on its fastest setting, our epoch ÷ its epoch, our inference samples/s ÷ its',
    'model.eval() + torch.no_grad() samples/s (same chunks of 1000), and our step and inference',
    'against one core, as medians with min–max ranges over the repeats. Figures vary with machine',
    'load: compare ratios within one run.',
    '',
    'The trainer suite adds: reading and standardising a full-size CIFAR-10 binary set (60,000',
    'generated images), the memory the standardised splits hold, a trainer epoch beside the bare',
    'train steps and beside PyTorch\'s epoch (the same three settings) on the same shapes, and a search of',
    '8 short trials on 1 worker process on one core, on 2 worker processes (1 kernel thread each), and',
    'on 1 worker process with a kernel thread per core.',
    '',
    '--sweep runs only the sweep: ms per train step of bnmlp and PyTorch (the faster of 1 and 2',
    `threads) side by side, with the ratio, over batch ${s.batches.join(', ')} × hidden ${s.hiddens.map((h) => h.join(',')).join(' / ')}`,
    `(3072 inputs, 10 classes, BN); per row about ${s.targetSeconds} s of timed steps (${s.minSteps} to ${s.maxSteps}) after a warm-up, each`,
    'step gathering random rows; GFLOP/s per row (per layer 2·m·k·n for x·W, 2·m·k·n for the weight',
    'gradient, 2·m·k·n for the input gradient after the first layer) and its share of the machine',
    `peak (PyTorch sgemm ${s.peakSize}³ on the three settings, the largest, measured in the same run). --out writes`,
    'sweep.json and a figure (ms/step against the hidden widths, log scale) for the report.',
    '',
    'Options:',
    formatFlags(BENCH_FLAGS),
    '',
  ].join('\n');
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'time a training epoch and inference beside the PyTorch peer; --sweep: cost by size',
  help: benchHelp,
  run: async (args: readonly string[], context: CommandContext) => {
    const parsed = parseBenchArgs(args);
    if (parsed.help) {
      context.stdout(benchHelp());
      return 0;
    }
    const o = parsed.options;
    if (parsed.sweep) {
      const result = await runSweep({ ...DEFAULT_SWEEP_OPTIONS, backend: o.backend, kernels: o.kernels, threads: o.threads, torch: o.torch, repeat: o.repeat, seed: o.seed }, context.progress);
      const written = parsed.out ? await writeSweep(parsed.out, result, (m) => context.stderr(`figure: ${m}\n`)) : null;
      if (parsed.json) context.stdout(`${JSON.stringify(result, null, 2)}\n`);
      else context.stdout(`${formatSweep(result)}${written ? `wrote ${written.json}, ${written.figure.svg}, ${written.figure.png}\n` : ''}`);
      return 0;
    }
    const core = parsed.suite === 'trainer' ? null : await runBench(o, context.progress);
    if (parsed.suite !== 'core') await setUpBackend(o);
    const trainer =
      parsed.suite === 'core'
        ? null
        : await runTrainerBench(
            {
              epochs: Math.max(o.repeat, o.epochs), batch: o.batch, hidden: o.hidden, seed: o.seed, recordsPerFile: 10_000,
              peer: o.torch === 'off' ? null : ({ threads, blasThreads }, samples) => peerEpoch({ threads, blasThreads, hidden: o.hidden, batch: o.batch, samples, epochs: 1, evalSamples: 0, evalBatch: INFERENCE_CHUNK, seed: o.seed }),
            },
            context.progress,
          );
    const search = parsed.suite === 'core' ? null : await runSearchBench({ trials: 8, seed: o.seed }, context.progress);
    if (parsed.json) context.stdout(`${JSON.stringify(parsed.suite === 'core' ? core : { core, trainer, search }, null, 2)}\n`);
    else context.stdout([core ? formatBench(core) : '', trainer ? `${formatTrainerBench(trainer)}\n` : '', search ? `${formatSearchBench(search)}\n` : ''].join(''));
    return 0;
  },
};
