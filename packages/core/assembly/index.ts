// The kernels module's exports (scripts/build-wasm.mjs builds this file).
export { denseForward, denseForwardStrided, denseWeightStep, copyRows } from './dense';
export { batchNormReluForward, batchNormReluBackward, momentumStep, blend, sumSquares, softmaxCrossEntropy } from './batch-norm';
