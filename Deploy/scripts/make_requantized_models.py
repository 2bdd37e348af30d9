#!/usr/bin/env python3
"""Makes the test models of Baton's tensor-type tests: the default model requantized by llama.cpp into Q4_K_M,
Q5_K_M, Q6_K, Q5_0, Q5_1, Q2_K and Q3_K_M (and Q2_K "pure"), in the test-model directory (<model dir>/test).

    LLAMA_CPP_LIB_PATH=~/.cache/baton/llama.cpp/avx2 ~/.cache/baton/venv/bin/python \
        Deploy/scripts/make_requantized_models.py [--check] [--record] [--types Q4_K_M,...]

Run by `Deploy/setup.sh --test-models` after Deploy/scripts/build-llamacpp.sh has built llama.cpp's library
(the AVX2 build, which every supported CPU runs) and installed llama-cpp-python into Baton's venv. Each file is
made with llama.cpp's `llama_model_quantize` (allow_requantize, the ftype's default tensor-type choice, no
importance matrix), which is deterministic (two runs give the same bytes): the SHA-256 of every file is recorded
in Deploy/models.sha256 and checked; a mismatch is an error naming the file (another llama.cpp version or build
flags changed the bytes). `--record` writes the new SHA-256s there instead (after changing llama.cpp).
Idempotent: a file with the recorded SHA-256 is kept.

The default model has 576 columns, not a multiple of the K-quants' 256, so llama.cpp falls back for every
576-column matrix (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, Q2_K/Q3_K → Q4_0); only ffn_down (1536 columns)
holds K-quant blocks. Q2_K's own choice gives ffn_down Q3_K, so no file would hold Q2_K blocks: Q2_K-pure
(llama.cpp's `pure`: the ftype's type for every tensor that takes it) has them. Histograms (`baton inspect`):
  Q4_K_M  Q5_0 ×166, Q8_0 ×15, Q4_K ×16, Q6_K ×14      Q5_K_M  Q5_1 ×166, Q8_0 ×15, Q5_K ×16, Q6_K ×14
  Q6_K    Q8_0 ×181, Q6_K ×30                           Q3_K_M  Q4_0 ×120, Q5_0 ×58, Q4_K ×29, Q5_1 ×2, Q5_K, Q8_0
  Q5_0    Q5_0 ×210, Q8_0                               Q5_1    Q5_1 ×210, Q8_0
  Q2_K    Q4_0 ×180, Q3_K ×30, Q8_0                     Q2_K-pure  Q4_0 ×181, Q2_K ×30
(and the 61 F32 norm vectors in each).
"""
import argparse
import hashlib
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHA_FILE = ROOT / "Deploy" / "models.sha256"
SOURCE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Baton's name for each file → (llama.cpp's LLAMA_FTYPE_MOSTLY_* value (include/llama.h), pure).
FTYPES = {
    "Q4_K_M": (15, False),
    "Q5_K_M": (17, False),
    "Q6_K": (18, False),
    "Q5_0": (8, False),
    "Q5_1": (9, False),
    "Q2_K": (10, False),
    "Q3_K_M": (12, False),
    "Q2_K-pure": (10, True),
}


def model_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("BATON_MODEL_DIR") or pathlib.Path.home() / ".cache" / "baton" / "models")


def test_dir() -> pathlib.Path:
    return model_dir() / "test"


def file_name(kind: str) -> str:
    return f"SmolLM2-135M-Instruct.requant-{kind}.gguf"


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recorded() -> dict:
    if not SHA_FILE.exists():
        return {}
    out = {}
    for line in SHA_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split()
            out[name] = digest
    return out


def quantize(source: pathlib.Path, target: pathlib.Path, ftype: int, pure: bool) -> None:
    try:
        import llama_cpp
    except ImportError:
        sys.exit("make_requantized_models.py: llama-cpp-python is missing; run Deploy/scripts/build-llamacpp.sh --isa "
                 "avx2 --no-server and point LLAMA_CPP_LIB_PATH at ~/.cache/baton/llama.cpp/avx2")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.pure = pure
    params.nthread = os.cpu_count() or 1
    tmp = target.with_suffix(".gguf.part")
    rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if rc != 0:
        tmp.unlink(missing_ok=True)
        sys.exit(f"make_requantized_models.py: llama_model_quantize failed ({rc}) for {target.name}")
    tmp.rename(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", default=",".join(FTYPES), help="comma-separated subset of " + ", ".join(FTYPES))
    parser.add_argument("--record", action="store_true", help="write the SHA-256s to Deploy/models.sha256")
    parser.add_argument("--check", action="store_true", help="only check the files present; make nothing")
    args = parser.parse_args()
    kinds = [k for k in args.types.split(",") if k]
    for kind in kinds:
        if kind not in FTYPES:
            sys.exit(f"make_requantized_models.py: unknown type {kind} (known: {', '.join(FTYPES)})")
    source = model_dir() / SOURCE
    if not source.exists():
        sys.exit(f"make_requantized_models.py: {source} is missing; run Deploy/setup.sh first")
    directory = test_dir()
    directory.mkdir(parents=True, exist_ok=True)
    want = recorded()
    got = {}
    for kind in kinds:
        name = file_name(kind)
        target = directory / name
        if target.exists() and not args.record and want.get(name) == sha256(target):
            print(f"[test-models] present: {target}", file=sys.stderr)
            got[name] = want[name]
            continue
        if args.check:
            sys.exit(f"make_requantized_models.py: {target} is missing or differs from Deploy/models.sha256")
        print(f"[test-models] quantizing {SOURCE} → {name}", file=sys.stderr)
        quantize(source, target, *FTYPES[kind])
        digest = sha256(target)
        got[name] = digest
        if not args.record and name in want and want[name] != digest:
            sys.exit(f"make_requantized_models.py: {target} has SHA-256 {digest}, Deploy/models.sha256 records "
                     f"{want[name]}: llama.cpp's quantizer gave other bytes (another llama.cpp version or build)")
        if not args.record and name not in want:
            sys.exit(f"make_requantized_models.py: no SHA-256 recorded for {name}; run with --record and commit "
                     "Deploy/models.sha256")
    if args.record:
        # Keep every other line of models.sha256 as it is; replace or append ours.
        lines = SHA_FILE.read_text().splitlines() if SHA_FILE.exists() else []
        kept = [line for line in lines if not any(line.endswith("  " + name) for name in got)]
        kept += [f"{got[name]}  {name}" for name in got]
        SHA_FILE.write_text("\n".join(kept) + "\n")
        print(f"[test-models] recorded {len(got)} SHA-256s in {SHA_FILE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
