#!/usr/bin/env python3
"""Baton against llama.cpp op by op: where, on the same tokens, the two forward passes part.

Runs `baton activations` (every intermediate tensor of the last token, named as in llama.cpp's graph) and
llama.cpp through llama-cpp-python with an eval callback that copies the same tensors, then prints, per layer,
each tensor's largest difference relative to its largest magnitude, and the first tensor where that exceeds
--threshold. With --path decode (the default) Baton runs one token per pass and llama.cpp n_batch=1; with
--path prefill Baton runs the prompt in one sgemm pass and llama.cpp in one batch.

The expected picture: equal to a few ULP (relative ~1e-7) through the early layers (kqv_out a little more where
a value stored in the f16 cache rounded the other way), until the rounding of some activation to 8 bits lands
on the other side of a half step in one engine (a one-ULP difference is enough); from that tensor on the two
differ by ~1e-3, which is what moves the final logits by ~0.1.

With --requantize Q4_0 (or Q8_0) both run a copy of the model that llama.cpp requantizes first (other weight
types, same everything else): with Q4_0 weights the decode path's one-token pass equals llama.cpp's bit for bit
through every layer (bar SwiGLU's exp, by ~1e-8), and its logits to within a few ULP.

--isa (default auto: this CPU's best) runs both on one ISA path: Baton with BATON_ISA, llama.cpp with its build
for that path from Deploy/scripts/build-llamacpp.sh (see isa_paths.py).

Usage: ~/.cache/baton/venv/bin/python Deploy/scripts/compare_activations.py [--tokens 3575,282] [--prompt TEXT]
           [--path decode|prefill] [--isa auto|avx512|avx2|scalar] [--model PATH] [--requantize Q4_0|Q8_0]
           [--baton PATH] [--threshold 1e-4]
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

import isa_paths

DEFAULT_MODEL = os.path.expanduser("~/.cache/baton/models/SmolLM2-135M-Instruct.Q4_1.gguf")


class GGMLTensor(ctypes.Structure):
    """struct ggml_tensor of the ggml vendored by llama-cpp-python 0.3.x (GGML_MAX_DIMS 4, GGML_MAX_SRC 10)."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


def llama_cpp_tensors(model, tokens, batch):
    """Every contiguous f32 tensor llama.cpp computes in the last pass, by name (the last tensor of a name wins:
    Qcur and Kcur are named again after RoPE)."""
    seen = {}

    @llama_cpp.ggml_backend_sched_eval_callback
    def callback(pointer, ask, _):
        if ask:
            return True
        t = ctypes.cast(pointer, ctypes.POINTER(GGMLTensor)).contents
        ne = [int(t.ne[i]) for i in range(4)]
        total = ne[0] * ne[1] * ne[2] * ne[3]
        contiguous = t.nb[0] == 4 and all(t.nb[i] == t.nb[i - 1] * ne[i - 1] for i in range(1, 4))
        if t.type == 0 and contiguous and t.data:
            # The whole tensor; the comparison takes its last token's row (the trailing elements).
            seen[t.name.decode()] = np.ctypeslib.as_array(
                ctypes.cast(t.data, ctypes.POINTER(ctypes.c_float)), shape=(total,)).copy()
        return True

    loader = Llama(model_path=model, n_ctx=len(tokens) + 8, n_threads=1, verbose=False)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = len(tokens) + 8
    params.n_batch = params.n_ubatch = batch
    params.n_threads = params.n_threads_batch = 1
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as llama-cpp-python's default
    params.cb_eval = callback
    context = llama_cpp.llama_init_from_model(loader._model.model, params)
    try:
        for start in range(0, len(tokens), batch):
            chunk = tokens[start:start + batch]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            if llama_cpp.llama_decode(context, llama_cpp.llama_batch_get_one(array, len(chunk))) != 0:
                sys.exit("llama_decode failed")
    finally:
        llama_cpp.llama_free(context)
    return seen


def requantized(model, kind, path):
    """`model` requantized by llama.cpp to `kind` at `path` (every weight matrix; norms stay f32)."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[kind]
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(model.encode(), path.encode(), ctypes.byref(params)) != 0:
        sys.exit(f"llama.cpp could not requantize {model} to {kind}")
    return path


def relative(a, b):
    scale = float(np.abs(a).max())
    return float(np.abs(a - b).max()) / scale if scale > 0 else float(np.abs(a - b).max())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--baton", default=os.path.join(here, "../../.build/release/baton"))
    parser.add_argument("--tokens", help="comma-separated token ids (default: --prompt's)")
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--path", choices=["decode", "prefill"], default="decode")
    parser.add_argument("--requantize", choices=["Q4_0", "Q8_0"],
                        help="compare on a copy of --model requantized by llama.cpp to this type")
    parser.add_argument("--threshold", type=float, default=1e-4,
                        help="relative difference that counts as parting: one ULP is ~1e-7, a flipped f16 rounding "
                             "of the cache ~1e-5, a flipped 8-bit activation rounding ~1e-3")
    parser.add_argument("--isa", default="auto", help="scalar, avx2, avx512 or auto (this CPU's best)")
    args = parser.parse_args()
    isa = isa_paths.resolve(args.isa)
    isa_paths.use(isa)  # re-executes this script with llama.cpp's build for `isa`, before llama_cpp loads
    global llama_cpp, Llama
    import llama_cpp
    from llama_cpp import Llama

    with tempfile.TemporaryDirectory() as scratch:
        if args.requantize:
            args.model = requantized(args.model, args.requantize, os.path.join(scratch, f"model-{args.requantize}.gguf"))
        output = os.path.join(scratch, "activations.json")
        command = [args.baton, "activations", "--model", args.model, "--path", args.path, "--output", output]
        command += ["--tokens", args.tokens] if args.tokens else ["--prompt", args.prompt]
        subprocess.run(command, check=True, stderr=subprocess.DEVNULL, env=isa_paths.baton_environment(isa))
        with open(output) as f:
            document = json.load(f)
        tokens = document["tokens"]
        ours = {name: np.array(values, dtype=np.float32) for name, values in document["tensors"].items()}
        # The per-layer tensors of the model's architecture, in graph order (Qcur and Kcur after RoPE).
        ops = [name[:-2] for name in document["names"] if name.endswith("-0")]
        theirs = llama_cpp_tensors(args.model, tokens, 1 if args.path == "decode" else len(tokens))
    if "attn_norm-0" not in theirs or "result_output" not in theirs:
        sys.exit("llama.cpp's eval callback gave no attn_norm-0 or result_output: this llama-cpp-python's ggml_tensor "
                 f"layout or graph names differ from the ones this script knows (got {sorted(theirs)[:8]}...)")

    layers = 1 + max(int(name.rsplit("-", 1)[1]) for name in ours if name.startswith("l_out-"))
    print(f"tokens {tokens}, Baton's {args.path} path against llama.cpp with n_batch "
          f"{1 if args.path == 'decode' else len(tokens)}: max |difference| / max |value| of the last token's row")
    width = max(10, max(len(op) for op in ops))
    print("layer " + " ".join(f"{op:>{width}s}" for op in ops))
    first = None
    for layer in range(layers):
        cells = []
        for op in ops:
            name = f"{op}-{layer}"
            if name in ours and name in theirs and theirs[name].size >= ours[name].size:
                r = relative(theirs[name][-ours[name].size:], ours[name])
                cells.append(f"{r:{width}.1e}")
                if first is None and r > args.threshold:
                    first = name
            else:
                cells.append(f"{'-':>{width}s}")
        print(f"{layer:5d} " + " ".join(cells))
    a, b = theirs.get("result_output"), ours.get("result_output")
    if a is not None and b is not None and a.size >= b.size:
        a = a[-b.size:]
        top = np.argsort(-a)[:5]
        print(f"logits: max |difference| {np.abs(a - b).max():.3g}, mean {np.abs(a - b).mean():.3g}, over llama.cpp's "
              f"top 5 {np.abs(a[top] - b[top]).max():.3f}; argmax {int(np.argmax(b))} here, {int(np.argmax(a))} in llama.cpp")
    print(f"first tensor past {args.threshold:g}: {first or 'none'}")


if __name__ == "__main__":
    main()
