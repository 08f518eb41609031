// The kernels module's exports (scripts/build-wasm.mjs builds this file).
export { denseForwardPacked, forwardTileFloats, packPanels, denseWeightStep } from './dense';
export { batchNormReluForward, batchNormReluInference, batchNormReluBackward, momentumStep, blend, sumSquares, softmaxCrossEntropy } from './batch-norm';
