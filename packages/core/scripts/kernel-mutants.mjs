#!/usr/bin/env node
// Planted bugs in the AssemblyScript kernels (assembly/), which StrykerJS cannot mutate: each
// mutant is a textual patch applied to a copy of assembly/ in a temporary directory, built there by
// this package's own scripts/build-wasm.mjs (copied beside it, so the very same asc flags and
// memory-contract checks), and the kernel suites are run against that build through
// BNMLP_WASM_KERNELS_DIR (read by src/wasm-kernels.ts). packages/core/wasm/ is never touched.
// Every mutant must make the suites fail; a survivor, a patch that no longer applies, a mutant that
// does not build, or a baseline (unpatched copy) that fails makes the script exit 1.
//
//   node scripts/kernel-mutants.mjs [--only name,name] [--keep]    (pnpm mutation:kernels at the root)
//
// Suites run in order, cheapest first, stopping at the first that fails (vitest --bail 1): the
// kernel unit suite (every shape path against float64 sums) and the fixed certain-kill cases, then the whole-network suites on the
// wasm setups (equivalence with the reference, train steps, gradients, inference).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// vitest is a devDependency of the workspace root (hoisted there by pnpm).
const VITEST = fileURLToPath(import.meta.resolve('vitest/package.json')).replace(/package\.json$/, 'vitest.mjs');
const SUITES = [
  ['src/wasm-kernels.test.ts', 'src/dense-threads.test.ts', 'src/certain-kills.test.ts'],
  ['src/equivalence.test.ts', 'src/train-step.test.ts', 'src/gradient-check.test.ts', 'src/inference.test.ts'],
];

/**
 * name, file in assembly/, the bug class, and [search, replace, count] patches (count: how many
 * occurrences the search must have; all are replaced unless `first` is set).
 */
const MUTANTS = [
  { name: 'eps-outside-sqrt', file: 'batch-norm.ts', what: 'BN forward: 1/(sqrt(var) + eps) instead of 1/sqrt(var + eps)',
    patches: [['<f32>1 / Mathf.sqrt(v + eps)', '<f32>1 / (Mathf.sqrt(v) + eps)', 1],
      ['f32x4.sqrt(f32x4.add(v, f32x4.splat(eps)))', 'f32x4.add(f32x4.sqrt(v), f32x4.splat(eps))', 1]] },
  { name: 'unbiased-variance', file: 'batch-norm.ts', what: 'BN forward: variance divided by n − 1',
    patches: [['const v = <f32>(load<f64>(scratch + (<usize>j << 3)) / <f64>n);', 'const v = <f32>(load<f64>(scratch + (<usize>j << 3)) / <f64>(n - 1));', 1],
      ['const v = demote(f64x2.div(a0, count), f64x2.div(a1, count));', 'const v = demote(f64x2.div(a0, f64x2.splat(<f64>(n - 1))), f64x2.div(a1, f64x2.splat(<f64>(n - 1))));', 1]] },
  { name: 'one-pass-mean-stale', file: 'batch-norm.ts', what: 'BN forward: variance about 0 instead of the mean',
    patches: [['const c = <f64>load<f32>(si + (<usize>j << 2)) - <f64>load<f32>(mean + (<usize>j << 2));', 'const c = <f64>load<f32>(si + (<usize>j << 2));', 1],
      ['const c0 = f64x2.sub(lo(x), m0);\n      const c1 = f64x2.sub(hi(x), m1);', 'const c0 = lo(x);\n      const c1 = hi(x);', 1]] },
  { name: 'beta-dropped', file: 'batch-norm.ts', what: 'BN forward: β not added',
    patches: [['if (beta != 0) p += load<f32>(beta + jj);', '', 1], ['if (beta != 0) p = f32x4.add(p, v128.load(beta + jj));', '', 1]] },
  { name: 'relu-before-affine', file: 'batch-norm.ts', what: 'BN forward: ReLU of ŝ instead of γŝ + β',
    patches: [['store<f32>(pre + e, p);\n      store<f32>(relu + e, relu1(p));', 'store<f32>(pre + e, p);\n      store<f32>(relu + e, relu1(x));', 1],
      ['v128.store(pre + e, p);\n      v128.store(relu + e, relu4(p));', 'v128.store(pre + e, p);\n      v128.store(relu + e, relu4(x));', 1]] },
  { name: 'bn-inference-no-invstd', file: 'batch-norm.ts', what: 'BN inference (predict): ŝ = s − mean, not scaled by 1/sqrt(var + eps)',
    patches: [['scaleShift4(normalize4(s + e, mean, invStd, jj), gamma, beta, jj)', 'scaleShift4(f32x4.sub(v128.load(s + e), v128.load(mean + jj)), gamma, beta, jj)', 1],
      ['scaleShift1(normalize1(s + e, mean, invStd, jj), gamma, beta, jj)', 'scaleShift1(load<f32>(s + e) - load<f32>(mean + jj), gamma, beta, jj)', 1]] },
  { name: 'bwd-no-mean-g', file: 'batch-norm.ts', what: 'BN backward: − mean(ĝ) term dropped',
    patches: [['store<f64>(meanGHatOf + a, scale * load<f64>(sumG + a) / <f64>n);', 'store<f64>(meanGHatOf + a, 0);', 1]] },
  { name: 'bwd-no-mean-gx', file: 'batch-norm.ts', what: 'BN backward: − ŝ·mean(ĝŝ) term dropped (statistics treated as constants)',
    patches: [['store<f64>(meanGHatXOf + a, scale * load<f64>(sumGX + a) / <f64>n);', 'store<f64>(meanGHatXOf + a, 0);', 1]] },
  { name: 'bwd-gamma-ignored', file: 'batch-norm.ts', what: 'BN backward: ĝ = gm instead of γ·gm',
    patches: [['const scale: f64 = gamma != 0 ? <f64>load<f32>(gamma + jj) : 1;', 'const scale: f64 = 1;', 1],
      ['const scale: f64 = gamma != 0 ? <f64>load<f32>(gamma + (<usize>j << 2)) : 1;', 'const scale: f64 = 1;', 1],
      ['const scale = gamma != 0 ? v128.load(gamma + jj) : f32x4.splat(1);', 'const scale = f32x4.splat(1);', 1]] },
  { name: 'bwd-relu-mask-in-sums', file: 'batch-norm.ts', what: 'BN backward: ReLU mask ignored in the batch sums',
    first: true, patches: [['const g = load<f32>(pre + e) > 0 ? <f64>load<f32>(gOut + e) : 0;', 'const g = <f64>load<f32>(gOut + e);', 2],
      ['const g = v128.and(v128.load(gOut + off), f32x4.gt(v128.load(pre + off), zero));', 'const g = v128.load(gOut + off);', 1]] },
  { name: 'dgamma-dbeta-swapped', file: 'batch-norm.ts', what: 'BN backward: dγ and dβ swapped',
    patches: [['store<f32>(dBeta + (<usize>j << 2), <f32>load<f64>(sumG + a))', 'store<f32>(dBeta + (<usize>j << 2), <f32>load<f64>(sumGX + a))', 1],
      ['store<f32>(dGamma + (<usize>j << 2), <f32>load<f64>(sumGX + a))', 'store<f32>(dGamma + (<usize>j << 2), <f32>load<f64>(sumG + a))', 1]] },
  { name: 'momentum-convention', file: 'batch-norm.ts', what: 'b/γ/β step: v = ρv + g, θ −= ηv (the other convention)',
    patches: [['if (g != 0) nv += learningRate * load<f32>(g + e);', 'if (g != 0) nv += load<f32>(g + e);', 1],
      ['store<f32>(outTheta + e, load<f32>(theta + e) - nv);', 'store<f32>(outTheta + e, load<f32>(theta + e) - learningRate * nv);', 1]] },
  { name: 'running-average-alpha-swapped', file: 'batch-norm.ts', what: 'running averages: (1 − α)·avg + α·batch',
    patches: [['store<f32>(out + e, alpha * load<f32>(a + e) + beta * load<f32>(b + e));', 'store<f32>(out + e, beta * load<f32>(a + e) + alpha * load<f32>(b + e));', 1]] },
  { name: 'ce-grad-not-mean', file: 'batch-norm.ts', what: 'loss layer: ∂CE/∂z not divided by the batch size',
    patches: [['store<f32>(grad + e, <f32>((expNonPositive(logP) - target) * invN));', 'store<f32>(grad + e, <f32>(expNonPositive(logP) - target));', 1]] },
  { name: 'ce-no-max-shift', file: 'batch-norm.ts', what: 'loss layer: log-sum-exp without subtracting the row maximum (overflows for large logits)',
    patches: [['for (let j = 1; j < c; j++) max = Math.max(max, <f64>load<f32>(z + row + (<usize>j << 2)));', 'max = 0;', 1]] },
  { name: 'dense-bias-row0', file: 'dense.ts', what: 'x·W + b (SIMD): the bias is added to no row',
    patches: [['if (bias != 0) s = f32x4.add(s, v128.load(bs + off));', '', 1]] },
  { name: 'dense-partial-group-row', file: 'dense.ts', what: 'x·W + b (packing x): in a last group of 2 or 3 rows, a real row packed as zeros',
    patches: [['const r1 = last > 1 ?', 'const r1 = last > 2 ?', 1], ['i < last ? load<f32>', 'i < last - 1 ? load<f32>', 1]] },
  { name: 'dense-pack-transpose', file: 'dense.ts', what: 'x·W + b (packing x): terms p + 1 and p + 2 of each 4 swapped in the 4 × 4 transpose',
    patches: [['v128.store(dst, v128.shuffle<i64>(t0, t1, 1, 3), 16);', 'v128.store(dst, v128.shuffle<i64>(t0, t1, 1, 3), 32);', 1],
      ['v128.store(dst, v128.shuffle<i64>(t2, t3, 0, 2), 32);', 'v128.store(dst, v128.shuffle<i64>(t2, t3, 0, 2), 16);', 1]] },
  { name: 'dense-scalar-bias', file: 'dense.ts', what: 'x·W + b (scalar path, n < 8): b not added',
    patches: [['if (bias != 0) s += load<f32>(bias + (<usize>j << 2));', '', 1]] },
  { name: 'dense-k-short', file: 'dense.ts', what: 'x·W + b (SIMD 4-row block): last term of each pass over k dropped',
    patches: [['for (let pa = pa0; pa < paEnd; pa += 16) {\n              const b0', 'for (let pa = pa0; pa < paEnd - 16; pa += 16) {\n              const b0', 1]] },
  { name: 'dense-pass-restart', file: 'dense.ts', what: 'x·W + b (SIMD 4-row block): each pass over k starts from 0, dropping the earlier passes',
    patches: [['            if (!first) {\n              c00 = v128.load(t); c01 = v128.load(t, 16); t += tileRow;', '            if (false) {\n              c00 = v128.load(t); c01 = v128.load(t, 16); t += tileRow;', 1]] },
  { name: 'dense-part-panel-cols', file: 'dense.ts', what: 'x·W + b: the last columns of a part panel (n mod 8) never written',
    patches: [['        for (; j < cols; j++) {\n          const off = <usize>j << 2;\n          let s = load<f32>(t + off);', '        for (; j < cols - 1; j++) {\n          const off = <usize>j << 2;\n          let s = load<f32>(t + off);', 1]] },
  { name: 'dense-second-group', file: 'dense.ts', what: 'x·W + b: columns past the first group of 8 panels (n > 64) never computed',
    patches: [['for (let q0 = 0; q0 < panels; q0 += PANEL_GROUP) {', 'for (let q0 = 0; q0 < min(panels, PANEL_GROUP); q0 += PANEL_GROUP) {', 1]] },
  { name: 'dense-group-bias', file: 'dense.ts', what: 'x·W + b: columns past the first group of 8 panels (n > 64) get the bias of the first group',
    patches: [['const bs = bias + (<usize>col0 << 2);', 'const bs = bias;', 1]] },
  { name: 'pack-range-start', file: 'dense.ts', what: 'W packing (packPanels): rows packed from row 0, not from the first row of the range',
    patches: [['    let src = w + <usize>rowBegin * rowW + (<usize>q << 5);\n    let dst = packed + ((<usize>q * k + rowBegin) << 5);', '    let src = w + (<usize>q << 5);\n    let dst = packed + ((<usize>q * k) << 5);', 1]] },
  { name: 'weight-step-no-l2', file: 'dense.ts', what: 'weight step (SIMD): 2λW not added to the gradient',
    patches: [['const d0 = madd(decay, w0, c0);\n  const d1 = madd(decay, w1, c1);', 'const d0 = c0;\n  const d1 = c1;', 1]] },
  { name: 'weight-step-rho-ignored', file: 'dense.ts', what: 'weight step (SIMD): ρ·v read as v',
    patches: [['madd(lr, d0, f32x4.mul(rho, v128.load(v + off)))', 'madd(lr, d0, v128.load(v + off))', 1]] },
  { name: 'weight-step-scalar-no-l2', file: 'dense.ts', what: 'weight step (scalar path): 2λW not added',
    patches: [['const d = s + decay * load<f32>(w + off);', 'const d = s;', 1]] },
  { name: 'weight-step-convention', file: 'dense.ts', what: 'weight step (SIMD): v = ρv + ∇, W −= ηv (the other convention)',
    patches: [['const v0 = madd(lr, d0, f32x4.mul(rho, v128.load(v + off)));\n    const v1 = madd(lr, d1, f32x4.mul(rho, v128.load(v + off, 16)));\n    const nw0 = f32x4.sub(w0, v0);\n    const nw1 = f32x4.sub(w1, v1);',
      'const v0 = f32x4.add(d0, f32x4.mul(rho, v128.load(v + off)));\n    const v1 = f32x4.add(d1, f32x4.mul(rho, v128.load(v + off, 16)));\n    const nw0 = f32x4.sub(w0, f32x4.mul(lr, v0));\n    const nw1 = f32x4.sub(w1, f32x4.mul(lr, v1));', 1]] },
  { name: 'step-pack-row', file: 'dense.ts', what: "weight step's packed W (4-row blocks): every block's rows go to the top of the panel",
    patches: [['const panel = packed != 0 && j + 8 <= n ? packed + ((<usize>(j >> 3) * k + p) << 5) : 0;\n    finishWeightPair(c00', 'const panel = packed != 0 && j + 8 <= n ? packed + ((<usize>(j >> 3) * k) << 5) : 0;\n    finishWeightPair(c00', 1]] },
  { name: 'step-pack-last-panel', file: 'dense.ts', what: "weight step's packed W (4-row blocks): the last, partial panel (n mod 8 columns) left as it was",
    patches: [['    for (let r = 0; r < 4; r++) packLastPanel(outW, packed, p + r, k, n);', '', 1]] },
  { name: 'step-pack-second-vector', file: 'dense.ts', what: "weight step's packed W: columns 4–7 of each panel row not written",
    patches: [['      v128.store(panel, nw1, 16);', '', 1]] },
  { name: 'weight-step-range-overrun', file: 'dense.ts', what: "weight step (SIMD, threaded): a thread's 16-row blocks run past its range into the next thread's rows",
    patches: [['for (; p + 16 <= rowEnd; p += 16) {', 'for (; p + 16 <= k; p += 16) {', 1]] },
  { name: 'weight-step-range-start', file: 'dense.ts', what: "weight step (scalar path, threaded): rows start at 0, not at the thread's first row",
    patches: [['for (let p = rowBegin; p < rowEnd; p++) {', 'for (let p = 0; p < rowEnd; p++) {', 1]] },
];

const args = process.argv.slice(2);
const onlyIndex = args.indexOf('--only');
const only = onlyIndex >= 0 ? new Set(args[onlyIndex + 1].split(',')) : null;
const keep = args.includes('--keep');
const unknown = only ? [...only].filter((n) => n !== 'baseline' && !MUTANTS.some((m) => m.name === n)) : [];
if (unknown.length) {
  console.error(`kernel-mutants: unknown mutant(s) ${unknown.join(', ')}; known: ${MUTANTS.map((m) => m.name).join(', ')}`);
  process.exit(2);
}

function occurrences(text, search) {
  let count = 0;
  for (let at = text.indexOf(search); at >= 0; at = text.indexOf(search, at + search.length)) count++;
  return count;
}

/** A fresh copy of assembly/ + scripts/build-wasm.mjs with `mutant`'s patches; returns its wasm dir or throws. */
function build(dir, mutant) {
  cpSync(join(root, 'assembly'), join(dir, 'assembly'), { recursive: true });
  cpSync(join(root, 'scripts', 'build-wasm.mjs'), join(dir, 'scripts', 'build-wasm.mjs'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  if (mutant) {
    const file = join(dir, 'assembly', mutant.file);
    let text = readFileSync(file, 'utf8');
    for (const [search, replace, count] of mutant.patches) {
      const found = occurrences(text, search);
      if (found !== count) throw new Error(`patch no longer applies: expected ${count} occurrence(s) of ${JSON.stringify(search.slice(0, 60))}, found ${found}`);
      text = mutant.first ? text.replace(search, replace) : text.split(search).join(replace);
    }
    writeFileSync(file, text);
  }
  const result = spawnSync(process.execPath, [join(dir, 'scripts', 'build-wasm.mjs')], { cwd: dir, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`build failed: ${(result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  return join(dir, 'wasm');
}

/** Runs the suites against `wasmDir`; returns the first failing suite's description, or null when all pass. */
function runSuites(wasmDir) {
  for (const files of SUITES) {
    const result = spawnSync(process.execPath, [VITEST, 'run', ...files, '--bail', '1', '--reporter', 'dot'], {
      cwd: root, encoding: 'utf8', env: { ...process.env, BNMLP_WASM_KERNELS_DIR: wasmDir },
    });
    if (result.status !== 0) {
      const failed = /FAIL\s+(\S+)\s+>\s+([^\n]*)/.exec(result.stdout + result.stderr);
      return failed ? `${failed[1]} > ${failed[2].slice(0, 70)}` : `${files.join(' ')} (exit ${result.status})`;
    }
  }
  return null;
}

const rows = [];
let ok = true;
for (const mutant of [null, ...MUTANTS]) {
  const name = mutant ? mutant.name : 'baseline';
  if (only && !only.has(name) && name !== 'baseline') continue;
  const dir = mkdtempSync(join(tmpdir(), `bnmlp-kernel-${name}-`));
  const started = Date.now();
  let outcome;
  let detail;
  try {
    const failing = runSuites(build(dir, mutant));
    if (mutant) {
      outcome = failing ? 'killed' : 'SURVIVED';
      detail = failing ?? 'every suite passed';
    } else {
      outcome = failing ? 'BASELINE FAILS' : 'passes';
      detail = failing ?? 'unpatched copy: all suites pass';
    }
  } catch (error) {
    outcome = 'ERROR';
    detail = error.message;
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
  if (outcome !== 'killed' && outcome !== 'passes') ok = false;
  const row = { name, file: mutant ? mutant.file : '-', what: mutant ? mutant.what : 'no patch', outcome, detail, seconds: ((Date.now() - started) / 1000).toFixed(0) };
  rows.push(row);
  console.error(`kernel-mutants: ${name}: ${outcome} (${row.seconds} s) ${detail}`);
  if (!mutant && outcome !== 'passes') break; // nothing below means anything without a passing baseline
}

const headers = ['mutant', 'file', 'bug', 'result', 'first failing test', 's'];
const table = rows.map((r) => [r.name, r.file, r.what, r.outcome, r.detail, r.seconds]);
const widths = headers.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log([line(headers), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...table.map(line)].join('\n'));
const mutants = rows.filter((r) => r.name !== 'baseline');
console.log(`\nkernel mutants: ${mutants.filter((r) => r.outcome === 'killed').length} of ${mutants.length} killed${ok ? '' : ' — NOT all: see above'}`);
process.exit(ok ? 0 : 1);
