#!/usr/bin/env node
import { allowRelaxedSimd } from '@bnmlp/core';
import { runCli } from './cli.js';

// Node 20 keeps relaxed SIMD behind a V8 flag; the wasm kernels' relaxed build (FMA) is
// about 1.3× faster per train step than plain SIMD-128 here. `--kernels simd128` still picks the other.
allowRelaxedSimd();

// The first Ctrl-C asks the running command to stop at the next step boundary (it checkpoints and
// prints how to resume); a second one exits at once.
const interrupt = new AbortController();
process.on('SIGINT', () => {
  if (interrupt.signal.aborted) {
    process.stderr.write('\nbnmlp: interrupted again, exiting without waiting\n');
    process.exit(130);
  }
  process.stderr.write('\nbnmlp: stopping at the next step (Ctrl-C again to exit at once)...\n');
  interrupt.abort();
});

// Progress lines only on a terminal, each overwriting the last and cleared before the result.
const progress = process.stderr.isTTY ? (message: string) => process.stderr.write(`\r\x1b[K${message}`) : undefined;
const status = await runCli(process.argv.slice(2), {
  stdout: (text) => {
    if (progress) process.stderr.write('\r\x1b[K');
    process.stdout.write(text);
  },
  stderr: (text) => process.stderr.write(progress ? `\r\x1b[K${text}` : text),
  progress,
  terminal: process.stderr.isTTY ? process.stderr : null,
  signal: interrupt.signal,
});
process.exitCode = status;
