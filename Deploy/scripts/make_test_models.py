#!/usr/bin/env python3
"""Write the small random-weight GGUF models the tests run for architectures no small public file covers.

Each model has the shapes real models of its architecture use (head size 128 or 256, grouped KV heads) at a
fraction of their width and depth, random weights scaled so activations keep their size through the layers and
the logits are peaked enough for greedy decoding to mean something, and a real tokenizer taken from another GGUF:

    qwen2-random.gguf          qwen2: Q/K/V biases, RoPE on halves; SmolLM2's BPE vocabulary with pre = qwen2
    qwen3-random.gguf          qwen3: per-head Q/K RMSNorm, query width (8 × 128) twice the embedding; pre = qwen2
    llama3-random.gguf         llama: Llama 3.1 RoPE frequency factors (rope_freqs.weight), untied output matrix,
                               pre = llama-bpe
    mistral-spm-random.gguf    llama with a SentencePiece vocabulary (add_space_prefix = true, as Llama 2 and
                               Mistral): the first 32 768 entries of Gemma 3's vocabulary
    gemma3-random.gguf         gemma3: 4 heads of 256 over one KV head as the 270M model, but a sliding window of
                               16 positions, so short prompts already cross it; SmolLM2's vocabulary

The output is a pure function of this file, the source GGUFs and the pinned numpy and gguf versions
(`np.random.RandomState`, whose streams numpy keeps frozen): Deploy/setup.sh checks every file's SHA-256 against
Deploy/models.sha256, so the files match the ones the committed llama.cpp references were made from.

Usage (run by `bash Deploy/setup.sh --test-models`):

    python3 Deploy/scripts/make_test_models.py --smollm SmolLM2.gguf --gemma gemma-3-270m.gguf --out DIR
"""

import argparse
import math
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFWriter
from gguf.quants import quantize


def tokenizer_fields(path):
    """The tokenizer.ggml.* metadata of a GGUF as plain Python values."""
    reader = GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml."):
            out[key] = field.contents()
    return out


def copy_tokenizer(writer, fields, pre=None, limit=None, overrides=None):
    tokens = fields["tokenizer.ggml.tokens"]
    count = len(tokens) if limit is None else limit
    writer.add_string("tokenizer.ggml.model", fields["tokenizer.ggml.model"])
    writer.add_string("tokenizer.ggml.pre", pre or fields.get("tokenizer.ggml.pre", "default"))
    writer.add_array("tokenizer.ggml.tokens", tokens[:count])
    writer.add_array("tokenizer.ggml.token_type", [int(t) for t in fields["tokenizer.ggml.token_type"][:count]])
    if "tokenizer.ggml.scores" in fields:
        writer.add_array("tokenizer.ggml.scores", [float(s) for s in fields["tokenizer.ggml.scores"][:count]])
    if "tokenizer.ggml.merges" in fields:
        writer.add_array("tokenizer.ggml.merges", fields["tokenizer.ggml.merges"])
    values = {k: fields[k] for k in (
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix") if k in fields}
    values.update(overrides or {})
    for key, value in values.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        else:
            writer.add_uint32(key, int(value))
    return count


class Weights:
    """Random tensors from one seeded stream, written as F32 or quantized."""

    def __init__(self, writer, seed):
        self.writer = writer
        self.random = np.random.RandomState(seed)

    def normal(self, shape, scale):
        return (self.random.standard_normal(shape) * scale).astype(np.float32)

    def matrix(self, name, rows, columns, qtype, scale=None):
        """A [rows × columns] matrix (ggml shape [columns, rows]) with entries of std `scale` (1/√columns)."""
        data = self.normal((rows, columns), scale if scale is not None else 1 / math.sqrt(columns))
        if qtype == Q.F32:
            self.writer.add_tensor(name, data)
        elif qtype == Q.F16:
            self.writer.add_tensor(name, data.astype(np.float16))
        else:
            self.writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)

    def vector(self, name, values):
        self.writer.add_tensor(name, np.asarray(values, dtype=np.float32))

    def gains(self, name, count, center=1.0, spread=0.1):
        self.vector(name, center + self.normal((count,), spread))


def llama3_rope_factors(head_dim, base, factor=8.0, low=1.0, high=4.0, original=8192):
    """rope_freqs.weight as llama.cpp's converter writes it for rope_scaling.rope_type = llama3."""
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    low_wavelen, high_wavelen = original / low, original / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def write_model(path, arch, spec, tokenizer, seed):
    writer = GGUFWriter(path, arch)
    d, heads, kv_heads, hd, ff, layers = (spec[k] for k in ("d", "heads", "kv_heads", "head_dim", "ff", "layers"))
    writer.add_string("general.name", os.path.basename(path)[:-5])
    writer.add_uint32(f"{arch}.context_length", spec.get("context", 4096))
    writer.add_uint32(f"{arch}.embedding_length", d)
    writer.add_uint32(f"{arch}.block_count", layers)
    writer.add_uint32(f"{arch}.feed_forward_length", ff)
    writer.add_uint32(f"{arch}.attention.head_count", heads)
    writer.add_uint32(f"{arch}.attention.head_count_kv", kv_heads)
    if hd * heads != d:
        writer.add_uint32(f"{arch}.attention.key_length", hd)
        writer.add_uint32(f"{arch}.attention.value_length", hd)
    writer.add_uint32(f"{arch}.rope.dimension_count", hd)
    writer.add_float32(f"{arch}.rope.freq_base", spec["rope_base"])
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", spec.get("eps", 1e-6))
    if "window" in spec:
        writer.add_uint32(f"{arch}.attention.sliding_window", spec["window"])
    vocabulary = copy_tokenizer(writer, *tokenizer)
    writer.add_uint32(f"{arch}.vocab_size", vocabulary)

    w = Weights(writer, seed)
    attention, feed_forward = spec["attention_type"], spec["ffn_type"]
    gemma = arch == "gemma3"
    # Embedding rows of std 1 (Gemma's are scaled by √d in the graph, so smaller here).
    w.matrix("token_embd.weight", vocabulary, d, Q.Q8_0, scale=1 / math.sqrt(d) if gemma else 1.0)
    for l in range(layers):
        p = f"blk.{l}."
        w.gains(p + "attn_norm.weight", d)
        w.matrix(p + "attn_q.weight", heads * hd, d, attention)
        w.matrix(p + "attn_k.weight", kv_heads * hd, d, attention)
        w.matrix(p + "attn_v.weight", kv_heads * hd, d, attention)
        w.matrix(p + "attn_output.weight", d, heads * hd, attention)
        if spec.get("biases"):
            w.vector(p + "attn_q.bias", w.normal((heads * hd,), 0.5))
            w.vector(p + "attn_k.bias", w.normal((kv_heads * hd,), 0.5))
            w.vector(p + "attn_v.bias", w.normal((kv_heads * hd,), 0.1))
        if spec.get("head_norms"):
            w.gains(p + "attn_q_norm.weight", hd)
            w.gains(p + "attn_k_norm.weight", hd)
        if gemma:
            w.gains(p + "post_attention_norm.weight", d, center=0.5)
            w.gains(p + "post_ffw_norm.weight", d, center=0.5)
        w.gains(p + "ffn_norm.weight", d)
        w.matrix(p + "ffn_gate.weight", ff, d, feed_forward)
        w.matrix(p + "ffn_up.weight", ff, d, feed_forward)
        w.matrix(p + "ffn_down.weight", d, ff, feed_forward)
    w.gains("output_norm.weight", d)
    if spec.get("untied_output"):
        # Logits of std ~4 after the final norm: peaked enough that greedy choices are rarely near-ties.
        w.matrix("output.weight", vocabulary, d, Q.Q8_0, scale=4 / math.sqrt(d))
    if spec.get("llama3_rope"):
        w.vector("rope_freqs.weight", llama3_rope_factors(hd, spec["rope_base"]))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


MODELS = {
    "qwen2-random.gguf": ("qwen2", dict(
        d=512, heads=4, kv_heads=2, head_dim=128, ff=1536, layers=4, rope_base=1_000_000.0, biases=True,
        attention_type=Q.Q8_0, ffn_type=Q.Q4_0, untied_output=True), "smollm", "qwen2", 1),
    "qwen3-random.gguf": ("qwen3", dict(
        d=512, heads=8, kv_heads=2, head_dim=128, ff=1536, layers=4, rope_base=1_000_000.0, head_norms=True,
        attention_type=Q.Q8_0, ffn_type=Q.Q4_1, untied_output=True), "smollm", "qwen2", 2),
    "llama3-random.gguf": ("llama", dict(
        d=512, heads=4, kv_heads=2, head_dim=128, ff=1536, layers=4, rope_base=500_000.0, eps=1e-5,
        llama3_rope=True, attention_type=Q.Q8_0, ffn_type=Q.Q4_0, untied_output=True), "smollm", "llama-bpe", 3),
    "mistral-spm-random.gguf": ("llama", dict(
        d=512, heads=4, kv_heads=1, head_dim=128, ff=1024, layers=2, rope_base=10_000.0, eps=1e-5,
        attention_type=Q.Q8_0, ffn_type=Q.F16, untied_output=True), "gemma", None, 4),
    "gemma3-random.gguf": ("gemma3", dict(
        d=256, heads=4, kv_heads=1, head_dim=256, ff=512, layers=6, rope_base=1_000_000.0, window=16,
        head_norms=True, attention_type=Q.Q8_0, ffn_type=Q.Q8_0), "smollm", None, 5),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smollm", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf (BPE vocabulary source)")
    parser.add_argument("--gemma", required=True, help="gemma-3-270m-q4_k_m.gguf (SentencePiece vocabulary source)")
    parser.add_argument("--out", required=True, help="directory to write the models to")
    parser.add_argument("--only", action="append", help="write only this file (repeatable)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sources = {"smollm": tokenizer_fields(args.smollm), "gemma": tokenizer_fields(args.gemma)}
    for name, (arch, spec, source, pre, seed) in MODELS.items():
        if args.only and name not in args.only:
            continue
        fields = sources[source]
        if source == "gemma":
            # Llama 2 / Mistral style: a space before the text, ids as Gemma numbers them.
            tokenizer = (fields, None, 32768, {"tokenizer.ggml.add_space_prefix": True})
        else:
            tokenizer = (fields, pre, None, None)
        target = os.path.join(args.out, name)
        temporary = target + ".partial"
        write_model(temporary, arch, spec, tokenizer, seed)
        os.replace(temporary, target)
        print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
