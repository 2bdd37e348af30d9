#!/usr/bin/env python3
"""Baton vs llama.cpp on the same GGUF, thread count and ISA path, in one run: prefill (pp512), decode (tg128),
batch-8 decode.

Runs `baton bench model --json --threads N` and llama.cpp through llama-cpp-python (same model file, same N,
n_threads = n_threads_batch = N) for N in --threads (default 1 and 2), then prints each figure and the ratios
against the floors: prefill >= 2.0x llama.cpp, decode >= 1.5x llama.cpp, batch-8 decode >= 5x batch-1.

--isa picks the path for both (default auto: this CPU's best): Baton runs with BATON_ISA=<isa> (and, on a forced
lower path, the OpenBLAS core type of a CPU that has only that path: see isa_paths.py), llama.cpp with its
build for the same ISA from Deploy/scripts/build-llamacpp.sh. A forced lower path on a bigger CPU is not the
same as a CPU of that kind (clock, caches and memory stay the bigger machine's): say so where you quote it.

llama.cpp's figures: pp512 = one llama_decode of 512 tokens into an empty context; tg128 = 128 single-token
decodes after one warm-up token, greedy, like llama-bench (random prompt ids, best of --repetitions).

Usage: ~/.cache/baton/venv/bin/python Deploy/scripts/bench_vs_llamacpp.py [--isa auto|avx512|avx2|scalar]
           [--baton PATH] [--model PATH] [--threads 1 2] [--repetitions 2] [--json]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

import isa_paths

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baton_procs import find_baton, free_port  # noqa: E402

DEFAULT_MODEL = os.path.expanduser("~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf")
FLOORS = {"prefill": 2.0, "decode": 1.5, "batch8": 5.0}


def bench_baton(baton, model, threads, repetitions, isa):
    command = [baton, "bench", "model", "--model", model, "--threads", str(threads),
               "--repetitions", str(repetitions), "--json"]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env=isa_paths.baton_environment(isa)).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench_llamacpp(model, threads, repetitions, prompt_tokens=512, decode_tokens=128):
    from llama_cpp import Llama
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
    parser.add_argument("--isa", default="auto", help="scalar, avx2, avx512 or auto (this CPU's best)")
    parser.add_argument("--baton")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON object")
    args = parser.parse_args()
    isa = isa_paths.resolve(args.isa)
    isa_paths.use(isa)  # re-executes this script with llama.cpp's build for `isa`, before llama_cpp loads
    baton = find_baton(args.baton)
    import llama_cpp

    results = []
    environment = isa_paths.baton_environment(isa)
    forced = f", forced on a {isa_paths.best_isa()} CPU" if isa != isa_paths.best_isa() else ""
    print(f"model {os.path.basename(args.model)}, ISA path {isa}{forced}, baton {baton} (BATON_ISA={isa}"
          + (f", OPENBLAS_CORETYPE={environment['OPENBLAS_CORETYPE']}" if "OPENBLAS_CORETYPE" in environment else "")
          + f"), llama.cpp {llama_cpp.__version__} {isa} build ({llama_cpp.llama_print_system_info().decode().strip()})")
    print(f"{'threads':>7} {'':>9} {'prefill tok/s':>14} {'decode tok/s':>13} {'batch8 tok/s':>13} {'peak RSS MiB':>13}")
    for threads in args.threads:
        ours = bench_baton(baton, args.model, threads, args.repetitions, isa)
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
        results.append({"isa": isa, "threads": threads, "baton": ours, "llama_cpp": theirs, "ratios": ratios})
    # The machine may be shared: the load says whether the figures had the cores to themselves.
    print("load average (1/5/15 min) at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
