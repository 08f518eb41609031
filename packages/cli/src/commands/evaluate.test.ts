import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createModel, disposeModel, initBackend, modelToWeights } from '@bnmlp/core';
import { startRun, type RunResult } from '@bnmlp/trainer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../cli.js';
import { tinyCifarDir } from '../test-support/paths.js';
import type { CommandContext } from './command.js';
import { EVALUATE_FLAGS, type EvaluateResult } from './evaluate.js';

/*
A real (tiny) run on the generated fixture: 40 training records, the last 10 held out for
validation, 20 test records, whole images (3072 features), one hidden layer of 8 with BN. The run
evaluated itself when it ended, so `bnmlp evaluate` must reproduce its summary to the bit.
*/

let root: string;
let runDir: string;
let run: RunResult;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'bnmlp-cli-evaluate-'));
  await initBackend('cpu');
  runDir = join(root, 'runs', 'tiny');
  run = await startRun(
    {
      network: { hiddenDims: [8] },
      optimizer: { learningRate: 0.05, momentum: 0.8, lambda: 0.001 },
      epochs: 2,
      batchSize: 10,
      seed: 3,
      data: { dims: 3072, validationCount: 10 },
    },
    runDir,
    { dataDir: tinyCifarDir },
  );
  expect(run.summary.status).toBe('completed');
});

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

async function evaluate(args: string[], extra: Partial<CommandContext> = {}) {
  const out = { stdout: '', stderr: '' };
  const status = await runCli(['evaluate', ...args], { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t), env: {}, cwd: root, ...extra });
  return { status, ...out };
}

/** A copy of the run folder, without plots (to see that nothing gets written). */
function copyRun(name: string): string {
  const dir = join(root, 'copies', name);
  cpSync(runDir, dir, { recursive: true });
  rmSync(join(dir, 'plots'), { recursive: true, force: true });
  return dir;
}

function listing(dir: string): string[] {
  return readdirSync(dir, { recursive: true }).map(String).sort();
}

describe('bnmlp evaluate RUN_DIR', () => {
  it.each(['test', 'validation', 'train'] as const)('rebuilds the %s split as the run did: the same accuracy, loss and cost as its summary', async (split) => {
    const { status, stdout, stderr } = await evaluate([join('runs', 'tiny'), '--split', split, '--json', '--backend', 'cpu']);
    expect([status, stderr]).toEqual([0, '']);
    const doc = JSON.parse(stdout) as EvaluateResult;
    const expected = run.summary[split]!;
    expect(doc.metrics).toEqual({ accuracy: expected.accuracy, loss: expected.loss, cost: expected.cost });
    expect(doc).toMatchObject({
      format: 'bnmlp-evaluate', version: 1, split, lambda: 0.001, backend: 'cpu',
      source: { kind: 'run', path: runDir, weights: join(runDir, 'weights.json') },
      network: { inputDim: 3072, hiddenDims: [8], classes: 10, batchNorm: true },
      data: { dir: tinyCifarDir, format: 'binary', rows: { test: 20, validation: 10, train: 30 }[split] },
    });
    // The confusion matrix (rows true, columns predicted) agrees with the accuracies.
    const total = doc.confusion.flat().reduce((a, b) => a + b, 0);
    expect(total).toBe(doc.data.rows);
    expect(doc.confusion.reduce((a, row, c) => a + row[c], 0) / total).toBeCloseTo(doc.metrics.accuracy, 12);
    expect(doc.classNames).toEqual(['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
    doc.perClass.forEach((c, k) => {
      expect(c.name).toBe(doc.classNames[k]);
      expect(c.rows).toBe(doc.confusion[k].reduce((a, b) => a + b, 0));
      expect(c.accuracy).toBe(c.rows === 0 ? null : doc.confusion[k][k] / c.rows);
    });
    expect(doc.plots).toEqual({ svg: join(runDir, 'plots', `confusion-${split}.svg`), png: join(runDir, 'plots', `confusion-${split}.png`) });
    expect(readFileSync(doc.plots!.svg, 'utf8')).toContain('<svg');
    expect(readFileSync(doc.plots!.png).subarray(1, 4).toString()).toBe('PNG');
  });

  it('prints the metrics, the per-class table and the confusion matrix with class names', async () => {
    const { status, stdout } = await evaluate([join('runs', 'tiny'), '--backend', 'cpu']);
    expect(status).toBe(0);
    const t = run.summary.test!;
    expect(stdout).toContain(`bnmlp evaluate: ${join('runs', 'tiny')} (run folder), test split\n`);
    expect(stdout).toContain('network:  3072-8-10, batch norm, inference mode (running averages), backend cpu\n');
    expect(stdout).toContain(`data:     test: the 20 images of test_batch, standardised by the mean and std of the 30 training images (as the run did), from ${tinyCifarDir} (binary)\n`);
    expect(stdout).toContain(`accuracy ${(100 * t.accuracy).toFixed(2)}%   loss ${t.loss.toFixed(4)}   cost ${t.cost.toFixed(4)} (λ = 0.001)   on 20 images\n`);
    expect(stdout).toMatch(/^class +accuracy +images\n/m);
    expect(stdout).toMatch(/^automobile +(\d+\.\d\d%|-) +\d+$/m);
    expect(stdout).toContain('confusion matrix (rows: true class, columns: predicted)\n');
    expect(stdout).toMatch(/^true \\ predicted +airplane +automobile +bird +cat +deer +dog +frog +horse +ship +truck$/m);
    const matrixRows = stdout.split('\n').filter((line) => /^(airplane|automobile|bird|cat|deer|dog|frog|horse|ship|truck)( +\d+){10}$/.test(line));
    expect(matrixRows).toHaveLength(10);
    expect(stdout).toContain(`plots:    ${join('runs', 'tiny', 'plots', 'confusion-test.png')} and ${join('runs', 'tiny', 'plots', 'confusion-test.svg')}\n`);
  });

  it('reads the data from --data when given, and still verifies the checksums: other data fails with exit 1, writing nothing', async () => {
    const changed = join(root, 'changed-data');
    cpSync(tinyCifarDir, changed, { recursive: true });
    const bytes = readFileSync(join(changed, 'data_batch_1.bin'));
    bytes[100] ^= 0xff;
    writeFileSync(join(changed, 'data_batch_1.bin'), bytes);
    const dir = copyRun('checksum');
    const before = listing(dir);
    const { status, stdout, stderr } = await evaluate([dir, '--data', changed, '--backend', 'cpu']);
    expect([status, stdout]).toEqual([1, '']);
    expect(stderr).toMatch(/^bnmlp evaluate: data file data_batch_1 differs from the one this config was made with \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\): point --data at the same copy of the data\n$/);
    expect(listing(dir)).toEqual(before);
    // The same data under another path is fine, and says where it came from.
    const same = join(root, 'same-data');
    cpSync(tinyCifarDir, same, { recursive: true });
    const ok = await evaluate([dir, '--data', same, '--backend', 'cpu', '--json']);
    expect(ok.status).toBe(0);
    const doc = JSON.parse(ok.stdout) as EvaluateResult;
    expect(doc.metrics.accuracy).toBe(run.summary.test!.accuracy);
    expect(doc.data.notes.join('\n')).toContain(`data from --data ${same} instead of the run's ${tinyCifarDir}`);
  });
});

describe('bnmlp evaluate WEIGHTS', () => {
  it('evaluates a bare weights file on the default split, says so, and writes nothing', async () => {
    const dir = join(root, 'bare');
    mkdirSync(dir, { recursive: true });
    const weights = join(dir, 'model.json');
    cpSync(join(runDir, 'weights.json'), weights);
    const { status, stdout, stderr } = await evaluate([weights, '--data', tinyCifarDir, '--backend', 'cpu']);
    expect([status, stderr]).toEqual([0, '']);
    expect(stdout).toContain('(weights file), test split');
    expect(stdout).toContain('note:     a bare weights file has no config: evaluated on the default split (standardised by all training files, test from test_batch)');
    expect(stdout).toContain('standardised by the mean and std of the 40 training images');
    expect(stdout).toContain('cost -  (no λ: a bare weights file)');
    expect(stdout).not.toContain('plots:');
    expect(readdirSync(dir)).toEqual(['model.json']);
    const json = JSON.parse((await evaluate([weights, '--data', tinyCifarDir, '--backend', 'cpu', '--json', '--split', 'train'])).stdout) as EvaluateResult;
    expect(json).toMatchObject({ source: { kind: 'weights', path: weights }, split: 'train', lambda: null, plots: null, data: { rows: 40 } });
    expect(json.metrics.cost).toBeNull();
  });
});

describe('bnmlp evaluate errors', () => {
  it('a run without weights.json (stopped) says to resume it; exit 2, nothing written', async () => {
    const dir = copyRun('stopped');
    rmSync(join(dir, 'weights.json'));
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    writeFileSync(join(dir, 'summary.json'), JSON.stringify({ ...summary, status: 'aborted', epochs: 1 }));
    const before = listing(dir);
    const { status, stdout, stderr } = await evaluate([dir]);
    expect([status, stdout]).toEqual([2, '']);
    expect(stderr).toBe(
      `bnmlp evaluate: argument 'RUN_DIR|WEIGHTS' must be a completed run (with weights.json), got '${dir}': the run was stopped after 1 epochs and has no weights.json yet: ` +
        `resume it with \`bnmlp train --resume ${join('copies', 'stopped')}\`, then evaluate\n(see \`bnmlp evaluate --help\`)\n`,
    );
    expect(listing(dir)).toEqual(before);
    rmSync(join(dir, 'summary.json'));
    expect((await evaluate([dir])).stderr).toContain('the run has not completed (no weights.json; still running, or killed): resume it with');
  });

  it('a path that is neither a run folder nor a weights file', async () => {
    mkdirSync(join(root, 'empty'), { recursive: true });
    writeFileSync(join(root, 'other.json'), JSON.stringify({ format: 'something-else' }));
    writeFileSync(join(root, 'text.txt'), 'hello');
    for (const [arg, why] of [
      ['missing', "'missing' (no such file or directory)"],
      ['empty', "'empty' (a folder without run.json)"],
      ['other.json', `'other.json' (a file that is not bnmlp weights: format "something-else")`],
      ['text.txt', "'text.txt' (not JSON)"],
    ]) {
      const { status, stderr } = await evaluate([arg]);
      expect(status, arg).toBe(2);
      expect(stderr).toBe(`bnmlp evaluate: argument 'RUN_DIR|WEIGHTS' must be a run folder (holding run.json) or a bnmlp weights file (weights.json), got ${why}\n(see \`bnmlp evaluate --help\`)\n`);
    }
  });

  it("weights whose input width is not the data's: exit 2, nothing written", async () => {
    await initBackend('cpu');
    const model = createModel({ inputDim: 40, hiddenDims: [4], classes: 10 });
    const small = join(root, 'small.json');
    writeFileSync(small, JSON.stringify(modelToWeights(model)));
    disposeModel(model);
    const bare = await evaluate([small, '--data', tinyCifarDir]);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain("argument 'RUN_DIR|WEIGHTS' must be weights for 3072 input features");
    expect(bare.stderr).toContain("got 'small.json' (inputDim 40)");
    // A run folder whose config says other dims than its weights.
    const dir = copyRun('dims');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, data: { ...config.data, dims: 40 } }));
    const before = listing(dir);
    const mixed = await evaluate([dir]);
    expect(mixed.status).toBe(2);
    expect(mixed.stderr).toContain("must be a run whose weights take its config's 40 input features (data.dims), got");
    expect(mixed.stderr).toContain('(weights.json has inputDim 3072)');
    expect(listing(dir)).toEqual(before);
  });

  it.each([
    [['--split', 'dev'], "option --split must be 'test', 'validation' or 'train', got 'dev'"],
    [['--backend', 'gpu'], "option --backend must be 'auto', 'tensorflow', 'wasm' or 'cpu', got 'gpu'"],
    [['--data', 'nowhere'], "option --data must be a CIFAR-10 directory"],
    [['--splt', 'test'], 'option --splt must be one of the options in `bnmlp evaluate --help` (did you mean --split?)'],
    [['another'], "argument 'arguments' must be at most 1 RUN_DIR|WEIGHTS, got 'another'"],
  ])('%j is a usage error', async (args, message) => {
    const { status, stderr } = await evaluate([join('runs', 'tiny'), ...args]);
    expect(status).toBe(2);
    expect(stderr).toContain(message);
  });

  it('without an argument, and --split validation for a bare weights file, are usage errors', async () => {
    expect((await evaluate([])).stderr).toBe("bnmlp evaluate: argument 'RUN_DIR|WEIGHTS' must be given, got nothing\n(see `bnmlp evaluate --help`)\n");
    const bare = await evaluate([join(runDir, 'weights.json'), '--split', 'validation', '--data', tinyCifarDir]);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain("option --split must be 'test' or 'train' for a bare weights file");
  });

  it('--help lists every flag', async () => {
    const { status, stdout } = await evaluate(['--help']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/^Usage: bnmlp evaluate <RUN_DIR\|WEIGHTS> \[options\]/);
    expect([...stdout.matchAll(/^ {2}(?:-\w, )? *--([\w-]+)/gm)].map((m) => m[1])).toEqual(EVALUATE_FLAGS.map((f) => f.flag));
    expect(existsSync(join(root, 'plots'))).toBe(false);
  });
});
