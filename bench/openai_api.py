#!/usr/bin/env python3
"""Hosted model API under load: Wafer's /v1/chat/completions vs llama.cpp's
server (llama-cpp-python[server]) on the same GGUF, same threads, same run.

For each concurrency level (default 1, 8, 32) and each server, in turn, N
clients stream chat completions back to back for a fixed window, each with
its own prompt. Reported per server and level:
  * aggregate tokens/s: streamed content chunks (one per token on both
    servers) that arrived inside the window, divided by the window;
  * time to first token (request sent -> first content chunk), p50 and p99,
    over the requests whose first token arrived inside the window, and how
    many were still waiting for one when the window closed.
At the end of a window every client disconnects (both servers then stop
the generations).

The load generator is plain asyncio (no HTTP library) so it costs the two
cores as little as possible; it shares them with the servers.

    python3 bench/openai_api.py                        # builds nothing; see --help
    python3 bench/openai_api.py --levels 1,8,32 --window 30 --max-tokens 128

Needs: a release `wafer` (cargo build --release -p wafer-runtime), the model
(`wafer models pull`), and a venv with llama-cpp-python[server]
(default /root/.cache/wafer/llama-venv).
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HOME = os.path.expanduser("~")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(HOME, ".cache/wafer/target"))
MODEL_NAME = "smollm2-135m-instruct"
MODEL_PATH = os.path.join(HOME, ".cache/wafer/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
TOPICS = ["a lighthouse", "the sea", "a robot", "a garden", "a city at night", "a mountain", "an old clock",
          "a library", "a train", "a dragon", "the moon", "a bakery", "a storm", "a violin", "a desert", "a river"]
EVENT_END = re.compile(rb"\r?\n\r?\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=120, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
                return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


class Server:
    def __init__(self, name, port, headers, model, proc):
        self.name, self.port, self.headers, self.model, self.proc = name, port, headers, model, proc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_wafer(args, workdir):
    port = free_port()
    data = tempfile.mkdtemp(prefix="wafer-data-", dir=workdir)
    log = open(os.path.join(workdir, "wafer.log"), "a")
    cmd = [args.wafer, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data]
    # `--model` installs the catalog defaults; a config names its own [models.*].
    cmd += ["--config", args.wafer_config] if args.wafer_config else ["--model", MODEL_NAME]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    env = dict(os.environ, WAFER_DATA_DIR=data, WAFER_URL=f"http://127.0.0.1:{port}")
    subprocess.run([args.wafer, "tenants", "create", "bench"], env=env, check=True, capture_output=True)
    out = subprocess.run([args.wafer, "keys", "create", "--tenant", "bench", "--scope", "invoke"],
                         env=env, check=True, capture_output=True, text=True).stdout
    key = re.search(r"wk_\S+", out).group(0)
    return Server("wafer", port, {"Authorization": f"Bearer {key}"}, MODEL_NAME, proc)


def start_llama(args, workdir):
    port = free_port()
    log = open(os.path.join(workdir, "llama.log"), "a")
    cmd = [args.llama_python, "-m", "llama_cpp.server", "--model", args.model_path,
           "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
           "--n_ctx", "2048", "--host", "127.0.0.1", "--port", str(port),
           # Queue concurrent requests; by default a new request interrupts the
           # one streaming, and under concurrency no client gets a token.
           "--interrupt_requests", "False"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/v1/models")
    return Server("llama.cpp server", port, {}, args.model_path, proc)


async def stream_chat(server, body, on_first, on_token):
    """One streamed chat completion over a fresh connection; calls
    on_token(t) for each content chunk."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        payload = json.dumps(body).encode()
        head = [f"POST /v1/chat/completions HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in server.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            rest = await reader.read(2000)
            raise RuntimeError(f"{server.name}: {status!r} {rest[:500]!r}")
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        buffer = b""
        first = True

        def feed(data):
            nonlocal buffer, first
            buffer += data
            parts = EVENT_END.split(buffer)
            buffer = parts.pop()
            done = False
            for event in parts:
                if not event.startswith(b"data: "):
                    continue
                data = event[6:]
                if data.strip() == b"[DONE]":
                    done = True
                    continue
                chunk = json.loads(data)
                choices = chunk.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if first:
                        first = False
                        on_first(now)
                    on_token(now)
            return done

        while True:
            if chunked:
                size_line = await reader.readline()
                if not size_line:
                    return
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                data = await reader.read(65536)
                if not data:
                    return
            if feed(data):
                return
    finally:
        writer.close()


async def run_level(server, clients, window, max_tokens, seed_base):
    tokens_in_window = 0
    ttfts = []
    waiting = {}
    errors = []
    start = time.perf_counter()
    end = start + window

    async def client(c):
        nonlocal tokens_in_window
        i = 0
        while time.perf_counter() < end:
            i += 1
            topic = TOPICS[(c * 7 + i) % len(TOPICS)]
            body = {
                "model": server.model,
                "messages": [{"role": "user", "content": f"Write a short story about {topic}. (#{c}.{i})"}],
                "max_tokens": max_tokens,
                "temperature": 0.8,
                "seed": seed_base + c * 1000 + i,
                "stream": True,
            }
            sent = time.perf_counter()
            waiting[c] = sent

            def on_first(t, sent=sent):
                waiting.pop(c, None)
                if t <= end:
                    ttfts.append(t - sent)

            def on_token(t):
                nonlocal tokens_in_window
                if t <= end:
                    tokens_in_window += 1

            try:
                await stream_chat(server, body, on_first, on_token)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as e:  # noqa: BLE001 - reported, not fatal
                errors.append(str(e))
                await asyncio.sleep(0.1)
            waiting.pop(c, None)

    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    await asyncio.sleep(window)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ttfts.sort()

    def pct(p):
        if not ttfts:
            return float("nan")
        return ttfts[min(len(ttfts) - 1, int(round(p / 100 * (len(ttfts) - 1))))]

    return {
        "server": server.name,
        "clients": clients,
        "tokens_per_s": tokens_in_window / window,
        "tokens": tokens_in_window,
        "first_tokens": len(ttfts),
        "ttft_p50_ms": pct(50) * 1000,
        "ttft_p99_ms": pct(99) * 1000,
        "still_waiting_at_end": len(waiting),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wafer", default=os.path.join(TARGET, "release", "wafer"))
    p.add_argument("--wafer-config", help=f"a node wafer.toml with [models.{MODEL_NAME}] (e.g. to change max_batch)")
    p.add_argument("--llama-python", default=os.path.join(HOME, ".cache/wafer/llama-venv/bin/python"))
    p.add_argument("--model-path", default=MODEL_PATH)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--window", type=float, default=30.0, help="seconds of load per server and level")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--only", choices=["wafer", "llama"], help="run one server")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    workdir = tempfile.mkdtemp(prefix="wafer-openai-bench-")
    starters = []
    if args.only != "llama":
        starters.append(start_wafer)
    if args.only != "wafer":
        starters.append(start_llama)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    results = []
    server = None
    try:
        # A fresh server for every level, so that requests a server still
        # holds from the previous level's disconnected clients (llama.cpp's
        # server runs queued requests whose client is gone) cost nothing.
        for level in levels:
            for start in starters:
                server = start(args, workdir)
                asyncio.run(run_level(server, 1, 3.0, 8, 0))  # warm-up
                r = asyncio.run(run_level(server, level, args.window, args.max_tokens, level))
                server.stop()
                server = None
                results.append(r)
                print(json.dumps(r), flush=True)
        print(f"load average at end: {os.getloadavg()}")
        print()
        print("| clients | server | tokens/s | TTFT p50 ms | TTFT p99 ms | first tokens | waiting at end | errors |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in results:
            print(f"| {r['clients']} | {r['server']} | {r['tokens_per_s']:.1f} | {r['ttft_p50_ms']:.0f} | "
                  f"{r['ttft_p99_ms']:.0f} | {r['first_tokens']} | {r['still_waiting_at_end']} | {r['errors']} |")
        if len(starters) == 2:
            print()
            for level in levels:
                w = next(r for r in results if r["clients"] == level and r["server"] == "wafer")
                l = next(r for r in results if r["clients"] == level and r["server"] != "wafer")
                ratio = w["tokens_per_s"] / l["tokens_per_s"] if l["tokens_per_s"] else float("inf")
                print(f"{level} clients: wafer / llama.cpp server throughput = {ratio:.2f}x")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=2)
    finally:
        if server is not None:
            server.stop()
        print(f"logs in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
