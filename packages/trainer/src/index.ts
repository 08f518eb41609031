// @bnmlp/trainer: CIFAR-10 in every official layout (and its download), splits and standardisation,
// the training loop with checkpoints and exact resume, run folders, and hyperparameter search.
export * from './errors.js';
export * from './cifar.js';
export * from './mini-batches.js';
export * from './shared-paths.js';
export * from './download.js';
export * from './train-config.js';
export * from './dataset.js';
export * from './flip.js';
export * from './evaluation.js';
export * from './precise-bn.js';
export * from './checkpoint.js';
export * from './training.js';
export * from './run-folder.js';
export * from './trial.js';
export * from './atomic-file.js';
export * from './cifar-python.js';
export * from './cifar-mat.js';
export * from './cifar-layout.js';
export * from './search.js';
export * from './trial-executor.js';
export * from './overfit.js';
export * from './queue-executor.js';
