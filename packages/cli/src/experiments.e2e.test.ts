import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { locateSharedCifar } from '@bnmlp/trainer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtBin, interruptBin, runBin } from './test-support/built-bin.js';
import { tinyCifarDir } from './test-support/paths.js';

// End to end through the compiled binary, on the generated fixture (40 training images), with
// small settings: every experiment command, bad input, and Ctrl-C with resume.

let bin: string;
let tmp: string;
beforeAll(() => {
  bin = builtBin();
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-e2e-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const fixture = ['--data', tinyCifarDir];
const bnmlp = (args: string[], env: Record<string, string | undefined> = {}) => runBin(bin, args, { cwd: tmp, env });

describe('bnmlp train', () => {
  it('trains, logs one line per epoch when not a terminal, and writes the run folder with plots and summary.md', async () => {
    const { status, stdout, stderr } = await bnmlp(['train', ...fixture, '--hidden', '8', '--epochs', '3', '--batch-size', '8', '--name', 'small']);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(stdout.match(/^epoch \d\/3 .*train cost .* val cost /gm)).toHaveLength(3);
    expect(stdout).toMatch(/completed after 3 epochs .*run folder: runs\/small/);
    const dir = join(tmp, 'runs', 'small');
    for (const file of ['run.json', 'config.json', 'history.jsonl', 'checkpoint.bin', 'weights.json', 'summary.json', 'summary.md', 'plots/cost.png', 'plots/accuracy.svg', 'plots/loss.vl.json'])
      expect(existsSync(join(dir, file)), file).toBe(true);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ epochs: 3, batchSize: 8, network: { hiddenDims: [8] }, data: { dir: tinyCifarDir } });
    expect(Object.keys(config.data.checksums)).toContain('data_batch_1');
  });

  it('never overwrites a run folder without --force, and writes nothing when refusing', async () => {
    const dir = join(tmp, 'runs', 'kept');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    const refused = await bnmlp(['train', ...fixture, '--hidden', '8', '--epochs', '1', '--name', 'kept']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/'run folder' must be new \(pass --force/);
    expect(readdirSync(dir)).toEqual(['notes.txt']);
    expect((await bnmlp(['train', ...fixture, '--hidden', '8', '--epochs', '1', '--name', 'kept', '--force', '--quiet'])).status).toBe(0);
    expect(existsSync(join(dir, 'notes.txt'))).toBe(false);
  });

  it.each([
    [['--eta', '-1'], /option --eta must be a finite number > 0, got '-1'/],
    [['--batch-size', '0'], /option --batch-size must be an integer >= 1, got '0'/],
    [['--hidden', '50,x'], /option --hidden must be comma-separated positive integers/],
    [['--lambda', 'inf'], /option --lambda must be a finite number >= 0, got 'inf'/],
    [['--epocs', '3'], /did you mean --epochs\?/],
    [['--data', '/nonexistent-bnmlp'], /option --data must be a CIFAR-10 directory/],
    [['--preset', 'best'], /option --preset must be 'report-best', /],
  ])('%j is a usage error: one message, exit 2, nothing written', async (args, message) => {
    const before = existsSync(join(tmp, 'runs')) ? readdirSync(join(tmp, 'runs')).length : 0;
    const { status, stdout, stderr } = await bnmlp(['train', ...(args.includes('--data') ? [] : fixture), ...args, '--name', 'never']);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(message);
    expect(stderr.trim().split('\n')).toHaveLength(2); // the message and the --help pointer
    expect(existsSync(join(tmp, 'runs', 'never'))).toBe(false);
    expect(existsSync(join(tmp, 'runs')) ? readdirSync(join(tmp, 'runs')).length : 0).toBe(before);
  });

  it('a config file (YAML) is validated by the schema, naming the key', async () => {
    writeFileSync(join(tmp, 'bad.yaml'), 'network:\n  hiddenDims: [8]\noptimizer:\n  learningRate: 0.01\n  momentun: 0.9\n');
    const bad = await bnmlp(['train', ...fixture, '--config', 'bad.yaml', '--name', 'never']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/optimizer: Unrecognized key: "momentun"/);
    writeFileSync(join(tmp, 'good.yaml'), 'network:\n  hiddenDims: [8]\noptimizer:\n  learningRate: 0.02\nepochs: 2\nbatchSize: 8\n');
    const good = await bnmlp(['train', ...fixture, '--config', 'good.yaml', '--name', 'from-yaml', '--json']);
    expect(good.status).toBe(0);
    expect(JSON.parse(good.stdout).config).toMatchObject({ epochs: 2, optimizer: { learningRate: 0.02 } });
  });

  it('corrupt data is one clear error naming the file', async () => {
    const bad = join(tmp, 'bad-data');
    mkdirSync(bad, { recursive: true });
    writeFileSync(join(bad, 'data_batch_1.bin'), Buffer.alloc(3073 * 2 + 5));
    writeFileSync(join(bad, 'test_batch.bin'), Buffer.alloc(3073));
    writeFileSync(join(bad, 'batches.meta.txt'), 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n');
    const { status, stderr } = await bnmlp(['train', '--data', bad, '--name', 'never']);
    expect(status).toBe(1);
    expect(stderr).toMatch(/data_batch_1\.bin.*multiple of 3073/);
    expect(existsSync(join(tmp, 'runs', 'never', 'history.jsonl'))).toBe(false);
  });

  it('Ctrl-C writes the checkpoint and prints the exact resume command, which finishes the run', async () => {
    const args = ['train', ...fixture, '--hidden', '8', '--epochs', '150', '--batch-size', '8', '--name', 'interrupted'];
    const first = await interruptBin(bin, args, /^epoch +2\//m, { cwd: tmp });
    expect(first.interrupted).toBe(true);
    expect(first.status).toBe(130);
    const resume = /bnmlp train --resume (\S+)/.exec(first.stderr);
    expect(resume, first.stderr).not.toBeNull();
    expect(resume![1]).toBe('runs/interrupted');
    expect(existsSync(join(tmp, 'runs', 'interrupted', 'checkpoint.bin'))).toBe(true);
    expect(JSON.parse(readFileSync(join(tmp, 'runs', 'interrupted', 'summary.json'), 'utf8')).status).toBe('aborted');

    const second = await bnmlp(['train', '--resume', resume![1], '--quiet']);
    expect(second.stderr).toBe('');
    expect(second.status).toBe(0);
    const summary = JSON.parse(readFileSync(join(tmp, 'runs', 'interrupted', 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ status: 'completed', epochs: 150 });
    expect(readFileSync(join(tmp, 'runs', 'interrupted', 'history.jsonl'), 'utf8').trim().split('\n')).toHaveLength(150);
  });
});

describe('the report sections', () => {
  it('overfit trains 6 networks and plots them', async () => {
    const { status, stdout, stderr } = await bnmlp(['overfit', ...fixture, '--epochs', '3', '--name', 'overfit', '--quiet']);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    for (const label of ['2-layer BN', '2-layer no BN', '3-layer BN', '4-layer no BN']) expect(stdout).toContain(label);
    const dir = join(tmp, 'runs', 'overfit');
    expect(readdirSync(dir).filter((d) => d.includes('-layer-')).sort()).toEqual(['2-layer-bn', '2-layer-no-bn', '3-layer-bn', '3-layer-no-bn', '4-layer-bn', '4-layer-no-bn']);
    expect(existsSync(join(dir, 'plots', 'overfit-train-cost.png'))).toBe(true);
    expect(readFileSync(join(dir, 'summary.md'), 'utf8')).toContain('![');
  });

  it.each([
    ['compare-bn', ['compare-bn-cost', 'compare-bn-accuracy'], 2],
    ['lr-sweep', ['lr-sweep-loss', 'lr-sweep-accuracy'], 6],
  ])('%s runs its networks and writes its figures', async (command, figures, runs) => {
    const { status, stdout } = await bnmlp([command, ...fixture, '--epochs', '2', '--name', command, '--json']);
    expect(status).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.runs).toHaveLength(runs);
    for (const f of figures) expect(existsSync(join(tmp, 'runs', command, 'plots', `${f}.png`)), f).toBe(true);
  });

  it('search coarse records every trial, resumes without rerunning, and fine derives its ranges from it', async () => {
    const coarse = await bnmlp(['search', 'coarse', ...fixture, '--trials', '3', '--epochs', '2', '--workers', '2', '--name', 'coarse', '--json']);
    expect(coarse.status).toBe(0);
    expect(JSON.parse(coarse.stdout)).toMatchObject({ total: 3, ran: 3 });
    expect(readFileSync(join(tmp, 'runs', 'coarse', 'results.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3);
    const again = await bnmlp(['search', 'coarse', ...fixture, '--trials', '3', '--epochs', '2', '--workers', '2', '--name', 'coarse', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ total: 3, ran: 0 });
    const fine = await bnmlp(['search', 'fine', ...fixture, '--from', 'runs/coarse', '--trials', '2', '--epochs', '1', '--workers', '1', '--name', 'fine']);
    expect(fine.status).toBe(0);
    expect(fine.stdout).toMatch(/note: asked for 10000 training images, the data holds 32/);
    expect(fine.stdout).toMatch(/best: η/);
    expect(existsSync(join(tmp, 'runs', 'fine', 'plots', 'search-fine-scatter.png'))).toBe(true);
    expect((await bnmlp(['search', 'fine', ...fixture, '--name', 'x'])).stderr).toMatch(/option --from must be given for a fine search/);
  });

  it('report writes one Markdown and one self-contained HTML file over run folders', async () => {
    const { status } = await bnmlp(['report', 'runs/small', 'runs/compare-bn', '--out', 'runs/report', '--quiet']);
    expect(status).toBe(0);
    const html = readFileSync(join(tmp, 'runs', 'report', 'report.html'), 'utf8');
    expect(html.match(/<svg/g)!.length).toBeGreaterThanOrEqual(4);
    expect(html).not.toMatch(/<script|src="http/);
    expect(readFileSync(join(tmp, 'runs', 'report', 'report.md'), 'utf8')).toMatch(/!\[.*\]\(.*\.png\)/);
    expect((await bnmlp(['report', 'runs/nothing-here'])).status).toBe(2);
  });

  it('reproduce runs the chosen sections and writes the report with the summary table', async () => {
    const { status, stdout } = await bnmlp(['reproduce', ...fixture, '--only', 'overfit,compare-bn,search,best', '--epochs', '1', '--trials', '2,2', '--workers', '1', '--name', 'repro', '--quiet']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/section +measure +ours +report +our data/);
    expect(stdout).toMatch(/report: runs\/repro\/report\.html/);
    const html = readFileSync(join(tmp, 'runs', 'repro', 'report.html'), 'utf8');
    for (const id of ['overfit', 'compare-bn', 'search-coarse', 'search-fine', 'best']) expect(html).toContain(`id="${id}"`);
  });
});

describe('evaluate, download and bench through the binary', () => {
  it('evaluate prints accuracy, per-class accuracy and the confusion matrix of a run', async () => {
    const { status, stdout } = await bnmlp(['evaluate', 'runs/small', '--split', 'test']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/accuracy \d+\.\d+%/);
    expect(stdout).toMatch(/confusion matrix \(rows: true class, columns: predicted\)/);
    expect(existsSync(join(tmp, 'runs', 'small', 'plots', 'confusion-test.png'))).toBe(true);
  });

  it('download without a reachable server fails with the hint, keeping nothing half-written', async () => {
    const cache = join(tmp, 'cache');
    const { status, stderr } = await bnmlp(['download', '--dir', cache, '--url', 'http://127.0.0.1:9/cifar-10-binary.tar.gz', '--quiet']);
    expect(status).toBe(1);
    expect(stderr).toMatch(/--data/);
    expect(existsSync(join(cache, 'cifar-10-batches-bin'))).toBe(false);
  });

  it('bench --suite core runs on small settings', async () => {
    const { status, stdout } = await bnmlp(['bench', '--suite', 'core', '--samples', '400', '--warmup', '2', '--inference', '300', '--torch', 'off', '--backend', 'cpu']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/train step: +\d/);
  });
});

describe.skipIf(!locateSharedCifar())('on the shared CIFAR-10 subset', () => {
  it('train uses it by default and says so', async () => {
    const { status, stdout } = await bnmlp(['train', '--hidden', '20', '--epochs', '1', '--name', 'subset']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/data: real CIFAR-10 images: the shared subset/);
    const config = JSON.parse(readFileSync(join(tmp, 'runs', 'subset', 'config.json'), 'utf8'));
    expect(config.data.validationCount).toBe(1000);
  });
});
