#!/usr/bin/env python3
"""Writes pretokenize_ref.json: how the regexes that tokenizer.ggml.pre names split texts, as an
independent regex engine (the `regex` module, with Unicode classes) splits them. The C++
pre-tokenizers are hand-written, so tests/tokenizer_test.cpp checks them against this file.

Inputs: llama.cpp's tokenizer test texts (../shared/models/vocab/*.inp, when present), a list of
hard cases, and seeded random strings over a pool of characters from every class the patterns
distinguish. Usage: python3 pretokenize_ref.py [VOCAB_DIR] > pretokenize_ref.json
"""
import json
import os
import random
import sys

import regex

# The Llama 3 and Qwen2 patterns of their tokenizer.json, with the contractions spelled case by
# case as llama.cpp runs them ((?i:...) would also fold U+017F into 's').
CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
# Tekken and GPT-4o as llama.cpp runs them: the case classes \p{Lu}... of tokenizer.json become
# "a letter other than a-z" and "a letter other than A-Z".
UPPER = r"((?=[\p{L}])([^a-z]))"
LOWER = r"((?=[\p{L}])([^A-Z]))"
LEAD = r"[^\r\n\p{L}\p{N}]?"
TAIL = r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
TEKKEN = LEAD + UPPER + "*" + LOWER + "+|" + LEAD + UPPER + "+" + LOWER + "*|\\p{N}" + TAIL
GPT4O = (LEAD + UPPER + "*" + LOWER + "+" + CONTRACTIONS + "?|" + LEAD + UPPER + "+" + LOWER + "*" + CONTRACTIONS +
         "?|\\p{N}{1,3}" + TAIL)
# GPT-2's pattern as llama.cpp writes it (a lone trailing space is left between matches), and
# llama.cpp's default for a file that names no pre-tokenizer: a sequence around it.
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
DEFAULT = [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"]
SEED_CODER = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
# DeepSeek Coder and LLM: sequences of patterns, each splitting the pieces the one before left.
DEEPSEEK_CJK = r"[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
DEEPSEEK_CODER = [r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", DEEPSEEK_CJK, r"\p{N}"]
DEEPSEEK_LETTERS = (
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
    "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
    "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b"
    "\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b"
    "\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb"
    "\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128"
    "\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4"
    "\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf"
    "\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943")
DEEPSEEK_LLM = [r"[\r\n]", "\\s?[" + DEEPSEEK_LETTERS + "]+",
                "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", r"\s+\Z", DEEPSEEK_CJK, r"\p{N}+"]
# BLOOM (Poro, GPT-3 Finnish), and Viking after it every digit alone.
BLOOM = [" ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"]
VIKING = BLOOM + [r"\p{N}"]


def split_all(pattern, text):
    """A pattern that matches everywhere: its consecutive matches."""
    pieces = [m.group(0) for m in regex.finditer(pattern, text)]
    assert "".join(pieces) == text, (pattern, text)
    return pieces


def wregex_view(text):
    """The text as llama.cpp's std::wregex sees it for a pattern without \\p{..} classes: every
    non-ASCII whitespace character replaced by U+000B, so that \\s matches it and no range does."""
    return "".join("\x0b" if ord(ch) > 0x7F and regex.match(r"\s", ch) else ch for ch in text)


def split_sequence(patterns, text):
    """Each pattern splits every piece into its matches and the text between them."""
    pieces = [text] if text else []
    for p in patterns:
        out = []
        for piece in pieces:
            at = 0
            for m in regex.finditer(p, piece if "\\p{" in p else wregex_view(piece)):
                if m.start() > at:
                    out.append(piece[at:m.start()])
                out.append(piece[m.start():m.end()])
                at = m.end()
            if at < len(piece):
                out.append(piece[at:])
        pieces = out
    return pieces


HARD = [
    "", " ", "  ", "a", "'s", "'S", "'LL", "'Re", "don't", "DON'T", "I'M here", "x'y", "''s", "'", "' s",
    "hello world", " hello", "  hello", "\thello", "\t\thello", "!hello", "!!hello", "hello!", "hello !!",
    "a  b", "a   b", "a \n b", "a\n\nb", "a \r\n\r\n b", "a\u00a0b", "a\u3000\u3000b", " \n", "\n ", "\n", "\r\n",
    "1", "12", "123", "1234", "1234567", " 123", "a1b2c3", "\u0663\u0664\u0665\u0666", "x\u00b2", "\u2167\u2168",
    "3.14159", "$100,000.00", "(a+b)*c=d;", "...\n\n", "!!\r\n\r\nx", " !!\n", "\U0001F999.cpp", " \U0001F600\U0001F600",
    "caf\u00e9", "cafe\u0301", "\u0301a", " \u0301", "\u4e2d\u6587abc", "\ud55c\uad6d\uc5b4", "\u0800\u4e00\u9fa5\u9fa6",
    "\u00b5m", "\u02bc", "\u0394x", "\u0416\u0436", "\u0e01\u0e32", "\u05d0\u05d1 \u05d2", "a_b", "snake_case_name",
    "int main() {\n    return 0;\n}\n", "HELLOworld", "HELLO", "Hello", "helloWORLD", "aB", "\u00e9a", "\u00e9\u00c9",
    "\u00c0Bc", "AB\u00c0", "AB\u00c0C", "McDonald's", "IT'S", "it's", "x/y/\n", "a//b", "!!/\n/", "\u00dfE\u00e9", "    indented", "\t\t\ttabs\t", "trailing   ", "x \u2028y", "\u0085z",
    # DeepSeek LLM's letters and punctuation, BLOOM's separators, Seed-Coder's symbols.
    "\u00c0\u00d6\u00d7\u00d8", "\u2126mega \u212a", "\ufb00\ufb01x", "\uff21\uff42\uff43\uff01", "\u2018q\u2019 \u201cw\u201d",
    "a\u3000b", "\u3002\u3001x", "12  ", "   1", "a\u00a0\u00a0", "x\u2028\u4e2d", "\u01bb\u02b0\u0294",
    "\U00010400\U00010428", "h\u00e9llo w\u00f6rld", "a(b)c|d", "\u2026x", "x,y.z!?", "\u0661\u0662 \u0663",
    "\u0964\u06d4\u060c", "!!\n\nb", "a!!\r\nb", " ;\n", "x  \n  ",
]

POOL = (list("aAzZeEsStTmMdDlLrRvV") + list("0123456789") + [" ", " ", " ", "\t", "\n", "\r", "'", "'"] +
        list("!?.,;:-_()[]{}<>\"/\\@#$%^&*+=|~`") +
        ["\u00e9", "\u00c4", "\u00df", "\u0301", "\u0308", "\u4e2d", "\u6587", "\ud55c", "\u0416", "\u03b1", "\u05d0",
         "\u0663", "\u00b2", "\u2167", "\u00a0", "\u3000", "\u2009", "\u2028", "\U0001F600", "\U0001F999",
         "\u00b5", "\u0e01", "\u0e32", "\u2014", "\u201c", "\u00bf", "\u0800", "\u9fa6", "\u2026", "\u3001",
         "\uff01", "\uff41", "\u2126", "\u0964", "\u01bb"])


def texts(vocab_dir):
    out = list(HARD)
    for name in ("ggml-vocab-llama-bpe.gguf.inp", "ggml-vocab-qwen2.gguf.inp", "ggml-vocab-deepseek-coder.gguf.inp",
                 "ggml-vocab-deepseek-llm.gguf.inp"):
        path = os.path.join(vocab_dir, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                out += f.read().split("\n__ggml_vocab_test__\n")
    rng = random.Random(20261205)
    for _ in range(400):
        out.append("".join(rng.choice(POOL) for _ in range(rng.randint(1, 24))))
    seen, uniq = set(), []
    for t in out:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    return uniq


def main():
    vocab_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared/models/vocab")
    cases = []
    for t in texts(vocab_dir):
        cases.append({"text": t, "llama3": split_all(LLAMA3, t), "qwen2": split_all(QWEN2, t),
                      "tekken": split_all(TEKKEN, t), "gpt-4o": split_all(GPT4O, t),
                      "deepseek-coder": split_sequence(DEEPSEEK_CODER, t), "default": split_sequence(DEFAULT, t),
                      "gpt-2": split_sequence([GPT2], t), "seed-coder": split_all(SEED_CODER, t),
                      "deepseek-llm": split_sequence(DEEPSEEK_LLM, t), "bloom": split_sequence(BLOOM, t),
                      "viking": split_sequence(VIKING, t)})
    # One case a line, so that a change to the patterns or the inputs diffs readably.
    sys.stdout.write('{"generator": "tests/data/pretokenize_ref.py", "regex_module": "%s", "cases": [\n' % regex.__version__)
    sys.stdout.write(",\n".join(json.dumps(c, ensure_ascii=True, separators=(",", ":")) for c in cases))
    sys.stdout.write("\n]}\n")


if __name__ == "__main__":
    main()
