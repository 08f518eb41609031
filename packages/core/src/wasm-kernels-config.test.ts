import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';
import type * as WasmKernelsModule from './wasm-kernels.js';

// Fixed cases for mutants of the configuration part of wasm-kernels.ts (kernel names, loading a
// build, allowRelaxedSimd, configureWasmKernels, wasmKernelStatus, the threads' adaptive default)
// that survived, or that no test ran, in a StrykerJS run over its lines 1–185 (docs/mutation.md).
// Each test names the mutants it kills as wasm-kernels.ts:line:col of the measured version (the
// file has changed slightly since: its lines from ~84 on have moved down by about one).
//
// The module's state (the loaded builds, the choice, whether its kernels are registered) lives
// in the module instance: every test takes a fresh one (vi.resetModules), with the environment it
// reads stubbed first. tfjs-core stays shared (one kernel registry, one wasm backend). Builds come
// from temporary directories through BNMLP_WASM_KERNELS_DIR: missing, invalid, or copies of wasm/.
// V8 flags are process-wide: Node 20 validates relaxed SIMD only after allowRelaxedSimd() (or
// after any earlier test in this process set the flag), so no expectation here assumes either.
//
// Every test stands alone (under Stryker's per-test coverage only the tests covering a mutant run),
// except that the first must run before anything in this file starts a tfjs backend.

type WasmKernels = typeof WasmKernelsModule;

interface WasmApi {
  validate(bytes: Uint8Array): boolean;
}
const WebAssemblyApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const BUILDS = new URL('../wasm/', import.meta.url);
const buildFile = (name: string) => new URL(name, BUILDS);
const relaxedValidates = () => WebAssemblyApi.validate(readFileSync(buildFile('kernels-relaxed-simd.wasm')));
const RELAXED_FLAG = 'experimental-wasm-relaxed-simd';

/**
 * A valid wasm module that imports a function env.missing: it compiles, but instantiating it on
 * tfjs's memory ({ env: { memory } }) is a LinkError, as for a tfjs module the kernels cannot use.
 */
const UNLINKABLE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: one type, () -> ()
  0x02, 0x0f, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x07, 0x6d, 0x69, 0x73, 0x73, 0x69, 0x6e, 0x67, 0x00, 0x00, // import env.missing: func of type 0
]);

const root = mkdtempSync(join(tmpdir(), 'bnmlp-kernels-config-'));
let dirs = 0;
/** A new directory of builds: each named file is a copy of wasm/'s, or the given bytes. */
function buildDir(files: Record<string, 'copy' | Uint8Array> = {}): string {
  const dir = join(root, String(dirs++));
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files))
    if (content === 'copy') copyFileSync(buildFile(name), join(dir, name));
    else writeFileSync(join(dir, name), content);
  return dir;
}

/** A fresh instance of wasm-kernels.ts, which reads BNMLP_WASM_KERNELS_DIR and BNMLP_WASM_KERNELS as stubbed here (unset by default). */
async function freshKernels(env: { dir?: string; choice?: string } = {}): Promise<WasmKernels> {
  vi.stubEnv('BNMLP_WASM_KERNELS_DIR', env.dir);
  vi.stubEnv('BNMLP_WASM_KERNELS', env.choice);
  vi.resetModules();
  return import('./wasm-kernels.js');
}

// Each fresh instance registers its kernels again in tfjs's one registry, which warns each time:
// an artifact of these tests, kept out of their output.
const consoleWarn = console.warn;
beforeAll(() => {
  console.warn = (...args: unknown[]) => {
    if (!/^The kernel '\w+' for backend 'wasm' is already registered$/.test(String(args[0]))) consoleWarn(...args);
  };
});
afterEach(() => {
  vi.unstubAllEnvs();
});
afterAll(() => {
  console.warn = consoleWarn;
  rmSync(root, { recursive: true, force: true });
});

describe('the default choice', () => {
  // Must stay the first test of the file: no tfjs backend may have started before it.
  // Kills 174:19 ConditionalExpression → true (tf.backend() with no backend throws "No backend
  // found in registry"), 173:28 ConditionalExpression → true (chooseVariant(undefined): choice
  // undefined) and 173:89 StringLiteral "" (choice '').
  test("before any backend starts, wasmKernelStatus answers without starting one: 'auto', the fastest build that validates", async () => {
    // Arrange
    expect(tf.getBackend(), 'this test must run before any backend starts').toBeUndefined();
    const kernels = await freshKernels();

    // Act
    const status = kernels.wasmKernelStatus();

    // Assert
    expect(status).toMatchObject({ choice: 'auto', variant: relaxedValidates() ? 'relaxed-simd' : 'simd128', reason: null });
    expect(tf.getBackend()).toBeUndefined();
  });

  // Kills 173:28 ConditionalExpression → false (always 'auto').
  test('BNMLP_WASM_KERNELS names the default choice', async () => {
    // Arrange
    const kernels = await freshKernels({ choice: 'simd128' });

    // Act / Assert
    expect(kernels.wasmKernelStatus()).toMatchObject({ choice: 'simd128', variant: 'simd128', reason: null });
  });

  // Kills 173:28 LogicalOperator `||` (chooseVariant('avx')) and → true.
  test("an unknown BNMLP_WASM_KERNELS is ignored: the default stays 'auto'", async () => {
    // Arrange
    const kernels = await freshKernels({ choice: 'avx' });

    // Act / Assert
    expect(kernels.wasmKernelStatus()).toMatchObject({ choice: 'auto', reason: null });
  });
});

describe('builds that cannot load', () => {
  // Kills 102:43 StringLiteral `` (reads the directory itself: EISDIR), 114:21 BlockStatement {}
  // (no reason: the missing build counts as loaded), 115:46 StringLiteral "" (reason 'E'),
  // 157:30 ArrayDeclaration ["Stryker was here"], 160:9 ConditionalExpression → false, 160:27
  // StringLiteral "", 160:37 BlockStatement {} (each: the missing build runs), 161:21
  // StringLiteral `` (reason ''), 168:10 ObjectLiteral {} (no choice in the status).
  test('a missing build: no build runs, and the reason names the build and the file that could not be read', async () => {
    // Arrange
    const dir = buildDir();
    const kernels = await freshKernels({ dir });

    // Act
    const status = kernels.configureWasmKernels('simd128');

    // Assert
    expect(status).toEqual({
      choice: 'simd128', variant: null, reason: `simd128: ENOENT: no such file or directory, open '${join(dir, 'kernels-simd128.wasm')}'`,
      threads: 1, threadsReason: 'no kernel build runs',
    });
    expect(kernels.wasmKernelStatus()).toEqual(status);
  });

  // Kills 168:57 StringLiteral "" (the reasons run together).
  test("'auto' with neither build: both reasons, in order, joined by '; '", async () => {
    // Arrange
    const dir = buildDir();
    const kernels = await freshKernels({ dir });

    // Act
    const status = kernels.configureWasmKernels('auto');

    // Assert
    const missing = (variant: string) => `${variant}: ENOENT: no such file or directory, open '${join(dir, `kernels-${variant}.wasm`)}'`;
    expect(status).toMatchObject({ choice: 'auto', variant: null, reason: `${missing('relaxed-simd')}; ${missing('simd128')}` });
  });

  // Kills 113:83 StringLiteral "" (reason 'simd128: ').
  test("a file this runtime does not validate is 'not supported by this runtime'", async () => {
    // Arrange
    const kernels = await freshKernels({ dir: buildDir({ 'kernels-simd128.wasm': new TextEncoder().encode('not a wasm module') }) });

    // Act / Assert
    expect(kernels.configureWasmKernels('simd128')).toMatchObject({ choice: 'simd128', variant: null, reason: 'simd128: not supported by this runtime' });
  });

  // Kills 91:65 StringLiteral "" (VARIANTS = ['relaxed-simd', '']: 'auto' never tries simd128).
  test("'auto' falls back to simd128 when the relaxed build cannot load", async () => {
    // Arrange
    const kernels = await freshKernels({ dir: buildDir({ 'kernels-simd128.wasm': 'copy' }) });

    // Act / Assert
    expect(kernels.configureWasmKernels('auto')).toMatchObject({ choice: 'auto', variant: 'simd128', reason: null });
  });

  // Kills 174:19 ConditionalExpression → false and EqualityOperator `!==`, 174:39 StringLiteral ""
  // (each: the refusal never shows), 175:33 ConditionalExpression → false (same), 175:61
  // ObjectLiteral {} (a status without choice, variant and reason).
  test("a wasm backend the build cannot link to is refused: tfjs ops run there, and the status says why; on cpu it names the build again", async () => {
    // Arrange
    const kernels = await freshKernels({ dir: buildDir({ 'kernels-simd128.wasm': UNLINKABLE }) });
    await initBackend('wasm');
    expect(kernels.configureWasmKernels('simd128')).toMatchObject({ variant: 'simd128', reason: null });
    const w = tf.tensor1d([1, 2, 3]);

    // Act: the first kernel call instantiates the build on tfjs's memory, which fails.
    const sum = kernels.sumOfSquares(w);
    const onWasm = kernels.wasmKernelStatus();
    await initBackend('cpu');
    const onCpu = kernels.wasmKernelStatus();

    // Assert
    expect(sum.dataSync()[0]).toBe(14);
    expect(onWasm).toEqual({
      choice: 'simd128', variant: null, reason: expect.stringMatching(/^WebAssembly\.Instance\(\): Import #0\b.*"missing"/),
      threads: 1, threadsReason: 'no kernel build runs',
    });
    expect(onCpu).toMatchObject({ choice: 'simd128', variant: 'simd128', reason: null });
    [w, sum].forEach((t) => t.dispose());
  });
});

describe('allowRelaxedSimd', () => {
  // Kills 129:45 BlockStatement {} (returns undefined), 130:7 BlockStatement {} and 131:27
  // StringLiteral "" (the flag is never set: false). Needs a V8 that keeps relaxed SIMD behind the
  // flag (Node 20); where it cannot be turned off, there is nothing to observe and the test skips.
  test('turns relaxed SIMD on for the whole process, and says so', async ({ skip }) => {
    // Arrange: relaxed SIMD off, as in a fresh Node 20 process.
    const before = relaxedValidates();
    v8.setFlagsFromString(`--no-${RELAXED_FLAG}`);
    try {
      if (relaxedValidates()) skip('relaxed SIMD cannot be turned off in this runtime');
      const kernels = await freshKernels();

      // Act
      const allowed = kernels.allowRelaxedSimd();

      // Assert
      expect(allowed).toBe(true);
      expect(relaxedValidates()).toBe(true);
    } finally {
      v8.setFlagsFromString(before ? `--${RELAXED_FLAG}` : `--no-${RELAXED_FLAG}`);
    }
  });

  // Kills 135:19 ConditionalExpression → true and 135:51 StringLiteral "" (`typeof … !== ''`):
  // both true although the build is missing; 137:7 ConditionalExpression → true (status.choice of
  // null: a TypeError before any choice).
  test('answers whether the relaxed build loads, before any choice is made: false when it is missing, true when it is there', async () => {
    // Arrange (each instance reads the directory stubbed when it loads a build)
    const without = await freshKernels({ dir: buildDir({ 'kernels-simd128.wasm': 'copy' }) });

    // Act / Assert
    expect(without.allowRelaxedSimd()).toBe(false);
    const withIt = await freshKernels({ dir: buildDir({ 'kernels-relaxed-simd.wasm': 'copy' }) });
    expect(withIt.allowRelaxedSimd()).toBe(true);
  });

  // Kills 137:7 ConditionalExpression → false (the earlier 'auto' keeps simd128).
  test("re-evaluates an 'auto' made before the relaxed build loaded: it now runs relaxed-simd", async () => {
    // Arrange
    const dir = buildDir({ 'kernels-simd128.wasm': 'copy' });
    const kernels = await freshKernels({ dir });
    expect(kernels.configureWasmKernels('auto')).toMatchObject({ choice: 'auto', variant: 'simd128' });
    copyFileSync(buildFile('kernels-relaxed-simd.wasm'), join(dir, 'kernels-relaxed-simd.wasm'));

    // Act
    const allowed = kernels.allowRelaxedSimd();

    // Assert
    expect(allowed).toBe(true);
    expect(kernels.wasmKernelStatus()).toMatchObject({ choice: 'auto', variant: 'relaxed-simd', reason: null });
  });

  // Pins the order of VARIANTS, 'relaxed-simd' first (91:49 StringLiteral "", not among the survivors).
  test("after it, 'auto' picks relaxed-simd", async () => {
    // Arrange
    const kernels = await freshKernels();
    expect(kernels.allowRelaxedSimd()).toBe(true);

    // Act / Assert
    expect(kernels.configureWasmKernels('auto')).toMatchObject({ choice: 'auto', variant: 'relaxed-simd', reason: null });
  });
});

describe('the kernels in tfjs', () => {
  // Kills 86:23, 87:15, 88:21 StringLiteral "" (the momentum, blend and sum-of-squares kernels
  // named ''), and the same for the other six names.
  test('each kernel runs under its own name (what tf.profile shows)', async () => {
    // Arrange
    const kernels = await freshKernels();
    await initBackend('wasm');
    kernels.configureWasmKernels('simd128');
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [4, 3]);
    const w = tf.ones([3, 8]) as tf.Tensor2D;
    const b = tf.zeros([8]) as tf.Tensor1D;
    const g = tf.ones([4, 8]) as tf.Tensor2D;
    const gamma = tf.ones([8]) as tf.Tensor1D;
    const beta = tf.zeros([8]) as tf.Tensor1D;
    const logits = tf.zeros([4, 3]) as tf.Tensor2D;
    const oneHot = tf.tensor2d([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0], [4, 3]);
    const s = tf.tensor2d(Array.from({ length: 32 }, (_, i) => i % 5), [4, 8]);
    const bn = kernels.batchNormReluForward(s, gamma, beta, 1e-5)!;
    const calls: Record<string, () => unknown> = {
      denseScores: () => kernels.denseScores(x, w, b),
      denseWeightGradient: () => kernels.denseWeightGradient(x, g, w, 0.1),
      denseInputGradient: () => kernels.denseInputGradient(g, w),
      batchNormReluForward: () => kernels.batchNormReluForward(g, gamma, beta, 1e-5),
      batchNormReluBackward: () => kernels.batchNormReluBackward(g, bn.pre, bn.normalized, bn.invStd, gamma),
      softmaxCrossEntropy: () => kernels.softmaxCrossEntropy(logits, oneHot),
      momentumSteps: () => kernels.momentumSteps([{ theta: b, v: b, g: b }], 0.1, 0.9),
      blends: () => kernels.blends([[b, b]], 0.9),
      sumOfSquares: () => kernels.sumOfSquares(w),
    };

    // Act
    const names: Record<string, string[]> = {};
    for (const [call, run] of Object.entries(calls)) {
      const profile = await tf.profile(() => tf.tidy(() => { run(); }));
      names[call] = profile.kernels.map((kernel) => kernel.name);
    }

    // Assert
    expect(names).toEqual({
      denseScores: ['BnmlpDenseForward'],
      denseWeightGradient: ['BnmlpDenseWeightStep'],
      denseInputGradient: ['BnmlpDenseInputGradient'],
      batchNormReluForward: ['BnmlpBatchNormReluForward'],
      batchNormReluBackward: ['BnmlpBatchNormReluBackward'],
      softmaxCrossEntropy: ['BnmlpSoftmaxCrossEntropy'],
      momentumSteps: ['BnmlpMomentumSteps'],
      blends: ['BnmlpBlends'],
      sumOfSquares: ['BnmlpSumSquares'],
    });
    tf.dispose([x, w, b, g, gamma, beta, logits, oneHot, s, ...Object.values(bn)]);
  });

  // tfjs's registerKernel warns "The kernel '…' for backend 'wasm' is already registered" and
  // replaces the kernel. Kills 164:9 ConditionalExpression → true and 165:18 BooleanLiteral → false
  // (both: the kernels are registered again on every choice, with nine warnings each time).
  test('a module instance registers its kernels once, however often a build is chosen', async () => {
    // Arrange: an earlier instance has registered the kernels, so registering again warns.
    (await freshKernels()).configureWasmKernels('simd128');
    const kernels = await freshKernels();
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      kernels.configureWasmKernels('simd128');
      const warned = warn.mock.calls.length;
      expect(warn.mock.calls.flat().join('\n'), 'a second registration warns').toMatch(/already registered/);

      // Act
      kernels.configureWasmKernels('simd128');
      kernels.configureWasmKernels('auto');
      kernels.configureWasmKernels('off');
      kernels.configureWasmKernels('simd128');

      // Assert
      expect(warn.mock.calls.slice(warned)).toEqual([]);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('kernel threads', () => {
  // Kills 184:23 BooleanLiteral false (`let adaptiveThreads = false`: the threads never back off).
  // The pool's judge of each product (DenseThreads.adaptive) is given the times of a lost one (a
  // wait of 1 ms after an own part of 0 ms, as on a machine busier than its cores), so the rule
  // applies deterministically: after four lost products in a row the next ones run unthreaded.
  // (x has 8 rows: 4 for each thread, so the other thread takes part and each product is judged.)
  test('the threads are adaptive by default: after products they lose, the next ones run unthreaded; adaptive: false keeps them on', async () => {
    // Arrange
    const kernels = await freshKernels();
    // The instance of dense-threads.ts that this instance of wasm-kernels.ts imported.
    const { DenseThreads } = await import('./dense-threads.js');
    const prototype = DenseThreads.prototype as unknown as { judge(ownMs: number, waitMs: number): void };
    const judge = prototype.judge;
    prototype.judge = function (this: unknown) {
      judge.call(this, 0, 1);
    };
    await initBackend('wasm');
    kernels.configureWasmKernels('simd128');
    const x = tf.ones([8, 64]) as tf.Tensor2D;
    const w = tf.ones([64, 64]) as tf.Tensor2D;
    const b = tf.zeros([64]) as tf.Tensor1D;
    const products = 12;
    const run = () => {
      for (let i = 0; i < products; i++) tf.dispose(kernels.denseScores(x, w, b));
      return kernels.threadedProductCount();
    };
    try {
      expect(kernels.configureKernelThreads(2, { minWork: 0 })).toMatchObject({ variant: 'simd128', threads: 2, threadsReason: null });

      // Act
      const byDefault = run();
      kernels.shutdownKernelThreads();
      kernels.configureKernelThreads(2, { adaptive: false });
      const alwaysOn = run();

      // Assert
      expect(byDefault).toBe(4);
      expect(alwaysOn).toBe(products);
    } finally {
      prototype.judge = judge;
      kernels.shutdownKernelThreads();
      tf.dispose([x, w, b]);
    }
  });
});

describe('the builds are read once per variant', () => {
  // Kills 111:7 ConditionalExpression `found === undefined` → true and 119:9 `typeof found !==
  // 'string'` → false (static: a loaded module is never cached, so every configure reads the file again).
  test('a build loaded once keeps working after its file is gone', async () => {
    // Arrange
    const dir = buildDir({ 'kernels-simd128.wasm': 'copy' });
    const kernels = await freshKernels({ dir });
    expect(kernels.configureWasmKernels('simd128')).toMatchObject({ variant: 'simd128', reason: null });
    rmSync(join(dir, 'kernels-simd128.wasm'));

    // Act
    const again = kernels.configureWasmKernels('simd128');

    // Assert
    expect(again).toMatchObject({ choice: 'simd128', variant: 'simd128', reason: null });
  });
});
