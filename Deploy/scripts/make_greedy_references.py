#!/usr/bin/env python3
"""Greedy continuations from llama.cpp (llama-cpp-python) for the engine's agreement test.

Writes Tests/InferenceTests/Fixtures/greedy_references.json: for each prompt (raw completion, and chat messages
rendered with the model's own chat template + generation prompt) the prompt's token ids, llama.cpp's 32 greedy
tokens (temperature 0, top_k 1, no repetition penalty; stops early at an end-of-generation token) and, for every
step, llama.cpp's top-5 token ids and logits and its top-2 logit gap, so the test can tell a near-tie from a bug
where Baton picks differently. As a control it also records where llama.cpp itself, run with n_batch=1 (prompt
token by token), departs from its own n_batch=512 continuation: the noise floor of 8-bit activations.

With --noise-floor it writes nothing: it reads the fixture and prints how far llama.cpp's teacher-forced logits
move between n_batch=512 and n_batch=1 (the same tokens, only the prompt's kernel path differs): the size of
the float-order noise that 8-bit activations amplify, against which Baton's differences can be judged.

Usage: python3 Deploy/scripts/make_greedy_references.py [--model PATH] [--output PATH] [--noise-floor]
"""
import argparse
import json
import os

import jinja2
import numpy as np
from llama_cpp import Llama, llama_token_is_eog

RAW_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):",
    "The three primary colors are",
    "Water boils at a temperature of",
    "import numpy as np\n\n# Compute the mean of a list\n",
    "The quick brown fox",
    "In 1969, the first human to walk on the Moon was",
    "Photosynthesis is the process by which",
    "1, 2, 3, 4, 5,",
    "The best way to learn a new language is",
    "Dear Sir or Madam,\n\nI am writing to",
]
CHAT_CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Name three fruits."}],
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Explain gravity to a child in one sentence."}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me a fun fact about cats."}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}],
    [{"role": "user", "content": "Give me a Python one-liner that reverses a string."}],
    [{"role": "user", "content": "What colour is the sky on a clear day?"}],
    [{"role": "user", "content": "List the days of the week."}],
    [{"role": "user", "content": "Who wrote Romeo and Juliet?"}],
    [{"role": "user", "content": "Summarize the plot of Cinderella in two sentences."}],
]
STEPS = 32


def greedy(llm, tokens):
    llm.reset()
    llm.eval(tokens)
    out, gaps, top2, top5 = [], [], [], []
    eog = False
    vocab = llm._model.vocab
    for _ in range(STEPS):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        order = np.argsort(-logits, kind="stable")
        best, second = int(order[0]), int(order[1])
        gaps.append(round(float(logits[best] - logits[second]), 5))
        top2.append([best, second])
        top5.append([[int(i), round(float(logits[i]), 5)] for i in order[:5]])
        if llama_token_is_eog(vocab, best):
            eog = True
            break
        out.append(best)
        llm.eval([best])
    return out, gaps, top2, top5, eog


def divergence(llm, prompt, expected):
    """First step where llm's greedy choice differs from `expected` (llama.cpp's top-1 per step), or None."""
    llm.reset()
    llm.eval(prompt)
    for step, token in enumerate(expected):
        best = int(np.argmax(np.array(llm.scores[llm.n_tokens - 1])))
        if best != token:
            return step
        if step + 1 < len(expected):
            llm.eval([best])
    return None


def teacher_forced(llm, case):
    """llama.cpp's logits at every step of `case` when fed the fixture's own tokens: [steps, vocab]."""
    llm.reset()
    llm.eval(case["prompt_tokens"])
    rows = [np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)]
    for step in range(1, len(case["top2"])):
        llm.eval([case["tokens"][step - 1]])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64))
    return np.stack(rows)


def noise_floor(model, fixture_path):
    with open(fixture_path) as f:
        cases = json.load(f)["cases"]
    batched = Llama(model_path=model, n_ctx=1024, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
    single = Llama(model_path=model, n_ctx=1024, n_batch=1, n_ubatch=1, n_threads=1, logits_all=True, verbose=False)
    deltas, flips = [], 0
    for case in cases:
        a, b = teacher_forced(batched, case), teacher_forced(single, case)
        for x, y in zip(a, b):
            top = np.union1d(np.argsort(-x)[:5], np.argsort(-y)[:5])
            deltas.append(float(np.abs(x[top] - y[top]).max()))
            flips += int(np.argmax(x) != np.argmax(y))
    d = np.array(deltas)
    print(f"llama.cpp n_batch=512 vs n_batch=1, teacher-forced over {len(d)} steps: largest |logit difference| among "
          f"the top-5 tokens: mean {d.mean():.3f}, p90 {np.percentile(d, 90):.3f}, max {d.max():.3f}; "
          f"greedy choice differs at {flips} steps")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--output", default=os.path.join(here, "../../Tests/InferenceTests/Fixtures/greedy_references.json"))
    parser.add_argument("--noise-floor", action="store_true",
                        help="print llama.cpp's own batch-size noise on the existing fixture; write nothing")
    args = parser.parse_args()
    if args.noise_floor:
        noise_floor(args.model, args.output)
        return

    llm = Llama(model_path=args.model, n_ctx=1024, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
    template_source = llm.metadata["tokenizer.chat_template"]
    env = jinja2.Environment(loader=jinja2.BaseLoader())
    template = env.from_string(template_source)
    cases = []
    for prompt in RAW_PROMPTS:
        tokens = llm.tokenize(prompt.encode(), add_bos=True, special=False)
        cases.append({"kind": "raw", "prompt": prompt, "prompt_tokens": tokens})
    for messages in CHAT_CONVERSATIONS:
        text = template.render(messages=messages, add_generation_prompt=True, bos_token="", eos_token="")
        tokens = llm.tokenize(text.encode(), add_bos=True, special=True)
        cases.append({"kind": "chat", "messages": messages, "rendered": text, "prompt_tokens": tokens})
    for case in cases:
        out, gaps, top2, top5, eog = greedy(llm, case["prompt_tokens"])
        case.update({
            "tokens": out, "text": llm.detokenize(out).decode("utf-8", errors="replace"),
            "ended_with_eog": eog, "top2": top2, "top2_logit_gaps": gaps, "top5": top5,
        })
    control = Llama(model_path=args.model, n_ctx=1024, n_batch=1, n_ubatch=1, n_threads=1, logits_all=True,
                    verbose=False)
    for case in cases:
        case["llama_cpp_batch1_divergence_step"] = divergence(control, case["prompt_tokens"], [t[0] for t in case["top2"]])
    document = {
        "model": os.path.basename(args.model),
        "generator": "llama-cpp-python " + __import__("llama_cpp").__version__ + ", n_threads 1, temperature 0, "
                     "top_k 1, repeat_penalty 1.0",
        "steps": STEPS,
        "note": "top2_logit_gaps[i] = llama.cpp's logit gap between its best and second-best token at step i; "
                "top5[i] = its five best [token, logit]; a divergence at a step with a small gap is a near-tie, "
                "not a bug. llama_cpp_batch1_divergence_step = where llama.cpp itself with n_batch=1 departs "
                "from this continuation (null: never).",
        "cases": cases,
    }
    with open(args.output, "w") as f:
        json.dump(document, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(args.output)}")


if __name__ == "__main__":
    main()
