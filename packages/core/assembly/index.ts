// The kernels module's exports (scripts/build-wasm.mjs builds this file).
export { denseForwardPacked, forwardTileFloats, packPanels, denseWeightStep } from './dense';
export { batchNormReluForward, batchNormReluBackward, momentumStep, blend, sumSquares, softmaxCrossEntropy } from './batch-norm';
