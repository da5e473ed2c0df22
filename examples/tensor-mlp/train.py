#!/usr/bin/env python3
"""Trains the tensor-mlp example's classifier and writes weights.json.

A 4 -> 16 -> 3 MLP (ReLU, softmax) on the Iris data in iris.csv, by plain
full-batch gradient descent on the cross-entropy with a small L2 penalty,
seeded, NumPy only:

    python3 -m venv ~/.cache/wafer/bench-venv
    ~/.cache/wafer/bench-venv/bin/pip install numpy
    ~/.cache/wafer/bench-venv/bin/python examples/tensor-mlp/train.py

Features are standardised during training; the scaling is then folded into
the first layer, so the shipped model takes raw centimetres. weights.json also
carries the accuracies and a few test vectors (inputs and the probabilities
NumPy computes for them) that the Rust tests compare against.
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ["setosa", "versicolor", "virginica"]
HIDDEN = 16
EPOCHS = 3000
LEARNING_RATE = 0.1
# L2 penalty on the weights (not the biases).
WEIGHT_DECAY = 1e-3
SEED = 0
# Fraction of each class held out for the test accuracy.
TEST_FRACTION = 0.2


def load():
    rows = (HERE / "iris.csv").read_text().strip().splitlines()[1:]
    x = np.array([[float(v) for v in r.split(",")[:4]] for r in rows], dtype=np.float64)
    y = np.array([CLASSES.index(r.split(",")[4]) for r in rows])
    return x, y


def split(y, rng):
    """A stratified split: the same fraction of each class is held out."""
    train, test = [], []
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * TEST_FRACTION))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return np.array(sorted(train)), np.array(sorted(test))


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def forward(params, x):
    w1, b1, w2, b2 = params
    h = np.maximum(x @ w1 + b1, 0.0)
    return softmax(h @ w2 + b2)


def accuracy(params, x, y):
    return float((forward(params, x).argmax(axis=1) == y).mean())


def main():
    rng = np.random.default_rng(SEED)
    x, y = load()
    train, test = split(y, rng)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    xs = (x - mean) / std

    # He initialisation for the ReLU layer, small weights for the output.
    w1 = rng.normal(0.0, np.sqrt(2.0 / 4), (4, HIDDEN))
    b1 = np.zeros(HIDDEN)
    w2 = rng.normal(0.0, np.sqrt(1.0 / HIDDEN), (HIDDEN, len(CLASSES)))
    b2 = np.zeros(len(CLASSES))

    xt, yt = xs[train], np.eye(len(CLASSES))[y[train]]
    n = len(train)
    for epoch in range(EPOCHS):
        pre = xt @ w1 + b1
        h = np.maximum(pre, 0.0)
        p = softmax(h @ w2 + b2)
        dz2 = (p - yt) / n
        dw2, db2 = h.T @ dz2, dz2.sum(axis=0)
        dh = dz2 @ w2.T * (pre > 0)
        dw1, db1 = xt.T @ dh, dh.sum(axis=0)
        w1 -= LEARNING_RATE * (dw1 + WEIGHT_DECAY * w1)
        b1 -= LEARNING_RATE * db1
        w2 -= LEARNING_RATE * (dw2 + WEIGHT_DECAY * w2)
        b2 -= LEARNING_RATE * db2
        if epoch % 500 == 0 or epoch == EPOCHS - 1:
            loss = -np.log(p[np.arange(n), y[train]]).mean()
            print(f"epoch {epoch:5d}  loss {loss:.4f}")

    # Fold the standardisation into layer 1: ((x - m) / s) @ W + b
    # = x @ (W / s[:, None]) + (b - (m / s) @ W).
    w1_raw = w1 / std[:, None]
    b1_raw = b1 - (mean / std) @ w1
    params = [a.astype(np.float32) for a in (w1_raw, b1_raw, w2, b2)]

    x32 = x.astype(np.float32)
    train_acc, test_acc = accuracy(params, x32[train], y[train]), accuracy(params, x32[test], y[test])
    all_acc = accuracy(params, x32, y)
    print(f"accuracy: train {train_acc:.4f} ({len(train)} rows), test {test_acc:.4f} ({len(test)} rows), "
          f"all {all_acc:.4f}")

    vectors = [0, 50, 100, 70, 133]  # one of each class plus two near the versicolor/virginica border
    probs = forward(params, x32[vectors])

    def f32s(a):
        return [float(np.format_float_positional(v, unique=True)) for v in np.asarray(a, dtype=np.float32).ravel()]

    out = {
        "classes": CLASSES,
        "hidden": HIDDEN,
        # Row-major: w1 is [4, hidden], w2 is [hidden, 3].
        "w1": f32s(params[0]),
        "b1": f32s(params[1]),
        "w2": f32s(params[2]),
        "b2": f32s(params[3]),
        "training": {
            "seed": SEED,
            "epochs": EPOCHS,
            "learning_rate": LEARNING_RATE,
            "weight_decay": WEIGHT_DECAY,
            "train_rows": len(train),
            "test_rows": len(test),
            "train_accuracy": round(train_acc, 4),
            "test_accuracy": round(test_acc, 4),
            "all_accuracy": round(all_acc, 4),
        },
        "test_vectors": [
            {"input": f32s(x32[i]), "label": CLASSES[int(y[i])], "predicted": CLASSES[int(p.argmax())],
             "probabilities": f32s(p)}
            for i, p in zip(vectors, probs)
        ],
    }
    # One line per key: small diffs when the weights change, still valid JSON.
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in out.items()]
    (HERE / "weights.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {HERE / 'weights.json'}")


if __name__ == "__main__":
    main()
