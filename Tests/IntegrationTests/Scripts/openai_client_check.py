#!/usr/bin/env python3
"""Drives a running Baton server with the official `openai` client; exits non-zero on the first failed check.

Usage: openai_client_check.py BASE_URL MODEL_ID
Prints one line per check ("ok: ..." or "FAIL: ...").
"""
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="unused", timeout=60, max_retries=0)
failures = 0


def check(name, condition, detail=""):
    global failures
    print(("ok: " if condition else "FAIL: ") + name + (f" ({detail})" if detail and not condition else ""))
    if not condition:
        failures += 1


messages = [{"role": "user", "content": "What is the capital of France?"}]

models = client.models.list()
check("models lists the served model", [m.id for m in models.data] == [model], [m.id for m in models.data])

reply = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
choice = reply.choices[0]
check("chat completion has assistant content", choice.message.role == "assistant" and len(choice.message.content) > 0)
check("chat usage adds up", reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
      and reply.usage.completion_tokens <= 12, reply.usage)
check("finish_reason is stop or length", choice.finish_reason in ("stop", "length"), choice.finish_reason)

again = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
check("greedy is reproducible", again.choices[0].message.content == choice.message.content)

chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0,
                                             stream=True, stream_options={"include_usage": True}))
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("streaming gives the same text as non-streaming", streamed == choice.message.content,
      f"{streamed!r} vs {choice.message.content!r}")
check("streaming ends with a usage chunk", chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0)
check("first streamed delta carries the assistant role", chunks[0].choices[0].delta.role == "assistant")

seeded = [client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=1.0, seed=7)
          .choices[0].message.content for _ in range(2)]
check("the same seed gives the same sampled reply", seeded[0] == seeded[1], seeded)

full = client.completions.create(model=model, prompt="The capital of France is", max_tokens=16, temperature=0)
text = full.choices[0].text
cut = text.strip().split(" ")[0] if text.strip() else ""
if cut:
    stopped = client.completions.create(model=model, prompt="The capital of France is", max_tokens=16,
                                        temperature=0, stop=[cut])
    check("a stop string ends the completion before it", cut not in stopped.choices[0].text
          and stopped.choices[0].finish_reason == "stop", stopped.choices[0])
check("completions return text", len(text) > 0)

try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
    check("an unknown model is refused", False)
except openai.NotFoundError as error:
    check("an unknown model is refused with 404", error.status_code == 404 and "no-such-model" in str(error))

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "word " * 5000}], max_tokens=4)
    check("an oversized prompt is refused", False)
except openai.BadRequestError as error:
    check("an oversized prompt is refused with 400 context_length_exceeded",
          error.status_code == 400 and error.code == "context_length_exceeded", (error.code, str(error)))

try:
    client.chat.completions.create(model=model, messages=messages, max_tokens=4, temperature=5)
    check("an out-of-range temperature is refused", False)
except openai.BadRequestError as error:
    check("an out-of-range temperature is refused with 400 naming temperature",
          error.status_code == 400 and "temperature" in str(error), str(error))

try:
    client.chat.completions.create(model=model, messages=messages, max_tokens=4, n=2)
    check("n > 1 is refused", False)
except openai.BadRequestError as error:
    check("n > 1 is refused with 400", error.status_code == 400, str(error))

print(f"{failures} failed")
sys.exit(1 if failures else 0)
