import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  configureKernelThreads, configureWasmKernels, createBatchBuffer, createModel, createMomentumState, disposeModel, disposeMomentumState, initBackend,
  releaseBatchBuffer, trainStep, wasmKernelStatus,
  type BackendName, type Float32Matrix, type KernelThreadsChoice, type WasmKernelChoice, type WasmKernelVariant,
} from '@bnmlp/core';
import { CliArgumentError } from '../errors.js';
import { writeFigure, type FigurePaths } from '../report/render.js';
import { sweepFigure } from '../report/sweep-figure.js';
import { formatTable } from '../table.js';
import { CLASSES, INPUT_DIM, median, ratioSpread, spread, syntheticSet, type Spread } from './bench-common.js';
import { isOneCore, isSkipped, PEER_SCRIPT, PEER_SETTINGS, PEER_THREADS, peerPeak, peerSteps, peerThreadsLabel, type PeerPeak, type PeerStepsRow, type Skipped } from './bench-peer.js';

/*
`bnmlp bench --sweep`: how the cost of a train step grows with the batch and the widths. ms per
step of bnmlp and of the PyTorch peer (packages/cli/scripts/torch_peer.py --mode steps, on 1 and
2 threads, the faster one compared) over batch × hidden widths (3072 inputs, 10 classes, BN),
each step gathering a batch of random rows of the same generated set; GFLOP/s achieved per row
(FLOP_FORMULA) and its share of this machine's peak, measured in the same run as PyTorch's sgemm
2048³ on 1 and 2 threads (the larger is the "machine peak").

Per repeat: every row of ours, then every row of the peer on 1 thread (one python process), then
on 2 threads; rows get the same timed steps on both sides: enough for about `targetSeconds` by our
warm-up's estimate, but at least `minSteps` and at most `maxSteps` (so the big rows stop after
fewer steps than a second would need, and the small ones after `maxSteps`). Medians over the
repeats; each ratio pairs ours with the peer's figure of the same repeat.
*/

export interface SweepOptions {
  readonly batches: readonly number[];
  readonly hiddens: ReadonlyArray<readonly number[]>;
  readonly inputDim: number;
  /** Rows of generated data the batches are drawn from. */
  readonly samples: number;
  readonly repeat: number;
  readonly targetSeconds: number;
  readonly minSteps: number;
  readonly maxSteps: number;
  /** Untimed steps first: at least 2, until this long has passed (at most maxWarmup). */
  readonly warmupSeconds: number;
  readonly maxWarmup: number;
  /** sgemm size for the machine peak. */
  readonly peakSize: number;
  readonly backend: BackendName | 'auto';
  readonly kernels: WasmKernelChoice;
  readonly threads: KernelThreadsChoice;
  readonly torch: 'auto' | 'off';
  readonly seed: number;
}

export const DEFAULT_SWEEP_OPTIONS: SweepOptions = {
  batches: [32, 100, 500],
  hiddens: [[50, 30], [500, 300], [2000, 1000]],
  inputDim: INPUT_DIM,
  samples: 10_000,
  repeat: 3,
  // About half a second timed per row after half a second of warm-up (V8 tiers our code up over
  // the first steps; the small rows need hundreds of steps for a steady median).
  targetSeconds: 0.5,
  minSteps: 3,
  maxSteps: 300,
  warmupSeconds: 0.5,
  maxWarmup: 1000,
  peakSize: 2048,
  backend: 'auto',
  kernels: 'auto',
  threads: 'auto',
  torch: 'auto',
  seed: 0,
};

export const FLOP_FORMULA =
  'FLOP per train step = sum over layers (k inputs, n outputs, batch m) of 2·m·k·n for x·W, 2·m·k·n for the weight gradient, and 2·m·k·n for the input gradient on layers after the first; O(m·n) terms (bias, BN, ReLU, softmax, updates) ignored';

/** FLOP of one train step of inputDim-hidden…-classes at batch m (FLOP_FORMULA). */
export function trainStepFlops(batch: number, inputDim: number, hidden: readonly number[], classes = CLASSES): number {
  const dims = [inputDim, ...hidden, classes];
  let total = 0;
  for (let l = 1; l < dims.length; l++) total += 2 * batch * dims[l - 1] * dims[l] * (l === 1 ? 2 : 3);
  return total;
}

/** Timed steps for a step of `estimateMs`: about targetSeconds, within [minSteps, maxSteps]. */
export function timedSteps(estimateMs: number, o: Pick<SweepOptions, 'targetSeconds' | 'minSteps' | 'maxSteps'>): number {
  const wanted = estimateMs > 0 ? Math.ceil((1000 * o.targetSeconds) / estimateMs) : o.maxSteps;
  return Math.max(o.minSteps, Math.min(o.maxSteps, wanted));
}

export interface SweepPeerSetting {
  readonly threads: number;
  readonly msPerStep: Spread;
}

export interface SweepRow {
  readonly batch: number;
  readonly hidden: readonly number[];
  /** Per train step (FLOP_FORMULA). */
  readonly flops: number;
  /** Timed steps in each repeat (warm-up steps before them, untimed). */
  readonly steps: readonly number[];
  readonly warmup: readonly number[];
  /** bnmlp's ms per step: the median of each repeat's timed steps, over the repeats. */
  readonly bnmlp: Spread;
  /** The peer on each thread setting, or null when it did not run. */
  readonly pytorch: readonly SweepPeerSetting[] | null;
  /** The peer's faster setting (by median) and bnmlp ÷ it, repeat by repeat. */
  readonly best: { readonly threads: number; readonly msPerStep: Spread; readonly ratio: Spread } | null;
  readonly ratio1Thread: Spread | null;
  readonly gflops: { readonly bnmlp: number; readonly pytorch: number | null };
  /** Of the machine peak, when it was measured. */
  readonly fractionOfPeak: { readonly bnmlp: number; readonly pytorch: number | null } | null;
}

export interface SweepPeak {
  readonly version: string;
  readonly size: number;
  /** GFLOP/s by thread setting (PEER_SETTINGS: 1 and 2 threads with OpenBLAS at its default, and one core). */
  readonly settings: readonly PeerPeak[];
  /** The larger: the machine peak every fraction is of. */
  readonly machineGflops: number;
  readonly machineThreads: number;
  /** This CPU's widest float vector in lanes (16 with AVX-512, 8 with AVX2, else 4), from /proc/cpuinfo. */
  readonly nativeLanes: number;
  /** wasm SIMD-128 has 4 lanes: 4/nativeLanes of one core's sgemm (OpenBLAS on 1 thread), times our kernel threads. */
  readonly wasmSimdCeilingGflops: number;
  readonly kernelThreads: number;
}

/**
 * What wasm SIMD-128 can reach: 4/nativeLanes of one core's sgemm, times our kernel threads. One
 * core is the setting with OpenBLAS on 1 thread: torch's "1 thread" alone still multiplies on
 * every core (without that setting, the fastest's GFLOP/s per torch thread stands in).
 */
export function wasmSimdCeiling(settings: readonly PeerPeak[], nativeLanes: number, kernelThreads: number): number {
  const best = settings.reduce((a, b) => (b.gflops > a.gflops ? b : a));
  const oneCore = settings.find(isOneCore)?.gflops ?? best.gflops / best.threads;
  return (4 / nativeLanes) * oneCore * kernelThreads;
}

/** The widest float vector of this CPU in 32-bit lanes, read from /proc/cpuinfo's flags (4 when unknown). */
export function nativeFloatLanes(cpuinfo: string | null = readCpuinfo()): number {
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo ?? '')?.[1] ?? '').trim().split(/\s+/));
  return flags.has('avx512f') ? 16 : flags.has('avx2') || flags.has('avx') ? 8 : 4;
}

function readCpuinfo(): string | null {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
}

export interface SweepResult {
  readonly format: 'bnmlp-bench-sweep';
  readonly version: 1;
  readonly options: SweepOptions;
  readonly backend: BackendName;
  readonly wasmKernels: WasmKernelVariant | null;
  readonly threads: number;
  readonly threadsReason: string | null;
  readonly flopFormula: string;
  readonly peer: { readonly script: string; readonly version: string } | Skipped;
  readonly peak: SweepPeak | Skipped;
  readonly rows: readonly SweepRow[];
  readonly seconds: number;
}

interface OurRow {
  readonly msPerStep: number;
  readonly steps: number;
  readonly warmup: number;
}

/** One row of ours: warm-up, then the timed steps, each gathering `batch` random rows of the set. */
export function measureOurRow(set: { x: Float32Matrix; labels: Uint8Array }, batch: number, hidden: readonly number[], o: SweepOptions, seed: number): OurRow {
  const cols = set.x.cols;
  const model = createModel({ inputDim: cols, hiddenDims: hidden, classes: CLASSES, batchNorm: true }, { seed });
  const state = createMomentumState(model);
  const settings = { lambda: 1e-4, learningRate: 0.01, momentum: 0.9 };
  const x = createBatchBuffer(batch * cols); // as the trainer's batches: in the kernel threads' memory when they run
  const labels = new Uint8Array(batch);
  const input = { rows: batch, cols, data: x };
  let rng = (seed ^ 0x5bd1e995) >>> 0 || 1;
  const step = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) {
      rng ^= rng << 13;
      rng ^= rng >>> 17;
      rng ^= rng << 5;
      const r = (rng >>> 0) % set.x.rows;
      x.set(set.x.data.subarray(r * cols, (r + 1) * cols), i * cols);
      labels[i] = set.labels[r];
    }
    trainStep(model, state, input, labels, settings);
    return performance.now() - t0;
  };
  try {
    const warm: number[] = [];
    const started = performance.now();
    while (warm.length < 2 || (performance.now() - started < 1000 * o.warmupSeconds && warm.length < o.maxWarmup)) warm.push(step());
    const steps = timedSteps(median(warm.slice(1)), o);
    const times: number[] = [];
    for (let i = 0; i < steps; i++) times.push(step());
    return { msPerStep: median(times), steps, warmup: warm.length };
  } finally {
    releaseBatchBuffer(x);
    disposeModel(model);
    disposeMomentumState(state);
  }
}

export async function runSweep(o: SweepOptions, onProgress: (message: string) => void = () => {}): Promise<SweepResult> {
  const started = performance.now();
  const backend = (await initBackend(o.backend)).name;
  const kernels = configureWasmKernels(o.kernels);
  if (o.kernels !== 'off' && o.kernels !== 'auto' && kernels.variant !== o.kernels)
    throw new CliArgumentError('bnmlp bench', '--kernels', 'a build this runtime can run', `'${o.kernels}' (${kernels.reason})`);
  configureKernelThreads(o.threads);
  const grid = o.hiddens.flatMap((hidden) => o.batches.map((batch) => ({ batch, hidden })));
  const biggestBatch = Math.max(...o.batches);
  if (biggestBatch > o.samples) throw new CliArgumentError('bnmlp bench --sweep', 'samples', `at least the largest batch (${biggestBatch})`, String(o.samples));

  let peerSkip: Skipped | null = o.torch === 'off' ? { skipped: 'disabled (--torch off)' } : null;
  let peak: SweepPeak | Skipped = peerSkip ?? { skipped: 'not measured' };
  if (!peerSkip) {
    const settings: PeerPeak[] = [];
    for (const setting of PEER_SETTINGS) {
      onProgress(`machine peak: PyTorch sgemm ${o.peakSize}³ on ${peerThreadsLabel(setting)}`);
      const measured = peerPeak(setting, o.peakSize);
      if (isSkipped(measured)) {
        peerSkip = measured;
        break;
      }
      settings.push(measured);
    }
    if (peerSkip) peak = peerSkip;
    else {
      const best = settings.reduce((a, b) => (b.gflops > a.gflops ? b : a));
      const nativeLanes = nativeFloatLanes();
      const kernelThreads = wasmKernelStatus().threads;
      peak = {
        version: settings[0].version, size: o.peakSize, settings, machineGflops: best.gflops, machineThreads: best.threads,
        nativeLanes, kernelThreads, wasmSimdCeilingGflops: wasmSimdCeiling(settings, nativeLanes, kernelThreads),
      };
    }
  }

  onProgress(`generating ${o.samples} × ${o.inputDim} samples`);
  const set = syntheticSet(o.samples, o.seed, o.inputDim);
  const ours: OurRow[][] = grid.map(() => []);
  const theirs = new Map<number, number[][]>(PEER_THREADS.map((t) => [t, grid.map(() => [])]));
  let peerVersion = '';
  for (let r = 0; r < o.repeat; r++) {
    const label = o.repeat > 1 ? `repeat ${r + 1} of ${o.repeat}: ` : '';
    grid.forEach((cell, i) => {
      onProgress(`${label}bnmlp, batch ${cell.batch}, hidden ${cell.hidden.join(',')}`);
      ours[i].push(measureOurRow(set, cell.batch, cell.hidden, o, o.seed + r));
    });
    if (peerSkip) continue;
    const rows: PeerStepsRow[] = grid.map((cell, i) => ({ batch: cell.batch, hidden: cell.hidden, steps: ours[i][r].steps, warmup: ours[i][r].warmup }));
    for (const threads of PEER_THREADS) {
      onProgress(`${label}PyTorch on ${threads} thread(s), ${rows.length} rows`);
      const measured = peerSteps({ threads, rows, samples: o.samples, inputs: o.inputDim, seed: o.seed + r });
      if (isSkipped(measured)) {
        peerSkip = measured;
        break;
      }
      peerVersion = measured[0].version;
      measured.forEach((row, i) => theirs.get(threads)![i].push(row.msPerStep));
    }
  }

  const status = wasmKernelStatus();
  const machine = isSkipped(peak) ? null : peak.machineGflops;
  const rows: SweepRow[] = grid.map((cell, i) => {
    const flops = trainStepFlops(cell.batch, o.inputDim, cell.hidden);
    const bnmlp = spread(ours[i].map((run) => run.msPerStep));
    const pytorch = peerSkip ? null : PEER_THREADS.map((threads) => ({ threads, msPerStep: spread(theirs.get(threads)![i]) }));
    const bestSetting = pytorch ? pytorch.reduce((a, b) => (b.msPerStep.median < a.msPerStep.median ? b : a)) : null;
    const best = bestSetting ? { ...bestSetting, ratio: ratioSpread(bnmlp.runs, bestSetting.msPerStep.runs) } : null;
    const oneThread = pytorch?.find((s) => s.threads === 1);
    const gflops = { bnmlp: flops / (bnmlp.median / 1000) / 1e9, pytorch: best ? flops / (best.msPerStep.median / 1000) / 1e9 : null };
    return {
      batch: cell.batch, hidden: cell.hidden, flops,
      steps: ours[i].map((run) => run.steps), warmup: ours[i].map((run) => run.warmup),
      bnmlp, pytorch, best,
      ratio1Thread: oneThread ? ratioSpread(bnmlp.runs, oneThread.msPerStep.runs) : null,
      gflops,
      fractionOfPeak: machine ? { bnmlp: gflops.bnmlp / machine, pytorch: gflops.pytorch === null ? null : gflops.pytorch / machine } : null,
    };
  });
  return {
    format: 'bnmlp-bench-sweep',
    version: 1,
    options: o,
    backend,
    wasmKernels: backend === 'wasm' ? status.variant : null,
    threads: backend === 'wasm' && status.variant ? status.threads : 1,
    threadsReason: backend === 'wasm' && status.variant ? status.threadsReason : null,
    flopFormula: FLOP_FORMULA,
    peer: peerSkip ?? { script: PEER_SCRIPT, version: peerVersion },
    peak,
    rows,
    seconds: (performance.now() - started) / 1000,
  };
}

const ms = (value: number) => (value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(3));
const pct = (fraction: number) => `${(100 * fraction).toFixed(fraction < 0.1 ? 1 : 0)}%`;

/** The backend as the bench prints it: 'wasm (kernels: relaxed-simd, 2 threads)'. */
export function formatBackend(backend: BackendName, variant: WasmKernelVariant | null, threads: number, threadsReason: string | null): string {
  if (backend !== 'wasm') return backend;
  if (!variant) return 'wasm (kernels: off, tfjs ops)';
  return `wasm (kernels: ${variant}, ${threads} thread${threads === 1 ? '' : 's'}${threadsReason ? `: ${threadsReason}` : ''})`;
}

export function formatSweep(r: SweepResult): string {
  const o = r.options;
  const peerRan = !isSkipped(r.peer);
  const lines = [
    `bnmlp bench --sweep: ${o.inputDim}-hidden-${CLASSES} with BN, SGD momentum 0.9, λ 1e-4; each step gathers a batch of random rows of ${o.samples.toLocaleString('en-US')} generated samples`,
    `backend:      ${formatBackend(r.backend, r.wasmKernels, r.threads, r.threadsReason)}`,
    `pytorch peer: ${isSkipped(r.peer) ? `skipped: ${r.peer.skipped}` : `torch ${r.peer.version} (scripts/torch_peer.py --mode steps, on ${PEER_THREADS.join(' and ')} threads, OpenBLAS's own pool at its default as in the shared script; the faster by median is compared, its thread count in brackets)`}`,
    `steps:        per row, ${o.minSteps}–${o.maxSteps} timed steps (about ${o.targetSeconds} s by our warm-up's estimate) after ≥ ${o.warmupSeconds} s of warm-up, the same on both sides; ${o.repeat} repeat${o.repeat === 1 ? '' : 's'}, medians${o.repeat > 1 ? ', ratio ranges min–max' : ''}`,
  ];
  if (isSkipped(r.peak)) lines.push(`machine peak: not measured (${r.peak.skipped})`);
  else {
    const p = r.peak;
    lines.push(
      `machine peak: ${p.machineGflops.toFixed(1)} GFLOP/s = the largest of PyTorch sgemm ${p.size}³ on ${p.settings.map((s) => `${peerThreadsLabel(s, s.blasRan)} ${s.gflops.toFixed(1)}`).join(', ')} GFLOP/s (measured in this run); "% peak" is of it`,
      `wasm ceiling: SIMD-128 has 4 float lanes per instruction, this CPU's widest vectors ${p.nativeLanes} (/proc/cpuinfo), so bnmlp's kernels can reach about 4/${p.nativeLanes} of one core's sgemm × ${p.kernelThreads} thread${p.kernelThreads === 1 ? '' : 's'} ≈ ${p.wasmSimdCeilingGflops.toFixed(1)} GFLOP/s (${((100 * p.wasmSimdCeilingGflops) / p.machineGflops).toFixed(0)}% of the machine peak)`,
    );
  }
  lines.push(`FLOP:         ${r.flopFormula}`, '');
  const headers = ['batch', 'hidden', 'GFLOP/step', 'steps', 'bnmlp ms/step', ...(peerRan ? ['PyTorch ms/step', 'bnmlp ÷ PyTorch'] : []), 'bnmlp GFLOP/s', ...(peerRan ? ['PyTorch GFLOP/s'] : [])];
  const body = r.rows.map((row) => {
    const steps = [...new Set(row.steps)];
    const cells = [String(row.batch), row.hidden.join(','), (row.flops / 1e9).toFixed(3), steps.length === 1 ? String(steps[0]) : `${Math.min(...steps)}–${Math.max(...steps)}`, ms(row.bnmlp.median)];
    if (peerRan) {
      cells.push(row.best ? `${ms(row.best.msPerStep.median)} (${row.best.threads})` : '—');
      cells.push(row.best ? (row.best.ratio.runs.length > 1 ? `${row.best.ratio.median.toFixed(2)}× (${row.best.ratio.min.toFixed(2)}–${row.best.ratio.max.toFixed(2)})` : `${row.best.ratio.median.toFixed(2)}×`) : '—');
    }
    const frac = (f: number | null | undefined) => (f === null || f === undefined ? '' : ` (${pct(f)})`);
    cells.push(`${row.gflops.bnmlp.toFixed(1)}${frac(row.fractionOfPeak?.bnmlp)}`);
    if (peerRan) cells.push(row.gflops.pytorch === null ? '—' : `${row.gflops.pytorch.toFixed(1)}${frac(row.fractionOfPeak?.pytorch)}`);
    return cells;
  });
  lines.push(formatTable(headers, body, headers.map((_, c) => (c === 1 ? 'left' : 'right'))));
  if (peerRan) lines.push('', 'bnmlp ÷ PyTorch: ms/step ratio, lower is better (below 1: bnmlp is faster); the JSON (--json, or sweep.json with --out) has both thread settings and every run.');
  lines.push(`sweep took ${r.seconds.toFixed(0)} s`);
  return `${lines.join('\n')}\n`;
}

/** The peer's name in the figure. */
const PEER_LABEL = 'PyTorch (faster of 1, 2 threads)';

/** The figure's points: bnmlp and (when it ran) the peer's faster setting, per row. */
export function sweepFigurePoints(r: SweepResult): Array<{ batch: number; hidden: string; implementation: string; msPerStep: number }> {
  return r.rows.flatMap((row) => [
    { batch: row.batch, hidden: row.hidden.join(','), implementation: 'bnmlp', msPerStep: row.bnmlp.median },
    ...(row.best ? [{ batch: row.batch, hidden: row.hidden.join(','), implementation: PEER_LABEL, msPerStep: row.best.msPerStep.median }] : []),
  ]);
}

/** Writes sweep.json and the figure (sweep.svg, sweep.png, sweep.vl.json) into `dir`. */
export async function writeSweep(dir: string, r: SweepResult, onWarning?: (message: string) => void): Promise<{ json: string; figure: FigurePaths }> {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, 'sweep.json');
  writeFileSync(json, `${JSON.stringify(r, null, 2)}\n`);
  const o = r.options;
  const peak = isSkipped(r.peak) ? null : r.peak;
  const spec = sweepFigure(sweepFigurePoints(r), {
    title: 'Train step cost by batch and hidden widths',
    subtitle: `${o.inputDim}-hidden-${CLASSES} with BN; bnmlp on ${formatBackend(r.backend, r.wasmKernels, r.threads, null)}${isSkipped(r.peer) ? '' : `; PyTorch ${r.peer.version}`}`,
    notes: [
      `median${o.repeat === 1 ? ' of 1 run' : `s of ${o.repeat} repeats`} per point${peak ? `; machine peak ${peak.machineGflops.toFixed(0)} GFLOP/s (PyTorch sgemm ${peak.size}³, ${peak.machineThreads} thread${peak.machineThreads === 1 ? '' : 's'})` : ''}`,
    ],
    hiddenOrder: o.hiddens.map((h) => h.join(',')),
    implementations: ['bnmlp', PEER_LABEL].filter((name) => sweepFigurePoints(r).some((p) => p.implementation === name)),
  });
  const figure = await writeFigure(dir, 'sweep', spec, onWarning ? { onWarning } : {});
  return { json, figure };
}
