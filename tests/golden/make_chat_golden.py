#!/usr/bin/env python3
"""make_chat_golden.py -- chat template goldens from Hugging Face transformers.

Renders conversations with tokenizer.apply_chat_template(tokenize=False) for
each real template in examples/models/tokenizers/ (Qwen2.5, Qwen3 current and
first release, DeepSeek-R1-Distill-Qwen), recording the exact variables the
template saw (messages after transformers' preprocessing, tools, special
tokens, add_generation_prompt, chat_template_kwargs) and the output, or the
error text when the template fails. It also renders small feature templates
through transformers' own jinja environment (features.json), so the C
interpreter is checked against jinja2 itself feature by feature.

Run here, not in CI:  /work/gvenv/bin/python tests/golden/make_chat_golden.py
Writes tests/golden/chat/*.json. Never edit those files by hand.
"""
import copy
import json
import os
import shutil
import sys
import tempfile

import jinja2
import transformers
from transformers import AutoTokenizer
from transformers.utils import chat_template_utils as ctu

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOK = os.path.join(ROOT, "examples", "models", "tokenizers")
OUT = os.path.join(ROOT, "tests", "golden", "chat")

TEMPLATES = ["qwen2.5", "qwen3", "qwen3-initial", "deepseek-r1-distill-qwen"]

# ---- capture what the template sees --------------------------------------------
_captured = {}
_orig_render = jinja2.environment.Template.render


def _render(self, *args, **kwargs):
    _captured["vars"] = copy.deepcopy(kwargs)
    return _orig_render(self, *args, **kwargs)


jinja2.environment.Template.render = _render

# ---- conversations -------------------------------------------------------------------
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city. Température, «quotes» and 雨.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "ratio": {"type": "number", "default": 0.5},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web.\nReturns a list of results.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "filters": {
                    "type": "object",
                    "properties": {"site": {"type": "string"}, "safe": {"type": "boolean"}},
                },
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    },
}
TOOLS = [WEATHER, SEARCH]


def tc(name, args, as_string, cid="call_1", wrapped=True):
    a = json.dumps(args, ensure_ascii=False) if as_string else args
    if not wrapped:
        return {"name": name, "arguments": a}
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": a}}


def U(c):
    return {"role": "user", "content": c}


def A(c, **kw):
    m = {"role": "assistant", "content": c}
    m.update(kw)
    return m


def S(c):
    return {"role": "system", "content": c}


def T(c, cid="call_1"):
    return {"role": "tool", "tool_call_id": cid, "content": c}


def conversations(string_args):
    """(name, messages, tools, kwargs). <string_args>: tool call arguments as JSON strings
    (OpenAI wire format) or as objects."""
    w = tc("get_weather", {"city": "Paris", "unit": "celsius"}, string_args)
    w2 = tc("get_weather", {"city": "東京", "days": 3}, string_args, "call_2")
    s1 = tc("web_search", {"query": "llm \"serving\"", "filters": {"safe": True}, "tags": []},
            string_args, "call_3")
    sfx = "_strargs" if string_args else ""
    tool_conv = [
        (f"tools_call_result{sfx}",
         [U("Weather in Paris?"), A(None, tool_calls=[w]), T('{"temp": 18, "sky": "clear"}')],
         TOOLS, {"add_generation_prompt": True}),
        (f"tools_two_results_in_a_row{sfx}",
         [S("Be brief."), U("Weather in Paris and Tokyo?"), A(None, tool_calls=[w, w2]),
          T('{"temp": 18}'), T('{"temp": 25}', "call_2"), A("Paris 18°C, Tokyo 25°C.")],
         TOOLS, {"add_generation_prompt": False}),
        (f"tools_content_and_calls{sfx}",
         [U("Find news"), A("Let me search.", tool_calls=[s1]), T("[\"result 1\", \"result 2\"]")],
         TOOLS, {"add_generation_prompt": True}),
        (f"tools_multi_step{sfx}",
         [U("Plan a trip"), A(None, tool_calls=[w]), T("sunny"), A(None, tool_calls=[s1]),
          T("three results"), A("<think>\nall data in\n</think>\n\nGo on Monday.")],
         TOOLS, {"add_generation_prompt": True}),
    ]
    return tool_conv


def base_conversations():
    think = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello! How can I help?"
    w = tc("get_weather", {"city": "Paris"}, False)
    flat = tc("get_weather", {"city": "Oslo"}, False, wrapped=False)
    convs = [
        ("single_user_gen", [U("Hello!")], None, {"add_generation_prompt": True}),
        ("single_user_nogen", [U("Hello!")], None, {"add_generation_prompt": False}),
        ("system_user_gen", [S("You are a pirate."), U("Hi")], None, {"add_generation_prompt": True}),
        ("multi_turn_gen",
         [S("You are helpful."), U("What is 2+2?"), A("4"), U("And 3+3?")], None,
         {"add_generation_prompt": True}),
        ("multi_turn_ends_assistant",
         [U("What is 2+2?"), A("4"), U("And 3+3?"), A("6")], None, {"add_generation_prompt": False}),
        ("unicode_content",
         [U("Привет, 世界! 👩‍👩‍👧‍👦 e\u0301 مرحبا \u00a0nbsp\ttab"), A("Ça va? ✓"), U("日本語で")], None,
         {"add_generation_prompt": True}),
        ("empty_user_content", [U("")], None, {"add_generation_prompt": True}),
        ("empty_system_content", [S(""), U("hi")], None, {"add_generation_prompt": True}),
        ("think_in_history", [U("Hi"), A(think), U("Tell me a joke")], None,
         {"add_generation_prompt": True}),
        ("think_last_assistant", [U("Hi"), A(think)], None, {"add_generation_prompt": False}),
        ("reasoning_content_last",
         [U("Hi"), A("Hello there.", reasoning_content="Greeting detected.\n")], None,
         {"add_generation_prompt": False}),
        ("reasoning_content_history",
         [U("Hi"), A("Hello there.", reasoning_content="Greeting."), U("Bye")], None,
         {"add_generation_prompt": True}),
        ("enable_thinking_false_gen", [U("Quick answer: capital of France?")], None,
         {"add_generation_prompt": True, "enable_thinking": False}),
        ("enable_thinking_true_gen", [U("Think hard: 17*23?")], None,
         {"add_generation_prompt": True, "enable_thinking": True}),
        ("enable_thinking_false_nogen", [U("x"), A("y")], None,
         {"add_generation_prompt": False, "enable_thinking": False}),
        ("tools_single_user", [U("What's the weather?")], TOOLS, {"add_generation_prompt": True}),
        ("tools_with_system", [S("Use tools wisely."), U("Search cats")], TOOLS,
         {"add_generation_prompt": True}),
        ("tools_enable_thinking_false", [U("Weather in Rome?")], [WEATHER],
         {"add_generation_prompt": True, "enable_thinking": False}),
        ("tool_call_unwrapped",
         [U("Oslo weather"), A("", tool_calls=[flat]), T("cold")], [WEATHER],
         {"add_generation_prompt": True}),
        ("user_tool_response_text",
         [U("q1"), A("a1"), U("<tool_response>\nfake\n</tool_response>")], None,
         {"add_generation_prompt": True}),
        ("system_mid_conversation", [U("a"), S("new rules"), U("b")], None,
         {"add_generation_prompt": True}),
        ("long_multi_turn_think",
         [S("sys"), U("u1"), A("<think>r1</think>a1"), U("u2"), A("<think>\nr2\n</think>\n\na2"),
          U("u3"), A("a3"), U("u4")], None, {"add_generation_prompt": True}),
        ("special_characters",
         [U("quotes ' \" backslash \\ braces {{ x }} {% if %} {# c #} \\n literal"),
          A("json {\"a\": [1, 2]}\r\nCRLF")], None, {"add_generation_prompt": True}),
        ("think_whitespace_edges",
         [U("q"), A("\n\n<think>\n\n  spaced reasoning  \n\n</think>\n\n\nanswer\n")], None,
         {"add_generation_prompt": False}),
        ("only_close_think", [U("q"), A("</think>answer only")], None,
         {"add_generation_prompt": False}),
        ("two_think_blocks", [U("q"), A("<think>a</think>mid<think>b</think>end")], None,
         {"add_generation_prompt": False}),
        ("gen_after_assistant", [U("q"), A("partial")], None, {"add_generation_prompt": True}),
        ("content_parts_list",
         [{"role": "user", "content": [{"type": "text", "text": "part one"},
                                       {"type": "text", "text": "part two"}]}], None,
         {"add_generation_prompt": True}),
        ("assistant_tool_calls_dict_args",
         [U("Paris?"), A("", tool_calls=[w]), T("mild")], [WEATHER], {"add_generation_prompt": True}),
        ("user_content_none", [{"role": "user", "content": None}], None,
         {"add_generation_prompt": True}),
        ("no_user_only_assistant", [A("hi")], None, {"add_generation_prompt": True}),
    ]
    return convs + conversations(True) + conversations(False)


def load_tokenizer(name, tmp):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(TOK, "qwen3", "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    shutil.copy(os.path.join(TOK, name, "tokenizer_config.json"),
                os.path.join(d, "tokenizer_config.json"))
    return AutoTokenizer.from_pretrained(d)


def render_case(tok, messages, tools, kwargs):
    _captured.clear()
    extra = {k: v for k, v in kwargs.items() if k != "add_generation_prompt"}
    inputs = {"messages": copy.deepcopy(messages), "tools": copy.deepcopy(tools),
              "add_generation_prompt": kwargs.get("add_generation_prompt", False),
              "chat_template_kwargs": extra}
    try:
        out = tok.apply_chat_template(
            copy.deepcopy(messages), tools=copy.deepcopy(tools), tokenize=False,
            add_generation_prompt=kwargs.get("add_generation_prompt", False), **extra)
        return {"input": inputs, "vars": _captured.get("vars"), "expected": out}
    except jinja2.exceptions.TemplateError as e:
        kind = "raise" if type(e) is jinja2.exceptions.TemplateError else "other"
        return {"input": inputs, "vars": _captured.get("vars"), "error": str(e),
                "error_kind": kind, "error_type": type(e).__name__}
    except Exception as e:  # TypeError etc. raised inside the template
        if "vars" not in _captured:
            raise
        return {"input": inputs, "vars": _captured.get("vars"), "error": str(e),
                "error_kind": "other", "error_type": type(e).__name__}


def versions():
    return {"transformers": transformers.__version__, "jinja2": jinja2.__version__,
            "python": sys.version.split()[0],
            "script": "tests/golden/make_chat_golden.py"}


# ---- feature templates: rendered by transformers' jinja environment -----------------
FEATURES = [
    ("for_loop_attrs", "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ x }};{% endfor %}", {"xs": ["a", "b", "c"]}),
    ("for_else", "{% for x in xs %}{{ x }}{% else %}empty{% endfor %}", {"xs": []}),
    ("for_filter", "{% for x in xs if x > 1 %}{{ x }}{{ loop.length }}{% endfor %}", {"xs": [1, 2, 3]}),
    ("for_items_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", {"d": {"b": 1, "a": [1, 2]}}),
    ("for_dict_keys", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"x": 1, "y": 2}}),
    ("for_string", "{% for ch in 'héllo' %}[{{ ch }}]{% endfor %}", {}),
    ("for_break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("for_prev_next", "{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{% endfor %}", {"xs": [1, 2, 3]}),
    ("for_cycle", "{% for x in xs %}{{ loop.cycle('odd', 'even') }}{% endfor %}", {"xs": [1, 2, 3]}),
    ("loop_scope", "{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = 2 %}{% endfor %}{{ x }}", {}),
    ("if_elif_else", "{% for v in [0, 1, 2] %}{% if v == 0 %}zero{% elif v == 1 %}one{% else %}many{% endif %} {% endfor %}", {}),
    ("namespace", "{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}", {}),
    ("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}", {}),
    ("set_block", "{% set x %}inner {{ 1 + 1 }}{% endset %}[{{ x }}]", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Al', punct='?') }}", {}),
    ("whitespace_control", "a  {%- if true -%}  b  {%- endif -%}  c\n  {{- ' d ' -}}  \n e", {}),
    ("trim_lstrip_blocks", "<ul>\n    {% for x in xs %}\n    <li>{{ x }}</li>\n    {% endfor %}\n</ul>\n", {"xs": [1, 2]}),
    ("lstrip_plus", "x\n    {%+ if true %}y{% endif %}\n  {# comment #}\nz", {}),
    ("comment", "a{# hidden {{ x }} #}b\n{#- stripped -#}\n c", {}),
    ("raw_block", "{% raw %}{{ not evaluated }}{% endraw %}!", {}),
    ("trailing_newline", "line\n", {}),
    ("crlf_source", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}),
    ("literals", "{{ 1 }} {{ 1.5 }} {{ -2 }} {{ 1e3 }} {{ true }} {{ none }} {{ 'a' 'b' }} {{ [1, 'x', none, true] }} {{ {'k': 'v', 'n': 1.0} }} {{ (1, 2) }} {{ (1,) }}", {}),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 + 2.5 }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 10 - 3 * 2 }}", {}),
    ("float_repr", "{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.0 }} {{ 3.0 / 2 }} {{ 1e-5 }} {{ 123456789.125 }} {{ 2.5e-7 }}", {}),
    ("compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ 1 == true }} {{ 'a' != 'a' }}", {}),
    ("in_not_in", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ '' in 'x' }}", {}),
    ("and_or_not", "{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not 0 }} {{ none or [] }} {{ '' and 1 }}", {}),
    ("condexpr", "{{ 'yes' if x else 'no' }} {{ 'a' if not x }}|{{ 1 if y else 2 if x else 3 }}", {"x": False, "y": False}),
    ("concat_tilde", "{{ 1 ~ 'a' ~ none ~ true ~ undefined_var }}", {}),
    ("attr_and_item", "{{ m.role }} {{ m['content'] }} {{ m.missing }}|{{ m['missing'] }}|{{ l[0] }}{{ l[-1] }}{{ l.1 }}", {"m": {"role": "user", "content": "hi"}, "l": [1, 2, 3]}),
    ("slicing", "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[-2:] }} {{ l[5:] }} {{ l[-10:2] }} {{ l[3:0:-1] }}", {"l": [1, 2, 3, 4], "s": "héllo"}),
    ("string_index", "{{ s[0] }}{{ s[-1] }}{{ s[1] }}", {"s": "日本語"}),
    ("str_methods", "{{ s.startswith('Hel') }} {{ s.endswith('ld') }} {{ s.startswith(('x', 'H')) }} {{ s.upper() }} {{ s.lower() }} {{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 1) }} {{ s.find('o') }} {{ s.count('l') }} {{ s.title() }} {{ 'abc'.capitalize() }}", {"s": "Hello world"}),
    ("str_split", "{{ s.split() }} {{ s.split(' ') }} {{ s.split(',', 1) }} {{ '  a  b  '.split() }} {{ 'a,b,,c'.split(',') }} {{ 'a b c'.split(none, 1) }} {{ 'x'.split('x') }} {{ 'a-b-c'.rsplit('-', 1) }} {{ '  a b  c '.rsplit(none, 1) }}", {"s": " a b,c  d "}),
    ("str_strip", "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}][{{ '\n\nhi\n'.strip('\n') }}][{{ 'abcba'.lstrip('ab') }}][{{ '¡¡hola!!'.strip('¡!') }}]", {"s": "  \t spaced \n "}),
    ("str_format_join", "{{ '{} and {}'.format('a', 'b') }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='Z') }} {{ ', '.join(['a', 'b']) }}", {}),
    ("str_preds", "{{ '123'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'a1'.isdigit() }}", {}),
    ("dict_methods", "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}", {"d": {"a": 1, "b": [2]}}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ d is mapping }} {{ l is iterable }} {{ s is iterable }} {{ 1 is iterable }} {{ l is sequence }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ s is not string }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 1 is integer }} {{ true is boolean }} {{ 1.0 is float }} {{ 'a' is in 'cat' }} {{ 2 is eq 2 }}", {"x": 1, "n": None, "s": "s", "d": {}, "l": [1]}),
    ("undefined_semantics", "[{{ nope }}][{{ nope | default('d') }}][{{ nope | length }}][{% for x in nope %}x{% endfor %}][{{ nope is none }}][{{ not nope }}][{{ nope == nope }}][{{ nope | string }}][{{ nope ~ 'x' }}][{{ d.missing is defined }}][{{ 'a' in nope }}]", {"d": {}}),
    ("default_filter", "{{ '' | default('e') }} {{ '' | default('e', true) }} {{ none | default('n') }} {{ x | d('u') }}", {}),
    ("filter_tojson", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ 'ünï \"q\" \\\\ \n\t\u0001' | tojson }}|{{ [] | tojson }}|{{ {} | tojson(indent=4) }}|{{ [1, [2, {}], {'a': []}] | tojson(indent=1) }}|{{ d | tojson(sort_keys=true) }}|{{ 1.5 | tojson }}|{{ none | tojson }}|{{ d | tojson(ensure_ascii=true) }}|{{ d | tojson(separators=[',', ':']) }}", {"d": {"z": 1, "a": [True, None, 2.0], "é": "😀"}}),
    ("filter_strings", "{{ '  x  ' | trim }}|{{ 'xxyxx' | trim('x') }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 'aaa' | replace('a', 'b') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 12 | string }}|{{ 'abc' | length }}|{{ 'héllo' | count }}|{{ '<a href=\"x\">&</a>' | e }}|{{ 'x' | safe }}|{{ 'abc' | reverse }}|{{ 'a b  c' | wordcount }}|{{ 'x\ny\n\nz' | indent(2) }}|{{ 'x\ny' | indent(2, true) }}|{{ 'ab' | center(6) }}|", {}),
    ("filter_lists", "{{ l | first }} {{ l | last }} {{ l | length }} {{ l | join(', ') }} {{ l | join }} {{ l | reverse | list }} {{ l | sort }} {{ l | sort(reverse=true) }} {{ l | unique | list }} {{ l | min }} {{ l | max }} {{ l | sum }} {{ 'abc' | list }} {{ [] | first }}|", {"l": [3, 1, 2, 3]}),
    ("filter_attr", "{{ ms | map(attribute='role') | list }} {{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }} {{ ms | rejectattr('role', 'eq', 'user') | list | length }} {{ ms | selectattr('extra') | list | length }} {{ ms | map(attribute='missing', default='m') | list }} {{ [1, 0, 2] | select | list }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2] | reject('even') | list }} {{ ['a', 'b'] | map('upper') | list }} {{ ms | sort(attribute='content') | map(attribute='content') | list }}", {"ms": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "a", "extra": 1}, {"role": "user", "content": "c"}]}),
    ("filter_numbers", "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 2.1 | round(method='ceil') }} {{ true | int }}", {}),
    ("filter_items", "{% for k, v in d | items %}{{ k }}:{{ v }};{% endfor %}{{ d | items | list }}", {"d": {"one": 1, "two": 2}}),
    ("filter_dotted_attr", "{{ l | map(attribute='f.name') | list }}", {"l": [{"f": {"name": "a"}}, {"f": {"name": "b"}}]}),
    ("print_values", "{{ l }} {{ d }} {{ 'it\\'s' }} {{ ['it\\'s', 'say \"x\"', 'both \\' \"'] }} {{ none }} {{ true }} {{ 1.0 }} {{ {'a': {'b': [1.5, none]}} }}", {"l": [1, "two", None], "d": {"k": "v"}}),
    ("string_escapes", "{{ 'a\\tb\\nc\\\\d\\'e\\\"f\\x41\\u00e9\\U0001F600' }}", {}),
    ("range_forms", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }}", {}),
    ("raise_exception", "{% if messages | length == 0 %}{{ raise_exception('No user query found in messages.') }}{% endif %}ok", {"messages": []}),
    ("raise_exception_formatted", "{{ raise_exception('Bad role: ' + role + '!') }}", {"role": "robot"}),
    ("dict_global", "{% set d = dict(a=1, b='x') %}{{ d.a }}{{ d['b'] }}", {}),
    ("nested_loops_loopvar", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("set_in_if_leaks", "{% if true %}{% set v = 'in' %}{% endif %}{{ v }}", {}),
    ("reassign_loop_var", "{% for t in ts %}{% if t.function is defined %}{% set t = t.function %}{% endif %}{{ t.name }};{% endfor %}", {"ts": [{"function": {"name": "f"}}, {"name": "g"}]}),
    ("message_content_checks", "{% for m in ms %}{% if m.content is string %}S{% elif m.content is none %}N{% elif m.content is iterable %}I{% endif %}{% endfor %}", {"ms": [{"content": "x"}, {"content": None}, {"content": [1]}, {}]}),
    ("generation_block", "a{% generation %}b{{ 1 }}{% endgeneration %}c", {}),
    ("unicode_upper_lower", "{{ 'straße ÉCOLE ǅ' | upper }} {{ 'ÀÉÎ' | lower }}", {}),
    ("negative_zero_div", "{{ -0.0 }} {{ 0.5 // 0.25 }} {{ -1.5 % 1 }}", {}),
    ("big_ints", "{{ 2 ** 40 }} {{ 9007199254740993 }} {{ -9223372036854775807 }}", {}),
]

FEATURE_ERRORS = [
    ("err_attr_of_undefined", "{{ nope.attr }}", {}),
    ("err_item_of_undefined", "{{ nope['x'] }}", {}),
    ("err_method_on_none", "{{ x.startswith('a') }}", {"x": None}),
    ("err_add_str_none", "{{ 'a' + x }}", {"x": None}),
    ("err_add_str_int", "{{ 'a' + 1 }}", {}),
    ("err_compare_types", "{{ 1 < 'a' }}", {}),
    ("err_div_zero", "{{ 1 / 0 }}", {}),
    ("err_call_undefined", "{{ nope() }}", {}),
    ("err_tojson_undefined", "{{ nope | tojson }}", {}),
    ("err_length_of_int", "{{ 5 | length }}", {}),
    ("err_iterate_int", "{% for x in 5 %}{% endfor %}", {}),
    ("err_unpack", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("err_immutable_append", "{% set l = [1] %}{{ l.append(2) }}", {}),
    ("err_split_empty_sep", "{{ 'a'.split('') }}", {}),
    ("err_add_undefined", "{{ nope + 1 }}", {}),
    ("err_in_string_int", "{{ 1 in 'abc' }}", {}),
    ("err_range_too_big", "{{ range(1000000) | length }}", {}),
]

FEATURE_SYNTAX_ERRORS = [
    ("syn_unclosed_if", "{% if true %}x", {}),
    ("syn_unclosed_tag", "{{ x ", {}),
    ("syn_unknown_tag", "{% frobnicate %}", {}),
    ("syn_unknown_filter", "{{ x | frobnicate }}", {}),
    ("syn_bad_expr", "{{ 1 + }}", {}),
    ("syn_unclosed_string", "{{ 'abc }}", {}),
    ("syn_stray_endfor", "{% endfor %}", {}),
    ("syn_unclosed_comment", "{# never closed", {}),
]


def make_features():
    cases = []
    for name, tmpl, vars_ in FEATURES + FEATURE_ERRORS + FEATURE_SYNTAX_ERRORS:
        case = {"name": name, "template": tmpl, "vars": vars_}
        try:
            compiled = ctu._compile_jinja_template(tmpl)
        except jinja2.exceptions.TemplateSyntaxError as e:
            case.update({"error": str(e), "error_kind": "syntax", "error_type": type(e).__name__})
            cases.append(case)
            continue
        except Exception as e:  # unknown filter is a compile-time error in jinja2
            case.update({"error": str(e), "error_kind": "syntax", "error_type": type(e).__name__})
            cases.append(case)
            continue
        try:
            case["expected"] = compiled.render(**copy.deepcopy(vars_))
        except jinja2.exceptions.TemplateError as e:
            kind = "raise" if type(e) is jinja2.exceptions.TemplateError else "other"
            case.update({"error": str(e), "error_kind": kind, "error_type": type(e).__name__})
        except Exception as e:
            case.update({"error": str(e), "error_kind": "other", "error_type": type(e).__name__})
        cases.append(case)
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    convs = base_conversations()
    with tempfile.TemporaryDirectory() as tmp:
        for name in TEMPLATES:
            tok = load_tokenizer(name, tmp)
            cases = []
            for cname, msgs, tools, kwargs in convs:
                r = render_case(tok, msgs, tools, kwargs)
                r = {"name": cname, **r}
                cases.append(r)
            doc = {"generator": versions(),
                   "template_dir": f"examples/models/tokenizers/{name}",
                   "note": "input: what apply_chat_template was called with; vars: the exact "
                           "variables it passed to the template",
                   "cases": cases}
            path = os.path.join(OUT, f"{name}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, indent=1)
                f.write("\n")
            ok = sum(1 for c in cases if "expected" in c)
            print(f"{path}: {len(cases)} cases, {ok} rendered, {len(cases) - ok} errors")
    feats = make_features()
    path = os.path.join(OUT, "features.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": versions(),
                   "note": "small templates rendered by transformers' jinja environment",
                   "cases": feats}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {len(feats)} cases")


if __name__ == "__main__":
    main()
