import { tf, type CoreModel, type Float32Matrix } from '@bnmlp/core';

/**
 * "Precise BN" (Wu & Johnson, 2021): replaces every BN layer's running averages with the
 * population mean and biased variance of its scores over `x`, layer by layer, each layer's scores
 * computed with the layers below already using their new statistics (inference mode). Sums are
 * accumulated in float64 over chunks; the variance takes a second pass around the mean (no
 * E[s²] − E[s]² cancellation). The running averages of a training run are exponential averages
 * over the last ~1/(1 − α) batches of a moving network; these are the exact statistics of the
 * final one.
 */
export function recomputePopulationStatistics(model: CoreModel, x: Float32Matrix, chunkSize = 1000): void {
  const { eps } = model.config;
  const hidden = model.layers.length - 1;

  // Inference-mode activations entering layer `upTo` for one chunk (a tensor the caller disposes inside tidy).
  const inputTo = (chunk: tf.Tensor2D, upTo: number): tf.Tensor2D => {
    let h = chunk;
    for (let l = 0; l < upTo; l++) {
      const layer = model.layers[l];
      let s: tf.Tensor2D = tf.add(tf.matMul(h, layer.W), layer.b);
      if (layer.runningMean && layer.runningVar) {
        s = tf.div(tf.sub(s, layer.runningMean), tf.sqrt(tf.add(layer.runningVar, eps)));
        if (layer.gamma && layer.beta) s = tf.add(tf.mul(s, layer.gamma), layer.beta);
      }
      h = tf.relu(s);
    }
    return h;
  };

  const forEachScores = (l: number, visit: (scores: Float32Array, rows: number) => void) => {
    for (let start = 0; start < x.rows; start += chunkSize) {
      const rows = Math.min(chunkSize, x.rows - start);
      const scores = tf.tidy(() => {
        const chunk = tf.tensor2d(x.data.subarray(start * x.cols, (start + rows) * x.cols), [rows, x.cols], 'float32');
        const layer = model.layers[l];
        return tf.add(tf.matMul(inputTo(chunk, l), layer.W), layer.b) as tf.Tensor2D;
      });
      visit(scores.dataSync() as Float32Array, rows);
      scores.dispose();
    }
  };

  for (let l = 0; l < hidden; l++) {
    const layer = model.layers[l];
    if (!layer.runningMean || !layer.runningVar) continue;
    const width = layer.b.shape[0];
    const sum = new Float64Array(width);
    forEachScores(l, (s, rows) => {
      for (let i = 0; i < rows; i++) for (let j = 0; j < width; j++) sum[j] += s[i * width + j];
    });
    const mean = sum.map((v) => v / x.rows);
    const squares = new Float64Array(width);
    forEachScores(l, (s, rows) => {
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < width; j++) {
          const d = s[i * width + j] - mean[j];
          squares[j] += d * d;
        }
    });
    const variance = squares.map((v) => v / x.rows);
    tf.tidy(() => {
      layer.runningMean!.assign(tf.tensor1d(Float32Array.from(mean), 'float32'));
      layer.runningVar!.assign(tf.tensor1d(Float32Array.from(variance), 'float32'));
    });
  }
}
