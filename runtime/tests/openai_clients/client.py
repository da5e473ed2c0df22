"""The official `openai` Python client against a Wafer node.

Run by runtime/tests/openai.rs (which starts the node and makes the key):
    WAFER_URL=http://127.0.0.1:PORT WAFER_KEY=wk_... WAFER_ADMIN_TOKEN=... python client.py
Checks chat, streamed chat with usage, completions, embeddings, models,
that every usage equals its ledger record, that a client leaving a stream
pays for exactly what was generated, and OpenAI-shaped errors.
Prints one line per check and 'N passed, N failed' at the end.
"""

import json
import os
import sys
import time
import traceback
import urllib.request

import openai
from openai import OpenAI

URL = os.environ["WAFER_URL"]
KEY = os.environ["WAFER_KEY"]
ADMIN = os.environ["WAFER_ADMIN_TOKEN"]
LLM = os.environ.get("WAFER_LLM", "smollm2-135m-instruct")
EMBED = os.environ.get("WAFER_EMBED", "all-minilm-l6-v2")

client = OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0)


def admin_get(path):
    request = urllib.request.Request(URL + path, headers={"Authorization": "Bearer " + ADMIN})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def ledger_record(invocation_id):
    """The model record of one request; polls, since a stream's record may
    land after its client is gone."""
    deadline = time.time() + 30
    while True:
        rows = [r for r in admin_get("/v1/ledger") if r["invocation_id"] == invocation_id]
        if rows:
            assert len(rows) == 2, rows
            return next(r for r in rows if r["seq"] == 1)
        assert time.time() < deadline, "no ledger record for " + invocation_id
        time.sleep(0.05)


def invocation_of(response_id):
    return response_id.split("-", 1)[1]


def model_stats():
    models = {m["id"]: m for m in admin_get("/v1/models")["data"]}
    w = models[LLM]["wafer"]
    return w["generated_tokens"], w["running"] + w["waiting"]


def test_models():
    ids = [m.id for m in client.models.list()]
    assert LLM in ids and EMBED in ids, ids
    for m in client.models.list():
        assert m.object == "model" and m.owned_by


def test_chat():
    r = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}],
        max_tokens=8,
        temperature=0,
        seed=3,
    )
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-"), r
    assert r.model == LLM
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 1 <= r.usage.completion_tokens <= 8
    record = ledger_record(invocation_of(r.id))
    assert record["tokens_in"] == r.usage.prompt_tokens, (record, r.usage)
    assert record["tokens_out"] == r.usage.completion_tokens, (record, r.usage)
    assert record["model"] == LLM and record["function"] is None
    return choice.message.content


def test_streamed_chat(expected_text):
    stream = client.chat.completions.create(
        model=LLM,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."}],
        max_tokens=8,
        temperature=0,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None, usage_chunk
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0] in ("stop", "length"), finish
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == expected_text, (text, expected_text)
    record = ledger_record(invocation_of(usage_chunk.id))
    assert record["tokens_in"] == usage_chunk.usage.prompt_tokens
    assert record["tokens_out"] == usage_chunk.usage.completion_tokens


def test_completions():
    r = client.completions.create(model=LLM, prompt="The capital of France is", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].finish_reason in ("stop", "length")
    record = ledger_record(invocation_of(r.id))
    assert (record["tokens_in"], record["tokens_out"]) == (r.usage.prompt_tokens, r.usage.completion_tokens)
    streamed = client.completions.create(
        model=LLM,
        prompt="The capital of France is",
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == r.choices[0].text, (text, r.choices[0].text)
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens


def test_stop():
    r = client.completions.create(model=LLM, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[" 6"])
    assert " 6" not in r.choices[0].text, r.choices[0].text
    assert r.choices[0].finish_reason == "stop", r


def test_embeddings():
    texts = ["The cat sat on the mat.", "Stock markets fell today."]
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=texts)  # base64 on the wire
    default = raw.parse()
    floats = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert default.object == "list" and len(default.data) == 2
    for a, b in zip(default.data, floats.data):
        assert len(a.embedding) == 384 and len(b.embedding) == 384
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6
    assert default.usage.prompt_tokens == floats.usage.prompt_tokens > 0
    record = ledger_record(raw.headers["x-wafer-invocation-id"])
    assert record["embedding_tokens"] == default.usage.prompt_tokens
    assert record["tokens_in"] == 0 and record["tokens_out"] == 0


def test_disconnect():
    """Leave a stream after a few chunks: the ledger holds every token the
    scheduler generated until the node saw the client go, and no more."""
    before, busy = model_stats()
    assert busy == 0, "the model must be idle for this check"
    max_tokens = 300
    raw = client.chat.completions.with_raw_response.create(
        model=LLM,
        messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
        max_tokens=max_tokens,
        temperature=0.8,
        seed=5,
        stream=True,
    )
    invocation = raw.headers["x-wafer-invocation-id"]
    stream = raw.parse()
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
        if received == 5:
            break
    stream.close()  # closes the connection
    record = ledger_record(invocation)
    deadline = time.time() + 30
    while model_stats()[1] > 0:
        assert time.time() < deadline, "the generation was not cancelled"
        time.sleep(0.05)
    sampled = model_stats()[0] - before
    billed = record["tokens_out"]
    print(f"  disconnect: received {received} chunks, billed {billed}, sampled {sampled}")
    assert received <= billed < max_tokens, (received, billed)
    # The one token the scheduler may have been sampling when it saw the
    # client go is not billed; every other one is.
    assert sampled in (billed, billed + 1), (sampled, billed)
    assert record["tokens_in"] > 0


def expect_error(cls, status, code, call, param=None):
    try:
        call()
    except cls as e:
        assert e.status_code == status, (e.status_code, e)
        assert e.code == code, (e.code, e.body)
        assert isinstance(e.body, dict) and {"message", "type", "param", "code"} <= e.body.keys(), e.body
        if param is not None:
            assert e.param == param, (e.param, param)
        return
    raise AssertionError(f"expected {cls.__name__}")


def test_errors():
    msgs = [{"role": "user", "content": "hi"}]
    chat = client.chat.completions.create
    expect_error(openai.NotFoundError, 404, "model_not_found", lambda: chat(model="gpt-4o", messages=msgs), "model")
    expect_error(openai.BadRequestError, 400, "invalid_value",
                 lambda: chat(model=LLM, messages=msgs, temperature=3), "temperature")
    expect_error(openai.BadRequestError, 400, "unsupported_parameter",
                 lambda: chat(model=LLM, messages=msgs, n=2), "n")
    expect_error(openai.BadRequestError, 400, "context_length_exceeded",
                 lambda: client.completions.create(model=LLM, prompt="word " * 6000), "prompt")
    expect_error(openai.APIStatusError, 413, "request_too_large",
                 lambda: client.completions.create(model=LLM, prompt="x" * (3 << 20)))
    expect_error(openai.NotFoundError, 404, "model_not_found",
                 lambda: client.embeddings.create(model="text-embedding-3-small", input="x"))
    bad = OpenAI(base_url=URL + "/v1", api_key="wk_bad_key", max_retries=0)
    expect_error(openai.AuthenticationError, 401, "invalid_api_key",
                 lambda: bad.chat.completions.create(model=LLM, messages=msgs))


def main():
    passed = failed = 0
    text = None
    checks = [
        ("models", test_models),
        ("chat", lambda: test_chat()),
        ("streamed chat", lambda: test_streamed_chat(text)),
        ("completions", test_completions),
        ("stop", test_stop),
        ("embeddings", test_embeddings),
        ("disconnect mid-stream", test_disconnect),
        ("errors", test_errors),
    ]
    for name, check in checks:
        try:
            result = check()
            if name == "chat":
                text = result
            print(f"ok   python: {name}")
            passed += 1
        except Exception:
            print(f"FAIL python: {name}")
            traceback.print_exc()
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
