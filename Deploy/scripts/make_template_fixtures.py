#!/usr/bin/env python3
"""Regenerates the chat-template fixtures of Tests/ChatTemplatesTests/Fixtures.

The reference renderer is Python jinja2 configured exactly as Hugging Face transformers configures it in
`apply_chat_template` (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, the
`generation` tag, `tojson` without HTML escaping, `raise_exception`, `strftime_now`), called with the same
variables (`messages`, `tools`, `documents`, `add_generation_prompt`, `bos_token`, `eos_token`).

Usage: python3 Deploy/scripts/make_template_fixtures.py [--model PATH]
The default model's template is read from its GGUF (`tokenizer.chat_template`) and written next to the
other template sources, so the Swift tests need no model file.
"""
import argparse
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "Tests", "ChatTemplatesTests", "Fixtures")
TEMPLATES = os.path.join(FIXTURES, "templates")


class GenerationTag(jinja2.ext.Extension):
    """HF's AssistantTracker: `{% generation %}...{% endgeneration %}` renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def to_hf_message(message):
    """The dict HF templates see for a Swift `ChatMessage` (same keys, same order as the Swift side)."""
    out = {"role": message["role"], "content": message["content"]}
    if "name" in message:
        out["name"] = message["name"]
    if "tool_call_id" in message:
        out["tool_call_id"] = message["tool_call_id"]
    if "tool_calls" in message:
        calls = []
        for call in message["tool_calls"]:
            converted = {}
            if "id" in call:
                converted["id"] = call["id"]
            converted["type"] = "function"
            try:
                arguments = json.loads(call["arguments"])
            except ValueError:
                arguments = call["arguments"]
            converted["function"] = {"name": call["name"], "arguments": arguments}
            calls.append(converted)
        out["tool_calls"] = calls
    return out


def render(env, source, messages, add_generation_prompt, bos, eos, extra):
    template = env.from_string(source)
    context = dict(extra)
    tools = context.pop("tools", None)
    documents = context.pop("documents", None)
    try:
        text = template.render(
            messages=[to_hf_message(m) for m in messages],
            tools=tools,
            documents=documents,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
            **context,
        )
        return {"expected": text}
    except (jinja2.exceptions.TemplateError, TypeError, ValueError, ZeroDivisionError) as error:
        # Python errors escape apply_chat_template as they are; the Swift side must give the same message.
        return {"error": str(error)}


WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city — «quoted» & <tagged>",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City name, e.g. \"Paris\""},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": None},
                    "threshold": {"type": "number", "default": 0.5, "exclusive": False, "scale": 1e-05},
                    "tags": {"type": "array", "items": {"type": "string"}, "description": "  Extra tags "},
                    "either": {"type": ["string", "integer"], "description": "A union"},
                    "extra": {"type": "object", "additionalProperties": {"type": "boolean"}, "description": "Flags"},
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current local time",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]

SYSTEM = {"role": "system", "content": "You are a concise assistant."}
USER = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "Paris."}
USER2 = {"role": "user", "content": "And of Germany?"}
TOOL_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {"id": "call0A1b2", "name": "get_weather",
         "arguments": "{\"location\": \"Paris\", \"unit\": \"celsius\", \"note\": \"He said \\\"hi\\\" & it's <ok> \\\\ ü\"}"}
    ],
}
TOOL_RESULT = {"role": "tool", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}",
               "name": "get_weather", "tool_call_id": "call0A1b2"}

CONVERSATIONS = [
    ("single user", [{"role": "user", "content": "Hello!"}], True, {}),
    ("single user without generation prompt", [{"role": "user", "content": "Hello!"}], False, {}),
    ("system and user", [SYSTEM, USER], True, {}),
    ("multi-turn with assistant", [SYSTEM, USER, ASSISTANT, USER2], True, {}),
    ("multi-turn ending with assistant", [USER, ASSISTANT, USER2, {"role": "assistant", "content": "Berlin."}], False, {}),
    ("unicode content", [{"role": "user", "content": "Grüße! 你好 🌍 👨‍👩‍👧 مرحبا e\u0301 ﬁ \u2028 tab\tend"}], True, {}),
    ("leading and trailing whitespace",
     [{"role": "system", "content": "  padded system \n"},
      {"role": "user", "content": "\n  leading and trailing  \n\t"},
      {"role": "assistant", "content": "  answer  "},
      {"role": "user", "content": " \r\n again\r\n"}], True, {}),
    ("template-like content", [{"role": "user", "content": "{{ not a tag }} {% neither %} {# nor #}"}], True, {}),
    ("tools offered", [SYSTEM, USER], True, {"tools": WEATHER_TOOLS}),
    ("tool call and tool result", [{"role": "user", "content": "What's the weather in Paris?"}, TOOL_CALL, TOOL_RESULT],
     True, {"tools": WEATHER_TOOLS}),
    ("tool result without tools", [{"role": "user", "content": "Weather?"}, TOOL_CALL, TOOL_RESULT], True, {}),
    ("roles not alternating", [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}], True, {}),
    ("assistant first", [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "ok"}], True, {}),
    ("empty conversation", [], True, {}),
    ("custom date string", [SYSTEM, USER], True, {"date_string": "01 Jan 2025"}),
    ("assistant with reasoning",
     [USER, {"role": "assistant", "content": "<think>\nLet me recall.\n</think>\n\nParis."}, USER2], True, {}),
    ("thinking disabled", [USER], True, {"enable_thinking": False}),
    ("documents given", [SYSTEM, USER], True,
     {"documents": [{"title": "Paris", "text": "Paris is the capital of France."},
                    {"title": "Berlin", "text": "Berlin is the capital of Germany.\nIt has 3.7 million people."}]}),
    ("two tool results in a row",
     [{"role": "user", "content": "Weather and time?"},
      {"role": "assistant", "content": "", "tool_calls": [
          {"id": "call0A1b2", "name": "get_weather", "arguments": "{\"location\": \"Paris\"}"},
          {"id": "call9Z8y7", "name": "get_time", "arguments": "{}"}]},
      {"role": "tool", "content": "sunny", "tool_call_id": "call0A1b2"},
      {"role": "tool", "content": "12:00", "tool_call_id": "call9Z8y7"},
      {"role": "assistant", "content": "Sunny, and it is noon."},
      {"role": "user", "content": "Thanks"}], True, {"tools": WEATHER_TOOLS}),
]

TEMPLATE_TOKENS = {
    "smollm2-135m-instruct": ("<|im_start|>", "<|im_end|>"),
    "llama-3.1-8b-instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5-7b-instruct": ("", "<|im_end|>"),
    "mistral-7b-instruct-v0.3": ("<s>", "</s>"),
    "gemma-2-2b-it": ("<bos>", "<eos>"),
    "phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "phi-4-mini-instruct": ("<|endoftext|>", "<|endoftext|>"),
    "qwen3-0.6b": ("", "<|im_end|>"),
    "command-r7b-12-2024": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "hermes-3-llama-3.1-8b-tool-use": ("<|begin_of_text|>", "<|im_end|>"),
    "deepseek-r1-distill-qwen-32b": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
}


# Small templates that pin one interpreter construct each: (name, source, context).
CONSTRUCTS = [
    ("text only", "Hello\nworld\n", {}),
    ("trailing newline kept when doubled", "a\n\n", {}),
    ("crlf data normalized", "a\r\nb\rc", {}),
    ("print values", "{{ 1 }} {{ 1.5 }} {{ 'x' }} {{ true }} {{ none }} {{ [1, 'a', none, true, 2.0] }} {{ {'k': 'v', 'n': [1]} }} {{ (1, 'b') }} {{ (1,) }} {{ undefined_name }}|", {}),
    ("float formatting", "{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1.0e-5 }} {{ 0.0001 }} {{ 1/3 }} {{ 10/2 }} {{ -0.0 }} {{ 2.5e-7 * 2 }} {{ 123456789.125 }}", {}),
    ("arithmetic", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ -2 ** 2 }} {{ 7.5 // 2 }} {{ 7.5 % 2 }} {{ 'ab' * 3 }} {{ [1] + [2, 3] }}", {}),
    ("operator precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 'a' ~ 1 * 2 }} {{ 2 * 3 ~ 'x' }} {{ (1 + 2) ~ 3 }} {{ not true or true }} {{ not (true or true) }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 if false else 2 if false else 3 }}", {}),
    ("string escapes", "{{ 'a\\nb\\tc\\\\d\\'e\"' }}|{{ \"q\\\"x\" }}|{{ 'u\\u00e9\\x41' }}|{{ 'adj' 'acent' }}", {}),
    ("comparisons", "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }} {{ 'x' != 'y' }} {{ none == none }} {{ 1 >= 2 }} {{ undefined_name == none }}", {}),
    ("membership", "{{ 'a' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'cat' }} {{ 'tool_calls' in m }}", {"m": {"role": "user", "tool_calls": []}}),
    ("boolean logic values", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' or [] }} {{ none and 1 }} {{ not '' }}", {}),
    ("conditional without else", "[{{ 'yes' if false }}]", {}),
    ("if elif else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %}", {}),
    ("for loop variables", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", {}),
    ("for else and filter", "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in range(10) if x is even %}{{ x }}{{ loop.index }}{% if not loop.last %},{% endif %}{% endfor %}", {}),
    ("for over dict and items", "{% for k in d %}{{ k }}{% endfor %} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {% for k, v in d | items %}{{ k }}{{ v }}{% endfor %} {{ d.keys() | list }} {{ d.values() | list }}", {"d": {"b": 1, "a": 2}}),
    ("for over string", "{% for c in 'héllo' %}{{ c }}-{% endfor %}", {}),
    ("loop cycle and nested loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.cycle('o', 'e') }}{{ a }}{{ b }}{% endfor %}{% endfor %}", {}),
    ("break and continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("range forms", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }}", {}),
    ("set scoping", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 10 %}{{ x }},{% endfor %}{{ x }}{% if true %}{% set x = 5 %}{% endif %}{{ x }}", {}),
    ("namespace", "{% set ns = namespace(count=0, found=false) %}{% for i in [1, 2, 3] %}{% set ns.count = ns.count + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}", {}),
    ("set tuple and block set", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set block %}B {{ a }}{% endset %}[{{ block }}]", {}),
    ("whitespace control", "a  {{- ' b ' -}}  c\n  {%- if true -%}\n  d  \n{%- endif -%}\n  e {#- comment -#} f", {}),
    ("trim and lstrip blocks", "<ul>\n    {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n    {% endfor %}\n</ul>\n  {# note #}\nend {% if true %}  kept\n{% endif %}", {}),
    ("lstrip disabled with plus", "x\n    {%+ if true %}y{% endif %}\n", {}),
    ("raw block", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}!", {}),
    ("comments", "a{# one #}b{#- two -#} c", {}),
    ("indexing and slicing", "{{ l[0] }}{{ l[-1] }}{{ l[1:] }}{{ l[:2] }}{{ l[::-1] }}{{ l[::2] }}{{ s[1:3] }}{{ s[-2:] }}{{ s[::-1] }}{{ d['k'] }}{{ d.k }}{{ l[10] }}|", {"l": [1, 2, 3, 4], "s": "héllo", "d": {"k": "v"}}),
    ("attribute access on dicts", "{{ m.role }} {{ m['content'] }} {{ m.missing is defined }} {{ m.get('role') }} {{ m.get('nope', 'dflt') }} {{ m.get('nope') }}", {"m": {"role": "user", "content": "hi"}}),
    ("string methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello world'.title() }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'xxhixx'.strip('x') }}|{{ s.startswith('  He') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.count('b') }}|{{ '-'.join(['a', 'b']) }}|{{ 'Hello'.capitalize() }}", {"s": "  Hello World  "}),
    ("filters on strings", "{{ s | trim }}|{{ s | length }}|{{ s | upper }}|{{ s | lower }}|{{ 'hello wORLD-x' | title }}|{{ 'hELLO' | capitalize }}|{{ s | replace('l', 'L') }}|{{ 'abc' | list }}|{{ 'abc' | first }}{{ 'abc' | last }}|{{ 'é<>&\"\\'' | escape }}|{{ 'x' | safe }}|{{ 42 | string }}|{{ s | count }}", {"s": "  Hello World  "}),
    ("filters on numbers", "{{ '42' | int }} {{ '3.9' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ '2.5' | float }} {{ 3 | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 7 | round(0, 'floor') }}", {}),
    ("default filter", "{{ missing | default('d') }} {{ '' | default('e') }} {{ '' | default('e', true) }} {{ none | default('n') }} {{ false | d('f', true) }} {{ present | default('p') }}", {"present": "here"}),
    ("join and list filters", "{{ [1, 2, 3] | join(', ') }} {{ ['a', 'b'] | join }} {{ users | join(', ', attribute='name') }} {{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) | list }} {{ [1, 2] | reverse | list }} {{ [1, 1, 2] | unique | list }} {{ [1, 2, 3] | length }} {{ [4, 5] | first }} {{ [4, 5] | last }} {{ [1, 5, 3] | max }} {{ [1, 5, 3] | min }} {{ [1, 2, 3] | sum }}", {"users": [{"name": "ann"}, {"name": "bob"}]}),
    ("selectattr rejectattr map", "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ ms | rejectattr('role', 'equalto', 'user') | list | length }} {{ ms | selectattr('flag') | list | length }} {{ ms | map(attribute='missing', default='?') | join }} {{ ['a', 'b'] | map('upper') | list }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('gt', 2) | list }} {{ ms | selectattr('role', '==', 'system') | list | length }}", {"ms": [{"role": "user", "content": "a", "flag": True}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
    ("tojson", "{{ v | tojson }}\n{{ v | tojson(indent=2) }}\n{{ v | tojson(separators=(',', ':')) }}\n{{ v | tojson(sort_keys=true) }}\n{{ 'é\"\\n<' | tojson }} {{ none | tojson }} {{ [] | tojson(indent=2) }} {{ {} | tojson(indent=2) }}", {"v": {"z": [1, 2.5, True, None, "ü\u2028\u0001"], "a": {"nested": {}}, "e": []}}),
    ("indent filter", "[{{ 'a\\nb\\n\\nc' | indent(2) }}] [{{ 'a\\nb' | indent(2, true) }}] [{{ 'a\\n\\nb' | indent(2, blank=true) }}] [{{ 'a\\nb' | indent('> ', first=true) }}]", {}),
    ("tests", "{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 1.5 is number }}{{ true is number }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}{{ [] is sequence }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 4 is even }}{{ 3 is odd }}{{ 9 is divisibleby 3 }}{{ 1 is equalto 1 }}{{ 3 is gt 2 }}{{ 'a' is in 'abc' }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ x is not none }}{{ range is callable }}", {"x": 1}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', '?') }} {{ greet(name='Cy', punct='.') }}", {}),
    ("macro sees template variables", "{% set who = 'world' %}{% macro m() %}{{ who }}{{ caller_var }}{% endmacro %}{{ m() }}", {"caller_var": "!"}),
    ("dict and list literals", "{% set d = {'a': 1, 'b': [1, 2], \"c\": {'x': none}} %}{{ d }} {{ d['b'][1] }} {{ d.c.x }} {{ [] }} {{ {} }} {{ [1, [2, [3]]] }} {{ dict(a=1, b='x') }}", {}),
    ("string repr quoting", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'nl\\n', 'tab\\t', 'bs\\\\', 'é', '\\u0001'] }}", {}),
    ("concatenation with tilde", "{{ 'a' ~ 1 ~ none ~ true ~ [1] ~ undefined_name }}", {}),
    ("generation tag", "{% generation %}kept {{ 1 }}{% endgeneration %}", {}),
    ("items filter on undefined is empty", "{% for k, v in nothing | items %}x{% endfor %}ok", {}),
    ("loop over undefined is empty", "{% for x in nothing %}x{% else %}none{% endfor %}", {}),
    ("strftime_now is defined", "{{ strftime_now is defined }}", {}),
    ("whitespace around tags at line starts", "  {% if true %}\n    a\n  {% endif %}\n  {{ 'b' }}  {% if true %}c{% endif %}\n\t{# comment #}\n  {%- if true %} d {% endif -%}\n\n e", {}),
    ("leading spaces on the first line", "   {% if true %}x{% endif %}", {}),
    ("variable end with minus", "{{ 'a' -}}\n\n  b {{- 'c' }}", {}),
    ("unicode whitespace before a tag", "x\n\u00a0\u3000{% if true %}y{% endif %}", {}),
    ("block tags inside a line keep spaces", "a {% if true %} b {% endif %} c\n", {}),
    ("previtem and nextitem at the ends", "{% for x in [1, 2] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", {}),
    ("outer loop kept in a variable", "{% for a in 'xy' %}{% set outer = loop %}{% for b in [1, 2] %}{{ outer.index }}{{ loop.index }}{{ loop.depth }} {% endfor %}{% endfor %}", {}),
    ("negative indexing on messages", "{{ messages[-1]['role'] }} {{ messages[-1].content }} {{ (messages | last).role }} {{ messages[0:1] | length }}", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
    ("reassign with default", "{% set x = x | default(5) %}{{ x }} {% set y = 1 %}{% set y = y | default(9) %}{{ y }}", {}),
    ("sameas and none tests", "{{ false is sameas false }} {{ none is sameas none }} {{ 0 is sameas false }} {{ x is none }} {{ y is not none }}", {"x": None, "y": 0}),
    ("in with undefined container", "{{ 'a' in nothing }}", {}),
    ("truthiness of containers", "{% if [] %}a{% endif %}{% if {} %}b{% endif %}{% if '' %}c{% endif %}{% if 0.0 %}d{% endif %}{% if [0] %}e{% endif %}{% if ' ' %}f{% endif %}", {}),
    ("string comparison by code point", "{{ 'Z' < 'a' }} {{ 'é' > 'z' }} {{ 'abc' < 'abd' }} {{ [1, 'a'] < [1, 'b'] }}", {}),
    ("nested data access and tojson of a message", "{% for m in messages %}{{ m.tool_calls[0].function.arguments | tojson }}{{ m.tool_calls[0]['function']['name'] }}{% endfor %}", {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"q": "x", "n": [1, {"k": None}]}}}]}]}),
    ("items and keys on nested dicts", "{% for k, v in d.items() %}{{ k }}:{% for k2 in v %}{{ k2 }}{% endfor %};{% endfor %}", {"d": {"one": {"a": 1, "b": 2}, "two": {}}}),
    ("loop over tuples from items with index", "{% for pair in {'a': 1, 'b': 2} | items %}{{ loop.index }}{{ pair[0] }}{{ pair[1] }}{{ pair }}{% endfor %}", {}),
    ("macro with loop and default arguments", "{% macro render(items, sep=', ') %}{% for i in items %}{{ i }}{% if not loop.last %}{{ sep }}{% endif %}{% endfor %}{% endmacro %}[{{ render([1, 2, 3]) }}] [{{ render(['a'], sep='-') }}] [{{ render([]) }}]", {}),
    ("split, join and strip chains", "{{ text.split('\\n') | map('trim') | reject('equalto', '') | join(' / ') }} {{ text.strip().split('\\n')[-1].strip() }}", {"text": "\n  first line \n\n second  \n"}),
    ("conditional expressions in output", "{{ 'a' if x else 'b' }}{{ 'c' if not x }}{{ ('d' if x else 'e') ~ 'f' }}{{ x and 'g' or 'h' }}", {"x": False}),
    ("integer and float division results", "{{ 6 / 3 }} {{ 7 // 2.0 }} {{ -7.5 // 2 }} {{ 2 ** 0.5 }} {{ 10 % 3.5 }} {{ 1e300 * 1e10 }} {{ 3 * 1.1 }}", {}),
    ("filters with keyword arguments", "{{ users | map(attribute='age') | sum }} {{ users | sort(attribute='age') | map(attribute='name') | join(',') }} {{ users | selectattr('age', 'gt', 30) | map(attribute='name') | first }} {{ users | max(attribute='age') }}", {"users": [{"name": "b", "age": 40}, {"name": "a", "age": 25}, {"name": "c", "age": 33}]}),
    ("string filters on non-strings", "{{ 5 | string | length }} {{ none | string }} {{ [1, 2] | string }} {{ 3.0 | int }} {{ true | int }} {{ 1 | float }} {{ '  x  ' | trim('x ') }}|", {}),
    ("unique and sort case handling", "{{ ['b', 'A', 'a', 'B'] | unique | list }} {{ ['b', 'A', 'a', 'B'] | sort }} {{ ['b', 'A', 'a', 'B'] | sort(case_sensitive=true) }}", {}),
    ("tojson escaping and numbers", "{{ ['\\u00e9', '\\t', '\\u2028', '\\\\', '/', 1.0, 1e20, -0.5, 12345678901234] | tojson }} {{ {'k': 'v'} | tojson(ensure_ascii=true) }} {{ 'é😀' | tojson(ensure_ascii=true) }}", {}),
    ("raise inside a macro", "{% macro check(r) %}{% if r != 'user' %}{{ raise_exception('bad role ' + r) }}{% endif %}ok{% endmacro %}{{ check('user') }}{{ check('tool') }}", {}),
    ("break outside of the innermost loop only", "{% for a in [1, 2] %}{% for b in [1, 2, 3] %}{% if b == 2 %}{% break %}{% endif %}{{ a }}{{ b }} {% endfor %}{% endfor %}", {}),
    ("namespace built from a dict and attribute reads", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns.c is defined }}{% set ns.c = [ns.a] %}{{ ns.c }}", {}),
    ("string startswith with tuple and slicing with steps", "{{ s.startswith(('x', 'he')) }} {{ s[1::2] }} {{ s[-3:-1] }} {{ s[10:] }}| {{ s[:-10] }}|", {"s": "hello"}),
    ("title filter versus title method", "{{ \"they're bill's o'neil-smith (x) [y]\" | title }} | {{ \"they're bill's o'neil-smith\".title() }}", {}),
    ("escape special characters then join", "{{ ['<a>', '&'] | map('e') | join(' ') }}", {}),
    ("length of unicode strings", "{{ 'e\\u0301' | length }} {{ '😀👍🏽' | length }} {{ '👨‍👩‍👧'[0] }} {{ 'abc' | reverse }}", {}),
    ("raw block whitespace", "a\n  {% raw %}\n{{ x }}\n  {% endraw %}\nb {%- raw -%}  c  {%- endraw -%}  d", {}),
    ("content parts joined", "{% for m in messages %}{% set content = m.content if m.content is string else m.content | selectattr('type', 'in', ['text']) | map(attribute='text') | join('') %}{{ content }};{% endfor %}", {"messages": [{"content": "plain"}, {"content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}]}),
    ("roles counted with selectattr in", "{{ messages | selectattr('role', 'in', ['user', 'assistant']) | list | length }}", {"messages": [{"role": "system"}, {"role": "user"}, {"role": "assistant"}, {"role": "tool"}]}),
    ("raise_exception", "before{{ raise_exception('Bad role: ' ~ role) }}after", {"role": "tool"}),
    ("undefined variable in arithmetic", "{{ nothing + 1 }}", {}),
    ("missing attribute in concatenation", "{{ m.nope + 'x' }}", {"m": {"a": 1}}),
    ("missing index in concatenation", "{{ l[3] + 'x' }}", {"l": [1]}),
    ("attribute of undefined", "{{ nothing.attr }}", {}),
    ("string plus int", "{{ 'a' + 1 }}", {}),
    ("int plus string", "{{ 1 + 'a' }}", {}),
    ("division by zero", "{{ 1 / 0 }}", {}),
    ("unknown tag is a syntax error", "{% frobnicate %}", {}),
    ("unclosed block is a syntax error", "{% if true %}x", {}),
    ("unknown filter is an error", "{{ 1 | frobnicate }}", {}),
    ("unknown test is an error", "{{ 1 is frobnicate }}", {}),
]


def extract_default_template(model_path):
    from gguf import GGUFReader

    reader = GGUFReader(model_path)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=os.path.join(
            os.environ.get("BATON_MODEL_DIR", os.path.expanduser("~/.cache/baton/models")),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    )
    args = parser.parse_args()

    os.makedirs(TEMPLATES, exist_ok=True)
    with open(os.path.join(TEMPLATES, "smollm2-135m-instruct.jinja"), "w", encoding="utf-8", newline="") as f:
        f.write(extract_default_template(args.model))

    env = make_environment()
    templates = []
    total = 0
    for name, (bos, eos) in sorted(TEMPLATE_TOKENS.items()):
        with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8", newline="") as f:
            source = f.read()
        cases = []
        for title, messages, add_generation_prompt, extra in CONVERSATIONS:
            case = {
                "name": title,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "bos_token": bos,
                "eos_token": eos,
                "extra_context": json.dumps(extra, ensure_ascii=False),
            }
            case.update(render(env, source, messages, add_generation_prompt, bos, eos, extra))
            cases.append(case)
        total += len(cases)
        templates.append({"template": name + ".jinja", "cases": cases})
    with open(os.path.join(FIXTURES, "chat_templates.json"), "w", encoding="utf-8") as f:
        json.dump(templates, f, ensure_ascii=False, indent=1)
        f.write("\n")

    constructs = []
    for title, source, context in CONSTRUCTS:
        case = {"name": title, "source": source, "context": json.dumps(context, ensure_ascii=False)}
        try:
            case["expected"] = env.from_string(source).render(**context)
        except jinja2.exceptions.TemplateSyntaxError as error:
            case["syntax_error"] = str(error)
        except jinja2.exceptions.TemplateError as error:
            case["error"] = str(error)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, KeyError, IndexError) as error:
            case["error"] = str(error)
        constructs.append(case)
    with open(os.path.join(FIXTURES, "constructs.json"), "w", encoding="utf-8") as f:
        json.dump(constructs, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(templates)} templates x {len(CONVERSATIONS)} conversations = {total} cases; "
          f"{len(constructs)} construct cases", file=sys.stderr)


if __name__ == "__main__":
    main()
