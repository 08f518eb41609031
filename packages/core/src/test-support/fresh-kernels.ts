import * as tf from '@tensorflow/tfjs-core';
import { vi } from 'vitest';
import type * as WasmKernelsModule from '../wasm-kernels.js';

export type Kernels = typeof WasmKernelsModule;

/** The names wasm-kernels.ts registers its kernels under, for the wasm backend. */
const KERNEL_NAMES = [
  'BnmlpDenseForward', 'BnmlpDenseWeightStep', 'BnmlpBatchNormReluForward', 'BnmlpBatchNormReluBackward', 'BnmlpDenseInputGradient',
  'BnmlpMomentumSteps', 'BnmlpBlends', 'BnmlpSumSquares', 'BnmlpSoftmaxCrossEntropy',
];

/**
 * Fresh module instances of wasm-kernels.ts for tests of its module state (the choice, the pool,
 * the thread count, the failures), with tfjs's one kernel registry kept to one instance's kernels.
 * A test file saves the registrations it found (`save`, once the backend runs) and puts them back
 * when it ends (`restore`).
 */
export class KernelInstances {
  /** The instance the last `fresh` imported, or null after `reset`. */
  current: Kernels | null = null;
  private readonly saved: Array<tf.KernelConfig | undefined> = [];

  save(): void {
    this.saved.push(...KERNEL_NAMES.map((name) => tf.getKernel(name, 'wasm')));
  }

  /** The names of our kernels registered now. */
  registered(): string[] {
    return KERNEL_NAMES.filter((name) => tf.getKernel(name, 'wasm'));
  }

  /** Stops the current instance's threads, unregisters our kernels and forgets every module instance: the next imports are fresh. */
  reset(): void {
    this.current?.shutdownKernelThreads();
    this.current = null;
    for (const name of KERNEL_NAMES) if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    vi.resetModules();
  }

  /** A fresh instance of wasm-kernels.ts (no choice, no pool, no failures, no thread count read yet). */
  async fresh(): Promise<Kernels> {
    this.reset();
    this.current = await import('../wasm-kernels.js');
    return this.current;
  }

  /** Leaves the kernel registrations as they were when `save` ran. */
  restore(): void {
    this.reset();
    for (const config of this.saved) if (config) tf.registerKernel(config);
  }
}
