"""Token-id files that training memory-maps instead of loading.

One split of one language is two flat binary files (native little-endian, no header):

* ``SPLIT.LANG.ids``: every sentence's subword ids, concatenated, without SOS/EOS
  (``uint16`` when the vocabulary has at most 65,536 entries, else ``int32``);
* ``SPLIT.LANG.off``: ``int64`` offsets, one more than there are sentences, so sentence
  ``i`` is ``ids[off[i]:off[i + 1]]`` and its length is ``off[i + 1] - off[i]``.

The dtype is recorded in ``manifest.json``. Sentence ``i`` of the source and of the
target files are a translation pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OFFSET_DTYPE = np.dtype("<i8")


def id_dtype(vocab_size: int) -> np.dtype:
    """The smallest dtype that holds every id of a vocabulary."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")


def paths(root: Path, split: str, lang: str) -> tuple[Path, Path]:
    return root / f"{split}.{lang}.ids", root / f"{split}.{lang}.off"


class IdWriter:
    """Appends sentences of ids to a split's files in bounded chunks (streaming)."""

    def __init__(self, root: Path, split: str, lang: str, dtype: np.dtype, flush_every: int = 1 << 16):
        ids_path, off_path = paths(root, split, lang)
        self._ids = open(ids_path, "wb")
        self._off = open(off_path, "wb")
        self.dtype, self.flush_every = dtype, flush_every
        self._pending_ids: list[int] = []
        self._pending_off: list[int] = [0]
        self.sentences = self.tokens = 0

    def add(self, ids: list[int]) -> None:
        self._pending_ids.extend(ids)
        self.tokens += len(ids)
        self.sentences += 1
        self._pending_off.append(self.tokens)
        if len(self._pending_ids) >= self.flush_every:
            self._flush()

    def _flush(self) -> None:
        np.asarray(self._pending_ids, dtype=self.dtype).tofile(self._ids)
        np.asarray(self._pending_off, dtype=OFFSET_DTYPE).tofile(self._off)
        self._pending_ids, self._pending_off = [], []

    def close(self) -> None:
        self._flush()
        self._ids.close()
        self._off.close()

    def __enter__(self) -> IdWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class IdStore:
    """Read-only, memory-mapped view of one split of one language."""

    def __init__(self, root: Path | str, split: str, lang: str, dtype: str | np.dtype):
        ids_path, off_path = paths(Path(root), split, lang)
        self.offsets = np.memmap(off_path, dtype=OFFSET_DTYPE, mode="r")
        # np.memmap cannot map an empty file: a split of empty sentences has no ids.
        size = ids_path.stat().st_size
        self.ids = np.memmap(ids_path, dtype=np.dtype(dtype), mode="r") if size else np.empty(0, np.dtype(dtype))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        """Length of every sentence, in subwords (without SOS/EOS)."""
        return np.diff(self.offsets)
