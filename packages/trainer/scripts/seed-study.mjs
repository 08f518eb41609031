#!/usr/bin/env node
// Runs a recipe for several seeds on the shared subset and prints train/val/test accuracy (mean,
// min, max) and seconds per run: the figures the trainer issue's acceptance asks for.
//   node packages/trainer/scripts/seed-study.mjs [--seeds 5] [--data DIR]
// Split: training = data_batch_1..4, validation = data_batch_5, test = test_batch.
import { parseArgs } from 'node:util';
import { allowRelaxedSimd, initBackend, disposeModel } from '@bnmlp/core';
import { locateSharedCifar, parseTrainConfig, prepareData, trainNetwork } from '../dist/index.js';

const { values } = parseArgs({ options: { seeds: { type: 'string', default: '5' }, data: { type: 'string' } } });
allowRelaxedSimd();
const backend = await initBackend();
const dir = values.data ?? locateSharedCifar();
if (!dir) throw new Error('no data: pass --data or put the shared subset beside the repository');
const data = { trainFiles: ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4'], validationFiles: ['data_batch_5'] };
const recipes = [
  ['report-best (3-layer [50, 30] BN, η 0.012721, decay 0.99, λ 0.000192, 20 epochs)', { network: { hiddenDims: [50, 30], batchNorm: true }, optimizer: { learningRate: 0.012721, momentum: 0.8, lambda: 0.000192, schedule: { kind: 'step-decay', decay: 0.99 } }, epochs: 20 }],
  ['compare-bn with BN (η 0.01, decay 0.99, λ 0, 15 epochs)', { network: { hiddenDims: [50, 30], batchNorm: true }, optimizer: { learningRate: 0.01, momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 0.99 } }, epochs: 15 }],
  ['compare-bn without BN (same)', { network: { hiddenDims: [50, 30], batchNorm: false }, optimizer: { learningRate: 0.01, momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 0.99 } }, epochs: 15 }],
];
const stats = (xs) => `${(100 * xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2)}% (min ${(100 * Math.min(...xs)).toFixed(2)}, max ${(100 * Math.max(...xs)).toFixed(2)})`;
console.log(`data: ${dir}; backend: ${backend.name}; seeds 0..${Number(values.seeds) - 1}`);
for (const [name, recipe] of recipes) {
  const rows = [];
  for (let seed = 0; seed < Number(values.seeds); seed++) {
    const config = parseTrainConfig({ ...recipe, batchSize: 100, seed, data });
    const started = performance.now();
    const prepared = prepareData(config.data, dir, seed);
    const outcome = await trainNetwork(config, prepared);
    disposeModel(outcome.model);
    const s = outcome.summary;
    rows.push({ train: s.train.accuracy, val: s.validation.accuracy, test: s.test.accuracy, seconds: (performance.now() - started) / 1000 });
  }
  console.log(`\n${name}, ${rows.length} seeds (4000 train / 1000 val / 1000 test):`);
  console.log(`  train ${stats(rows.map((r) => r.train))}`);
  console.log(`  val   ${stats(rows.map((r) => r.val))}`);
  console.log(`  test  ${stats(rows.map((r) => r.test))}`);
  console.log(`  seconds per run: ${rows.map((r) => r.seconds.toFixed(2)).join(', ')}`);
}
