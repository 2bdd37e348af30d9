#!/usr/bin/env python3
"""llama.cpp's greedy continuations on every requantized test model (Deploy/scripts/make_requantized_models.py),
for RequantizedModelTests: Tests/InferenceTests/Fixtures/greedy_references_requantized.json.

    LLAMA_CPP_LIB_PATH=~/.cache/baton/llama.cpp/avx2 ~/.cache/baton/venv/bin/python \\
        Deploy/scripts/make_requantized_references.py

Per model, the first six raw and six chat prompts of make_greedy_references.py, 24 greedy steps each, with
llama.cpp's top-2 gap and top 5 at every step, made by that script's own `greedy` (llama.cpp, n_threads 1,
n_batch 512, temperature 0, no repetition penalty).
"""
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_greedy_references as references  # noqa: E402
import make_requantized_models as requantized  # noqa: E402

PROMPTS = 6
STEPS = 24
OUT = requantized.ROOT / "Tests" / "InferenceTests" / "Fixtures" / "greedy_references_requantized.json"


def main() -> None:
    import argparse
    parser = argparse.ArgumentParser(description="llama.cpp's greedy continuations on the requantized test models")
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args()
    from llama_cpp import Llama
    document = {
        "generator": "llama-cpp-python " + __import__("llama_cpp").__version__ + " (" +
                     os.environ.get("LLAMA_CPP_LIB_PATH", "its own library") + "), n_threads 1, n_batch 512, "
                     "temperature 0, top_k 1, repeat_penalty 1.0",
        "steps": STEPS,
        "models": {},
    }
    for kind in requantized.FTYPES:
        path = requantized.test_dir() / requantized.file_name(kind)
        if not path.exists():
            sys.exit(f"make_requantized_references.py: {path} is missing; run Deploy/setup.sh --test-models")
        llm = Llama(model_path=str(path), n_ctx=1024, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False)
        # Only what the tests read: the ids, not the prompts' text.
        cases = [{"kind": case["kind"], "prompt_tokens": case["prompt_tokens"]}
                 for case in references.prompt_cases(llm, PROMPTS)]
        for case in cases:
            out, gaps, top2, top5, eog = references.greedy(llm, case["prompt_tokens"], steps=STEPS)
            case.update({"tokens": out, "ended_with_eog": eog, "top2": top2, "top2_logit_gaps": gaps, "top5": top5})
        document["models"][path.name] = {"sha256": requantized.sha256(path), "cases": cases}
        print(f"{path.name}: {len(cases)} cases", file=sys.stderr)
    pathlib.Path(args.output).write_text(json.dumps(document, separators=(",", ":")) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
