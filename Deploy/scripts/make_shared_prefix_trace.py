#!/usr/bin/env python3
"""Writes a `baton bench serve --trace` file of requests that share a long preamble (an agent's system prompt and
tool rules, a support desk's policies) and differ only in a short question: the workload prefix caching is for.

    python3 Deploy/scripts/make_shared_prefix_trace.py --requests 8 --rules 40 > shared-prefix.jsonl
    baton bench serve --url http://127.0.0.1:8080 --trace shared-prefix.jsonl --concurrency 1 --temperature 0
"""
import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8, help="requests (each a different question)")
    parser.add_argument("--rules", type=int, default=40, help="rules in the shared preamble (~40 tokens each)")
    parser.add_argument("--gap-ms", type=int, default=1500, help="milliseconds between requests' timestamps")
    parser.add_argument("--output-length", type=int, default=16, help="max_tokens of each request")
    args = parser.parse_args()
    if args.requests < 1 or args.rules < 1 or args.gap_ms < 0 or args.output_length < 1:
        parser.error("--requests, --rules and --output-length must be at least 1, --gap-ms at least 0")
    preamble = "You are the support assistant of the Riverside Library. Policies: " + " ".join(
        f"Rule {i}: members may borrow up to {i + 3} items of category {i}, renew them {i % 3 + 1} times, "
        f"and return them to any branch before closing time on the due date." for i in range(args.rules))
    for i in range(args.requests):
        question = f"How many items of category {i % args.rules} can I borrow?"
        line = {"timestamp": i * args.gap_ms, "text": f"{preamble}\n\nQuestion: {question}", "output_length": args.output_length}
        sys.stdout.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
