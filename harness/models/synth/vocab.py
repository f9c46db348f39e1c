"""A synthetic byte-fallback vocabulary of any size, for models with random weights.

Token ids: 0 `<unk>`, 1 `<s>` (BOS), 2 `</s>` (EOS), then the 256 byte tokens `<0x00>`…
`<0xFF>`, then text pieces (single characters, then letter pairs and triples with and
without the word-start marker) so English text tokenizes at a few characters per token,
then unused filler tokens up to the vocabulary size the shape needs: the embedding and
output matrices must have exactly the real model's vocabulary rows.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
N_SPECIAL = 3
SPM_SPACE = "\u2581"  # SentencePiece's word-start marker

# llama.cpp token types (llama_token_type)
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]


def _pieces() -> list[str]:
    letters = string.ascii_lowercase
    chars = [c for c in string.printable if not c.isspace()]
    pieces = [SPM_SPACE] + chars + [SPM_SPACE + c for c in chars]
    pieces += ["".join(p) for p in itertools.product(letters, repeat=2)]
    pieces += [SPM_SPACE + "".join(p) for p in itertools.product(letters, repeat=2)]
    pieces += ["".join(p) for p in itertools.product(letters, repeat=3)]
    pieces += [SPM_SPACE + "".join(p) for p in itertools.product(letters, repeat=3)]
    return pieces


def spm_vocab(size: int) -> Vocab:
    """A SentencePiece-style (llama.cpp `llama` tokenizer) vocabulary of exactly `size`."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL] + [TYPE_BYTE] * 256
    pieces = _pieces()[: max(0, size - len(tokens))]
    tokens += pieces
    types += [TYPE_NORMAL] * len(pieces)
    n_fill = size - len(tokens)
    tokens += [f"<unused{i}>" for i in range(n_fill)]
    types += [TYPE_NORMAL] * n_fill
    # SentencePiece merges the best-scored pair first: shorter pieces score higher here, so
    # words are built up pair by pair; byte and filler tokens never merge.
    scores = [0.0] * len(tokens)
    for i in range(N_SPECIAL + 256, len(tokens)):
        scores[i] = -float(i)
    return Vocab(tokens=tokens[:size], scores=scores[:size], types=types[:size])


def _gpt2_byte_chars() -> list[str]:
    """GPT-2's printable stand-in character for each byte (byte-level BPE)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def hf_tokenizer_json(size: int) -> dict:
    """A byte-level BPE `tokenizer.json` (Hugging Face `tokenizers`) with `size` tokens."""
    byte_chars = _gpt2_byte_chars()
    space = byte_chars[ord(" ")]
    specials = ["<unk>", "<s>", "</s>"]
    vocab: dict[str, int] = {t: i for i, t in enumerate(specials)}
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    merges: list[list[str]] = []
    letters = string.ascii_lowercase
    for a in [space] + list(letters):
        for b in letters:
            if len(vocab) >= size:
                break
            vocab[a + b] = len(vocab)
            merges.append([a, b])
    i = 0
    while len(vocab) < size:
        vocab[f"<unused{i}>"] = len(vocab)
        i += 1
    vocab = dict(itertools.islice(vocab.items(), size))
    merges = [m for m in merges if "".join(m) in vocab]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(specials)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                          "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID],
                                                      "tokens": ["<s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
