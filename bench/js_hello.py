#!/usr/bin/env python3
"""JavaScript hello vs Rust hello on one Wafer node: cold start and requests/s.

examples/js/hello (TypeScript, @wafer/sdk, componentize-js) against
examples/hello (Rust, wafer-sdk), same node, same run:

  * cold start after deploy: `wafer deploy` (upload, validation, compilation
    to machine code, stored in the data dir), then the first response;
  * cold start after a node restart: the node loads the precompiled machine
    code from its data dir; process start -> ready, then the first response;
  * throughput: wrk on each route, alternating, medians over rounds.

Goal (issue 6): JS hello >= 30% of Rust hello's requests/s.

Run with:  python3 bench/js_hello.py [--rounds 3] [--duration 10] [--connections 32]
Needs: wrk (apt-get install wrk), Node.js 20.6+ with npm, a release build of
wafer (the script builds it, the Rust example and the JS example; --no-build
uses what is there, --wafer PATH another binary).
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
PORT = 18090
URL = f"http://127.0.0.1:{PORT}"
RUST_DIR = os.path.join(ROOT, "examples/hello")
JS_DIR = os.path.join(ROOT, "examples/js/hello")


def build(wafer_given):
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    if not wafer_given:
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "wafer-runtime"], cwd=ROOT, env=env, check=True)
    env.pop("CARGO_TARGET_DIR")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip2", "-p", "hello"],
                   cwd=os.path.join(ROOT, "examples"), env=env, check=True)
    sdk = os.path.join(ROOT, "sdk/js")
    if not os.path.exists(os.path.join(sdk, "node_modules/@bytecodealliance/componentize-js")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=sdk, check=True)
    subprocess.run(["node", os.path.join(sdk, "bin/wafer-build.mjs"), JS_DIR], check=True,
                   env=dict(os.environ, WAFER_JS_CACHE=os.path.join(TARGET, "wafer-js-cache")))


def get(path, timeout=30):
    with urllib.request.urlopen(URL + path, timeout=timeout) as response:
        response.read()
        return response.status


def wait_ok(path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if get(path, timeout=5) == 200:
                return
        except Exception:
            time.sleep(0.005)
    raise RuntimeError(f"{path} never answered")


def start(wafer, data, deploy=()):
    cmd = [wafer, "serve", "--listen", f"127.0.0.1:{PORT}", "--data-dir", data]
    for d in deploy:
        cmd += ["--deploy", d]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, WAFER_LOG="warn"))


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def timed_get(path):
    t = time.perf_counter()
    status = get(path)
    assert status == 200, status
    return (time.perf_counter() - t) * 1000


def cold_start(wafer, folder, route):
    """Deploy then first response; restart then first response. Seconds and ms."""
    data = tempfile.mkdtemp()
    try:
        node = start(wafer, data)
        wait_ok("/healthz")
        env = dict(os.environ, WAFER_URL=URL, WAFER_DATA_DIR=data)
        t = time.perf_counter()
        subprocess.run([wafer, "deploy", folder], env=env, check=True, stdout=subprocess.DEVNULL)
        deploy_s = time.perf_counter() - t
        first_after_deploy = timed_get(route)
        warm = statistics.median(timed_get(route) for _ in range(20))
        stop(node)

        t = time.perf_counter()
        node = start(wafer, data)
        wait_ok("/healthz")
        ready_s = time.perf_counter() - t
        first_after_restart = timed_get(route)
        stop(node)
        return {"deploy_s": deploy_s, "first_after_deploy_ms": first_after_deploy, "ready_s": ready_s,
                "first_after_restart_ms": first_after_restart, "warm_ms": warm,
                "size_mb": os.path.getsize(component_of(folder)) / 1e6}
    finally:
        shutil.rmtree(data, ignore_errors=True)


def component_of(folder):
    text = open(os.path.join(folder, "wafer.toml")).read()
    return os.path.join(folder, re.search(r'^component\s*=\s*"([^"]+)"', text, re.M).group(1))


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wafer", help="a wafer binary to use instead of building one")
    parser.add_argument("--no-build", action="store_true", help="use the built binary and components as they are")
    args = parser.parse_args()
    wafer = args.wafer or os.path.join(TARGET, "release", "wafer")
    if not args.no_build:
        build(bool(args.wafer))
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install wrk")

    cold = {}
    for name, folder, route in [("rust", RUST_DIR, "/hello"), ("js", JS_DIR, "/hello-js")]:
        runs = [cold_start(wafer, folder, route) for _ in range(args.rounds)]
        cold[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"cold start {name}: {cold[name]}", flush=True)

    data = tempfile.mkdtemp()
    node = start(wafer, data, [RUST_DIR, JS_DIR])
    wait_ok("/hello")
    wait_ok("/hello-js")
    results = {"rust": [], "js": []}
    try:
        for round_ in range(args.rounds):
            order = [("rust", "/hello"), ("js", "/hello-js")]
            if round_ % 2:
                order.reverse()
            for name, route in order:
                wrk(URL + route, 2, args.connections)  # warm-up
                results[name].append(wrk(URL + route, args.duration, args.connections))
            print(f"round {round_ + 1}: rust {results['rust'][-1]['rps']:.0f} req/s, "
                  f"js {results['js'][-1]['rps']:.0f} req/s", flush=True)
    finally:
        stop(node)
        shutil.rmtree(data, ignore_errors=True)

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print()
    print(f"cold start, medians of {args.rounds} fresh nodes:")
    print("| function | component | deploy (upload, validate, compile) | first response after deploy | "
          "restart to ready (cached machine code) | first response after restart | warm request |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, label in [("rust", "Rust hello"), ("js", "JS hello")]:
        c = cold[name]
        print(f"| {label} | {c['size_mb']:.1f} MB | {c['deploy_s'] * 1000:.0f} ms | {c['first_after_deploy_ms']:.1f} ms | "
              f"{c['ready_s'] * 1000:.0f} ms | {c['first_after_restart_ms']:.1f} ms | {c['warm_ms']:.2f} ms |")
    print()
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s --latency, {args.rounds} rounds alternating, medians; "
          "one node (metered), both functions deployed")
    print("| function | req/s | p50 ms | p99 ms | non-2xx |")
    print("| --- | --- | --- | --- | --- |")
    for name, label in [("rust", "Rust hello (/hello)"), ("js", "JS hello (/hello-js)")]:
        print(f"| {label} | {med(name, 'rps'):.0f} | {med(name, 'p50'):.2f} | {med(name, 'p99'):.2f} | "
              f"{sum(r['non2xx'] for r in results[name])} |")
    ratio = med("js", "rps") / med("rust", "rps")
    print(f"\nJS / Rust throughput: {ratio * 100:.1f}% (goal >= 30%)")


if __name__ == "__main__":
    main()
