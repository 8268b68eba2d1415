"""eym-mini's tokenizer: CLIP's byte-level BPE with a small vocabulary that holds every word of the
puppet prompts as one token. Any other text still tokenizes (byte by byte), as with CLIP."""

from __future__ import annotations

import re

from puppet_world.motions import MOTIONS
from puppet_world.render import CLOTH_NAMES

# Words of the puppet prompts (puppet_world.cases.describe_scene) and a few common ones of user prompts.
EXTRA_WORDS = (
    "a an the person with short long hair in and shirt t sleeved trousers shorts front of wall "
    "man woman boy girl child people dancing walking jumping waving squatting standing turning "
    "raising arms arm both from side to on floor room background"
)


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes that CLIP's byte-level BPE uses."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def puppet_words() -> list[str]:
    verbs = " ".join(verb for _, _, verb in MOTIONS.values())
    text = " ".join([EXTRA_WORDS, verbs, *CLOTH_NAMES])
    return sorted(set(re.findall(r"[a-z]+", text.lower())))


def _bpe(word: str, ranks: dict) -> list[str]:
    """CLIP's BPE of one lowercase word: the lowest-ranked adjacent pair merges first, until none applies."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == float("inf"):
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def word_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges under which every word is a single token: each word's pieces under the merges so
    far are joined left to right by new merges (ranked after all earlier ones, so that words already
    whole stay whole)."""
    merges: list[tuple[str, str]] = []
    ranks: dict = {}
    for word in words:
        parts = _bpe(word, ranks)
        left = parts[0]
        for right in parts[1:]:
            ranks[(left, right)] = len(merges)
            merges.append((left, right))
            left += right
    return merges


def mini_tokenizer():
    """A ``CLIPTokenizer`` (77 tokens, like SD's) whose vocabulary covers the puppet prompts."""
    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    merges = word_merges(puppet_words())
    vocab += [a + b for a, b in merges if a + b not in vocab]
    vocab = list(dict.fromkeys(vocab))
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, model_max_length=77)
