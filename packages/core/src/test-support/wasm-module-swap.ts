import * as tf from '@tensorflow/tfjs-core';

/**
 * Runs `body` with the active tfjs wasm backend's module object replaced by `replacement` (e.g.
 * one that exports no memory), then puts the real module back. Only our kernel functions may run
 * inside: tfjs's own ops need the real module.
 */
export function withWasmModule<T>(replacement: unknown, body: () => T): T {
  const backend = tf.backend() as unknown as { wasm: unknown };
  const realModule = backend.wasm;
  backend.wasm = replacement;
  try {
    return body();
  } finally {
    backend.wasm = realModule;
  }
}
