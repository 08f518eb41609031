import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  configureWasmKernels, createModel, createMomentumState, disposeModel, disposeMomentumState, WASM_KERNEL_CHOICES, initBackend, predict, trainStep,
  type BackendName, type WasmKernelChoice, type WasmKernelVariant, type Float32Matrix,
} from '@bnmlp/core';
import { MiniBatcher, findInAncestors, isFile } from '@bnmlp/trainer';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { formatTrainerBench, runTrainerBench } from './bench-trainer.js';
import { formatSearchBench, runSearchBench } from './bench-search.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp bench`: the speed of one training epoch of the report's network (3072-50-30-10 with BN,
batch 100) on 50,000 CIFAR-shaped samples, and of inference, beside the PyTorch peer
(../shared/bench/torch_mlp_epoch.py, one thread) measured in the same run. Figures, not a test:
machines are noisy, so compare the ratio, and repeat.

A step is timed from gathering its batch to the end of the in-place update (PyTorch's X[idx]
gather is inside its step too). ms/step is the median over the timed epochs' steps; epoch seconds
the median epoch wall time (shuffle included).
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
  /** 'auto': run the peer when /usr/bin/python3 has torch; 'off': never. */
  readonly torch: 'auto' | 'off';
  readonly seed: number;
}

export const DEFAULT_BENCH_OPTIONS: BenchOptions = {
  samples: 50_000,
  batch: 100,
  hidden: [50, 30],
  epochs: 1,
  warmup: 50,
  inference: 10_000,
  backend: 'auto',
  kernels: 'auto',
  torch: 'auto',
  seed: 0,
};

const INPUT_DIM = 3072;
const CLASSES = 10;

export interface PeerResult {
  readonly peer: 'pytorch';
  readonly version: string;
  readonly threads: number;
  readonly msPerStep: number;
  readonly epochSeconds: number;
  readonly peakRssBytes: number | null;
}

export interface BenchResult {
  readonly format: 'bnmlp-bench';
  readonly version: 1;
  readonly options: BenchOptions;
  readonly backend: BackendName;
  /** The wasm kernel build that ran, or null (tfjs ops: kernels off, or another backend). */
  readonly wasmKernels: WasmKernelVariant | null;
  readonly architecture: string;
  readonly stepsPerEpoch: number;
  readonly msPerStep: { readonly median: number; readonly p10: number; readonly p90: number };
  readonly epochSeconds: number;
  readonly inferenceSamplesPerSecond: number;
  readonly peakRssBytes: number;
  readonly peer: PeerResult | { readonly skipped: string };
  /** Our ms/step over PyTorch's, when the peer ran. */
  readonly ratioToPeer: number | null;
}

function quantile(sorted: readonly number[], q: number): number {
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

/** CIFAR-shaped samples: unit-variance uniform noise (the distribution does not change the speed) and random labels. */
export function syntheticSet(samples: number, seed: number): { x: Float32Matrix; labels: Uint8Array } {
  const data = new Float32Array(samples * INPUT_DIM);
  let state = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const scale = Math.sqrt(12) / 4294967296;
  for (let i = 0; i < data.length; i++) {
    // xorshift32: fast enough to fill 614 MB in about a second.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[i] = ((state >>> 0) - 2147483648) * scale;
  }
  const labels = new Uint8Array(samples);
  for (let i = 0; i < samples; i++) labels[i] = (data[i * INPUT_DIM] * 1e4 >>> 0) % CLASSES;
  return { x: { rows: samples, cols: INPUT_DIM, data }, labels };
}

/** The PyTorch peer script beside the repository (../shared/bench), or null. */
export function locateTorchScript(): string | null {
  return findInAncestors(join('shared', 'bench', 'torch_mlp_epoch.py'), isFile, [process.cwd(), dirname(fileURLToPath(import.meta.url))]);
}

const PYTHON = '/usr/bin/python3';

/** Runs the peer with one thread and the same shapes; its peak RSS comes from getrusage inside the same interpreter. */
export function runTorchPeer(options: BenchOptions): PeerResult | { skipped: string } {
  if (options.torch === 'off') return { skipped: 'disabled (--torch off)' };
  const script = locateTorchScript();
  if (!script) return { skipped: 'shared/bench/torch_mlp_epoch.py not found above the working directory' };
  if (!isFile(PYTHON)) return { skipped: `${PYTHON} not found` };
  if (spawnSync(PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0)
    return { skipped: `${PYTHON} has no torch (apt-get install -y python3-torch libopenblas0-pthread)` };
  const args = ['--threads', '1', '--hidden', options.hidden.join(','), '--batch', String(options.batch), '--samples', String(options.samples)];
  const wrapper = [
    'import json, resource, runpy, sys',
    `sys.argv = [${JSON.stringify(script)}] + ${JSON.stringify(args)}`,
    `runpy.run_path(${JSON.stringify(script)}, run_name="__main__")`,
    'print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))',
  ].join('\n');
  const run = spawnSync(PYTHON, ['-c', wrapper], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) return { skipped: `the peer failed (exit ${run.status}): ${run.stderr.trim().split('\n').pop()}` };
  const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const report = lines.find((l) => l.peer === 'pytorch');
  const rss = lines.find((l) => typeof l.maxrss_kb === 'number');
  if (!report) return { skipped: `the peer printed no result: ${run.stdout.slice(0, 200)}` };
  return {
    peer: 'pytorch',
    version: String(report.version),
    threads: Number(report.threads),
    msPerStep: Number(report.ms_per_step),
    epochSeconds: Number(report.epoch_s),
    peakRssBytes: rss ? Number(rss.maxrss_kb) * 1024 : null,
  };
}

export async function runBench(options: BenchOptions, onProgress: (message: string) => void = () => {}): Promise<BenchResult> {
  const backend = (await initBackend(options.backend)).name;
  const kernels = configureWasmKernels(options.kernels);
  if (options.kernels !== 'off' && options.kernels !== 'auto' && kernels.variant !== options.kernels)
    throw new CliArgumentError('bnmlp bench', '--kernels', 'a build this runtime can run', `'${options.kernels}' (${kernels.reason})`);
  onProgress(`generating ${options.samples} × ${INPUT_DIM} samples`);
  const set = syntheticSet(options.samples, options.seed);
  const model = createModel({ inputDim: INPUT_DIM, hiddenDims: options.hidden, classes: CLASSES, batchNorm: true }, { seed: options.seed });
  const state = createMomentumState(model);
  const settings = { lambda: 1e-4, learningRate: 0.01, momentum: 0.9 };
  const batcher = new MiniBatcher(set, options.batch, options.seed);
  try {
    batcher.shuffle();
    for (let i = 0; i < options.warmup; i++) {
      const b = batcher.batch(i % batcher.batchesPerEpoch);
      trainStep(model, state, b.x, b.labels, settings);
    }
    const stepMs: number[] = [];
    const epochSeconds: number[] = [];
    for (let e = 0; e < options.epochs; e++) {
      onProgress(`timed epoch ${e + 1} of ${options.epochs}`);
      const epochStart = performance.now();
      batcher.shuffle();
      for (let i = 0; i < batcher.batchesPerEpoch; i++) {
        const t0 = performance.now();
        const b = batcher.batch(i);
        trainStep(model, state, b.x, b.labels, settings);
        stepMs.push(performance.now() - t0);
      }
      epochSeconds.push((performance.now() - epochStart) / 1000);
    }
    onProgress(`inference over ${options.inference} samples`);
    const rows = Math.min(options.inference, options.samples);
    const inferenceSet = { rows, cols: INPUT_DIM, data: set.x.data.subarray(0, rows * INPUT_DIM) };
    predict(model, inferenceSet, { chunkSize: 1000 }); // warm-up
    const t0 = performance.now();
    predict(model, inferenceSet, { labels: set.labels.subarray(0, rows), chunkSize: 1000 });
    const inferenceSeconds = (performance.now() - t0) / 1000;
    const peakRssBytes = process.resourceUsage().maxRSS * 1024;
    onProgress('PyTorch peer');
    const peer = runTorchPeer(options);
    const sorted = [...stepMs].sort((a, b) => a - b);
    const msPerStep = { median: quantile(sorted, 0.5), p10: quantile(sorted, 0.1), p90: quantile(sorted, 0.9) };
    return {
      format: 'bnmlp-bench',
      version: 1,
      options,
      backend,
      wasmKernels: backend === 'wasm' ? kernels.variant : null,
      architecture: [INPUT_DIM, ...options.hidden, CLASSES].join('-') + ' with BN',
      stepsPerEpoch: batcher.batchesPerEpoch,
      msPerStep,
      epochSeconds: median(epochSeconds),
      inferenceSamplesPerSecond: rows / inferenceSeconds,
      peakRssBytes,
      peer,
      ratioToPeer: 'msPerStep' in peer ? msPerStep.median / peer.msPerStep : null,
    };
  } finally {
    disposeModel(model);
    disposeMomentumState(state);
  }
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

export function formatBench(r: BenchResult): string {
  const o = r.options;
  const lines = [
    `bnmlp bench: ${r.architecture}, batch ${o.batch}, ${o.samples} samples (${r.stepsPerEpoch} steps/epoch), SGD momentum 0.9, λ 1e-4`,
    `backend:            ${r.backend}${r.backend === 'wasm' ? ` (kernels: ${r.wasmKernels ?? 'off, tfjs ops'})` : ''}`,
    `train step:         ${r.msPerStep.median.toFixed(3)} ms median (p10 ${r.msPerStep.p10.toFixed(3)}, p90 ${r.msPerStep.p90.toFixed(3)}) over ${o.epochs} epoch(s) after ${o.warmup} warm-up steps`,
    `epoch:              ${r.epochSeconds.toFixed(2)} s`,
    `inference:          ${Math.round(r.inferenceSamplesPerSecond).toLocaleString('en-US')} samples/s over ${Math.min(o.inference, o.samples)} samples`,
    `peak RSS:           ${mb(r.peakRssBytes)} (this process, data included)`,
  ];
  if ('msPerStep' in r.peer) {
    const p = r.peer;
    lines.push(
      `pytorch ${p.version} (${p.threads} thread): ${p.msPerStep.toFixed(3)} ms/step, ${p.epochSeconds.toFixed(2)} s/epoch${p.peakRssBytes ? `, peak RSS ${mb(p.peakRssBytes)}` : ''}`,
      `ratio:              ${r.ratioToPeer!.toFixed(2)}× PyTorch's ms/step (lower is better)`,
    );
  } else lines.push(`pytorch peer:       skipped: ${r.peer.skipped}`);
  return `${lines.join('\n')}\n`;
}

export const BENCH_FLAGS: readonly FlagSpec[] = [
  { flag: 'samples', value: '<n>', help: 'training samples (CIFAR-shaped, generated)', default: String(DEFAULT_BENCH_OPTIONS.samples) },
  { flag: 'batch', value: '<n>', help: 'mini-batch size', default: String(DEFAULT_BENCH_OPTIONS.batch) },
  { flag: 'hidden', value: '<w,...>', help: 'hidden widths', default: DEFAULT_BENCH_OPTIONS.hidden.join(',') },
  { flag: 'epochs', value: '<n>', help: 'timed epochs', default: String(DEFAULT_BENCH_OPTIONS.epochs) },
  { flag: 'warmup', value: '<n>', help: 'untimed steps first', default: String(DEFAULT_BENCH_OPTIONS.warmup) },
  { flag: 'inference', value: '<n>', help: 'samples for the inference throughput', default: String(DEFAULT_BENCH_OPTIONS.inference) },
  { flag: 'backend', value: '<name>', help: "'auto', 'tensorflow', 'wasm' or 'cpu' (auto: tensorflow when tfjs-node loads, else wasm, else cpu)", default: 'auto' },
  {
    flag: 'kernels', value: '<choice>',
    help: "our wasm kernels: 'auto' (relaxed-simd when the runtime has it, else simd128), 'relaxed-simd', 'simd128' or 'off' (tfjs ops)",
    default: 'auto',
  },
  { flag: 'torch', value: '<auto|off>', help: "run the PyTorch peer when /usr/bin/python3 has torch ('off': never)", default: 'auto' },
  { flag: 'seed', value: '<s>', help: 'seed of the data, weights and order', default: '0' },
  { flag: 'suite', value: '<name>', help: "'core' (train step and inference vs PyTorch), 'trainer' (data reading, trainer epoch, search), or 'all'", default: 'all' },
  { flag: 'json', help: 'print one JSON document instead of the summary' },
  { flag: 'help', short: 'h', help: 'show this help' },
];

function parseInteger(op: string, flag: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new CliArgumentError(op, `--${flag}`, `an integer >= ${min}`, quote(text));
  return value;
}

export type BenchSuite = 'core' | 'trainer' | 'all';

export function parseBenchArgs(args: readonly string[]): { help: boolean; json: boolean; suite: BenchSuite; options: BenchOptions } {
  const op = 'bnmlp bench';
  const { values } = parseFlags(op, args, BENCH_FLAGS);
  const d = DEFAULT_BENCH_OPTIONS;
  const text = (flag: string) => values[flag] as string | undefined;
  const hiddenText = text('hidden');
  const hidden = hiddenText === undefined ? d.hidden : hiddenText.split(',').map(Number);
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
    options: {
      samples, batch, hidden, backend, kernels, torch,
      epochs: parseInteger(op, 'epochs', text('epochs'), d.epochs, 1),
      warmup: parseInteger(op, 'warmup', text('warmup'), d.warmup, 0),
      inference: parseInteger(op, 'inference', text('inference'), d.inference, 1),
      seed: parseInteger(op, 'seed', text('seed'), d.seed, 0),
    },
  };
}

export function benchHelp(): string {
  return [
    'Usage: bnmlp bench [options]',
    '',
    'Times training (ms per step, seconds per epoch) and inference (samples/s) of the report network',
    'on generated CIFAR-shaped data, reports the backend and peak RSS, and runs the PyTorch peer',
    '(../shared/bench/torch_mlp_epoch.py --threads 1) in the same run for the ratio. Figures vary',
    'with machine load: compare ratios within one run and repeat.',
    '',
    "The trainer suite adds: reading and standardising a full-size CIFAR-10 binary set (60,000",
    'generated images), the memory the standardised splits hold, a trainer epoch beside the bare',
    'train steps on the same data, and a search of 8 short trials on 1 and on 2 worker processes.',
    '',
    'Options:',
    formatFlags(BENCH_FLAGS),
    '',
  ].join('\n');
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'time a training epoch and inference beside the PyTorch peer',
  help: benchHelp,
  run: async (args: readonly string[], context: CommandContext) => {
    const parsed = parseBenchArgs(args);
    if (parsed.help) {
      context.stdout(benchHelp());
      return 0;
    }
    const core = parsed.suite === 'trainer' ? null : await runBench(parsed.options, context.progress);
    const o = parsed.options;
    if (parsed.suite !== 'core') {
      await initBackend(o.backend);
      configureWasmKernels(o.kernels);
    }
    const trainer = parsed.suite === 'core' ? null : await runTrainerBench({ epochs: Math.max(3, o.epochs), batch: o.batch, hidden: o.hidden, seed: o.seed, recordsPerFile: 10_000 }, context.progress);
    const search = parsed.suite === 'core' ? null : await runSearchBench({ trials: 8, seed: o.seed }, context.progress);
    if (parsed.json) context.stdout(`${JSON.stringify(parsed.suite === 'core' ? core : { core, trainer, search }, null, 2)}\n`);
    else context.stdout([core ? formatBench(core) : '', trainer ? `${formatTrainerBench(trainer)}\n` : '', search ? `${formatSearchBench(search)}\n` : ''].join(''));
    return 0;
  },
};
