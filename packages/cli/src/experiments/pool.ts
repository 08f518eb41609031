import { statSync } from 'node:fs';
import { CIFAR_RECORD_BYTES, detectCifarLayout, loadCifarDataset } from '@bnmlp/trainer';

const counted = new Map<string, number>();

/**
 * Training images in a data directory's training files: from file sizes for the binary layout,
 * else by reading them (once per directory and process: every section of `reproduce` asks).
 */
export function countTrainingImages(dir: string): number {
  const known = counted.get(dir);
  if (known !== undefined) return known;
  const layout = detectCifarLayout(dir);
  const count =
    layout.format === 'binary'
      ? layout.trainFiles.reduce((sum, file) => sum + Math.floor(statSync(file).size / CIFAR_RECORD_BYTES), 0)
      : loadCifarDataset(dir, { test: false }).train.count;
  counted.set(dir, count);
  return count;
}
