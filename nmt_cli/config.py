"""The one typed configuration schema that recipes, CLI flags and outputs share.

A recipe is a YAML file whose top-level sections mirror :class:`Config`::

    data:            # how `nmt prep` cleans text and builds subwords (DataConfig)
      vocab_size: 8000
      joint: true

Values flow in three layers, later ones winning: the dataclass defaults, the recipe, then
the command line (``--set data.vocab_size=16000`` or a dedicated flag). The resolved
config is written next to every output (``manifest.json`` today, checkpoints later), so a
result always says exactly how it was made.

Loading is strict: an unknown key is an error that suggests the closest valid key, and a
value of the wrong type or out of range is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nmt_cli.errors import NmtError


@dataclass
class DataConfig:
    """``data:``: inputs, cleaning filters and subword model for ``nmt prep``."""

    src_lang: str = ""
    tgt_lang: str = ""
    train: str = ""  # prefix: reads TRAIN.SRC_LANG and TRAIN.TGT_LANG (or .gz)
    valid: str = ""  # prefix of the validation split (never filtered)
    test: list[str] = field(default_factory=list)  # prefixes of test splits (never filtered)
    # Cleaning, in this order; each step is counted in the manifest.
    nfkc: bool = True  # Unicode NFKC normalization (also applied to text at translation time)
    whitespace: bool = True  # strip both ends, collapse runs of whitespace to one space
    drop_empty: bool = True  # drop training pairs with an empty side
    dedup: bool = False  # drop exact duplicate training pairs (keeps the first)
    max_len: int = 128  # drop training pairs longer than this many subwords on a side (0: off)
    max_ratio: float = 3.0  # drop training pairs whose subword length ratio exceeds this (0: off)
    on_invalid_utf8: Literal["error", "replace"] = "error"
    # SentencePiece, trained on the cleaned training split only.
    spm_type: Literal["unigram", "bpe"] = "unigram"
    joint: bool = True  # one model for both languages (else one per language)
    vocab_size: int = 8000  # per model, special symbols included
    character_coverage: float = 1.0
    spm_sample: int = 1_000_000  # sentences sampled for SentencePiece training
    spm_model: str = ""  # reuse this joint model instead of training one
    src_spm_model: str = ""  # reuse separate models instead of training them
    tgt_spm_model: str = ""
    seed: int = 1

    def validate(self) -> None:
        _require(self.max_len >= 0, "data.max_len", "must be >= 0 (0 turns the filter off)")
        _require(self.max_ratio == 0 or self.max_ratio >= 1, "data.max_ratio", "must be >= 1 (0 turns the filter off)")
        _require(self.vocab_size >= 8, "data.vocab_size", "must be at least 8")
        _require(0 < self.character_coverage <= 1, "data.character_coverage", "must be in (0, 1]")
        _require(self.spm_sample >= 1, "data.spm_sample", "must be >= 1")
        if self.spm_model and (self.src_spm_model or self.tgt_spm_model):
            raise NmtError("data.spm_model (joint) and data.src_spm_model/tgt_spm_model (separate) exclude each other")
        if bool(self.src_spm_model) != bool(self.tgt_spm_model):
            raise NmtError("data.src_spm_model and data.tgt_spm_model go together: give both or neither")


@dataclass
class Config:
    """A whole recipe. Sections for ``model`` and ``train`` join this as those stages land."""

    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise NmtError(f"{key} {message}")


# --------------------------------------------------------------------------- loading


def from_dict(cls: type, values: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if not isinstance(values, dict):
        raise NmtError(f"{where or 'recipe'}: expected a mapping of keys to values, got {_kind(values)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise NmtError(f"unknown key {dotted!r}{_suggest(str(key), names, where)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """Plain data (dicts, lists, scalars): for YAML, JSON, manifests and checkpoints."""
    return dataclasses.asdict(cfg)


def load_recipe(path: str | Path) -> Config:
    """Read a YAML recipe into a validated :class:`Config`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NmtError(f"{path}: no such recipe file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise NmtError(f"{path}: cannot read recipe ({e.__class__.__name__})") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise NmtError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    try:
        cfg = from_dict(Config, values)
        cfg.validate()
    except NmtError as e:
        raise NmtError(f"{path}: {e}") from None
    return cfg


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML: 8000, true, [a, b])."""
    values = to_dict(cfg)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or "." not in key:
            raise NmtError(f"--set {assignment!r}: expected SECTION.KEY=VALUE, e.g. data.vocab_size=8000")
        section, _, name = key.strip().partition(".")
        if section not in values:
            raise NmtError(f"--set: unknown section {section!r}{_suggest(section, list(values), '')}")
        try:
            values[section][name] = yaml.safe_load(raw)
        except yaml.YAMLError:
            values[section][name] = raw
    return _validated(values)


def with_values(cfg: Config, section: str, updates: dict[str, Any]) -> Config:
    """Return ``cfg`` with the non-``None`` entries of ``updates`` set in ``section``."""
    values = to_dict(cfg)
    values[section].update({k: v for k, v in updates.items() if v is not None})
    return _validated(values)


def _validated(values: dict) -> Config:
    cfg = from_dict(Config, values)
    cfg.validate()
    return cfg


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            names = [str(c) for c in choices]
            raise NmtError(f"{key} must be one of {', '.join(names)}; got {value!r}{_suggest(str(value), names, None)}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise NmtError(f"{key} must be a list, got {_kind(value)}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema field of a type this loader does not know
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    raise NmtError(f"{key} must be {_article(hint.__name__)}, got {value!r}")


def _suggest(word: str, choices: list[str], where: str | None) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        return f" (valid: {', '.join(choices)})" if len(choices) <= 12 else ""
    best = f"{where}.{close[0]}" if where else close[0]
    return f"; did you mean {best!r}?"


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), _article(type(value).__name__))


def _article(name: str) -> str:
    name = {"str": "string", "int": "integer", "float": "number", "bool": "boolean (true/false)"}.get(name, name)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
