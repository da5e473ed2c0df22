#!/usr/bin/env python3
"""Peer benchmark for Wafer's LLM engine: llama.cpp (llama-cpp-python) and, if built, candle.

Run (from the repo root; see bench/llm/README.md for building the venv and candle peer):

    /root/.cache/wafer/llama-venv/bin/python bench/llm/peers.py [--model PATH] [--threads 2] [--candle]

Measures on SmolLM2-135M-Instruct Q4_1 with 2 threads:
  * prefill tok/s: llm.eval(prompt_ids) over a fixed 128-token prompt (fresh context),
    best of 3 (after one warm-up run);
  * decode tok/s: right after that prefill, 128 greedy tokens, each one
    `next = argmax(last logits); llm.eval([next])` (hand loop: one llama_decode per
    token, no sampler), best of 3.
The prompt ids are written to bench/llm/prompt_128.json so the candle peer
(bench/llm/candle-peer) processes exactly the same tokens.
Prints one JSON document (llama.cpp, plus candle with --candle).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = "/root/.cache/wafer/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
CANDLE_BIN = "/root/.cache/wafer/target-candle-native/release/candle-peer"

PROMPT_TEXT = (
    "The history of computing is a story of abstraction. Early machines were programmed by "
    "rewiring panels and flipping switches, and every program was tied to the hardware it ran on. "
    "Assembly languages gave names to instructions, compilers turned formulas into machine code, and "
    "operating systems let many programs share one computer safely. Virtual machines and containers "
    "went further, isolating whole applications from each other. WebAssembly is the newest step: a "
    "portable, sandboxed instruction format that runs at near-native speed in browsers and on servers. "
    "Because a module can only touch what its host explicitly grants, it is a natural fit for running "
    "untrusted code close to the data, for plugins, and for serverless functions that must start in "
    "microseconds rather than seconds. Today, developers compile Rust, C, Go and many other languages"
)
N_PROMPT = 128
N_GEN = 128
REPEATS = 3


def prompt_ids(llm):
    ids = llm.tokenize(PROMPT_TEXT.encode(), add_bos=True, special=True)
    if len(ids) < N_PROMPT:
        raise SystemExit(f"prompt too short: {len(ids)} tokens")
    return ids[:N_PROMPT]


def bench_llama_cpp(model, threads):
    t = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                logits_all=False, seed=0, verbose=False)
    load_s = time.perf_counter() - t
    ids = prompt_ids(llm)
    with open(os.path.join(HERE, "prompt_128.json"), "w") as fh:
        json.dump({"note": "first 128 ids of peers.py PROMPT_TEXT, llama.cpp tokenizer, add_bos=True",
                   "text": PROMPT_TEXT, "ids": ids}, fh)

    n_vocab = llm.n_vocab()

    def last_argmax():
        # logits_all=False: llama-cpp-python does not copy logits into llm.scores, read them from the context
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))))

    # warm-up
    llm.reset()
    llm.eval(ids)
    for _ in range(4):
        llm.eval([last_argmax()])

    best_prefill, best_decode, gen = float("inf"), float("inf"), []
    for _ in range(REPEATS):
        llm.reset()  # n_tokens = 0; eval() trims the KV cache to n_tokens
        t = time.perf_counter()
        llm.eval(ids)
        best_prefill = min(best_prefill, time.perf_counter() - t)
        nxt = last_argmax()
        out = [nxt]
        t = time.perf_counter()
        for _ in range(N_GEN):
            llm.eval([nxt])
            nxt = last_argmax()
            out.append(nxt)
        best_decode = min(best_decode, time.perf_counter() - t)
        gen = out
    return {
        "engine": "llama.cpp",
        "llama_cpp_python_version": llama_cpp.__version__,
        "threads": threads,
        "load_s": round(load_s, 4),
        "prompt_tokens": len(ids),
        "prefill_s_best": round(best_prefill, 5),
        "prefill_tok_s": round(len(ids) / best_prefill, 2),
        "decode_tokens": N_GEN,
        "decode_s_best": round(best_decode, 5),
        "decode_tok_s": round(N_GEN / best_decode, 2),
        "decode_method": "hand loop: llm.eval([token]) one token at a time + numpy argmax of last logits (llama_get_logits_ith(ctx, -1))",
        "repeats": REPEATS,
        "first_generated_ids": gen[:16],
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


def bench_candle(model, threads):
    if not os.path.exists(CANDLE_BIN):
        return {"engine": "candle", "error": f"{CANDLE_BIN} not built (see bench/llm/README.md)"}
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    r = subprocess.run([CANDLE_BIN, model, os.path.join(HERE, "prompt_128.json"), str(N_GEN), str(REPEATS)],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return {"engine": "candle", "error": r.stderr[-2000:]}
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candle", action="store_true", help="also run the candle peer binary")
    args = ap.parse_args()
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
                       "loadavg_at_start": os.getloadavg()},
           "results": [bench_llama_cpp(args.model, args.threads)]}
    if args.candle:
        res["results"].append(bench_candle(args.model, args.threads))
    res["machine"]["loadavg_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
