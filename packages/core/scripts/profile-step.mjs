// Where a train step's time goes, per TensorFlow.js kernel: 3072-50-30-10 with BN, batch 100, on
// wasm (one fixed batch, so no gathering). Run after a build:
//   node packages/core/scripts/profile-step.mjs [auto|relaxed-simd|simd128|off] [threads, default 1]
// (tf.profile's per-kernel times are unreliable with 2 threads: it synchronises after every kernel.)
// Prints kernels per step, each kernel's ms per step (tf.profile, 50 steps) and the step's median
// wall time without profiling. Figures only: compare within one run.
import { allowRelaxedSimd, initBackend, createModel, createMomentumState, trainStep, tf, configureWasmKernels, configureKernelThreads } from '../dist/index.js';
allowRelaxedSimd();
await initBackend('wasm');
configureWasmKernels(process.argv[2] ?? 'auto');
console.log(configureKernelThreads(process.argv[3] === undefined ? 1 : Number(process.argv[3])));
const model = createModel({ inputDim: 3072, hiddenDims: [50, 30], classes: 10, batchNorm: true }, { seed: 1 });
const state = createMomentumState(model);
const data = new Float32Array(100 * 3072).map(() => Math.random() - 0.5);
const x = { rows: 100, cols: 3072, data };
const labels = Array.from({ length: 100 }, (_, i) => i % 10);
const s = { lambda: 1e-4, learningRate: 0.01, momentum: 0.9 };
for (let i = 0; i < 100; i++) trainStep(model, state, x, labels, s);
const agg = new Map(); let total = 0; const R = 50;
for (let r = 0; r < R; r++) {
  const p = await tf.profile(() => { trainStep(model, state, x, labels, s); });
  for (const k of p.kernels) { const t = await k.kernelTimeMs; agg.set(k.name, (agg.get(k.name) ?? [0, 0]).map((v, i) => v + (i ? 1 : t))); total += t; }
}
const rows = [...agg].sort((a, b) => b[1][0] - a[1][0]);
let n = 0; for (const [, [, c]] of rows) n += c;
console.log('kernels per step', n / R, 'kernel ms per step', (total / R).toFixed(3));
for (const [name, [t, c]] of rows.slice(0, 30)) console.log(name.padEnd(28), (t / R).toFixed(3), 'ms', c / R);
const med = (f) => { const ts = []; for (let i = 0; i < 400; i++) { const t0 = performance.now(); f(); ts.push(performance.now() - t0); } ts.sort((a, b) => a - b); return ts[200].toFixed(3); };
console.log('step median ms', med(() => trainStep(model, state, x, labels, s)));
console.log('upload only (tensor2d + dispose) ms', med(() => tf.tensor2d(data, [100, 3072]).dispose()));
