// The numeric kernels, behind one small interface so a WebAssembly SIMD build over the same
// (shared) memory can replace them without touching the coordinator or the shards.
// Every matrix is row-major; a weight matrix is stored [out, in] so each output is one dot product
// over contiguous memory. Views are created once at load time; kernels never allocate.

export interface Kernels {
  /** y[T,out] = x[T,in] · Wᵀ + b. W is [out,in]; b may be null. Overwrites y. */
  matmul(y: Float32Array, x: Float32Array, w: Float32Array, b: Float32Array | null, T: number, inDim: number, outDim: number): void;
  /** y[T,out] += x[T,in] · Wᵀ. W is [out,in]. Accumulates into y. */
  matmulAdd(y: Float32Array, x: Float32Array, w: Float32Array, T: number, inDim: number, outDim: number): void;
  /** y[T,d] = LayerNorm(x[T,d]) · g + b. */
  layerNorm(y: Float32Array, x: Float32Array, g: Float32Array, b: Float32Array, T: number, d: number, eps: number): void;
  /** x[0..n) = GELU(x), tanh form as in GPT-2. */
  gelu(x: Float32Array, n: number): void;
  /**
   * Causal attention of one head for T queries at positions pos..pos+T-1.
   * q: rows of stride qStride starting at qOff, each hd wide; keys/values: [nPositions, hd] for this head.
   * out: rows of stride outStride starting at outOff. scores: scratch of at least pos+T floats.
   */
  attend(
    out: Float32Array, outOff: number, outStride: number,
    q: Float32Array, qOff: number, qStride: number,
    keys: Float32Array, values: Float32Array,
    scores: Float32Array, T: number, pos: number, hd: number,
  ): void;
}

function matmulInto(y: Float32Array, x: Float32Array, w: Float32Array, b: Float32Array | null, T: number, n: number, outDim: number, accumulate: boolean): void {
  const full = T - (T % 4);
  for (let o = 0; o < outDim; o++) {
    const wo = o * n;
    const bias = b === null ? 0 : b[o];
    // Four query rows share each weight load: prefill is then bound by arithmetic, not memory.
    for (let t = 0; t < full; t += 4) {
      const x0 = t * n, x1 = x0 + n, x2 = x1 + n, x3 = x2 + n;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let i = 0; i < n; i++) {
        const wv = w[wo + i];
        a0 += x[x0 + i] * wv;
        a1 += x[x1 + i] * wv;
        a2 += x[x2 + i] * wv;
        a3 += x[x3 + i] * wv;
      }
      const yo = t * outDim + o;
      if (accumulate) {
        y[yo] += a0; y[yo + outDim] += a1; y[yo + 2 * outDim] += a2; y[yo + 3 * outDim] += a3;
      } else {
        y[yo] = a0 + bias; y[yo + outDim] = a1 + bias; y[yo + 2 * outDim] = a2 + bias; y[yo + 3 * outDim] = a3 + bias;
      }
    }
  }
  // The remaining rows (all of them when decoding one token): four weight rows share each load of
  // x. Each dot product still sums in index order, so a row gives the same bits either way.
  for (let t = full; t < T; t++) {
    const xo = t * n;
    const yo = t * outDim;
    let o = 0;
    for (; o + 4 <= outDim; o += 4) {
      const w0 = o * n, w1 = w0 + n, w2 = w1 + n, w3 = w2 + n;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let i = 0; i < n; i++) {
        const xv = x[xo + i];
        a0 += xv * w[w0 + i];
        a1 += xv * w[w1 + i];
        a2 += xv * w[w2 + i];
        a3 += xv * w[w3 + i];
      }
      if (accumulate) {
        y[yo + o] += a0; y[yo + o + 1] += a1; y[yo + o + 2] += a2; y[yo + o + 3] += a3;
      } else if (b === null) {
        y[yo + o] = a0; y[yo + o + 1] = a1; y[yo + o + 2] = a2; y[yo + o + 3] = a3;
      } else {
        y[yo + o] = a0 + b[o]; y[yo + o + 1] = a1 + b[o + 1]; y[yo + o + 2] = a2 + b[o + 2]; y[yo + o + 3] = a3 + b[o + 3];
      }
    }
    for (; o < outDim; o++) {
      const wo = o * n;
      let a = 0;
      for (let i = 0; i < n; i++) a += x[xo + i] * w[wo + i];
      if (accumulate) y[yo + o] += a;
      else y[yo + o] = a + (b === null ? 0 : b[o]);
    }
  }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

export const jsKernels: Kernels = {
  matmul(y, x, w, b, T, inDim, outDim) {
    matmulInto(y, x, w, b, T, inDim, outDim, false);
  },

  matmulAdd(y, x, w, T, inDim, outDim) {
    matmulInto(y, x, w, null, T, inDim, outDim, true);
  },

  layerNorm(y, x, g, b, T, d, eps) {
    for (let t = 0; t < T; t++) {
      const o = t * d;
      let mean = 0;
      for (let i = 0; i < d; i++) mean += x[o + i];
      mean /= d;
      let variance = 0;
      for (let i = 0; i < d; i++) {
        const c = x[o + i] - mean;
        variance += c * c;
      }
      variance /= d;
      const rstd = 1 / Math.sqrt(variance + eps);
      for (let i = 0; i < d; i++) y[o + i] = (x[o + i] - mean) * rstd * g[i] + b[i];
    }
  },

  gelu(x, n) {
    for (let i = 0; i < n; i++) {
      const v = x[i];
      x[i] = 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
    }
  },

  attend(out, outOff, outStride, q, qOff, qStride, keys, values, scores, T, pos, hd) {
    const scale = 1 / Math.sqrt(hd);
    for (let t = 0; t < T; t++) {
      const qo = qOff + t * qStride;
      const oo = outOff + t * outStride;
      const last = pos + t; // causal: query at position `last` sees keys 0..last, never later ones
      let max = -Infinity;
      for (let j = 0; j <= last; j++) {
        const ko = j * hd;
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[qo + i] * keys[ko + i];
        s *= scale;
        scores[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j <= last; j++) {
        const e = Math.exp(scores[j] - max);
        scores[j] = e;
        sum += e;
      }
      const inv = 1 / sum;
      for (let i = 0; i < hd; i++) out[oo + i] = 0;
      // out = Σ_j pattern[j] · V[j]: the attention pattern's weighted average of the values.
      for (let j = 0; j <= last; j++) {
        const p = scores[j] * inv;
        const vo = j * hd;
        for (let i = 0; i < hd; i++) out[oo + i] += p * values[vo + i];
      }
    }
  },
};
