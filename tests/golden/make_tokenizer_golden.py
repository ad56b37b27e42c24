#!/usr/bin/env python3
"""make_tokenizer_golden.py -- record what Hugging Face `tokenizers` does with
the Qwen3 tokenizer.json, for tests/unit/test_tokenizer.c to compare with.

Run from anywhere with the reference venv (not needed in CI; the output is
committed):
    /work/gvenv/bin/python tests/golden/make_tokenizer_golden.py
Writes tests/golden/tokenizer/qwen3.jsonl: a first "meta" line (library
version, source file, counts), then one line per case:
  {"kind": "encode", "text": ..., "ids": [...] (add_special_tokens=False),
   "ids_special": [...] (True), "decode": ..., "decode_skip": ...}
  {"kind": "decode", "ids": [...], "decode": ..., "decode_skip": ...}
Decode cases are id sequences whose bytes are not valid UTF-8 (split
multi-byte characters, lone continuation bytes, random tokens).

It also writes a small synthetic tokenizer (tests/golden/tokenizer/synth/:
the first 4000 Qwen merges as "a b" strings, ignore_merges, added tokens with
every lstrip/rstrip/single_word/normalized/special combination, a
TemplateProcessing post-processor, a tokenizer_config.json) and its goldens
(synth.jsonl), to cover what the Qwen file does not use.
Everything is deterministic (fixed seeds). Never edit the output by hand.

Differential fuzzing (not committed):
    /work/gvenv/bin/python tests/golden/make_tokenizer_golden.py --fuzz N SEED DIR
writes DIR/tests/golden/tokenizer/{qwen3,synth}.jsonl with N random strings
each (all Unicode categories, spaces, marks, added tokens) and links DIR's
examples/ and synth/ to this tree; then
    LLMUX_SRCDIR=DIR build/tests/unit/test_tokenizer
compares worker/tokenizer with the library on them.
"""
import hashlib
import json
import os
import random
import sys

import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join("examples", "models", "tokenizers", "qwen3", "tokenizer.json")
OUT = os.path.join(HERE, "tokenizer", "qwen3.jsonl")

SPACES = ["\u00a0", "\u1680"] + [chr(c) for c in range(0x2000, 0x200B)] + \
    ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u0085", "\u000b", "\u000c",
     "\u200b", "\u180e", "\ufeff", "\u001c"]

HANDWRITTEN = [
    "", " ", "  ", "a", "Hello, world!", "Hello world", " Hello", "Hello ", "hello\n",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll see they've done what he'd said, it's what we're told.",
    "I'M SURE YOU'LL SEE THEY'VE DONE WHAT HE'D SAID, IT'S WHAT WE'RE TOLD.",
    "'s 'S 't 'T 're 'RE 've 'VE 'm 'M 'll 'LL 'Ll 'd 'D", "don't DON'T Don'T",
    "'ſ 'ſx x'ſ", "' s", "''s", "'", "'''", "'x'y'z", "rock'n'roll", "l'été", "O'Neill's",
    "12345", "3.14159", "1,000,000", "-42", "1e10", "0x1F", "v1.2.3", "2024-06-01T12:00:00Z",
    "٣٤٥ ١٢", "१२३४", "Ⅻ ⅻ ½ ¾ ² ³", "①②③", "一二三 123",
    "café naïve résumé Æsir Œuvre façade jalapeño Zürich Ångström",
    "Crème brûlée à la française, s'il vous plaît.",
    "Ça va? Où êtes-vous? Ñandú. Straße. ĳ ǅ",
    "Привет, как дела? Москва — столица России.", "Съешь же ещё этих мягких французских булок",
    "Γειά σου Κόσμε! Ελληνικά: αβγδεζηθ ΑΒΓΔ",
    "مرحبا بالعالم! كيف حالك؟", "السلام عليكم ورحمة الله",
    "שלום עולם! מה שלומך?", "עִבְרִית עם ניקוד",
    "नमस्ते दुनिया! आप कैसे हैं?", "हिन्दी भाषा क्षत्रिय",
    "สวัสดีครับ ประเทศไทย", "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "你好，世界！今天天气很好。", "我爱北京天安门，天安门上太阳升。", "中文没有空格所以整句话是一个词吗",
    "繁體中文：臺灣的語言", "こんにちは世界！ひらがな カタカナ 漢字", "ｶﾀｶﾅ ﾊﾝｶｸ", "日本語の文章です。東京タワー",
    "안녕하세요 세계! 한국어 문장입니다.", "ᄒᆞᆫ글 자모", "ㄱㄴㄷ ㅏㅑㅓ",
    "Tiếng Việt có dấu: Xin chào các bạn", "Türkçe: İstanbul ığdır ŞŞ", "Polski: zażółć gęślą jaźń",
    "Čeština: příliš žluťoučký kůň", "Română: știință țară", "Íslenska: Þetta er ðæ",
    "ქართული ენა", "Հայերեն լեզու", "አማርኛ ቋንቋ", "ᏣᎳᎩ", "ᐃᓄᒃᑎᑐᑦ", "தமிழ் மொழி", "বাংলা ভাষা",
    "ਪੰਜਾਬੀ", "ગુજરાતી", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "සිංහල", "ລາວ", "ខ្មែរ", "မြန်မာ", "བོད་ཡིག",
    "Монгол хэл", "Ελληνικά και English mixed με 中文",
    "😀", "😀😃😄", "Hello 😀 world", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder",
    "🏳️‍🌈 🏴‍☠️", "🇺🇸🇬🇧🇫🇷🇯🇵", "🇩🇪", "❤️ ❤ ♥️", "✌️✋🤚", "1️⃣ #️⃣ *️⃣", "🫠🫶🧑‍🤝‍🧑",
    "e\u0301", "cafe\u0301", "A\u030a", "n\u0303", "o\u0308\u0301", "\u1100\u1161\u11a8",
    "Zalgo: Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o", "a\u0301\u0301\u0301",
    "\u0301start", "x\u20dd",
    # marks newer than Unicode 9.0, which HF's NFC tables do not know
    "G\U00011a47\u0301", "\ua8c1\u0301\U0001193d", "\U0001e136\u0f74", "\U00011935\U00011930",
    "e\u1df6\u0301", "a\u0301\u1df6\u0316",
    # letters and digits of Unicode 15.1/16.0, which utf8proc 2.8 does not know
    " \U0002ebf0\U0002ebf1 x", " \U00010d50\U00010d51", "a\U00010d40\U00010d41b", " \U000105c0x",
    " \U00011380\U00011381", "x \U00016d43\U00016d44", "\u1c89\u1c8a abc", " \ua7cb\ua7cc",
    "cb\u4e2d\U000135bd\U0002ed18.y", "\u00e9'\U0001427ay\U0001e5df's1\U0001432d",
    "\U00013a10\U0002ecde's,\U00014157\U00013551\U00013100", "ﬁ ﬂ ﬀ", "K Ω Å", "\u2126\u212b", "\u00c5\u212b",
    "def foo(x):\n    return x * 2\n",
    "class A:\n\tdef __init__(self):\n\t\tself.x = 1\n\n\nprint(A().x)\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)  # comment\n",
    "#include <stdio.h>\nint main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n",
    "for (int i = 0; i < n; i++) { a[i] += b[i] * c; }",
    "if (x != NULL && *x == '\\0') return -1;",
    "{\"name\": \"llmux\", \"version\": 1, \"tags\": [\"a\", \"b\"], \"ok\": true, \"n\": null}",
    "{\n  \"key\": \"value\",\n  \"list\": [1, 2, 3]\n}",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "fn main() { println!(\"hi {}\", x?); }", "x => x ** 2 >>= 3 <<= !== === ...",
    "$ ls -la | grep foo > out.txt 2>&1", "https://example.com/path?q=1&r=2#frag",
    "user@example.com", "C:\\Users\\name\\file.txt", "~/.bashrc", "@@ -1,3 +1,4 @@",
    "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a \tb", "a\t b", "\t\t\tindent",
    "    four spaces", "        eight", "trailing   ", "trailing\t", "\n", "\n\n", "\n\n\n",
    "a\nb", "a\n\nb", "a\n\n\nb", "a \n b", "a  \n  b", "a\n \n b", " \n", "\n ", "  \n\n  x",
    "\r\n", "a\r\nb", "a\r\n\r\nb", "\r", "a\rb", "\r\r\n\n", "line1\r\nline2\r\n",
    "a \r\n b", "x\n\t\ty", "end.\n", "end!\n\n", "(\n)", "}\n\n", "'\n", ".\r\n",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more", " <|im_start|> ", "<|im_start|><|im_end|>", "<|im_start|<|im_end|>",
    "<|im_start", "im_start|>", "<think>reasoning here</think>answer", "<think>\n\n</think>\n\n",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<tool_response>ok</tool_response>", "<|fim_prefix|>def<|fim_suffix|>return<|fim_middle|>",
    "<|vision_start|><|image_pad|><|vision_end|>", "<|box_start|>(1,2)<|box_end|>",
    "<|object_ref_start|>x<|object_ref_end|>", "<|quad_start|><|quad_end|>",
    "<|repo_name|>llmux<|file_sep|>a.c", "<<|im_end|>>", "<|im_end|>\u0301", "e<|im_end|>\u0301",
    "<think>", "</think>", "<think ></think>", "<THINK>", "<|IM_START|>",
    "\u0000", "a\u0000b", "\u0001\u0002\u001f\u007f", "\u0080\u009f", "\ufffd", "\ufeffBOM",
    "\U0010ffff", "\ue000 private", "\U000e0041 tag", "\u2060\u200c\u200d", "\u00ad soft hyphen",
    "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕", "𝓗𝓮𝓵𝓵𝓸", "𐍈 gothic", "𓀀 hieroglyph", "𠀀𠀁 ext B",
    "!!!", "???!!!", "...", "---", "===", "***", "___", "~~~", "$$$", "%%%", "&&&",
    "„quotes“ «guillemets» ‘single’ “double”", "—–-", "•·…", "€100 £50 ¥30 ₹20 ₿1",
    "©®™", "°C ±5 ×÷ ≠≤≥ ∞ √ ∑ ∫", "→←↑↓ ⇒ ⇔", "♠♣♥♦", "☃☀☁", "⌘⌥⇧",
    "A" * 100, "ab" * 60, "的" * 50, "😀" * 20, " " * 40, "\n" * 30, "\t" * 10, "-" * 80,
    "1" * 30, "a " * 40, "Hello world! " * 10,
]

FRAGMENTS = [
    "hello", "World", " the", "It's", " don't", "123", " 4.5", "\n", "\n\n", "  ", "\t",
    "\r\n", "中文", "日本語", "한국어", "Привет", "مرحبا", "שלום", "नमस्ते", "ไทย",
    "😀", "👩‍💻", "🇯🇵", "e\u0301", "café", " x=1;", "{\"a\": 1}", "<|im_end|>", "<think>",
    "\u00a0", "\u3000", "\u2009", "'LL", "!!", "...", "(", ")", "_", "#", "\\n",
]


def build_texts():
    texts = list(HANDWRITTEN)
    for sp in SPACES:
        texts.append("word" + sp + "word")
        texts.append("a" + sp + sp + "b")
        texts.append(sp + "start")
        texts.append("end" + sp)
        texts.append("x" + sp + "\n" + sp + "y")
    rng = random.Random(20240601)
    for _ in range(120):
        k = rng.randint(2, 9)
        texts.append("".join(rng.choice(FRAGMENTS) for _ in range(k)))
    # random code points from assigned BMP/astral ranges (stable categories)
    pools = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x5ff),
             (0x600, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x3040, 0x30ff), (0x4e00, 0x9fff),
             (0xac00, 0xd7a3), (0x2000, 0x206f), (0x1f300, 0x1f64f), (0x300, 0x36f)]
    for _ in range(40):
        lo, hi = rng.choice(pools)
        lo2, hi2 = rng.choice(pools)
        s = "".join(chr(rng.randint(lo, hi)) if rng.random() < 0.6 else
                    chr(rng.randint(lo2, hi2)) for _ in range(rng.randint(1, 24)))
        texts.append(s)
    seen, out = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def byte_token_ids(tok):
    """id of the one-character token of each byte (GPT-2 byte mapping)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: tok.token_to_id(chr(c)) for b, c in zip(bs, cs)}


def build_decode_cases(tok, texts):
    bid = byte_token_ids(tok)
    cases = []
    for s in ["你好", "😀", "👩‍💻", "é", "नमस्ते", "€", "\U0010ffff"]:
        b = s.encode("utf-8")
        ids = [bid[x] for x in b]
        for cut in range(1, len(ids)):
            cases.append(ids[:cut])             # unfinished character at the end
            cases.append(ids[cut:])             # starts with continuation bytes
            cases.append(ids[:cut] + [bid[ord("a")]] + ids[cut:])
        cases.append(ids[::-1])
    raw = [[0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xe0, 0xa0],
           [0xed, 0xa0, 0x80], [0xed, 0x9f, 0xbf], [0xf0, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80],
           [0xf5, 0x80], [0xfe], [0xff, 0xfe], [0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, 0x41],
           [0xe4, 0xb8, 0xe4, 0xb8, 0xad], [0xc3], [0xc3, 0x41], [0xf8, 0x88, 0x80, 0x80, 0x80],
           [0xe2, 0x82], [0xe2, 0x41, 0x82, 0xac]]
    for r in raw:
        cases.append([bid[x] for x in r])
        cases.append([tok.token_to_id("<|im_end|>")] + [bid[x] for x in r] +
                     [tok.token_to_id("<|im_start|>")])
    rng = random.Random(7)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    for _ in range(60):
        cases.append([rng.randrange(vocab) for _ in range(rng.randint(1, 12))])
    # token sequences of real text with one token dropped (splits characters)
    for t in texts[::7]:
        ids = tok.encode(t, add_special_tokens=False).ids
        if len(ids) > 2:
            k = rng.randrange(len(ids))
            cases.append(ids[:k] + ids[k + 1:])
    return cases


SYNTH_DIR = os.path.join(HERE, "tokenizer", "synth")
SYNTH_OUT = os.path.join(HERE, "tokenizer", "synth.jsonl")
SYNTH_MERGES = 4000
SYNTH_ADDED = [
    # content, special, lstrip, rstrip, single_word, normalized
    ("<s>", True, False, False, False, False),
    ("</s>", True, False, False, False, False),
    ("[MASK]", True, True, True, False, False),
    ("<word>", False, False, False, True, False),
    ("Day", False, False, False, False, True),
    ("\u00e9!", False, False, False, False, True),
    ("<sp>", False, False, True, False, False),
    ("<lsp>", False, True, False, False, False),
    ("hello", False, False, False, False, False),
    ("hell", False, False, False, False, False),
    ("word", False, False, False, True, True),
]
SYNTH_TEXTS = [
    "", "a [MASK] b", "  [MASK]  ", "[MASK]", "x[MASK]y", "a\t[MASK]\n b", "[MASK] [MASK]",
    "x<word>y", "x <word> y", "<word>", " <word>", "<word>x", "é<word>", "_<word>",
    "\u24b9<word>", "<word>\U0001f130", "\u2460<word>", "a\u0301<word>", "\u200d<word>",
    "Today Day day DAY", "Day", "cafe\u0301! e\u0301! \u00e9!", "<sp>   x", "<sp>", "a<sp>\n\nb",
    "x   <lsp>y", "<lsp>", "  <lsp>  <lsp>", "hello world hellohello hell help", "hellhello",
    "word words sword word.", "a word b", "<s>text</s>", "<s><s>", "</s> <s>",
    "The quick brown fox jumps over the lazy dog.", "I'm here, they're there.",
    "the then there these", "internationalization", "  spaces   and\ttabs\n\n",
    "中文 text 😀", "e\u0301", "1234 5678", "<|im_start|>not special here",
]


def make_synth(full):
    """A small tokenizer.json built from the first merges of the Qwen file."""
    merges = full["model"]["merges"][:SYNTH_MERGES]
    keep = 256 + SYNTH_MERGES
    vocab = {t: i for t, i in full["model"]["vocab"].items() if i < keep}
    added = []
    for k, (c, sp, ls, rs, sw, norm) in enumerate(SYNTH_ADDED):
        added.append({"id": keep + k, "content": c, "single_word": sw, "lstrip": ls,
                      "rstrip": rs, "normalized": norm, "special": sp})
    bos, eos = keep, keep + 1
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": full["normalizer"], "pre_tokenizer": full["pre_tokenizer"],
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [bos], "tokens": ["<s>"]},
                               "</s>": {"id": "</s>", "ids": [eos], "tokens": ["</s>"]}}},
        "decoder": full["decoder"],
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": True, "vocab": vocab,
                  "merges": [a + " " + b for a, b in merges]},
    }


def write_synth(texts):
    with open(os.path.join(ROOT, SRC), encoding="utf-8") as f:
        full = json.load(f)
    os.makedirs(SYNTH_DIR, exist_ok=True)
    path = os.path.join(SYNTH_DIR, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(make_synth(full), f, ensure_ascii=False)
    with open(os.path.join(SYNTH_DIR, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"add_bos_token": True, "tokenizer_class": "PreTrainedTokenizerFast",
                   "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                                 "normalized": False, "rstrip": False, "single_word": False},
                   "eos_token": "</s>", "pad_token": None}, f, indent=2)
    tok = Tokenizer.from_file(path)
    cases = SYNTH_TEXTS + texts[::3]
    with open(SYNTH_OUT, "w", encoding="utf-8") as f:
        f.write(json.dumps({"kind": "meta", "library": "tokenizers",
                            "version": tokenizers.__version__, "tokenizer":
                            "tests/golden/tokenizer/synth/tokenizer.json",
                            "encode_cases": len(cases)}) + "\n")
        for t in cases:
            ids = tok.encode(t, add_special_tokens=False).ids
            f.write(json.dumps({
                "kind": "encode", "text": t, "ids": ids,
                "ids_special": tok.encode(t, add_special_tokens=True).ids,
                "decode": tok.decode(ids, skip_special_tokens=False),
                "decode_skip": tok.decode(ids, skip_special_tokens=True)}) + "\n")
    print("wrote %s: %d encode cases" % (SYNTH_OUT, len(cases)))


def main():
    tok = Tokenizer.from_file(os.path.join(ROOT, SRC))
    texts = build_texts()
    lines = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        ids_sp = tok.encode(t, add_special_tokens=True).ids
        lines.append({"kind": "encode", "text": t, "ids": ids, "ids_special": ids_sp,
                      "decode": tok.decode(ids, skip_special_tokens=False),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    dcases = build_decode_cases(tok, texts)
    for ids in dcases:
        lines.append({"kind": "decode", "ids": ids,
                      "decode": tok.decode(ids, skip_special_tokens=False),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(ROOT, SRC), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = {"kind": "meta", "library": "tokenizers", "version": tokenizers.__version__,
            "python": sys.version.split()[0], "tokenizer": SRC, "sha256": digest,
            "encode_cases": len(texts), "decode_cases": len(dcases)}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(json.dumps(meta, ensure_ascii=True) + "\n")
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=True) + "\n")
    print("wrote %s: %d encode, %d decode cases (tokenizers %s)" %
          (OUT, len(texts), len(dcases), tokenizers.__version__))
    write_synth(texts)


def fuzz_texts(rng, n, alpha, cats):
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if r < 0.4:
                parts.append(rng.choice(alpha))
            elif r < 0.6:
                parts.append(chr(rng.randint(0x20, 0x7e)))
            elif r < 0.7:
                parts.append("".join(chr(rng.randint(0x61, 0x7a))
                                     for _ in range(rng.randint(1, 8))))
            else:
                parts.append(chr(rng.choice(cats[rng.choice(sorted(cats))])))
        texts.append("".join(parts))
    return texts


def write_cases(path, tok, texts, dcases, version):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"kind": "meta", "library": "tokenizers", "version": version}) + "\n")
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            f.write(json.dumps({
                "kind": "encode", "text": t, "ids": ids,
                "ids_special": tok.encode(t, add_special_tokens=True).ids,
                "decode": tok.decode(ids, skip_special_tokens=False),
                "decode_skip": tok.decode(ids, skip_special_tokens=True)}) + "\n")
        for ids in dcases:
            f.write(json.dumps({"kind": "decode", "ids": ids,
                                "decode": tok.decode(ids, skip_special_tokens=False),
                                "decode_skip": tok.decode(ids, skip_special_tokens=True)}) + "\n")


def fuzz(n, seed, outdir):
    import unicodedata
    rng = random.Random(seed)
    cats = {}
    for cp in range(0x110000):
        c = unicodedata.category(chr(cp))
        if c not in ("Cn", "Cs"):
            cats.setdefault(c, []).append(cp)
    alpha = ["'", "'s", "'S", "'ll", "'LL", "'re", "'ve", "'m", "'d", "'t", "'\u017f", " ", "  ",
             "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\u0085", "\u000b",
             "\u0301", "\u200d", "e\u0301", "A\u030a", "\u1100\u1161", "\u0000",
             "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>",
             "<s>", "</s>", "[MASK]", "<word>", "Day", "\u00e9!", "<sp>", "<lsp>", "hello", "word"]
    gdir = os.path.join(outdir, "tests", "golden", "tokenizer")
    os.makedirs(gdir, exist_ok=True)
    for link, target in ((os.path.join(outdir, "examples"), os.path.join(ROOT, "examples")),
                         (os.path.join(gdir, "synth"), SYNTH_DIR)):
        if not os.path.lexists(link):
            os.symlink(target, link)
    version = "%s fuzz seed %d" % (tokenizers.__version__, seed)
    tok = Tokenizer.from_file(os.path.join(ROOT, SRC))
    texts = fuzz_texts(rng, n, alpha, cats)
    write_cases(os.path.join(gdir, "qwen3.jsonl"), tok, texts,
                build_decode_cases(tok, texts), version)
    synth = Tokenizer.from_file(os.path.join(SYNTH_DIR, "tokenizer.json"))
    write_cases(os.path.join(gdir, "synth.jsonl"), synth, fuzz_texts(rng, n, alpha, cats), [],
                version)
    print("wrote %d + %d fuzz cases under %s" % (n, n, gdir))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--fuzz":
        fuzz(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        main()
