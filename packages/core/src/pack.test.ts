import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

// @bnmlp/core consumed as a versioned package, outside the workspace: build, `pnpm pack`, `npm
// install <tarball>` into a throwaway project, then run an ESM script and type-check a TypeScript
// consumer there. Slow (npm downloads the tfjs packages): BNMLP_SKIP_PACK_TEST=1 skips it.
const skip = process.env.BNMLP_SKIP_PACK_TEST === '1';
if (skip) console.info('pack test skipped (BNMLP_SKIP_PACK_TEST=1)');

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const workspaceRoot = resolve(packageDir, '../..');
const tsc = join(workspaceRoot, 'node_modules/typescript/bin/tsc');
const TIMEOUT = 240_000;

/**
 * Runs a command to the end. Asynchronous on purpose: a spawnSync of npm install or tsc blocks the
 * test worker's RPC with vitest, and on a loaded machine outlasted its 60 s timeout.
 */
function run(command: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    execFile(command, args, { cwd, encoding: 'utf8', timeout: TIMEOUT, env: process.env, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')} (in ${cwd}) failed: ${error.message.split('\n')[0]}\n${stdout}\n${stderr}`));
      else resolveRun({ stdout, stderr });
    });
  });
}

function hasCommand(command: string): boolean {
  return spawnSync(command, ['--version'], { encoding: 'utf8' }).status === 0;
}

/**
 * Puts every file under `from` into `to` where it is missing or differs, each by a rename of a
 * complete copy (atomic): whoever imports `to` meanwhile reads an old file or a new one, never half
 * of one. Returns how many files it replaced.
 */
function syncFiles(from: string, to: string): number {
  mkdirSync(to, { recursive: true });
  let replaced = 0;
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const [source, target] = [join(from, entry.name), join(to, entry.name)];
    if (entry.isDirectory()) {
      replaced += syncFiles(source, target);
    } else if (!existsSync(target) || !readFileSync(source).equals(readFileSync(target))) {
      const staged = `${target}.${process.pid}.tmp`;
      copyFileSync(source, staged);
      renameSync(staged, target);
      replaced++;
    }
  }
  return replaced;
}

const timings: Record<string, number> = {};
async function timed<T>(phase: string, f: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await f();
  } finally {
    timings[phase] = Math.round(performance.now() - start);
  }
}

describe.skipIf(skip)('@bnmlp/core as a packed, installed package', { timeout: TIMEOUT }, () => {
  let work = '';
  let consumer = '';
  let installNote = '';

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bnmlp-pack-'));
    consumer = join(work, 'consumer');
    // turbo's `test` depends on ^build (the dependencies' builds), not on this package's own: build it
    // here, into a folder of its own, and move into dist/ only what differs, file by file. cli's
    // tests run beside this one and start processes that import dist/; a rebuild in place (tsc
    // truncates, then writes) once left one of them an index.js whose inference.js was half written.
    const built = join(work, 'dist');
    await timed('build', () => run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', built], packageDir));
    timings.distFilesReplaced = syncFiles(built, join(packageDir, 'dist'));
    const pnpm = hasCommand('pnpm') ? ['pnpm'] : ['npx', '--yes', 'pnpm@10.34.9'];
    await timed('pack', () => run(pnpm[0], [...pnpm.slice(1), 'pack', '--pack-destination', work], packageDir));
    const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);
    await run('mkdir', ['-p', consumer], work);
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'bnmlp-consumer', private: true, type: 'module' }));
    await timed('npm install', async () => {
      try {
        await run('npm', ['install', tarball, '--no-audit', '--no-fund'], consumer);
      } catch (error) {
        // The optional @tensorflow/tfjs-node downloads libtensorflow in its install script; npm
        // should drop it when that fails offline. If npm fails hard instead, say so and retry without it.
        installNote = `npm install failed (${(error as Error).message.split('\n')[0]}); retried with --omit=optional`;
        console.warn(installNote);
        await run('npm', ['install', tarball, '--no-audit', '--no-fund', '--omit=optional'], consumer);
      }
    });
  }, TIMEOUT);

  afterAll(() => {
    console.info(`pack test timings (ms): ${JSON.stringify(timings)}${installNote ? `; ${installNote}` : ''}`);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the tarball holds dist, the four wasm kernel builds, the kernel thread script and package.json only, with the exports map targets present', async () => {
    const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);
    const files = (await run('tar', ['tzf', tarball], work)).stdout.trim().split('\n');

    expect(files).toContain('package/package.json');
    expect(files).toContain('package/dist/index.js');
    expect(files).toContain('package/dist/index.d.ts');
    expect(files.filter((f) => !f.startsWith('package/dist/') && f !== 'package/package.json').sort()).toEqual([
      'package/wasm/kernels-relaxed-simd-shared.wasm', 'package/wasm/kernels-relaxed-simd.wasm',
      'package/wasm/kernels-simd128-shared.wasm', 'package/wasm/kernels-simd128.wasm', 'package/worker/dense-worker.mjs',
    ]);
    expect(files.some((f) => f.includes('.test.') || f.includes('test-support'))).toBe(false);
  });

  test('an ESM script imports @bnmlp/core and runs initBackend, createModel, forward, trainStep and predict', async () => {
    // Arrange
    writeFileSync(
      join(consumer, 'smoke.mjs'),
      `import { initBackend, createModel, createMomentumState, forward, trainStep, predict, disposeModel, wasmKernelStatus, configureKernelThreads, tf } from '@bnmlp/core';
const info = await initBackend();
// Every product on two threads, however small: the kernel thread script must start from the installed package.
configureKernelThreads(2, { minWork: 0 });
const model = createModel({ inputDim: 3, hiddenDims: [4], classes: 2 }, { seed: 1 });
const x = { rows: 4, cols: 3, data: Float32Array.from([0.1, 0.2, 0.3, -1, 0.5, 2, 0.3, 0.3, -0.7, 1, 1, 1]) };
const labels = [0, 1, 1, 0];
const probs = forward(model, x, 'train');
const state = createMomentumState(model);
const losses = [];
for (let i = 0; i < 20; i++) losses.push(trainStep(model, state, x, labels, { lambda: 0, learningRate: 0.2, momentum: 0.9 }, { returnLoss: true }).loss);
const predicted = predict(model, x, { labels, chunkSize: 3 });
console.log(JSON.stringify({ backend: info.name, kernels: wasmKernelStatus(), probabilities: Array.from(probs.dataSync()), losses, predictions: Array.from(predicted.predictions), loss: predicted.loss, accuracy: predicted.accuracy }));
`,
    );

    // Act
    const output = (await timed('run script', () => run(process.execPath, ['smoke.mjs'], consumer))).stdout;

    // Assert
    const result = JSON.parse(output.trim().split('\n').pop()!);
    expect(['tensorflow', 'wasm', 'cpu']).toContain(result.backend);
    // The wasm kernels load from the installed package (relaxed SIMD only where the runtime has it on).
    expect(['simd128', 'relaxed-simd']).toContain(result.kernels.variant);
    if (result.backend === 'wasm') expect(result.kernels).toMatchObject({ threads: 2, threadsReason: null });
    expect(result.probabilities).toHaveLength(8);
    for (let i = 0; i < 4; i++) expect(result.probabilities[2 * i] + result.probabilities[2 * i + 1]).toBeCloseTo(1, 5);
    expect(result.losses.every(Number.isFinite)).toBe(true);
    expect(result.losses[19]).toBeLessThan(result.losses[0]);
    expect(result.predictions).toHaveLength(4);
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(result.accuracy).toBeGreaterThanOrEqual(0);
  });

  test("the exports map's types serve a strict NodeNext TypeScript consumer (and reject misuse)", async () => {
    // Arrange: @ts-expect-error lines fail the check if the imports resolved to `any`.
    writeFileSync(
      join(consumer, 'consumer.ts'),
      `import { createModel, forward, predict, initBackend, CoreArgumentError, type CoreModel, type PredictionResult, type BackendInfo, type WeightsFile, modelToWeights } from '@bnmlp/core';
const model: CoreModel = createModel({ inputDim: 2, hiddenDims: [3], classes: 2 });
const probabilities = forward(model, { rows: 1, cols: 2, data: new Float32Array(2) }, 'inference');
const shape: number[] = probabilities.shape;
const result: PredictionResult = predict(model, { rows: 1, cols: 2, data: new Float32Array(2) });
const first: number = result.predictions[0];
const info: Promise<BackendInfo> = initBackend('cpu');
const file: WeightsFile = modelToWeights(model);
const isError: boolean = new Error() instanceof CoreArgumentError;
// @ts-expect-error inputDim must be a number
createModel({ inputDim: 'two', hiddenDims: [3], classes: 2 });
// @ts-expect-error 'eval' is not a Mode
forward(model, { rows: 1, cols: 2, data: new Float32Array(2) }, 'eval');
export { shape, first, info, file, isError };
`,
    );

    // Act + Assert (run throws with tsc's diagnostics on failure)
    await timed('type-check', () => run(process.execPath, [tsc, '--noEmit', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--strict', 'consumer.ts'], consumer));
  });
});
