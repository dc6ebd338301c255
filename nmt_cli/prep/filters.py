"""Cleaning and filtering of parallel text, each step switchable and counted.

Text steps run on every split (so train and test text look alike to the model):

1. ``nfkc``: Unicode NFKC normalization (full-width forms, ligatures, compatibility
   characters fold to their plain equivalents);
2. ``whitespace``: strip both ends, collapse any run of whitespace to one space.

Filters run on the training split only; validation and test splits keep every line:

3. ``empty``: a pair with an empty side;
4. ``duplicate``: an exact repeat of an earlier (cleaned) pair, when ``dedup`` is on;
5. ``too_long``: more than ``max_len`` subwords on either side;
6. ``ratio``: longer side / shorter side (in subwords) above ``max_ratio`` (pairs with an
   empty side, kept by ``--keep-empty``, are not ratio-filtered).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable

from nmt_cli.config import DataConfig

_SPACES = re.compile(r"\s+")

# Text steps by their DataConfig switch, in the order they run.
TEXT_STEPS: dict[str, Callable[[str], str]] = {
    "nfkc": lambda text: unicodedata.normalize("NFKC", text),
    "whitespace": lambda text: _SPACES.sub(" ", text).strip(),
}


def text_steps(cfg: DataConfig) -> list[tuple[str, Callable[[str], str]]]:
    return [(name, step) for name, step in TEXT_STEPS.items() if getattr(cfg, name)]


def normalize(text: str, cfg: DataConfig) -> str:
    """Apply the text steps that ``cfg`` switches on (used by prep and at translation)."""
    for _, step in text_steps(cfg):
        text = step(text)
    return text


class PairFilter:
    """Cleans and filters training pairs, counting what each step changed or dropped."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        self.changed: Counter[str] = Counter()  # lines a text step altered
        self.dropped: Counter[str] = Counter({"empty": 0, "duplicate": 0, "too_long": 0, "ratio": 0})
        self._seen: set[bytes] = set()  # 16-byte digests, only when dedup is on
        self._steps = text_steps(cfg)

    def clean(self, text: str) -> str:
        """The text steps on one side of a pair, counted per step."""
        for name, step in self._steps:
            if (new := step(text)) != text:
                self.changed[name] += 1
                text = new
        return text

    def keep_text(self, src: str, tgt: str) -> bool:
        """Empty and duplicate filters, on cleaned text."""
        if self.cfg.drop_empty and (not src or not tgt):
            self.dropped["empty"] += 1
            return False
        if self.cfg.dedup:
            key = hashlib.blake2b(f"{len(src)}:{src}{tgt}".encode(), digest_size=16).digest()
            if key in self._seen:
                self.dropped["duplicate"] += 1
                return False
            self._seen.add(key)
        return True

    def keep_lengths(self, src_len: int, tgt_len: int) -> bool:
        """Length and ratio filters, on subword counts."""
        if self.cfg.max_len and max(src_len, tgt_len) > self.cfg.max_len:
            self.dropped["too_long"] += 1
            return False
        shorter = min(src_len, tgt_len)  # 0 only for empty sides kept by --keep-empty
        if self.cfg.max_ratio and shorter and max(src_len, tgt_len) > self.cfg.max_ratio * shorter:
            self.dropped["ratio"] += 1
            return False
        return True
