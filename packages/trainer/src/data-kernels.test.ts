import { describe, expect, it } from 'vitest';
import { featureStatsBlock, PIXEL_ROW_BYTES, standardizeRowsBlock } from './data-kernels.js';
import { fillXorshift } from './test-support/cifar-http-server.js';

// The blocks the two threads of data-threads.ts take: each must write its own part and nothing
// else, since the other thread writes the rest of the same arrays at the same time.
describe('a block writes its own part only', () => {
  const rows = 300;
  const pixels = fillXorshift(new Uint8Array(rows * PIXEL_ROW_BYTES), 8);

  it('featureStatsBlock: features [j0, j1) of mean and std, nothing around them', () => {
    // Arrange
    const mean = new Float64Array(1024).fill(NaN);
    const std = new Float64Array(1024).fill(NaN);

    // Act: the second of four blocks of 256.
    featureStatsBlock(pixels, rows, 256, 512, mean, std);

    // Assert
    const written = (a: Float64Array) => Array.from(a, (v, j) => (Number.isNaN(v) ? -1 : j)).filter((j) => j >= 0);
    expect(written(mean)).toEqual(Array.from({ length: 256 }, (_, j) => 256 + j));
    expect(written(std)).toEqual(written(mean));
    let sum = 0;
    for (let i = 0; i < rows; i++) sum += pixels[i * PIXEL_ROW_BYTES + 300];
    expect(mean[300]).toBe(sum / rows / 255);
  });

  it('standardizeRowsBlock: rows [i0, i1) of the output, nothing around them', () => {
    // Arrange
    const dims = 100;
    const out = new Float32Array(rows * dims).fill(NaN);
    const mean = new Float64Array(dims).fill(0.5);
    const divisor = new Float64Array(dims).fill(0.25);

    // Act: rows 128–255.
    standardizeRowsBlock(pixels, dims, 128, 256, mean, divisor, out);

    // Assert
    const writtenRows = new Set(Array.from(out, (v, i) => (Number.isNaN(v) ? -1 : Math.floor(i / dims))).filter((r) => r >= 0));
    expect([...writtenRows]).toEqual(Array.from({ length: 128 }, (_, r) => 128 + r));
    expect(out[200 * dims + 7]).toBe(Math.fround((pixels[200 * PIXEL_ROW_BYTES + 7] / 255 - 0.5) / 0.25));
  });
});
