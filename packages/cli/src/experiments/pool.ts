import { statSync } from 'node:fs';
import { CIFAR_RECORD_BYTES, detectCifarLayout, loadCifarDataset } from '@bnmlp/trainer';

/** Training images in a data directory's training files: from file sizes for the binary layout, else by reading them. */
export function countTrainingImages(dir: string): number {
  const layout = detectCifarLayout(dir);
  if (layout.format === 'binary') return layout.trainFiles.reduce((sum, file) => sum + Math.floor(statSync(file).size / CIFAR_RECORD_BYTES), 0);
  return loadCifarDataset(dir, { test: false }).train.count;
}
