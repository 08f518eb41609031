// @bnmlp/trainer: data loading, preprocessing and mini-batches (the training loop and search arrive with the trainer issue).
export * from './errors.js';
export * from './cifar.js';
export * from './mini-batches.js';
export * from './shared-paths.js';
