#!/usr/bin/python3
"""Writes the SentencePiece-BPE fixtures in tokenizer/testdata/spbpe/.

Run with Debian's python3 and python3-sentencepiece (0.1.97):

    apt-get install -y python3-sentencepiece
    /usr/bin/python3 tokenizer/testdata/gen_spbpe.py

It trains a small BPE model with byte fallback the way Llama 2's was
configured (identity normalization, dummy prefix, whitespace kept, digits
split), converts it to a Hugging Face tokenizer.json in Llama 2's layout
(Prepend/Replace normalizer, no pre-tokenizer, Replace/ByteFallback/Fuse/
Strip decoder, merges derived from the pieces as transformers'
SentencePieceExtractor does), and records sentencepiece's own encodings of
held-out text (CJK, emoji, digits, whitespace runs, newlines) in
expected.json. Everything is deterministic: the corpus comes from a seeded
generator and training uses one thread.
"""

import io
import json
import os
import random
import sys

import sentencepiece as spm

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spbpe")
VOCAB = 1000

WORDS = ("the of and to in is was that for on with as by at from his her they "
         "model token text train data layer weight gradient batch shard rank "
         "pipeline tensor parallel loss step learning rate attention head "
         "hello world quick brown fox jumps over lazy dog river mountain city "
         "number value function return string print error file read write "
         "Straße café naïve résumé Ångström über").split()
CJK = ["我们的模型可以处理中文文本", "日本語のテキスト", "ひらがなとカタカナ", "한국어 문장",
       "中文和English混合", "数据并行", "模型训练"]
PUNCT = [".", ",", ";", ":", "!", "?", "(", ")", "\"", "'", "-", "--"]


def sentence(rng):
    parts = []
    for _ in range(rng.randint(3, 14)):
        r = rng.random()
        if r < 0.75:
            w = rng.choice(WORDS)
            parts.append(w.capitalize() if rng.random() < 0.1 else w)
        elif r < 0.85:
            parts.append(str(rng.randint(0, 100000)))
        elif r < 0.95:
            parts.append(rng.choice(CJK))
        else:
            parts.append(rng.choice(PUNCT))
    s = " ".join(parts)
    if rng.random() < 0.2:
        s = "    " + s  # indented, for whitespace-only pieces
    return s + rng.choice([".", "!", "?", ""])


def main():
    rng = random.Random(20261206)
    lines = [sentence(rng) for _ in range(6000)]
    os.makedirs(OUT, exist_ok=True)
    # Trained from an iterator into memory, so no temporary path ends up in
    # the model's trainer spec.
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=VOCAB,
        byte_fallback=True, character_coverage=0.9995,
        normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, num_threads=1, minloglevel=2)
    model = buf.getvalue()
    with open(os.path.join(OUT, "sp.model"), "wb") as f:
        f.write(model)
    sp = spm.SentencePieceProcessor(model_proto=model)

    # tokenizer.json in Llama 2's layout (transformers' LlamaConverter).
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    scores = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(n)]
    merges = []
    for piece, score in scores:
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2], reverse=True)
    special = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True} for i in (0, 1, 2)]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": special,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": [l + " " + r for l, r, _ in merges]},
    }
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "model_max_length": 2048, "tokenizer_class": "LlamaTokenizer"}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
        f.write("\n")

    # Held-out text: a fresh seed, plus the corner cases.
    held = random.Random(7)
    texts = [sentence(held) for _ in range(150)]
    texts += [
        "", " ", "  ", "a", "Hello world", " Hello", "Hello ", "  two  spaces  ",
        "line one\nline two\n\nline four\n", "\n\n\n", "\t tab\tand\t\ttabs",
        "3.14159 2026 1,000,000 007 0x1F", "½ ² Ⅻ ٣٤٥",
        "我们的模型可以处理中文文本，包括标点符号。", "日本語のテキストも、ひらがなとカタカナで。",
        "稀有字符：龘靐齉", "한국어 문장도 잘 처리됩니다.",
        "😀 👍🏽 👩‍💻 🇯🇵 ❤️ 🎉🎉🎉", "emoji😀inside", "mixed 中文 and English 123 😀",
        "Ünïcödé àccents, Straße, naïve café", "<s> not special </s> <unk>",
        "    indented code\n        deeper\n", "trailing spaces   \n   leading",
        "\u3000全角スペース\u3000", "a\u00a0b", "x" * 300, " " * 40 + "y",
    ]
    expected = [{"text": t, "ids": sp.encode(t), "pieces": sp.encode(t, out_type=str)} for t in texts]
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"generator": "sentencepiece " + spm.__version__, "cases": expected},
                  f, ensure_ascii=False, indent=0)
        f.write("\n")
    print("wrote", OUT, "vocab", n, "merges", len(merges), "cases", len(expected), file=sys.stderr)


if __name__ == "__main__":
    main()
