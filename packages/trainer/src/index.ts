// @bnmlp/trainer: data loading and preprocessing (training loop and search arrive with the trainer issue).
export * from './errors.js';
export * from './cifar.js';
