// @bnmlp/cli: the `bnmlp` command line. The functions behind each command are exported for tests
// and scripts; bin.ts only parses process.argv and prints.
export * from './cli.js';
export * from './errors.js';
export * from './data-source.js';
export * from './options.js';
export * from './table.js';
export type { Command, CommandContext } from './commands/command.js';
export * from './commands/gradcheck.js';
export * from './commands/train.js';
export * from './commands/sections.js';
export * from './commands/search.js';
export * from './commands/reproduce.js';
export * from './commands/report.js';
export * from './commands/evaluate.js';
export * from './commands/download.js';
export * from './experiments/sections.js';
export * from './report/index.js';
