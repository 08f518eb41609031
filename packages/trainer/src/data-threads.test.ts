import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PIXEL_ROW_BYTES } from './data-kernels.js';
import { liveDataHelpers, runDataJob, STALL_MS, type DataJob, type DataJobOptions } from './data-threads.js';
import { fillXorshift } from './test-support/cifar-http-server.js';

const helperScript = (name: string) => fileURLToPath(new URL(`./test-support/${name}`, import.meta.url));

/** Pixels of `rows` records on a SharedArrayBuffer (xorshift bytes), or on a plain buffer. */
function pixelsOf(rows: number, seed: number, shared = true): Uint8Array {
  return fillXorshift(shared ? new Uint8Array(new SharedArrayBuffer(rows * PIXEL_ROW_BYTES)) : new Uint8Array(rows * PIXEL_ROW_BYTES), seed);
}

const sharedF64 = (n: number) => new Float64Array(new SharedArrayBuffer(8 * n));
const sharedF32 = (n: number) => new Float32Array(new SharedArrayBuffer(4 * n));

/** The statistics as one thread computed them before the split: one feature at a time, rows in order. */
function plainStats(pixels: Uint8Array, count: number, dims: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(dims);
  const std = new Float64Array(dims);
  for (let j = 0; j < dims; j++) {
    let sum = 0;
    for (let i = 0; i < count; i++) sum += pixels[i * PIXEL_ROW_BYTES + j];
    mean[j] = sum / count / 255;
    let squares = 0;
    for (let i = 0; i < count; i++) {
      const dev = pixels[i * PIXEL_ROW_BYTES + j] / 255 - mean[j];
      squares += dev * dev;
    }
    std[j] = Math.sqrt(squares / count);
  }
  return { mean, std };
}

function statsJob(pixels: Uint8Array, count: number, dims: number) {
  return { kind: 'stats' as const, pixels, count, dims, mean: sharedF64(dims), std: sharedF64(dims) };
}

function standardizeJob(pixels: Uint8Array, rows: number, dims: number) {
  const mean = Float64Array.from({ length: dims }, (_, j) => 0.3 + ((j * 37) % 101) / 500);
  const divisor = Float64Array.from({ length: dims }, (_, j) => 0.1 + ((j * 53) % 97) / 300);
  return { kind: 'standardize' as const, pixels, rows, dims, mean, divisor, out: sharedF32(rows * dims) };
}

function plainStandardized(job: ReturnType<typeof standardizeJob>): Float32Array {
  const out = new Float32Array(job.rows * job.dims);
  for (let i = 0; i < job.rows; i++)
    for (let j = 0; j < job.dims; j++) out[i * job.dims + j] = (job.pixels[i * PIXEL_ROW_BYTES + j] / 255 - job.mean[j]) / job.divisor[j];
  return out;
}

/** Index of the first differing entry (bit for bit, NaN-aware through the bytes), or -1. */
function firstDifference(a: Float32Array | Float64Array, b: Float32Array | Float64Array): number {
  const bytesA = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const bytesB = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (bytesA.length !== bytesB.length) return 0;
  for (let i = 0; i < bytesA.length; i++) if (bytesA[i] !== bytesB[i]) return Math.floor(i / a.BYTES_PER_ELEMENT);
  return -1;
}

// Every split: this thread alone, both threads, and the helper alone.
const SPLITS: ReadonlyArray<[string, DataJobOptions]> = [
  ['this thread alone', { minWork: Number.POSITIVE_INFINITY }],
  ['this thread and the helper', { minWork: 0 }],
  ['the helper alone', { minWork: 0, callerTakesBlocks: false }],
];

afterEach(async () => {
  // Each helper ends with its job; none may outlive it for long.
  for (let i = 0; i < 100 && liveDataHelpers.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  expect(liveDataHelpers.size).toBe(0);
});

describe('statistics on two threads', () => {
  it.each(SPLITS)('%s: the bits of the one-feature-at-a-time loop, for 3072 and for 700 features', (_, options) => {
    // Arrange
    const count = 301;
    const pixels = pixelsOf(count, 7);
    for (const dims of [3072, 700]) {
      const job = statsJob(pixels, count, dims);
      // Act
      const report = runDataJob(job, options);
      // Assert
      const plain = plainStats(pixels, count, dims);
      expect(firstDifference(job.mean, plain.mean), `mean, dims ${dims}`).toBe(-1);
      expect(firstDifference(job.std, plain.std), `std, dims ${dims}`).toBe(-1);
      expect(report.blocks).toBe(Math.ceil(dims / 256));
      if (options.callerTakesBlocks === false) expect(report.helperBlocks).toBe(report.blocks);
      // With both, this thread starts on the blocks at once, long before the helper has booted (20–50 ms).
      else if (options.minWork === 0) expect(report.helperBlocks, 'blocks the helper took').toBeLessThan(report.blocks);
    }
  });

  it('a constant feature has std exactly 0 and its exact pixel value / 255 as the mean', () => {
    const pixels = pixelsOf(50, 3);
    for (let i = 0; i < 50; i++) pixels[i * PIXEL_ROW_BYTES + 5] = 77;
    const job = statsJob(pixels, 50, 3072);
    runDataJob(job, { minWork: 0, callerTakesBlocks: false });
    expect([job.mean[5], job.std[5]]).toEqual([77 / 255, 0]);
  });
});

describe('standardisation on two threads', () => {
  it.each(SPLITS)('%s: the bits of the row-by-row loop (rows not a multiple of the block, fewer features than pixels)', (_, options) => {
    const job = standardizeJob(pixelsOf(389, 11), 389, 3000);
    const report = runDataJob(job, options);
    expect(firstDifference(job.out, plainStandardized(job))).toBe(-1);
    expect(report.blocks).toBe(Math.ceil(389 / 128));
    if (options.minWork === 0) expect(report.helper).toEqual({ started: true });
    else expect(report).toMatchObject({ helper: { started: false }, helperBlocks: 0 });
  });

  it('writes nothing outside its rows × dims (a view into a larger shared buffer keeps its neighbours)', () => {
    const rows = 200;
    const dims = 512;
    const backing = new Float32Array(new SharedArrayBuffer(4 * (rows * dims + 64))).fill(-7);
    const out = backing.subarray(32, 32 + rows * dims);
    const job = { ...standardizeJob(pixelsOf(rows, 5), rows, dims), out };
    runDataJob(job, { minWork: 0, callerTakesBlocks: false });
    expect([...backing.subarray(0, 32), ...backing.subarray(32 + rows * dims)].every((v) => v === -7)).toBe(true);
    expect(firstDifference(out, plainStandardized(job))).toBe(-1);
  });
});

describe('when the helper cannot help', () => {
  it.each([
    ['too little work', statsJob(pixelsOf(10, 1), 10, 3072), { minWork: 4_000_000 }, /30720 of work, less than 4000000/],
    ['pixels on a plain buffer', statsJob(pixelsOf(400, 1, false), 400, 3072), { minWork: 0 }, /pixels are not on a SharedArrayBuffer/],
    ['outputs on a plain buffer', { ...standardizeJob(pixelsOf(400, 1), 400, 64), out: new Float32Array(400 * 64) }, { minWork: 0 }, /outputs are not on SharedArrayBuffers/],
    ['too little work (standardising: rows × dims)', standardizeJob(pixelsOf(10, 1), 10, 3072), { minWork: 4_000_000 }, /30720 of work, less than 4000000/],
    ['one core', statsJob(pixelsOf(400, 1), 400, 3072), { minWork: 0, cores: 1 }, /one core/],
    ['statistics into plain arrays', { ...statsJob(pixelsOf(400, 1), 400, 3072), mean: new Float64Array(3072) }, { minWork: 0 }, /outputs are not on SharedArrayBuffers/],
    ['only one output shared', { ...statsJob(pixelsOf(400, 1), 400, 3072), std: new Float64Array(3072) }, { minWork: 0 }, /outputs are not on SharedArrayBuffers/],
    ['one block', statsJob(pixelsOf(400, 1), 400, 200), { minWork: 0 }, /one block/],
    ['its entry missing', statsJob(pixelsOf(400, 1), 400, 3072), { minWork: 0, helperEntry: '/nonexistent/entry.js' }, /entry \/nonexistent\/entry\.js is missing/],
  ] as Array<[string, DataJob, DataJobOptions, RegExp]>)('%s: this thread does it all and says why', (_, job, options, why) => {
    const report = runDataJob(job, options);
    expect(report.helper.started).toBe(false);
    expect(report.helper.started === false && report.helper.reason).toMatch(why);
    expect(report.helperBlocks).toBe(0);
    if (job.kind === 'stats') expect(firstDifference(job.mean, plainStats(job.pixels, job.count, job.dims).mean)).toBe(-1);
    else expect(firstDifference(job.out, plainStandardized(job as ReturnType<typeof standardizeJob>))).toBe(-1);
  });

  it('without a helper, this thread does it all even when told to leave the blocks to the helper', () => {
    const job = statsJob(pixelsOf(10, 2), 10, 3072);
    const report = runDataJob(job, { minWork: Number.POSITIVE_INFINITY, callerTakesBlocks: false });
    expect(report.helper.started).toBe(false);
    expect(firstDifference(job.std, plainStats(job.pixels, job.count, job.dims).std)).toBe(-1);
  });

  it('the boundaries: work of exactly minWork, and exactly 2 blocks, get a helper; a minWork given is the one used', () => {
    // 10 rows × 512 features: 5120 values in 2 blocks of 256 features (the default minWork is 4,000,000).
    const job = statsJob(pixelsOf(10, 4), 10, 512);
    const report = runDataJob(job, { minWork: 5120 });
    expect(report).toMatchObject({ blocks: 2, helper: { started: true } });
    expect(firstDifference(job.mean, plainStats(job.pixels, job.count, job.dims).mean)).toBe(-1);
  });

  it('the stall time given is the one used: a helper 1.5 s late is waited for when it is 5 s (the default is 1 s)', () => {
    // Arrange: the blocks are left to the helper, which starts taking them after 1.5 s.
    expect(STALL_MS).toBeLessThan(1500);
    const job = standardizeJob(pixelsOf(300, 7), 300, 3072);

    // Act
    const report = runDataJob(job, { minWork: 0, callerTakesBlocks: false, stallMs: 5000, helperEntry: helperScript('late-data-helper.mjs') });

    // Assert: the helper took every block; nothing was taken or recomputed here.
    expect(report).toMatchObject({ blocks: 3, helperBlocks: 3, recomputedBlocks: 0 });
    expect(firstDifference(job.out, plainStandardized(job))).toBe(-1);
  });

  it('returns as soon as every block is done, however long the stall time', () => {
    // Waiting on after the last block would hang here for 10 minutes (the test's timeout is 30 s).
    const job = standardizeJob(pixelsOf(300, 6), 300, 3072);
    const report = runDataJob(job, { minWork: 0, callerTakesBlocks: false, stallMs: 600_000 });
    expect(report).toMatchObject({ blocks: 3, helperBlocks: 3, recomputedBlocks: 0 });
  }, 30_000);

  it.each([
    ['hangs after claiming a block', 'stalling-data-helper.mjs'],
    ['dies after claiming a block', 'crashing-data-helper.mjs'],
  ])('a helper that %s: its block is computed here after the stall time, the result is whole and the helper ended', (_, script) => {
    // Arrange: this thread leaves the blocks to the helper, so the helper claims block 0 first.
    const job = standardizeJob(pixelsOf(600, 9), 600, 3072);
    const started = performance.now();
    // Act
    const report = runDataJob(job, { minWork: 0, stallMs: 200, callerTakesBlocks: false, helperEntry: helperScript(script) });
    // Assert
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
    expect(report).toMatchObject({ blocks: 5, helperBlocks: 0, recomputedBlocks: 1 });
    expect(firstDifference(job.out, plainStandardized(job))).toBe(-1);
  });
});
