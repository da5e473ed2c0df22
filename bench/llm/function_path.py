#!/usr/bin/env python3
"""Decode throughput through a real function over HTTP (the `chat` example on
`wafer serve`), at 1, 4, 8 and 16 concurrent invocations, to compare with the
engine called directly (`llm_bench`'s `aggregate_decode_tok_s_by_streams`).

    python3 bench/llm/function_path.py [--wafer PATH] [--tokens 128]

Each request: greedy, `max_tokens` tokens, `?stream=false`, a prompt that does
not end early (checked: finish must be "length"). Aggregate tokens/s =
completion tokens summed over the requests / wall time, best of 2 after one
warm-up generation (llm_bench measures the engine the same way). Prints JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wafer", default=os.path.expanduser("~/.cache/wafer/target/release/wafer"))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--port", type=int, default=18391)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="wafer-bench-")
    node = subprocess.Popen(
        [args.wafer, "serve", "--listen", f"127.0.0.1:{args.port}", "--data-dir", data,
         "--model", "smollm2-135m-instruct", "--deploy", os.path.join(ROOT, "examples/chat")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "WAFER_LOG": "warn"})
    try:
        for line in node.stdout:
            if b"listening on" in line:
                break
        threading.Thread(target=lambda: [None for _ in node.stdout], daemon=True).start()
        url = f"http://127.0.0.1:{args.port}/chat?stream=false"
        body = {"messages": [{"role": "user", "content": "Write a very long, detailed essay about the history of the Roman Empire."}],
                "temperature": 0, "max_tokens": args.tokens}
        post(url, body)  # warm-up: a whole generation, as llm_bench's warm run
        results = {}
        for streams in [1, 4, 8, 16]:
            best = 0.0
            for _ in range(2):  # best of 2, as llm_bench
                replies = []
                def one():
                    replies.append(post(url, body))
                threads = [threading.Thread(target=one) for _ in range(streams)]
                t = time.perf_counter()
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                elapsed = time.perf_counter() - t
                tokens = sum(r["usage"]["completion_tokens"] for r in replies)
                assert all(r["finish"] == "length" for r in replies), replies[0]
                best = max(best, tokens / elapsed)
            results[str(streams)] = best
        print(json.dumps({"engine": "wafer function (examples/chat over HTTP)", "max_tokens": args.tokens,
                          "aggregate_decode_tok_s_by_streams": results}))
    finally:
        node.terminate()
        node.wait()


if __name__ == "__main__":
    sys.exit(main())
