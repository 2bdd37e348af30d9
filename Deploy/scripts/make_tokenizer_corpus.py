#!/usr/bin/env python3
"""Regenerate Tests/TokenizationTests/Fixtures/tokenizer_corpus.json and tokenizer_pretokenizers.json.

The reference token ids come from llama.cpp itself, through llama-cpp-python loading only the vocabulary
of the same GGUF file Baton's tokenizer reads:

    Llama(model_path=..., vocab_only=True, verbose=False).tokenize(text.encode(), add_bos=..., special=...)

Usage (from the repository root, after `bash Deploy/setup.sh` and `pip install llama-cpp-python`):

    python3 Deploy/scripts/make_tokenizer_corpus.py [--model PATH] [--out PATH]

tokenizer_pretokenizers.json holds llama.cpp's ids for the same strings under the other pre-tokenizers
Baton implements (gpt-2, llama-bpe, qwen2): the script writes temporary copies of the GGUF whose only
change is `tokenizer.ggml.pre`, so llama.cpp applies that pre-tokenizer to SmolLM2's vocabulary and merges.

With the test models present (`bash Deploy/setup.sh --test-models`), it also writes the same corpus, plus
Gemma's own special-token texts, for the SentencePiece vocabularies: tokenizer_corpus_gemma3.json (Gemma 3
270M: add_space_prefix false, BOS added) and tokenizer_corpus_mistral_spm.json (mistral-spm-random.gguf:
the first 32768 entries of Gemma's vocabulary with add_space_prefix true, as Llama 2 and Mistral files).

The strings are fixed in this file (no randomness), so the output only changes when the strings, the
model or llama.cpp change.
"""

import argparse
import ctypes
import hashlib
import json
import os
import sys
import tempfile


def default_model_path() -> str:
    directory = os.environ.get("BATON_MODEL_DIR") or os.path.expanduser("~/.cache/baton/models")
    return os.path.join(directory, "SmolLM2-135M-Instruct.Q4_1.gguf")


PROSE = [
    "Hello, world!",
    "Hello world",
    "hello world",
    "HELLO WORLD",
    "The quick brown fox jumps over the lazy dog.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
    "Prefill is compute-bound; decode is bandwidth-bound. That's why we split them.",
    "Mr. O'Neil's dog didn't bark -- it's 3:45 p.m. and we're late!",
    "She said: \"I'll be there\" (maybe).",
    "Semi-colons; colons: dashes — en–dashes and ellipses…",
    "A sentence with    several   spaces   inside.",
    "Question? Answer! Exclamation!! Interrobang?!",
    "e-mail: someone@example.com, web: https://example.org/path?q=1&r=two#frag",
    "Café, naïve, résumé, façade, coöperate, jalapeño.",
    "Straße, Ærøskøbing, Łódź, İstanbul, ı dotless.",
    "Ünïcödé with lots of dïäcrïtïcs.",
    "Bullet list:\n- one\n- two\n- three\n",
    "Numbered list:\n1. first\n2. second\n10. tenth\n",
    "# Heading\n\nSome *markdown* with **bold** and `code` and [a link](http://x.y).",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "Tab\tseparated\tvalues\there",
    "Windows line endings\r\nsecond line\r\nthird\r\n",
    "Old Mac line endings\rsecond\r",
    "Mixed\n\r\n\r\n\nnewlines",
    "   leading spaces",
    "trailing spaces   ",
    "  both sides  ",
    " a",
    "a ",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r\n",
    " \n ",
    "\n \n  \n   ",
    "end with newline\n",
    "x\n\n\n\n\n\n\n\ny",
    "word\u00a0with\u00a0no-break\u00a0spaces",
    "ideographic\u3000space",
    "em\u2003space and thin\u2009space",
    "zero\u200bwidth\u200bspace",
    "soft\u00adhyphen",
    "line\u2028separator and paragraph\u2029separator",
    "vertical\x0btab and form\x0cfeed",
    "nul\x00byte",
    "bell\x07 and escape\x1b[0m",
    "A" * 100,
    "a" * 257,
    "Supercalifragilisticexpialidocious",
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "antidisestablishmentarianismantidisestablishmentarianismantidisestablishmentarianism",
    "thisisaverylongwordwithoutanyspacesthatgoesonandonandonforalongtimejusttoseewhathappenswhenweencodeitokay",
    "ab" * 200,
    "xyzzy " * 40,
    "=-" * 60,
    "ひらがなだけでかかれたながいぶんしょうはくぎりがないのでとてもながいひとつのたんごになります",
    "СлишкомДлинноеСловоБезПробеловКотороеНеКончаетсяОченьДолго",
    " " * 70 + "x",
    "\n" * 70,
    "9" * 80,
]

CONTRACTIONS = [
    "it's", "It's", "IT'S", "don't", "DON'T", "Don'T", "we're", "WE'RE", "we've", "I've", "I'VE",
    "I'm", "I'M", "you'll", "YOU'LL", "he'd", "HE'D", "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D", "rock 'n' roll", "the '90s", "'quoted'", "''double single''",
    "can't won't shouldn't wouldn't", "y'all'd've", "O'Reilly's", "James' book", "'",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "123456789", "3.14159", "2,718", "-17", "+3", "1e10", "6.02e23",
    "1,000,000", "0x1F", "0b1010", "v1.2.3", "2024-06-01", "12:30:45", "$19.99", "€5,00", "50%",
    "12345678901234567890123456789012345678901234567890",
    "3141592653589793238462643383279502884197169399375105820974944592307816406286",
    "phone: +1 (555) 123-4567", "room 101, floor 7", "abc123def456", "x1y2z3", "1st 2nd 3rd 4th",
    "٠١٢٣٤٥٦٧٨٩ arabic-indic digits", "०१२३ devanagari digits", "①②③ circled", "Ⅻ roman", "½ ¾ ⅓",
    "１２３ fullwidth", "𝟙𝟚𝟛 math digits",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for i in range(10):\n\tprint(i, end=' ')\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "#include <stdio.h>\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "func greet(_ name: String) -> String {\n    return \"Hello, \\(name)!\"\n}\n",
    "public static void main(String[] args) { System.out.println(\"Hi\"); }",
    "const add = (a, b) => a + b; // arrow function\nconsole.log(add(2, 3));",
    "<html>\n  <body>\n    <div class=\"x\">&amp; &lt;tag&gt;</div>\n  </body>\n</html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "key: value\nlist:\n  - item1\n  - item2\n",
    "x<<=2; y>>=3; z&&=w; a||b; c!==d; e===f; g**h; i//j; k->l; m::n; o?.p; q??r",
    "    indented with four spaces\n        and eight\n",
    "\t\ttabs\tand\t\tmore\ttabs",
    "if (a==b){return c;}else{return d;}",
    "std::vector<std::pair<int, std::string>> v;",
    "matrix[i][j] += alpha * A[i][k] * B[k][j];",
    "// TODO(user): fix this\n/* block\n   comment */",
    "print(f\"{x:>10.3f} {y!r}\")",
    "$ git commit -m \"Fix bug #123\" && git push origin main",
    "regex = r'^(?:[a-z0-9!#$%&*+/=?^_`{|}~-]+)@example\\.com$'",
    "   \n   \n",
    "a  b   c    d     e",
    "end of code   \n\n",
]

MULTILINGUAL = [
    "你好，世界！",
    "我爱自然语言处理。今天天气很好。",
    "日本語のテキストです。カタカナとひらがな。",
    "한국어 텍스트입니다. 안녕하세요!",
    "مرحبا بالعالم! هذه جملة عربية.",
    "שלום עולם, זה משפט בעברית.",
    "नमस्ते दुनिया! यह हिंदी में एक वाक्य है।",
    "สวัสดีชาวโลก นี่คือประโยคภาษาไทย",
    "Привет, мир! Это русское предложение.",
    "Γειά σου Κόσμε! Αυτή είναι μια ελληνική πρόταση.",
    "Xin chào thế giới! Đây là tiếng Việt.",
    "Merhaba dünya! Bu bir Türkçe cümle.",
    "Habari dunia! Hii ni sentensi ya Kiswahili.",
    "ሰላም ልዑል! ይህ የአማርኛ ዓረፍተ ነገር ነው።",
    "გამარჯობა მსოფლიო!",
    "Բարեւ աշխարհ!",
    "ᚠᚢᚦᚨᚱᚲ runes",
    "mixed 中文 and English and 日本語 together",
    "Ελληνικά και English μαζί",
    "ٱلْعَرَبِيَّة with tashkeel",
    "देवनागरी संयुक्ताक्षर क्ष त्र ज्ञ",
    "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ",
    "ﬁ ﬂ ﬀ ﬃ ﬄ ligatures",
    "Æsir œuvre Œdipus ĳ Ĳ",
    "e\u0301 (e + combining acute) vs \u00e9 (precomposed)",
    "a\u0300\u0301\u0302\u0303\u0304 stacked combining marks",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dalgo",
    "\u1100\u1161\u11a8 conjoining jamo",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
    "𐍈 gothic, 𓀀 hieroglyph, 𒀀 cuneiform",
    "private use \ue000\uf8ff",
    "replacement \ufffd char",
    "\ufeffBOM at start",
]

EMOJI = [
    "😀",
    "Hello 👋 world 🌍!",
    "👨‍👩‍👧‍👦 family (ZWJ sequence)",
    "👩🏽‍💻 technologist with skin tone",
    "🏳️‍🌈 rainbow flag",
    "🇺🇸🇬🇧🇯🇵🇫🇷 flags",
    "🇩🇪",
    "❤️ heart with variation selector",
    "✔︎ text presentation",
    "1️⃣ keycap",
    "🧑‍🤝‍🧑 people holding hands",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland tag sequence",
    "😀😃😄😁😆😅😂🤣",
    "emoji🙂inside🙃words",
    "🔥🔥🔥 lit",
    "🦀 Rust and 🐍 Python and 🐹 Go",
    "⌚⌛⏰ time",
    "☃ snowman ★ star ♠♣♥♦ suits",
    "→ ← ↑ ↓ ⇒ ⇔ arrows",
    "∀x∈ℝ: x² ≥ 0 ∧ √4 = 2 ≠ π ≈ 3.14",
    "© ® ™ § ¶ † ‡ • ° ± × ÷",
    "“smart quotes” and ‘single’ and «guillemets» and „low“",
]

SPECIAL_TEXT = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "text before<|endoftext|>text after",
    "<|im_start|><|im_end|><|im_start|>",
    "<|im_start|> spaced <|im_end|>",
    "<|im_start|assistant",
    "<|im_end|",
    "<|im_start|>><|im_end|>",
    "<<|im_start|>>",
    "<repo_name>baton<file_sep>README.md<filename>x.py",
    "<gh_stars>100<issue_start>title<issue_comment>body<issue_closed>",
    "<jupyter_start><jupyter_text>intro<jupyter_code>print(1)<jupyter_output>1<jupyter_script><empty_output>",
    "<reponame>foo</reponame>",
    "<s> </s> <unk> <pad> [INST] [/INST] <<SYS>>",
    "<|eot_id|> <|start_header_id|>user<|end_header_id|>",
    "Hello<|im_end|>",
    "<|im_start|>user\n你好 👋<|im_end|>",
]

OTHER = [
    "",
    "a",
    "I",
    ".",
    "!",
    "...",
    "?!?!",
    "'",
    "\"",
    "-",
    "--",
    "___",
    "~~~",
    "***bold***",
    "@@@",
    "###",
    "a.b.c.d",
    "snake_case_identifier",
    "camelCaseIdentifier",
    "PascalCaseIdentifier",
    "SCREAMING_SNAKE_CASE",
    "kebab-case-identifier",
    "file.name.with.dots.txt",
    "C:\\Windows\\System32\\drivers",
    "/usr/local/bin/python3",
    "~/.cache/baton/models",
    "user@host:~$ ls -la",
    "😀 " * 20,
    "ÀÁÂÃÄÅ àáâãäå",
    "The year 1999 and 2000 and 2024.",
    "Version 2.0.1-beta+build.5",
    "He scored 99.5% on test #3.",
    "A\u0000B\u0001C\u001fD\u007fE",
    "\u0085next line char",
    "\u00a0\u00a0 leading no-break spaces",
    "trailing no-break spaces\u00a0\u00a0",
    " \u00a0 mixed \u2003 spaces \u3000 ",
    "Ṁüļţïƥļē ŝćŕïƥţş ǻŋđ ăçčęńţş",
]


GEMMA_SPECIAL_TEXT = [
    "<start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n<start_of_turn>model\n",
    "<bos><start_of_turn>user\nhi<end_of_turn>",
    "<eos>",
    "<pad><unk><mask>",
    "<unused0> <unused42>",
    "text<end_of_turn>more",
    "<start_of_image>",
    "[multimodal]",
    "<div>html</div> and <span>tags</span>",
    "<table><tr><td>1</td></tr></table>",
    "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
    "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t",
    "  two leading spaces",
    "trailing\u2581block\u2581chars\u2581",
    "\u2581 the escape character itself",
    "<start_of_turn> spaced <end_of_turn>",
    "<end_of_turn",
]


def build_cases(special_text=SPECIAL_TEXT):
    """(text, add_special, parse_special) triples, each distinct."""
    cases = []
    seen = set()

    def add(text, add_special=False, parse_special=False):
        key = (text, add_special, parse_special)
        if key not in seen:
            seen.add(key)
            cases.append(key)

    for group in (PROSE, CONTRACTIONS, NUMBERS, CODE, MULTILINGUAL, EMOJI, OTHER):
        for text in group:
            add(text)
    for text in special_text:
        add(text, parse_special=False)
        add(text, parse_special=True)
    # add_special (BOS) on a few strings: SmolLM2 sets add_bos_token = false, so ids must not change.
    for text in ["Hello, world!", "", "<|im_start|>user\nhi<|im_end|>", "<start_of_turn>user\nhi<end_of_turn>\n"]:
        add(text, add_special=True, parse_special=True)
        add(text, add_special=True, parse_special=False)
    # Every ASCII byte on its own, and a paragraph of all printable ASCII.
    for code in range(0, 128):
        if code % 8 == 0:
            add("".join(chr(c) for c in range(code, code + 8)))
    add("".join(chr(c) for c in range(32, 127)))
    # Every Latin-1 supplement character, in runs.
    add("".join(chr(c) for c in range(0xA0, 0x100)))
    # Longer mixed document.
    add("\n\n".join(PROSE[:8] + CODE[:3] + MULTILINGUAL[:5] + EMOJI[:5]))
    return cases


OTHER_PRE_TOKENIZERS = ["gpt-2", "llama-bpe", "qwen2"]


def write_with_pre(source: str, pre: str, destination: str) -> None:
    """Copy a GGUF file, changing only tokenizer.ggml.pre."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(source)
    architecture = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(destination, arch=architecture)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "tokenizer.ggml.pre":
            writer.add_string(key, pre)
        elif field.types[0] == GGUFValueType.ARRAY:
            writer.add_array(key, field.contents())
        else:
            writer.add_key_value(key, field.contents(), field.types[0])
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def detokenize(llama_cpp, llm, ids, special):
    """llama.cpp's `llama_detokenize(remove_special = false, unparse_special = special)`."""
    tokens = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    size = 16 * len(ids) + 64
    buffer = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(llm._model.vocab, tokens, len(ids), buffer, size, False, special)
    assert 0 <= n <= size, n
    return buffer.raw[:n]


def reference_corpus(llama_cpp, model: str, strings: list):
    """llama.cpp's ids for every (text, add_special, parse_special) with the vocabulary of `model`."""
    with open(model, "rb") as handle:
        digest = hashlib.sha256()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    cases = []
    for text, add_special, parse_special in strings:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        # Bytes whose GPT-2 character is missing from the vocabulary are dropped by llama.cpp, so not every
        # string survives encode + decode; record which do. llama_detokenize itself (not llama-cpp-python's
        # per-token detokenize), which drops the space add_space_prefix put before the first piece.
        round_trips = detokenize(llama_cpp, llm, ids, parse_special) == text.encode("utf-8")
        cases.append(
            {
                "text": text,
                "add_special": add_special,
                "parse_special": parse_special,
                "round_trips": round_trips,
                "ids": ids,
            }
        )
    header = {
        "generator": "Deploy/scripts/make_tokenizer_corpus.py",
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp tokenizer, vocab_only)",
        "model": os.path.basename(model),
        "model_sha256": digest.hexdigest(),
    }
    return header, cases


def write_json(path: str, header: dict, key: str, items: list) -> None:
    """One item per line keeps diffs readable when llama.cpp or the strings change."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("{\n")
        for name, value in header.items():
            handle.write(f" {json.dumps(name)}: {json.dumps(value, ensure_ascii=False)},\n")
        handle.write(f" {json.dumps(key)}: [\n")
        handle.write(",\n".join(" " + json.dumps(item, ensure_ascii=False) for item in items))
        handle.write("\n ]\n}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model_path(), help="GGUF model (default: the SmolLM2 default model)")
    here = os.path.dirname(os.path.abspath(__file__))
    fixtures = os.path.join(here, "..", "..", "Tests", "TokenizationTests", "Fixtures")
    parser.add_argument("--out", default=os.path.join(fixtures, "tokenizer_corpus.json"))
    parser.add_argument("--pretokenizers-out", default=os.path.join(fixtures, "tokenizer_pretokenizers.json"))
    args = parser.parse_args()

    if not os.path.exists(args.model):
        sys.exit(f"model not found: {args.model} (fetch it with `bash Deploy/setup.sh`)")
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python")

    header, cases = reference_corpus(llama_cpp, args.model, build_cases())
    write_json(args.out, header, "cases", cases)
    print(f"wrote {len(cases)} cases to {os.path.relpath(args.out)}")

    test_dir = os.path.join(os.path.dirname(default_model_path()), "test")
    for name, out in [("gemma-3-270m-q4_k_m.gguf", "tokenizer_corpus_gemma3.json"),
                      ("mistral-spm-random.gguf", "tokenizer_corpus_mistral_spm.json")]:
        path = os.path.join(test_dir, name)
        if not os.path.exists(path):
            print(f"skipping {out}: {path} is missing (bash Deploy/setup.sh --test-models)")
            continue
        spm_header, spm_cases = reference_corpus(llama_cpp, path, build_cases(SPECIAL_TEXT + GEMMA_SPECIAL_TEXT))
        target = os.path.join(os.path.dirname(os.path.abspath(args.out)), out)
        write_json(target, spm_header, "cases", spm_cases)
        print(f"wrote {len(spm_cases)} cases to {os.path.relpath(target)}")

    texts = [case["text"] for case in cases if not case["add_special"] and not case["parse_special"]]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for pre in OTHER_PRE_TOKENIZERS:
            path = os.path.join(scratch, f"{pre}.gguf")
            write_with_pre(args.model, pre, path)
            other = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            for text in texts:
                ids = other.tokenize(text.encode("utf-8"), add_bos=False, special=False)
                results.append({"pre": pre, "text": text, "ids": ids})
            del other
    header = dict(header, note="SmolLM2's vocabulary and merges with tokenizer.ggml.pre replaced by `pre`")
    write_json(args.pretokenizers_out, header, "cases", results)
    print(f"wrote {len(results)} cases to {os.path.relpath(args.pretokenizers_out)}")


if __name__ == "__main__":
    main()
