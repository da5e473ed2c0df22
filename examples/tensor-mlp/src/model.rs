//! The classifier: a 4 → 16 → 3 MLP (ReLU, softmax) with weights trained by
//! `train.py`, and two forward passes over it: one through the host's
//! tensors, one in plain Rust (the reference, and the `engine=wasm` path).

use serde::Deserialize;
use wafer_sdk::tensor::{Tensor, TensorError};

/// Inputs per row: sepal length, sepal width, petal length, petal width (cm).
pub const FEATURES: usize = 4;

/// The weights as `train.py` writes them.
const WEIGHTS_JSON: &str = include_str!("../weights.json");

/// One input row.
pub type Row = [f32; FEATURES];

#[derive(Deserialize)]
struct WeightsFile {
    classes: Vec<String>,
    hidden: usize,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// A 2-layer perceptron: `softmax(relu(x · w1 + b1) · w2 + b2)`.
pub struct Mlp {
    classes: Vec<String>,
    hidden: usize,
    /// `[FEATURES, hidden]`, row-major.
    w1: Vec<f32>,
    /// `[hidden]`.
    b1: Vec<f32>,
    /// `[hidden, classes]`, row-major.
    w2: Vec<f32>,
    /// `[classes]`.
    b2: Vec<f32>,
}

impl Mlp {
    /// The shipped model (`weights.json`).
    pub fn shipped() -> Result<Self, String> {
        Self::from_json(WEIGHTS_JSON)
    }

    /// A model from `train.py`'s JSON, checking that the sizes agree.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let w: WeightsFile = serde_json::from_str(text).map_err(|e| format!("weights: {e}"))?;
        let (h, c) = (w.hidden, w.classes.len());
        let expected = [
            ("w1", w.w1.len(), FEATURES * h),
            ("b1", w.b1.len(), h),
            ("w2", w.w2.len(), h * c),
            ("b2", w.b2.len(), c),
        ];
        for (name, got, want) in expected {
            if got != want {
                return Err(format!("weights: {name} has {got} values, expected {want}"));
            }
        }
        if c == 0 || h == 0 {
            return Err("weights: no classes or no hidden units".into());
        }
        Ok(Self {
            classes: w.classes,
            hidden: h,
            w1: w.w1,
            b1: w.b1,
            w2: w.w2,
            b2: w.b2,
        })
    }

    /// The class names, in output order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Class probabilities for each row, computed on the host's tensor
    /// device, and the device's name.
    pub fn forward_tensor(&self, inputs: &[Row]) -> Result<(Vec<Vec<f32>>, String), TensorError> {
        let (h, c) = (self.hidden, self.classes.len());
        let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
        let x = Tensor::from_f32(&[inputs.len(), FEATURES], &flat)?;
        let w1 = Tensor::from_f32(&[FEATURES, h], &self.w1)?;
        let b1 = Tensor::from_f32(&[h], &self.b1)?;
        let w2 = Tensor::from_f32(&[h, c], &self.w2)?;
        let b2 = Tensor::from_f32(&[c], &self.b2)?;

        let hidden = (&x.matmul(&w1)? + &b1)?.relu()?;
        let probs = (&hidden.matmul(&w2)? + &b2)?.softmax(-1)?;
        let rows = probs.to_f32()?.chunks(c).map(<[f32]>::to_vec).collect();
        Ok((rows, probs.device()))
    }

    /// Class probabilities for each row, in plain Rust.
    pub fn forward_reference(&self, inputs: &[Row]) -> Vec<Vec<f32>> {
        let (h, c) = (self.hidden, self.classes.len());
        inputs
            .iter()
            .map(|x| {
                let mut hidden = self.b1.clone();
                for (xi, w1_row) in x.iter().zip(self.w1.chunks_exact(h)) {
                    for (acc, w) in hidden.iter_mut().zip(w1_row) {
                        *acc += xi * w;
                    }
                }
                let mut logits = self.b2.clone();
                for (hi, w2_row) in hidden.iter().zip(self.w2.chunks_exact(c)) {
                    let hi = hi.max(0.0);
                    for (acc, w) in logits.iter_mut().zip(w2_row) {
                        *acc += hi * w;
                    }
                }
                softmax(&mut logits);
                logits
            })
            .collect()
    }
}

/// In place, subtracting the maximum first so `exp` cannot overflow.
fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

/// The index of the largest value (the first one on ties, as the host's
/// `argmax`).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if v.get(best).is_some_and(|b| x > b) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Expected {
        training: Training,
        test_vectors: Vec<TestVector>,
    }

    #[derive(Deserialize)]
    struct Training {
        all_accuracy: f64,
    }

    #[derive(Deserialize)]
    struct TestVector {
        input: Row,
        /// The class NumPy picked (the true label may differ near a border).
        predicted: String,
        probabilities: Vec<f32>,
    }

    fn model() -> Mlp {
        match Mlp::shipped() {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    fn expected() -> Expected {
        match serde_json::from_str(WEIGHTS_JSON) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn reference_matches_numpy() {
        let mlp = model();
        let vectors = expected().test_vectors;
        assert!(!vectors.is_empty());
        let inputs: Vec<Row> = vectors.iter().map(|v| v.input).collect();
        let probs = mlp.forward_reference(&inputs);
        for (v, p) in vectors.iter().zip(&probs) {
            for (got, want) in p.iter().zip(&v.probabilities) {
                assert!(
                    (got - want).abs() < 1e-5,
                    "{:?}: {p:?} vs numpy {:?}",
                    v.input,
                    v.probabilities
                );
            }
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(mlp.classes()[argmax(p)], v.predicted);
        }
    }

    #[test]
    fn reference_accuracy_on_iris_matches_training() {
        let mlp = model();
        let mut inputs = Vec::new();
        let mut labels = Vec::new();
        for line in include_str!("../iris.csv").lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let mut row = [0.0; FEATURES];
            for (r, f) in row.iter_mut().zip(&fields) {
                *r = f.parse().unwrap_or(f32::NAN);
            }
            inputs.push(row);
            labels.push(fields.get(FEATURES).copied().unwrap_or_default().to_string());
        }
        assert_eq!(inputs.len(), 150);
        let correct = mlp
            .forward_reference(&inputs)
            .iter()
            .zip(&labels)
            .filter(|(p, label)| &mlp.classes()[argmax(p)] == *label)
            .count();
        let accuracy = correct as f64 / inputs.len() as f64;
        assert!((accuracy - expected().training.all_accuracy).abs() < 1e-3, "{accuracy}");
    }

    #[test]
    fn tensor_forward_needs_the_host() {
        let err = model().forward_tensor(&[[5.1, 3.5, 1.4, 0.2]]).err();
        assert!(matches!(err, Some(TensorError::Unavailable(_))), "{err:?}");
    }

    #[test]
    fn inconsistent_weights_are_rejected() {
        let text = r#"{"classes":["a"],"hidden":2,"w1":[1],"b1":[0,0],"w2":[1,1],"b2":[0]}"#;
        let err = Mlp::from_json(text).err().unwrap_or_default();
        assert!(err.contains("w1 has 1 values, expected 8"), "{err}");
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[1.0]), 0);
    }
}
