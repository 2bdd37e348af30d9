#!/usr/bin/env python3
"""Greedy continuations from llama.cpp for the engine's agreement test, and llama.cpp's own spread across its builds.

Writes Tests/InferenceTests/Fixtures/greedy_references.json:
- `cases`: for each prompt (raw completion, and chat messages rendered with the model's own chat template +
  generation prompt) the prompt's token ids, the reference build's 32 greedy tokens (temperature 0, top_k 1, no
  repetition penalty; stops early at an end-of-generation token) and, for every step, its top-5 token ids and
  logits and its top-2 logit gap, so the test can tell a near-tie from a bug where Baton picks differently.
  The reference is llama.cpp's build for --reference-isa (default: this CPU's best path) at n_batch 512.
- `llama_cpp_spread`: how far llama.cpp's other builds (every ISA built by build-llamacpp.sh that this CPU runs,
  each at n_batch 512 and n_batch 1) are from the reference on the same cases, teacher-forced on the reference's
  tokens: where each parts from the reference and at what reference top-2 gap, every step where it picks another
  token and by how much on both sides, and how far its logits move over the reference's top 5. These are the
  figures from which GreedyReferenceTests derives its bounds: Baton, on any ISA path, may differ from the
  reference by what llama.cpp's own builds differ from it, plus a stated margin.

Each llama.cpp build runs in a child process of this script (llama-cpp-python loads one library per process).

Usage:
  bash Deploy/scripts/build-llamacpp.sh            # the builds, once
  ~/.cache/baton/venv/bin/python Deploy/scripts/make_greedy_references.py [--model PATH] [--output PATH]
      [--reference-isa auto|avx512|avx2|scalar] [--spread-isas avx512 avx2 scalar]
  ... make_greedy_references.py --print-spread     # measure the spread against the committed fixture, write nothing
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import isa_paths

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
BATCH_SIZES = (512, 1)
DEFAULT_MODEL = os.path.expanduser("~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUTPUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "../../Tests/InferenceTests/Fixtures/greedy_references.json"))


# --- Child side: one llama.cpp build, one n_batch ------------------------------------------------------

def open_model(model, n_batch):
    from llama_cpp import Llama
    return Llama(model_path=model, n_ctx=1024, n_batch=n_batch, n_ubatch=n_batch, n_threads=1, n_threads_batch=1,
                 logits_all=True, verbose=False)


def greedy(llm, prompt_tokens, steps=None):
    """llama.cpp's greedy continuation of `prompt_tokens` (the prompt in one pass, then one token per pass) for
    `steps` steps (default STEPS) or up to an end-of-generation token: the ids, and at every step the top-2 logit
    gap, the top-2 ids, the top 5 `[id, logit]`, and whether it ended at end-of-generation. The one greedy loop of
    the reference scripts (make_requantized_references.py and make_architecture_references.py use it)."""
    import numpy as np
    from llama_cpp import llama_token_is_eog

    vocab = llm._model.vocab
    llm.reset()
    llm.eval(prompt_tokens)
    out, gaps, top2, top5, eog = [], [], [], [], False
    for _ in range(STEPS if steps is None else steps):
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


def prompt_cases(llm, count=None):
    """The first `count` (default all) raw prompts and chat conversations, tokenized by llama.cpp; the chats
    rendered through the model's own template."""
    import jinja2

    template = jinja2.Environment(loader=jinja2.BaseLoader()).from_string(llm.metadata["tokenizer.chat_template"])
    cases = []
    for prompt in RAW_PROMPTS[:count]:
        cases.append({"kind": "raw", "prompt": prompt,
                      "prompt_tokens": llm.tokenize(prompt.encode(), add_bos=True, special=False)})
    for messages in CHAT_CONVERSATIONS[:count]:
        text = template.render(messages=messages, add_generation_prompt=True, bos_token="", eos_token="")
        cases.append({"kind": "chat", "messages": messages, "rendered": text,
                      "prompt_tokens": llm.tokenize(text.encode(), add_bos=True, special=True)})
    return cases


def make_reference(llm):
    """The cases with the reference build's greedy continuations."""
    cases = prompt_cases(llm)
    for case in cases:
        out, gaps, top2, top5, eog = greedy(llm, case["prompt_tokens"])
        case.update({"tokens": out, "text": llm.detokenize(out).decode("utf-8", errors="replace"),
                     "ended_with_eog": eog, "top2": top2, "top2_logit_gaps": gaps, "top5": top5})
    return cases


def teacher_forced(llm, cases):
    """Per case and step, fed the reference's tokens: this build's logits of the reference's top-5 tokens, and its
    own best token and logit."""
    import numpy as np
    results = []
    for case in cases:
        llm.reset()
        llm.eval(case["prompt_tokens"])
        steps = []
        for step in range(len(case["top2"])):
            if step > 0:
                llm.eval([case["tokens"][step - 1]])
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            best = int(np.argmax(logits))
            steps.append({"reference_top5": [float(logits[int(t)]) for t, _ in case["top5"][step]],
                          "best": [best, float(logits[best])]})
        results.append(steps)
    return results


def child(args):
    import llama_cpp
    with open(args.job) as f:
        job = json.load(f)
    llm = open_model(job["model"], job["n_batch"])
    result = {"system_info": llama_cpp.llama_print_system_info().decode().strip(),
              "version": llama_cpp.__version__}
    if job["task"] == "reference":
        result["cases"] = make_reference(llm)
    else:
        result["steps"] = teacher_forced(llm, job["cases"])
    with open(args.result, "w") as f:
        json.dump(result, f)


def run_child(isa, n_batch, task, model, cases=None):
    with tempfile.TemporaryDirectory() as tmp:
        job, result = os.path.join(tmp, "job.json"), os.path.join(tmp, "result.json")
        with open(job, "w") as f:
            json.dump({"task": task, "model": model, "n_batch": n_batch, "cases": cases}, f)
        print(f"  llama.cpp {isa}, n_batch {n_batch}: {task} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--job", job, "--result", result],
                       env=isa_paths.environment(isa), check=True)
        with open(result) as f:
            return json.load(f)


# --- Parent side: the spread ------------------------------------------------------------------------------

def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def spread_of(cases, steps):
    """Compares one build's teacher-forced steps with the reference cases."""
    deltas, flips, partings = [], [], []
    for index, (case, rows) in enumerate(zip(cases, steps)):
        parted = None
        for step, row in enumerate(rows):
            top5 = case["top5"][step]
            deltas.append(max(abs(ours - ref) for ours, (_, ref) in zip(row["reference_top5"], top5)))
            best, best_logit = row["best"]
            reference_pick = top5[0][0]
            if best == reference_pick:
                continue
            # Both sides of the disagreement: how far this build put the reference's pick below its own, and how
            # far the reference put this build's pick below its own (None: outside the reference's top 5).
            own_gap = best_logit - row["reference_top5"][0]
            reference_deficit = next((top5[0][1] - logit for token, logit in top5 if token == best), None)
            flips.append({"case": index, "step": step, "own_gap": round(own_gap, 5),
                          "reference_deficit": None if reference_deficit is None else round(reference_deficit, 5),
                          "reference_top2_gap": case["top2_logit_gaps"][step]})
            if parted is None:
                parted = step
        partings.append(parted)
    parting_gaps = [cases[i]["top2_logit_gaps"][s] for i, s in enumerate(partings) if s is not None]
    return {
        "steps": len(deltas),
        "steps_identical": len(deltas) - len(flips),
        "continuations_identical": sum(p is None for p in partings),
        "parting_steps": partings,
        "largest_parting_gap": round(max(parting_gaps, default=0.0), 5),
        "flips": flips,
        "largest_flip_own_gap": round(max((f["own_gap"] for f in flips), default=0.0), 5),
        "largest_flip_reference_deficit": round(max((f["reference_deficit"] for f in flips
                                                     if f["reference_deficit"] is not None), default=0.0), 5),
        "top5_logit_delta": {"mean": round(sum(deltas) / len(deltas), 5), "p90": round(percentile(deltas, 0.9), 5),
                             "max": round(max(deltas), 5)},
    }


def measure_spread(cases, model, reference, isas):
    variants = []
    for isa in isas:
        for n_batch in BATCH_SIZES:
            if (isa, n_batch) == (reference["isa"], reference["n_batch"]):
                continue
            result = run_child(isa, n_batch, "teacher-forced", model, cases)
            variant = {"isa": isa, "n_batch": n_batch, "system_info": result["system_info"]}
            variant.update(spread_of(cases, result["steps"]))
            variants.append(variant)
    # Control: the reference build run again must reproduce the fixture exactly (llama.cpp is deterministic).
    again = spread_of(cases, run_child(reference["isa"], reference["n_batch"], "teacher-forced", model, cases)["steps"])
    if again["flips"] or again["top5_logit_delta"]["max"] > 1e-4:
        sys.exit(f"the reference build ({reference['isa']}, n_batch {reference['n_batch']}) does not reproduce the "
                 f"fixture: {again['steps'] - again['steps_identical']} steps differ, logits by up to "
                 f"{again['top5_logit_delta']['max']}; was it made on another CPU or build? Regenerate it.")
    return {
        "reference": reference,
        "note": "Each variant is a llama.cpp build (ISA, n_batch) fed the reference's tokens (teacher-forced). "
                "parting_steps[i]: first step of case i where its greedy pick differs from the reference's, which "
                "is where its free-running continuation parts (null: never); largest_parting_gap: the largest "
                "reference top-2 gap at such a step. flips: every differing step, with own_gap (how far it put "
                "the reference's pick below its own) and reference_deficit (how far the reference put its pick "
                "below the reference's; null: outside the reference's top 5). top5_logit_delta: per step the "
                "largest |logit difference| over the reference's top 5 tokens, then mean / p90 / max over steps.",
        "variants": variants,
        "largest_parting_gap": max((v["largest_parting_gap"] for v in variants), default=0.0),
        "largest_flip_own_gap": max((v["largest_flip_own_gap"] for v in variants), default=0.0),
        "largest_flip_reference_deficit": max((v["largest_flip_reference_deficit"] for v in variants), default=0.0),
        "largest_mean_top5_logit_delta": max((v["top5_logit_delta"]["mean"] for v in variants), default=0.0),
        "largest_p90_top5_logit_delta": max((v["top5_logit_delta"]["p90"] for v in variants), default=0.0),
    }


def print_spread(spread):
    print(f"llama.cpp's spread against the reference ({spread['reference']['isa']}, n_batch "
          f"{spread['reference']['n_batch']}):")
    print(f"{'build':>16} {'steps same':>11} {'cont. same':>10} {'parting gap':>11} {'flip gap':>8} "
          f"{'ref deficit':>11} {'|dlogit| mean':>13} {'p90':>6} {'max':>6}")
    for v in spread["variants"]:
        d = v["top5_logit_delta"]
        print(f"{v['isa'] + ' nb ' + str(v['n_batch']):>16} {v['steps_identical']:>5}/{v['steps']:<5} "
              f"{v['continuations_identical']:>4}/{len(v['parting_steps']):<5} {v['largest_parting_gap']:>11.3f} "
              f"{v['largest_flip_own_gap']:>8.3f} {v['largest_flip_reference_deficit']:>11.3f} {d['mean']:>13.3f} "
              f"{d['p90']:>6.3f} {d['max']:>6.3f}")
    print(f"largest over builds: parting gap {spread['largest_parting_gap']:.3f}, flip gap "
          f"{spread['largest_flip_own_gap']:.3f}, reference deficit {spread['largest_flip_reference_deficit']:.3f}, "
          f"mean |dlogit| {spread['largest_mean_top5_logit_delta']:.3f}, p90 {spread['largest_p90_top5_logit_delta']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    parser.add_argument("--reference-isa", default="auto", help="llama.cpp build that makes the reference")
    parser.add_argument("--spread-isas", nargs="+", help="builds whose spread is measured (default: every one this "
                        "CPU runs)")
    parser.add_argument("--print-spread", action="store_true",
                        help="measure the spread against the existing fixture and print it; write nothing")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    isas = [isa_paths.resolve(isa) for isa in (args.spread_isas or
                                                      [i for i in isa_paths.ISAS if isa_paths.cpu_supports(i)])]

    if args.print_spread:
        with open(args.output) as f:
            document = json.load(f)
        reference = document["llama_cpp_spread"]["reference"]
        if not isa_paths.cpu_supports(reference["isa"]):
            sys.exit(f"the fixture's reference build is {reference['isa']}, which this CPU cannot run")
        print_spread(measure_spread(document["cases"], args.model, reference, isas))
        return

    reference_isa = isa_paths.resolve(args.reference_isa)
    made = run_child(reference_isa, BATCH_SIZES[0], "reference", args.model)
    cases = made["cases"]
    reference = {"isa": reference_isa, "n_batch": BATCH_SIZES[0], "system_info": made["system_info"]}
    spread = measure_spread(cases, args.model, reference, isas)
    document = {
        "model": os.path.basename(args.model),
        "generator": f"llama-cpp-python {made['version']} (Deploy/scripts/build-llamacpp.sh, {reference_isa} build), "
                     "n_threads 1, n_batch 512, temperature 0, top_k 1, repeat_penalty 1.0",
        "steps": STEPS,
        "note": "top2_logit_gaps[i] = the reference's logit gap between its best and second-best token at step i; "
                "top5[i] = its five best [token, logit]; a divergence at a step with a small gap is a near-tie, "
                "not a bug. llama_cpp_spread = how far llama.cpp's other builds are from this reference.",
        "cases": cases,
        "llama_cpp_spread": spread,
    }
    with open(args.output, "w") as f:
        json.dump(document, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(args.output)}")
    print_spread(spread)


if __name__ == "__main__":
    main()
