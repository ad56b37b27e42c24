#!/usr/bin/env python3
"""make_unigram_golden.py -- record what Hugging Face `tokenizers` does with
the XLM-R tokenizer.json (SentencePiece Unigram, Precompiled charsmap +
Replace(" {2,}") normalizer, Metaspace, TemplateProcessing; used by bge-m3 and
bge-reranker-v2-m3), for tests/unit/test_tokenizer_unigram.c to compare with.

Run with the reference venv (not needed in CI; the output is committed):
    /work/gvenv/bin/python tests/golden/make_unigram_golden.py
Writes tests/golden/tokenizer_xlmr/xlmr.jsonl: a "meta" line (library
version, source file and its sha256, counts), then one line per case:
  {"kind": "encode", "text": ..., "ids": [...] (add_special_tokens=False),
   "ids_special": [...] (True), "decode": ... (of ids_special,
   skip_special_tokens=False), "decode_skip": ... (True)}
  {"kind": "pair", "a": ..., "b": ..., "ids": [...], "ids_special": [...]}
  {"kind": "decode", "ids": [...], "decode": ..., "decode_skip": ...}
Deterministic (fixed seeds). Never edit the output by hand.

Differential fuzzing (not committed):
    /work/gvenv/bin/python tests/golden/make_unigram_golden.py --fuzz N SEED FILE
writes N random strings (and N/10 random pairs) in the same format to FILE;
    build/tests/unit/test_tokenizer_unigram FILE
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
SRC = os.path.join("examples", "models", "tokenizers", "xlmr", "tokenizer.json")
OUT = os.path.join(HERE, "tokenizer_xlmr", "xlmr.jsonl")

sys.path.insert(0, HERE)
from make_tokenizer_golden import HANDWRITTEN, SPACES, FRAGMENTS  # noqa: E402

SPECIALS = ["<s>", "</s>", "<pad>", "<unk>", "<mask>"]

XLMR_TEXTS = [
    "<s>", "</s>", "<pad>", "<unk>", "<mask>", "a<mask>b", "a <mask> b", "a  <mask>", "\t<mask>",
    "<mask><mask>", " <mask> ", "The capital of France is <mask>.", "<s>Hello</s>", "<s> x </s>",
    "</s></s>", "<s\u0301>", "<mask\u0301>", "＜s＞", "＜mask＞", "<unk> unknown", "▁", "▁▁x", "a▁b",
    " ▁x", "x▁", "▁ ▁", "▁hello", "\u2581\u2581\u2581",
    # full-width, half-width and compatibility forms the charsmap folds
    "ＡＢＣ ａｂｃ １２３", "Ｈｅｌｌｏ，　Ｗｏｒｌｄ！", "ｶﾞｷﾞｸﾞ ﾊﾟﾋﾟ", "ｱｲｳｴｵ", "ﾞﾟ", "ㄱㅏ ㅎㅏㄴ", "ﾡﾢ",
    "ﬁﬂﬀﬃﬄ ﬅﬆ", "Ⅰ Ⅱ Ⅲ Ⅳ Ⅻ ⅰⅱ", "① ⑳ ⑴ ⒜ Ⓐ ⓐ", "¹²³⁴ ₁₂₃ x² H₂O", "½ ⅓ ¼ ⅞", "㎏ ㎡ ㏄ ㍻ ㈱",
    "™ ℠ ℡ № ℃ ℉", "µ Ω Å K", "ﷺ ﷻ", "ﺍﻟﻌﺮﺑﻴﺔ", "ﻻ ﻷ", "ſ ß ẞ", "ĳ Ĳ ŉ ǆ ǅ", "…‥ ‼ ⁇ ⁈",
    "‘’‚‛“”„‟", "\u2024\u2025\u2026", "\u00b4 \u02dc \u00a8 \u00af", "\u3000\u3000x\u3000\u3000",
    "〔〕【】《》「」", "ℌℍℎ ℓ ℘ ℑ ℜ", "𝐀𝐁𝐂 𝑎𝑏𝑐 𝟎𝟏𝟐", "ⓐⓑⓒ", "⺀⺁ ⼀⼁ 㐀", "︰︱︳ ﹐﹑﹒", "﹙﹚ ﹛﹜",
    "Ａ\u0301", "Ａ\u0301\u0301", "ｶ\u3099", "e\u0301\u0302", "ﬁ\u0301", "①\u0301",
    # marks newer than utf8proc's tables join the cluster in HF (gen_grapheme_patch.py)
    "\u00ba\u1aea", "\u00bc\u3099\u1ae3", "Ａ\u1acf", "ﬁ\u0cf3x", "ｶ\u0ece", "\u00aa\u0897",
    "\u0041\u030a\u0041\u030a", "\u1e9b\u0323", "\u0958\u0959", "\u2126\u212a", "\u00c5\u212b",
    # controls and spaces the charsmap changes
    "\u200b", "a\u200bb", "\u200c\u200d", "\ufeff x", "\u00ad", "a\u00adb", "\u2060", "\u180e",
    "\x00", "a\x00b", "\x01\x02\x1e\x1f", "\x7f", "\x85", "\u2028\u2029", "\u00a0\u00a0x",
    "\u2002\u2003\u2009 x", "\u3000", "™\x1eg", "\r\n", "\r", "a\r\nb", "\r\n\r\n", "\n\r",
    "\t", "\t\t", "a\tb", "a\t\tb", " \t \t ", "\n", "\n\n\n", "a\nb", " \n ", "\v\f",
    "    ", "a  b", "a     b", "  leading", "trailing  ", "  both  ", " ", "  ", "x \u3000 y",
    # many languages
    "Hallo Welt, wie geht es dir? Größe Übel", "¿Dónde está la biblioteca? ¡Olé!",
    "Ceci n'est pas une pipe — l'œuvre de Magritte.", "Mi chiamo Giovanni e vivo a Roma.",
    "Eu não falo português muito bem.", "Dit is een Nederlandse zin.", "Jag talar svenska.",
    "Hyvää huomenta! Kiitos paljon.", "Jó napot kívánok! Köszönöm.", "Dobrý den, jak se máte?",
    "Witaj świecie, źdźbło żółć", "Здравствуйте, меня зовут Иван.", "Українська мова: їжак, ґанок",
    "Български език: щастие", "Српски: ћирилица љубав", "Қазақ тілі: әдемі", "Ўзбек тили",
    "Türk dili: ığdır, İstanbul, şeker", "Azərbaycan dili: əla", "Tiếng Việt: Tôi yêu Hà Nội",
    "Bahasa Indonesia: Selamat pagi", "Kiswahili: Habari ya asubuhi", "isiZulu: Sawubona",
    "Yorùbá: Ẹ káàárọ̀", "Hausa: Ina kwana", "Tagalog: Magandang umaga po",
    "العربية: اللغة العربية جميلة جدًا", "فارسی: زبان فارسی زیباست", "اردو: میں ٹھیک ہوں",
    "עברית: אני אוהב ללמוד", "हिन्दी: मुझे हिंदी पसंद है।", "मराठी: महाराष्ट्र", "नेपाली: नमस्कार",
    "বাংলা: আমি বাংলায় গান গাই", "ਪੰਜਾਬੀ: ਸਤ ਸ੍ਰੀ ਅਕਾਲ", "ગુજરાતી: કેમ છો?", "ଓଡ଼ିଆ ଭାଷା",
    "தமிழ்: வணக்கம் நண்பரே", "తెలుగు: మీరు ఎలా ఉన్నారు?", "ಕನ್ನಡ: ನಮಸ್ಕಾರ", "മലയാളം: സുഖമാണോ?",
    "සිංහල: ආයුබෝවන්", "ไทย: สวัสดีครับ วันนี้อากาศดีมาก", "ລາວ: ສະບາຍດີ", "ខ្មែរ: សួស្តី",
    "မြန်မာ: မင်္ဂလာပါ", "བོད་སྐད།", "ქართული: გამარჯობა", "Հայերեն: Բարեւ", "አማርኛ: ሰላም ነው",
    "ᠮᠣᠩᠭᠣᠯ", "ꦧꦱꦗꦮ", "ᜀᜁᜂ", "ᨅᨔ ᨕᨘᨁᨗ", "ߒߞߏ", "ⴰⵣⵓⵍ", "ᐊᐃᓐᖓ", "ᏌᏊ", "ᚠᚢᚦ", "ᚁᚂᚃ",
    "中文：我们今天去公园散步吧。", "繁體：我們今天去公園散步吧。", "粤语：你食咗飯未呀？",
    "日本語：今日はいい天気ですね。", "カタカナとひらがなと漢字", "한국어: 오늘 날씨가 좋네요.",
    "Ελληνικά: Καλημέρα σας", "Ἀρχαῖα ἑλληνικὰ ᾄδω", "Latina: Gallia est omnis divisa",
    "Esperanto: Ĉu vi parolas?", "Malti: Għandi ħabib", "Føroyskt: Góðan dag", "Gàidhlig: Halò",
    "Cymraeg: Bore da", "Euskara: Kaixo", "Català: Bon dia, què tal?", "Lietuvių: Ačiū",
    "Latviešu: Paldies", "Eesti: Tere hommikust", "Slovenščina: Dober dan", "Hrvatski: Dobar dan",
    "Shqip: Mirëmëngjes", "Македонски: Добро утро", "Беларуская: Дзякуй",
    # emoji and symbols
    "😀😃😄😁", "I ❤️ NY", "👍🏽 ok", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "🏳️‍🌈", "1️⃣2️⃣", "☺︎ ☺️", "🤖 robots",
    "∀x∈ℝ: x² ≥ 0", "E = mc²", "→ ← ↔ ⇒", "★☆✓✗", "€ £ ¥ ₹ ₩ ₽", "§ ¶ † ‡", "© ® ™",
    # queries and documents of the kind embedding models see
    "what is panda?", "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "BGE M3 is an embedding model supporting dense retrieval, lexical matching and multi-vector "
    "interaction.", "Definition of BM25 ranking function", "how to bake sourdough bread at home",
    "def f(x):\n    return x  +  1\n", "SELECT  *  FROM  t;", "https://example.com/a b?c=d  e",
    "user@example.com", "C:\\Path\\To\\File.txt", "{\"k\": \"v\",  \"n\": 1}",
    "",
]

PAIRS = [
    ("what is panda?", "hi"),
    ("what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear "
     "or simply panda, is a bear species endemic to China."),
    ("", ""), ("query", ""), ("", "document"), ("<mask>", "<s>"), ("a  b", "  c  "),
    ("¿Qué es un oso panda?", "El panda gigante es una especie de mamífero."),
    ("熊猫是什么？", "大熊猫是中国特有的熊科动物。"), ("パンダとは", "ジャイアントパンダは中国に生息する。"),
    ("판다는 무엇인가요?", "자이언트 판다는 중국 고유종입니다."),
    ("ما هو الباندا؟", "الباندا العملاقة نوع من الدببة يعيش في الصين."),
    ("पांडा क्या है?", "विशाल पांडा चीन का एक भालू है।"), ("แพนด้าคืออะไร", "แพนด้ายักษ์เป็นหมี"),
    ("Что такое панда?", "Большая панда — млекопитающее семейства медвежьих."),
    ("Was ist ein Panda?", "Der Große Panda ist eine Bärenart."),
    ("ＦＵＬＬ　ＷＩＤＴＨ", "ﬁne ﬂour ①"), ("emoji 😀", "👍🏽 ok"), ("\t\n", "\r\n"),
]


def build_texts():
    texts = list(XLMR_TEXTS) + list(HANDWRITTEN)
    for sp in SPACES:
        texts.append("word" + sp + "word")
        texts.append("a" + sp + sp + "b")
        texts.append(sp + "start")
        texts.append("end" + sp)
    rng = random.Random(20240607)
    frags = FRAGMENTS + SPECIALS + ["ＡＢ", "ｶﾞ", "ﬁ", "①", "\u200b", "  ", "\u3000", "▁", "™"]
    for _ in range(80):
        texts.append("".join(rng.choice(frags) for _ in range(rng.randint(2, 9))))
    pools = [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff),
             (0x590, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x2000, 0x206f),
             (0x2100, 0x24ff), (0x3000, 0x30ff), (0x3130, 0x33ff), (0x4e00, 0x9fff),
             (0xac00, 0xd7a3), (0xf900, 0xfaff), (0xfb00, 0xfdff), (0xfe30, 0xfeff),
             (0xff00, 0xffef), (0x1d400, 0x1d7ff), (0x1f300, 0x1f64f)]
    for _ in range(60):
        lo, hi = rng.choice(pools)
        lo2, hi2 = rng.choice(pools)
        texts.append("".join(chr(rng.randint(lo, hi)) if rng.random() < 0.6 else
                             chr(rng.randint(lo2, hi2)) for _ in range(rng.randint(1, 24))))
    seen, out = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def build_pairs(texts):
    pairs = list(PAIRS)
    rng = random.Random(99)
    while len(pairs) < 60:
        pairs.append((rng.choice(texts), rng.choice(texts)))
    return pairs


def encode_line(tok, t):
    ids = tok.encode(t, add_special_tokens=False).ids
    ids_sp = tok.encode(t, add_special_tokens=True).ids
    return {"kind": "encode", "text": t, "ids": ids, "ids_special": ids_sp,
            "decode": tok.decode(ids_sp, skip_special_tokens=False),
            "decode_skip": tok.decode(ids_sp, skip_special_tokens=True)}


def pair_line(tok, a, b):
    return {"kind": "pair", "a": a, "b": b,
            "ids": tok.encode(a, b, add_special_tokens=False).ids,
            "ids_special": tok.encode(a, b, add_special_tokens=True).ids}


def decode_lines(tok, n, seed):
    rng = random.Random(seed)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    lines = []
    for _ in range(n):
        ids = [rng.randrange(vocab) for _ in range(rng.randint(0, 10))]
        if rng.random() < 0.5:
            ids.insert(rng.randint(0, len(ids)), rng.choice([0, 1, 2, 3, 6, 250001]))
        lines.append({"kind": "decode", "ids": ids,
                      "decode": tok.decode(ids, skip_special_tokens=False),
                      "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    return lines


def write(path, tok, lines, counts):
    with open(os.path.join(ROOT, SRC), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = {"kind": "meta", "library": "tokenizers", "version": tokenizers.__version__,
            "python": sys.version.split()[0], "tokenizer": SRC, "sha256": digest}
    meta.update(counts)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(meta, ensure_ascii=True) + "\n")
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def random_text(rng):
    parts = []
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        if r < 0.25:
            parts.append(chr(rng.randint(0x20, 0x7e)))
        elif r < 0.35:
            parts.append(rng.choice([" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "▁"]))
        elif r < 0.40:
            parts.append(rng.choice(SPECIALS))
        elif r < 0.55:
            parts.append(chr(rng.choice([rng.randint(0x300, 0x36f), rng.randint(0x1ab0, 0x1aff),
                                         rng.randint(0x20d0, 0x20ff), rng.randint(0xfe00, 0xfe0f),
                                         0x200d, 0x3099, 0x309a, 0xff9e, 0xff9f])))
        elif r < 0.75:
            lo, hi = rng.choice([(0xa0, 0x24f), (0x2000, 0x2bff), (0x3000, 0x33ff),
                                 (0xf900, 0xfaff), (0xfb00, 0xfdff), (0xfe10, 0xfe6f),
                                 (0xff00, 0xffef), (0x1d400, 0x1d7ff), (0x1f100, 0x1f1ff),
                                 (0x2f800, 0x2fa1f), (0x0, 0x1f), (0x80, 0x9f)])
            parts.append(chr(rng.randint(lo, hi)))
        elif r < 0.85:
            parts.append(rng.choice(FRAGMENTS))
        else:
            while True:
                c = rng.randint(0, 0x10ffff) if rng.random() < 0.3 else rng.randint(0, 0xffff)
                if not 0xd800 <= c <= 0xdfff:
                    break
            parts.append(chr(c))
    return "".join(parts)


def main():
    tok = Tokenizer.from_file(os.path.join(ROOT, SRC))
    if len(sys.argv) == 5 and sys.argv[1] == "--fuzz":
        n, seed, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        rng = random.Random(seed)
        texts = [random_text(rng) for _ in range(n)]
        lines = [encode_line(tok, t) for t in texts]
        lines += [pair_line(tok, random_text(rng), random_text(rng)) for _ in range(n // 10)]
        lines += decode_lines(tok, n // 10, seed)
        write(path, tok, lines, {"fuzz_seed": seed})
        print("wrote %s: %d fuzz strings" % (path, n))
        return
    texts = build_texts()
    pairs = build_pairs(texts)
    lines = [encode_line(tok, t) for t in texts]
    lines += [pair_line(tok, a, b) for a, b in pairs]
    dl = decode_lines(tok, 40, 5)
    lines += dl
    write(OUT, tok, lines, {"encode_cases": len(texts), "pair_cases": len(pairs),
                            "decode_cases": len(dl)})
    print("wrote %s: %d encode, %d pair, %d decode cases (tokenizers %s)" %
          (OUT, len(texts), len(pairs), len(dl), tokenizers.__version__))


if __name__ == "__main__":
    main()
