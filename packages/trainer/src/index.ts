// @bnmlp/trainer: data, training loop and search arrive with the trainer issue.
export {};
