export * as tf from '@tensorflow/tfjs-core';
export { initBackend, backendInfo, BACKEND_NAMES, type BackendInfo, type BackendName } from './backend.js';
export { CoreArgumentError, BackendUnavailableError } from './errors.js';
export { DEFAULT_CONFIG, resolveConfig, layerDims, type InitScheme, type NetworkConfig, type NetworkConfigInput } from './config.js';
export { createPrng, nextNormal, nextUniform, nextInt, type Prng } from './prng.js';
export {
  createModel, cloneModel, disposeModel, modelValues, modelFromValues, parameterEntries,
  type CoreModel, type CoreLayer, type CreateModelOptions, type LayerValues, type ParameterEntry, type ParameterKind,
} from './model.js';
export { modelToWeights, modelFromWeights, WEIGHTS_FORMAT, WEIGHTS_VERSION, type WeightsFile, type WeightsFileLayer } from './weights-format.js';
export { forward, costAndGradients, type CostAndGradients, type Float32Matrix, type GradientArray, type InputBatch, type Labels } from './api.js';
export type { Mode } from './network.js';
export { trainStep, createMomentumState, disposeMomentumState, type MomentumState, type SgdSettings, type TrainStepResult } from './train-step.js';
export { predict, type PredictionResult } from './inference.js';
export {
  allowRelaxedSimd, configureWasmKernels, wasmKernelStatus, WASM_KERNEL_CHOICES,
  configureKernelThreads, shutdownKernelThreads, setKernelIdleTask, MAX_KERNEL_THREADS, createBatchBuffer, releaseBatchBuffer,
  gatherRowsInBackground, forgetGatherSource, type BackgroundGather, type KernelThreadsChoice, type WasmKernelChoice, type WasmKernelStatus, type WasmKernelVariant,
} from './wasm-kernels.js';
