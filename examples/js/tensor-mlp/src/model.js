// The classifier: a 4 -> 16 -> 3 MLP (ReLU, softmax) with the weights the
// Rust example ships (examples/tensor-mlp/weights.json, trained by its
// train.py), and two forward passes: on the host's tensors, and in plain JS.
import { Tensor } from '@wafer/sdk';
import weights from '../../../tensor-mlp/weights.json';

/** Inputs per row: sepal length, sepal width, petal length, petal width (cm). */
export const FEATURES = 4;

export class Mlp {
  constructor(w) {
    const h = w.hidden;
    const c = w.classes.length;
    const expected = [
      ['w1', w.w1.length, FEATURES * h],
      ['b1', w.b1.length, h],
      ['w2', w.w2.length, h * c],
      ['b2', w.b2.length, c],
    ];
    for (const [name, got, want] of expected) {
      if (got !== want) throw new Error(`weights: ${name} has ${got} values, expected ${want}`);
    }
    if (h === 0 || c === 0) throw new Error('weights: no classes or no hidden units');
    this.classes = w.classes;
    this.hidden = h;
    this.w1 = Float32Array.from(w.w1);
    this.b1 = Float32Array.from(w.b1);
    this.w2 = Float32Array.from(w.w2);
    this.b2 = Float32Array.from(w.b2);
  }

  /** The shipped model. */
  static shipped() {
    return new Mlp(weights);
  }

  /** The test vectors NumPy computed when training. */
  static testVectors() {
    return weights.test_vectors;
  }

  /** Class probabilities for each row on the host's tensor device, and the device. */
  forwardTensor(inputs) {
    const h = this.hidden;
    const c = this.classes.length;
    const x = Tensor.fromF32([inputs.length, FEATURES], inputs.flat());
    const w1 = Tensor.fromF32([FEATURES, h], this.w1);
    const b1 = Tensor.fromF32([h], this.b1);
    const w2 = Tensor.fromF32([h, c], this.w2);
    const b2 = Tensor.fromF32([c], this.b2);
    const probs = x.matmul(w1).add(b1).relu().matmul(w2).add(b2).softmax(-1);
    const flat = probs.toF32();
    const rows = [];
    for (let i = 0; i < inputs.length; i++) rows.push(Array.from(flat.subarray(i * c, (i + 1) * c)));
    return { probabilities: rows, device: probs.device };
  }

  /** Class probabilities for each row, in plain JS (f32 like the host). */
  forwardReference(inputs) {
    const h = this.hidden;
    const c = this.classes.length;
    return inputs.map((x) => {
      const hidden = Float32Array.from(this.b1);
      for (let i = 0; i < FEATURES; i++) {
        for (let j = 0; j < h; j++) hidden[j] += x[i] * this.w1[i * h + j];
      }
      const logits = Float32Array.from(this.b2);
      for (let j = 0; j < h; j++) {
        const v = Math.max(hidden[j], 0);
        for (let k = 0; k < c; k++) logits[k] += v * this.w2[j * c + k];
      }
      return softmax(Array.from(logits));
    });
  }
}

/** Subtracting the maximum first so exp cannot overflow. */
function softmax(v) {
  const max = Math.max(...v);
  const e = v.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** The index of the largest value (the first on ties, as the host's argmax). */
export function argmax(v) {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}
