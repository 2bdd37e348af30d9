#!/usr/bin/env python3
"""llama.cpp's greedy continuations on the test model of every architecture, for ArchitectureReferenceTests.

Writes Tests/InferenceTests/Fixtures/architecture_references.json: for each model of
`bash Deploy/setup.sh --test-models` (Gemma 3 270M and the random-weight qwen2, qwen3, llama3, mistral-spm and
gemma3 models) and a few raw prompts (tokenized by llama.cpp, BOS as the model asks), the prompt's ids and
llama.cpp's greedy continuation (temperature 0, no penalties; stops at an end-of-generation token) with, at every
step, its five best `[token, logit]`. The prompt runs in one batch (n_batch 1024), as Baton's prefill path runs
it; every token after that one at a time. One prompt per model is longer than the sliding window of the models
that have one (Gemma 3 270M: 512 positions, gemma3-random: 16), so the tests cross it.

Usage (after `bash Deploy/scripts/build-llamacpp.sh` and `bash Deploy/setup.sh --test-models`):

    LLAMA_CPP_LIB_PATH=~/.cache/baton/llama.cpp/avx512 ~/.cache/baton/venv/bin/python \\
        Deploy/scripts/make_architecture_references.py [--output PATH]
"""
import argparse
import json
import os
import pathlib
import sys

from llama_cpp import Llama

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_greedy_references import greedy  # noqa: E402
from make_requantized_models import sha256  # noqa: E402

TEST_DIR = os.path.join(os.environ.get("BATON_MODEL_DIR") or os.path.expanduser("~/.cache/baton/models"), "test")
MODELS = ["gemma-3-270m-q4_k_m.gguf", "qwen2-random.gguf", "qwen3-random.gguf", "llama3-random.gguf",
          "mistral-spm-random.gguf", "gemma3-random.gguf"]
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
]
# Past Gemma 3 270M's 512-position window: a paragraph repeated, then a question about its start.
LONG_PROMPT = ("Baton splits inference into prefill, which reads the prompt and is compute-bound, and decode, which "
               "writes the answer one token at a time and is bound by memory bandwidth. " * 14
               + "To summarize, the two phases of inference are")
STEPS = 24


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default=os.path.join(
        here, "../../Tests/InferenceTests/Fixtures/architecture_references.json"))
    args = parser.parse_args()

    import llama_cpp
    models = []
    for name in MODELS:
        path = os.path.join(TEST_DIR, name)
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: bash Deploy/setup.sh --test-models")
        llm = Llama(model_path=path, n_ctx=2048, n_batch=1024, n_ubatch=1024, n_threads=2, n_threads_batch=2,
                    logits_all=True, verbose=False)
        cases = []
        for text in PROMPTS + [LONG_PROMPT]:
            prompt = llm.tokenize(text.encode(), add_bos=True, special=False)
            tokens, _, _, top5, _ = greedy(llm, prompt, steps=STEPS)
            cases.append({"prompt": text, "prompt_tokens": prompt, "tokens": tokens, "top5": top5})
        models.append({"model": name, "sha256": sha256(pathlib.Path(path)), "cases": cases})
        print(f"{name}: {len(cases)} cases, prompts of {[len(c['prompt_tokens']) for c in cases]} tokens")
        del llm
    document = {
        "generator": "Deploy/scripts/make_architecture_references.py",
        "reference": f"llama-cpp-python {llama_cpp.__version__}, n_batch 1024 for the prompt, then one token per pass",
        "steps": STEPS,
        "models": models,
    }
    with open(args.output, "w") as handle:
        json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
        handle.write("\n")
    print(f"wrote {os.path.relpath(args.output)}")


if __name__ == "__main__":
    main()
