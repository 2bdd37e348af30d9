#!/usr/bin/env python3
"""Baton vs llama.cpp on the same GGUF and thread count, in one run: prefill (pp512), decode (tg128), batch-8 decode.

Runs `baton bench model --json --threads N` and llama.cpp through llama-cpp-python (same model file, same N,
n_threads = n_threads_batch = N) for N in --threads (default 1 and 2), then prints each figure and the ratios
against the floors: prefill >= 2.0x llama.cpp, decode >= 1.3x llama.cpp, batch-8 decode >= 5x batch-1.

llama.cpp's figures: pp512 = one llama_decode of 512 tokens into an empty context; tg128 = 128 single-token
decodes after one warm-up token, greedy, like llama-bench (random prompt ids, best of --repetitions).

Usage: python3 Deploy/scripts/bench_vs_llamacpp.py [--baton PATH] [--model PATH] [--threads 1 2] [--json]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

from llama_cpp import Llama

DEFAULT_MODEL = os.path.expanduser("~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf")
FLOORS = {"prefill": 2.0, "decode": 1.3, "batch8": 5.0}


def find_baton(explicit):
    if explicit:
        return explicit
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../.."))
    for candidate in (os.path.join(root, ".build/release/baton"), shutil.which("baton"),
                      os.path.join(root, ".build/debug/baton")):
        if candidate and os.path.exists(candidate):
            return candidate
    sys.exit("baton binary not found: build it (swift build -c release --product baton) or pass --baton PATH")


def bench_baton(baton, model, threads, repetitions):
    command = [baton, "bench", "model", "--model", model, "--threads", str(threads),
               "--repetitions", str(repetitions), "--json"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench_llamacpp(model, threads, repetitions, prompt_tokens=512, decode_tokens=128):
    llm = Llama(model_path=model, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    rng = random.Random(1234)
    prompt = [rng.randrange(llm.n_vocab()) for _ in range(prompt_tokens)]
    llm.reset()
    llm.eval(prompt[:16])  # warm-up
    prefill = []
    for _ in range(repetitions):
        llm.reset()
        started = time.perf_counter()
        llm.eval(prompt)
        prefill.append(prompt_tokens / (time.perf_counter() - started))
    decode = []
    for _ in range(repetitions):
        llm.reset()
        llm.eval([prompt[0]])
        token = prompt[1]
        started = time.perf_counter()
        for _ in range(decode_tokens):
            llm.eval([token])
            token = int(llm.scores[llm.n_tokens - 1].argmax())
        decode.append(decode_tokens / (time.perf_counter() - started))
    return {"prefill_tokens_per_second": max(prefill), "decode_tokens_per_second": max(decode)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baton")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON object")
    args = parser.parse_args()
    baton = find_baton(args.baton)

    results = []
    print(f"model {os.path.basename(args.model)}, baton {baton}")
    print(f"{'threads':>7} {'':>9} {'prefill tok/s':>14} {'decode tok/s':>13} {'batch8 tok/s':>13} {'peak RSS MiB':>13}")
    for threads in args.threads:
        ours = bench_baton(baton, args.model, threads, args.repetitions)
        theirs = bench_llamacpp(args.model, threads, args.repetitions)
        ratios = {
            "prefill": ours["prefill_tokens_per_second"] / theirs["prefill_tokens_per_second"],
            "decode": ours["decode_tokens_per_second"] / theirs["decode_tokens_per_second"],
            "batch8": ours["decode_batch8_tokens_per_second"] / ours["decode_tokens_per_second"],
        }
        print(f"{threads:>7} {'baton':>9} {ours['prefill_tokens_per_second']:>14.1f} "
              f"{ours['decode_tokens_per_second']:>13.1f} {ours['decode_batch8_tokens_per_second']:>13.1f} "
              f"{ours['peak_rss_bytes'] / 1048576:>13.0f}")
        print(f"{'':>7} {'llama.cpp':>9} {theirs['prefill_tokens_per_second']:>14.1f} "
              f"{theirs['decode_tokens_per_second']:>13.1f} {'':>13} {'':>13}")
        verdicts = "  ".join(
            f"{name} {value:.2f}x (floor {FLOORS[name]}x {'ok' if value >= FLOORS[name] else 'BELOW'})"
            for name, value in ratios.items())
        print(f"{'':>7} {'ratios':>9} {verdicts}")
        results.append({"threads": threads, "baton": ours, "llama_cpp": theirs, "ratios": ratios})
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
