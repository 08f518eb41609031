import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '@bnmlp/core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CheckpointError, decodeCheckpoint, encodeCheckpoint, readCheckpoint } from './checkpoint.js';
import { DataChecksumError } from './dataset.js';
import { configHash, readRunFolder, resumeRun, RUN_FILES, RunFolderExistsError, startRun } from './run-folder.js';
import { tinyConfig, tinyData } from './test-support/tiny-data.js';
import { tinyCifarDir } from './test-support/paths.js';
import type { TrainingEvent } from './training.js';

let tmp: string;
beforeAll(async () => {
  await initBackend();
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-run-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
const freshDir = () => join(tmp, `run-${counter++}`);

describe('run folders', () => {
  test('a completed run writes every documented file; config.json reruns as is', async () => {
    const dir = freshDir();
    const result = await startRun(tinyConfig({ epochs: 3 }), dir, { data: tinyData() });
    expect(readdirSync(dir).sort()).toEqual(Object.values(RUN_FILES).sort());
    const folder = readRunFolder(dir);
    expect(folder.history).toHaveLength(3);
    expect(folder.summary!.status).toBe('completed');
    expect(folder.summary!.format).toBe('bnmlp-run-summary');
    expect(JSON.parse(readFileSync(join(dir, RUN_FILES.weights), 'utf8')).format).toBe('bnmlp-weights');
    expect(folder.config.data.dir).toBe(tinyCifarDir);
    expect(result.summary.test!.accuracy).toBeGreaterThanOrEqual(0);
  });

  test('an existing run folder is never overwritten silently; force replaces it', async () => {
    const dir = freshDir();
    mkdirSync(dir);
    writeFileSync(join(dir, 'precious.txt'), 'keep me');
    await expect(startRun(tinyConfig({ epochs: 1 }), dir, { data: tinyData() })).rejects.toThrow(RunFolderExistsError);
    expect(readFileSync(join(dir, 'precious.txt'), 'utf8')).toBe('keep me');
    await startRun(tinyConfig({ epochs: 1 }), dir, { data: tinyData(), force: true });
    expect(existsSync(join(dir, 'precious.txt'))).toBe(false);
  });

  test('stopped mid-epoch, a run resumes from its folder to the same weights as an uninterrupted run', async () => {
    const straightDir = freshDir();
    const straight = await startRun(tinyConfig(), straightDir, { data: tinyData() });

    const dir = freshDir();
    const controller = new AbortController();
    const onEvent = (e: TrainingEvent) => {
      if (e.kind === 'step' && e.epoch === 3 && e.step === 2) controller.abort();
    };
    const stopped = await startRun(tinyConfig(), dir, { data: tinyData(), signal: controller.signal, onEvent });
    expect(stopped.summary.status).toBe('aborted');
    expect(stopped.weights).toBeNull();
    expect(readRunFolder(dir).history).toHaveLength(2);
    expect(readCheckpoint(join(dir, RUN_FILES.checkpoint)).state).toMatchObject({ epoch: 2, step: 2 });

    const resumed = await resumeRun(dir, { data: tinyData() });
    expect(resumed.summary.status).toBe('completed');
    expect(resumed.weights).toEqual(straight.weights);
    expect(readRunFolder(dir).history.map((r) => r.train)).toEqual(readRunFolder(straightDir).history.map((r) => r.train));
  });

  test('a truncated, altered or foreign checkpoint gets a clear error', async () => {
    const dir = freshDir();
    await startRun(tinyConfig({ epochs: 1 }), dir, { data: tinyData() });
    const path = join(dir, RUN_FILES.checkpoint);
    const bytes = readFileSync(path);

    expect(() => decodeCheckpoint(bytes.subarray(0, bytes.length - 10), 'x.bin')).toThrow(/x\.bin: .*truncated/);
    const altered = Buffer.from(bytes);
    altered[altered.length - 3] ^= 0xff;
    expect(() => decodeCheckpoint(altered, 'x.bin')).toThrow(/checksum does not match/);
    expect(() => decodeCheckpoint(Buffer.from('{"format":"bnmlp-weights"}'), 'w.json')).toThrow(/another kind of file/);
    expect(() => decodeCheckpoint(new Uint8Array(3), 'tiny')).toThrow(CheckpointError);

    truncateSync(path, 100);
    await expect(resumeRun(dir, { data: tinyData() })).rejects.toThrow(CheckpointError);
  });

  test("a checkpoint of another config is refused on resume", async () => {
    const dir = freshDir();
    const controller = new AbortController();
    await startRun(tinyConfig(), dir, { data: tinyData(), signal: controller.signal, onEvent: (e) => e.kind === 'epoch-end' && controller.abort() });
    const configPath = join(dir, RUN_FILES.config);
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.optimizer.learningRate = 0.5;
    writeFileSync(configPath, JSON.stringify(config));
    await expect(resumeRun(dir, { data: tinyData() })).rejects.toThrow(/belongs to another config/);
  });

  test('checkpoints round-trip exactly and hash configs canonically', () => {
    const config = tinyConfig();
    const reverseKeys = (value: unknown): unknown =>
      value && typeof value === 'object' && !Array.isArray(value) ? Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reverseKeys(v)])) : value;
    const reordered = reverseKeys(config) as typeof config;
    expect(Object.keys(reordered)[0]).not.toBe(Object.keys(config)[0]);
    expect(configHash(reordered)).toBe(configHash(config));
    expect(configHash(tinyConfig({ seed: 9 }))).not.toBe(configHash(config));
    const state = {
      epoch: 2, step: 1, globalStep: 9, elapsedSeconds: 1.5,
      layers: [{ W: Float32Array.of(1, -0, Number.MIN_VALUE), b: Float32Array.of(2), gamma: null, beta: null, runningMean: Float32Array.of(3), runningVar: Float32Array.of(4) }],
      velocity: { W1: Float32Array.of(5, 6, 7), b1: Float32Array.of(8) },
      batcher: { order: Int32Array.of(2, 0, 1), prngState: 123456789, shuffles: 3 },
      history: [],
    };
    const decoded = decodeCheckpoint(encodeCheckpoint({ configHash: 'abc', state }));
    expect(decoded).toEqual({ configHash: 'abc', state });
    expect(Object.is(decoded.state.layers[0].W[1], -0)).toBe(true);
  });

  test('data that differs from the checksums in a config is refused, naming the file', async () => {
    const config = tinyConfig({ data: { dims: 40, validationCount: 10, checksums: { data_batch_1: 'a'.repeat(64) } } });
    await expect(startRun(config, freshDir(), { dataDir: tinyCifarDir })).rejects.toThrow(DataChecksumError);
    await expect(startRun(config, freshDir(), { dataDir: tinyCifarDir })).rejects.toThrow(/data_batch_1 differs/);
  });
});
