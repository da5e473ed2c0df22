#!/usr/bin/env python3
"""Hello-world HTTP throughput and latency: `wafer serve` vs `wasmtime serve`.

Same component (examples/hello), same machine, same run, alternating rounds;
reports medians and the ratio. Also reads wafer's instantiation time per
request from its /metrics.

Run with:  python3 bench/http_hello.py [--rounds 3] [--duration 10] [--connections 32]
Needs: wrk (apt-get install wrk), wasmtime 48 (cargo install wasmtime-cli@48.0.8 --locked
--root ~/.cache/wafer/wasmtime-cli), a release build of wafer (the script builds it).
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/wafer/target"))
WAFER = os.path.join(TARGET, "release", "wafer")
COMPONENT = os.path.join(ROOT, "examples/target/wasm32-wasip2/release/hello.wasm")


def find_wasmtime():
    for candidate in [os.environ.get("WASMTIME"), shutil.which("wasmtime"),
                      os.path.expanduser("~/.cache/wafer/wasmtime-cli/bin/wasmtime")]:
        if candidate and os.path.exists(candidate):
            return candidate
    sys.exit("wasmtime not found: cargo install wasmtime-cli@48.0.8 --locked --root ~/.cache/wafer/wasmtime-cli")


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "wafer-runtime"], cwd=ROOT, env=env, check=True)
    env.pop("CARGO_TARGET_DIR")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip2"],
                   cwd=os.path.join(ROOT, "examples"), env=env, check=True)


def wait_ready(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def wrk(url, duration, connections, threads=2):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def latency(pct):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": latency(50), "p99": latency(99), "non2xx": int(errors.group(1)) if errors else 0}


def start(cmd, url):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(url)
    return proc


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def metric(url, name):
    text = urllib.request.urlopen(url).read().decode()
    m = re.search(rf"^{name} ([\d.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--commit-interval", default="2ms", help="billing.commit_interval of the metered node")
    args = parser.parse_args()
    build()
    wasmtime = find_wasmtime()
    version = subprocess.run([wasmtime, "--version"], capture_output=True, text=True).stdout.strip()
    results = {"wafer": [], "wafer-unmetered": [], "wasmtime": []}
    instantiation = []
    for round_ in range(args.rounds):
        for name, billing in [("wafer", "true"), ("wafer-unmetered", "false")]:
            data = tempfile.mkdtemp()
            config = os.path.join(data, "node.toml")
            with open(config, "w") as f:
                f.write(f"[billing]\nenabled = {billing}\ncommit_interval = \"{args.commit_interval}\"\n"
                        "[pricing]\nper_invocation = 2\nper_gb_second = 17\n")
            wafer = start([WAFER, "serve", "--listen", "127.0.0.1:18080", "--data-dir", os.path.join(data, "d"),
                           "--config", config, "--deploy", os.path.join(ROOT, "examples/hello")],
                          "http://127.0.0.1:18080/hello")
            wrk("http://127.0.0.1:18080/hello", 2, args.connections)  # warm-up
            s0 = metric("http://127.0.0.1:18080/metrics", "wafer_instantiation_seconds_sum")
            c0 = metric("http://127.0.0.1:18080/metrics", "wafer_instantiation_seconds_count")
            results[name].append(wrk("http://127.0.0.1:18080/hello", args.duration, args.connections))
            s1 = metric("http://127.0.0.1:18080/metrics", "wafer_instantiation_seconds_sum")
            c1 = metric("http://127.0.0.1:18080/metrics", "wafer_instantiation_seconds_count")
            if name == "wafer":
                instantiation.append((s1 - s0) / max(c1 - c0, 1) * 1e6)
            stop(wafer)
            shutil.rmtree(data, ignore_errors=True)

        ws = start([wasmtime, "serve", "--addr", "127.0.0.1:18081", "-Scli", "--env", "GREETING=Hello", COMPONENT],
                   "http://127.0.0.1:18081/hello")
        wrk("http://127.0.0.1:18081/hello", 2, args.connections)
        results["wasmtime"].append(wrk("http://127.0.0.1:18081/hello", args.duration, args.connections))
        stop(ws)
        print(f"round {round_ + 1}: wafer {results['wafer'][-1]['rps']:.0f} req/s "
              f"(unmetered {results['wafer-unmetered'][-1]['rps']:.0f}), "
              f"wasmtime {results['wasmtime'][-1]['rps']:.0f} req/s, instantiation {instantiation[-1]:.1f} µs",
              flush=True)

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print()
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s --latency, {args.rounds} rounds, medians; peer: {version}")
    print("| server | req/s | p50 ms | p99 ms | non-2xx |")
    print("| --- | --- | --- | --- | --- |")
    labels = {"wafer": "wafer serve (metered, durable ledger)", "wafer-unmetered": "wafer serve, billing.enabled = false",
              "wasmtime": "wasmtime serve -Scli"}
    for name in ["wafer", "wafer-unmetered", "wasmtime"]:
        print(f"| {labels[name]} | {med(name, 'rps'):.0f} | {med(name, 'p50'):.2f} | {med(name, 'p99'):.2f} | "
              f"{sum(r['non2xx'] for r in results[name])} |")
    print(f"\nbilling.commit_interval = {args.commit_interval}")
    print(f"throughput ratio wafer / wasmtime serve: {med('wafer', 'rps') / med('wasmtime', 'rps'):.2f}x")
    cost = 1 - med('wafer', 'rps') / med('wafer-unmetered', 'rps')
    print(f"metering + durable ledger cost on hello throughput: {cost * 100:.1f}%")
    print(f"wafer instantiation per request (from /metrics): median {statistics.median(instantiation):.1f} µs")


if __name__ == "__main__":
    main()
