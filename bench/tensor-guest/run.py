#!/usr/bin/env python3
"""Guest-side tensor benchmark against a running Wafer node (stdlib only).

Measures, from inside a function:
  1. host-call overhead of a trivial tensor op (`wafer_test_tensor.wasm`,
     `trivial?n=N`: elapsed monotonic-clock ns / N), in two modes;
  2. the tensor-mlp example's forward pass through host tensors
     (`engine=host`) vs the same MLP in plain Rust inside wasm
     (`engine=wasm`), at several batch sizes: the function's own timing
     (`x-forward-ns`) and the client's round trip.

It also checks that the two engines agree (same classes, probabilities within
1e-4). See README.md for the setup. Prints a Markdown report; `--json FILE`
also writes the raw numbers.
"""

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IRIS = ROOT / "examples" / "tensor-mlp" / "iris.csv"


def request(url, body=None, headers=None):
    """Returns (status, headers, body bytes, client seconds)."""
    data = None if body is None else body.encode()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if body is not None else "GET")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            payload = resp.read()
            status, hdrs = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        payload, status, hdrs = e.read(), e.code, dict(e.headers)
    return status, hdrs, payload, time.perf_counter() - start


def must(status, payload, what):
    if status != 200:
        sys.exit(f"{what}: HTTP {status}: {payload[:300].decode(errors='replace')}")


def median_p90(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return statistics.median(values), p90


def bench_trivial(args, report, raw):
    base = args.url.rstrip("/") + args.tensor_prefix
    status, _, payload, _ = request(f"{base}/device")
    must(status, payload, "device")
    device = payload.decode()
    report.append(f"## Host-call overhead (device `{device}`)\n")
    report.append("Per iteration, measured inside the guest (wasi monotonic clock), median of "
                  f"{args.repeats} requests (p90 in brackets).\n")
    report.append("| mode | calls per iteration | n | ns per iteration | ns per host call |")
    report.append("| --- | --- | --- | --- | --- |")
    # Calls per iteration, counting resource drops (each is a host call too).
    calls = {"op": 2, "create-op": 4}
    for mode in ("op", "create-op"):
        for n in args.trivial_n:
            per_iter = []
            for i in range(args.warmup + args.repeats):
                status, _, payload, _ = request(f"{base}/trivial?n={n}&mode={mode}")
                must(status, payload, f"trivial {mode} n={n}")
                if i >= args.warmup:
                    per_iter.append(json.loads(payload)["per_iter_ns"])
            med, p90 = median_p90(per_iter)
            raw.append({"bench": "trivial", "mode": mode, "n": n, "per_iter_ns": per_iter})
            report.append(f"| {mode} | {calls[mode]} | {n} | {med:,.0f} ({p90:,.0f}) | {med / calls[mode]:,.0f} |")
    report.append("")


def iris_rows():
    lines = IRIS.read_text().strip().splitlines()[1:]
    return [[float(v) for v in line.split(",")[:4]] for line in lines]


def bench_mlp(args, report, raw):
    url = args.url.rstrip("/") + args.mlp_path
    rows = iris_rows()
    report.append("## MLP forward (4 -> 16 -> 3): host tensors vs wasm\n")
    report.append(f"Median of {args.repeats} requests (p90 in brackets). `forward` is the function's own timing "
                  "(`x-forward-ns`: uploads, ops and download for `host`), `round trip` the client's.\n")
    report.append("| batch | engine | device | forward µs | round trip ms |")
    report.append("| --- | --- | --- | --- | --- |")
    for batch in args.batches:
        inputs = [rows[i % len(rows)] for i in range(batch)]
        body = json.dumps({"inputs": inputs})
        outputs = {}
        for engine in ("host", "wasm"):
            forward, trip = [], []
            for i in range(args.warmup + args.repeats):
                status, hdrs, payload, secs = request(
                    f"{url}?engine={engine}", body, {"content-type": "application/json"}
                )
                must(status, payload, f"mlp engine={engine} batch={batch}")
                if i >= args.warmup:
                    forward.append(int(hdrs.get("x-forward-ns") or hdrs.get("X-Forward-Ns") or 0) / 1e3)
                    trip.append(secs * 1e3)
            out = json.loads(payload)
            outputs[engine] = out
            (fmed, fp90), (tmed, tp90) = median_p90(forward), median_p90(trip)
            raw.append({"bench": "mlp", "engine": engine, "batch": batch, "forward_us": forward, "round_trip_ms": trip})
            device = out.get("device", "wasm")
            report.append(f"| {batch} | {engine} | {device} | {fmed:,.1f} ({fp90:,.1f}) | {tmed:.2f} ({tp90:.2f}) |")
        host, wasm = outputs["host"], outputs["wasm"]
        worst = max(
            abs(a - b)
            for ph, pw in zip(host["probabilities"], wasm["probabilities"])
            for a, b in zip(ph, pw)
        )
        if host["classes"] != wasm["classes"] or worst > 1e-4:
            report.append(f"\n**engines disagree at batch {batch}: max |Δp| = {worst:.2e}**\n")
    report.append("")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the node's gateway")
    p.add_argument("--tensor-prefix", default="/tensor-test", help="route of wafer_test_tensor.wasm")
    p.add_argument("--mlp-path", default="/mlp", help="route of the tensor-mlp example")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--trivial-n", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 1024])
    p.add_argument("--skip", choices=["trivial", "mlp"], action="append", default=[])
    p.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = p.parse_args()

    report, raw = ["# Guest-side tensor benchmark\n", f"Node: {args.url}\n"], []
    if "trivial" not in args.skip:
        bench_trivial(args, report, raw)
    if "mlp" not in args.skip:
        bench_mlp(args, report, raw)
    print("\n".join(report))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1) + "\n")


if __name__ == "__main__":
    main()
