#!/usr/bin/env python3
"""Writes the fixtures of the bit-equality tests of Baton's prefill dequantization against the `gguf` Python
package's `dequantize`:

- Tests/InferenceTests/Fixtures/dequantize.json: raw blocks of every quantized type Baton supports and the values
  gguf-py gives for them (Tests/InferenceTests/Kernels/DequantizeReferenceTests.swift);
- Tests/InferenceTests/Fixtures/requantized_tensors.json (with --models): for every tensor of every test model of
  Deploy/scripts/make_requantized_models.py, a checksum of gguf-py's dequantized values of its first 16 rows,
  Σ bits_i·(2i + 1) mod 2^64 over the f32 bit patterns (any single differing value changes it), for
  RequantizedModelTests (whole tensors would cost the debug-built test minutes; the random blocks of
  dequantize.json cover every bit pattern).

    ~/.cache/baton/venv/bin/python Deploy/scripts/make_quant_fixtures.py [--models]

The blocks are random bytes (a fixed seed) with every f16 scale field replaced by a finite value of realistic
size, so every bit pattern of the quants and of the packed sub-block scales occurs. Values are stored as the
hex bit patterns of the f32 results, so the comparison is exact.
"""
import argparse
import json
import os
import pathlib
import sys

import numpy as np

try:
    import gguf
    from gguf import quants
except ImportError:
    sys.exit("make_quant_fixtures.py needs the gguf package: run Deploy/scripts/build-llamacpp.sh, or "
             "pip install gguf==0.19.0 numpy")

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "InferenceTests" / "Fixtures" / "dequantize.json"
MODELS_OUT = ROOT / "Tests" / "InferenceTests" / "Fixtures" / "requantized_tensors.json"
ROWS = 16  # rows of each tensor checked

T = gguf.GGMLQuantizationType
# type -> (blocks to write, byte offsets of the f16 scale fields inside one block)
LAYOUTS = {
    T.Q4_0: (8, [0]),
    T.Q4_1: (8, [0, 2]),
    T.Q5_0: (8, [0]),
    T.Q5_1: (8, [0, 2]),
    T.Q8_0: (8, [0]),
    T.Q2_K: (3, [80, 82]),
    T.Q3_K: (3, [108]),
    T.Q4_K: (3, [0, 2]),
    T.Q5_K: (3, [0, 2]),
    T.Q6_K: (3, [208]),
}


def checksum(values: np.ndarray) -> str:
    """Σ bits_i·(2i + 1) mod 2^64 over the f32 bit patterns, as RequantizedModelTests computes it."""
    bits = values.astype(np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    weights = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return f"{int(np.sum(bits * weights, dtype=np.uint64)):016x}"


def model_checksums() -> None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import make_requantized_models as requantized
    directory = requantized.test_dir()
    out = {"models": {}}
    for kind in requantized.FTYPES:
        path = directory / requantized.file_name(kind)
        if not path.exists():
            sys.exit(f"make_quant_fixtures.py: {path} is missing; run Deploy/setup.sh --test-models")
        reader = gguf.GGUFReader(str(path))
        tensors = {}
        for t in reader.tensors:
            row_length = int(t.shape[0])
            values = quants.dequantize(t.data, t.tensor_type).reshape(-1, row_length)[:ROWS]
            tensors[t.name] = {"type": t.tensor_type.name, "rows": int(values.shape[0]), "checksum": checksum(values)}
        out["models"][path.name] = {"sha256": requantized.sha256(path), "tensors": tensors}
        print(f"{path.name}: {len(tensors)} tensors", file=sys.stderr)
    MODELS_OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {MODELS_OUT.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description="dequantization fixtures from gguf-py")
    parser.add_argument("--models", action="store_true", help="also write requantized_tensors.json")
    args = parser.parse_args()
    if args.models:
        model_checksums()
    rng = np.random.default_rng(15)
    out = {"gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "unknown", "types": {}}
    try:
        from importlib.metadata import version
        out["gguf_version"] = version("gguf")
    except Exception:
        pass
    for qtype, (count, scale_offsets) in LAYOUTS.items():
        block_elements, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(count, block_bytes), dtype=np.uint8)
        for offset in scale_offsets:
            # Finite scales in [-0.05, 0.05]; the first block's last scale field is 0.
            scales = (rng.uniform(-0.05, 0.05, size=count)).astype(np.float16)
            if offset == scale_offsets[-1]:
                scales[0] = np.float16(0.0)
            raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(count, 2)
        values = quants.dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert values.size == count * block_elements
        out["types"][qtype.name] = {
            "ggml_id": int(qtype.value),
            "blocks": count,
            "bytes": raw.reshape(-1).tobytes().hex(),
            "values": [f"{v:08x}" for v in values.view(np.uint32).tolist()],
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {', '.join(out['types'])}")


if __name__ == "__main__":
    main()
