"""The one typed configuration schema that recipes, CLI flags and outputs share.

A recipe is a YAML file whose top-level sections mirror :class:`Config`::

    data:            # how `nmt prep` cleans text and builds subwords (DataConfig)
      vocab_size: 8000
    model:           # the encoder-decoder (ModelConfig)
      cell: gru
    train:           # batching, optimizer, validation, stopping (TrainConfig)
      max_time: 20m
    decode:          # search defaults of `nmt translate` (DecodeConfig)
      beam: 5

Values flow in three layers, later ones winning: the dataclass defaults, the recipe, then
the command line (``--set data.vocab_size=16000`` or a dedicated flag). The resolved
config is written next to every output (``manifest.json``, ``config.yaml`` and every
checkpoint), so a result always says exactly how it was made. Loading is strict: an
unknown key is an error that suggests the closest valid key; a key given twice, or a value
of the wrong type, not finite (inf, nan) or out of range, one that names the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from nmt_cli import safe_yaml
from nmt_cli.errors import NmtError, shown

# The choices of config keys and of the command line's flags (which take them from here).
SpmType = Literal["unigram", "bpe"]
OnInvalid = Literal["error", "replace"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Quantize = Literal["none", "int8"]
Device = Literal["auto", "cpu", "cuda"]  # where a command runs (a flag, not a config key)


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
    on_invalid_utf8: OnInvalid = "error"
    # SentencePiece, trained on the cleaned training split only.
    spm_type: SpmType = "unigram"
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
class ModelConfig:
    """``model:``: an attentional RNN encoder-decoder (see ``model/seq2seq.py``)."""

    cell: Literal["gru", "lstm", "rnn"] = "gru"  # rnn: the vanilla (Elman) tanh cell
    emb_size: int = 256
    emb_dropout: float = 0.2
    word_dropout: float = 0.0  # rate at which whole input-word embeddings (source and target) are zeroed in training
    share_embeddings: bool = False  # one embedding table for source and target (joint vocab)
    tie_output: bool = False  # output projection = target embedding (needs output_size == emb_size)
    encoder_layers: int = 2
    encoder_hidden: int = 256  # per direction
    bidirectional: bool = True
    decoder_layers: int = 1
    decoder_hidden: int = 512
    dropout: float = 0.2  # between recurrent layers and on the attentional state
    residual: bool = False  # add each recurrent layer's input to its output (from the second layer on)
    attention: Literal["bahdanau", "luong_dot", "luong_general", "luong_local", "luong_local_m"] = "bahdanau"
    attention_size: int = 256  # Bahdanau's MLP width; luong_local's position predictor width
    heads: int = 1  # independent scoring heads (bahdanau, luong_general), contexts concatenated and projected
    window: int = 10  # luong_local(_m): D, attend to source positions [p_t - D, p_t + D]
    input_feeding: bool = True  # feed the previous attentional state into the decoder RNN
    bridge: bool = True  # decoder's initial state from the encoder's final (else zeros)
    output_size: int = 256  # size of the attentional state that predicts the word
    init_uniform: float = 0.0  # > 0: each weight uniform in ±init_uniform (OpenNMT's param_init); 0: per-layer defaults
    # The output layer's words: every target id, or the training targets' (smaller layer and loss).
    output_vocab: Literal["all", "target"] = "all"

    def validate(self) -> None:
        _require(self.init_uniform >= 0, "model.init_uniform", "must be >= 0")
        sizes = ("emb_size", "encoder_layers", "encoder_hidden", "decoder_layers", "decoder_hidden", "output_size")
        for key in (*sizes, "attention_size", "heads", "window"):
            _require(getattr(self, key) >= 1, f"model.{key}", "must be >= 1")
        for key in ("emb_dropout", "word_dropout", "dropout"):
            _require(0 <= getattr(self, key) < 1, f"model.{key}", "must be in [0, 1)")
        memory = self.encoder_hidden * (2 if self.bidirectional else 1)
        if self.attention == "luong_dot" and memory != self.decoder_hidden:
            raise NmtError(
                f"model.attention luong_dot needs decoder_hidden ({self.decoder_hidden}) equal to the encoder "
                f"output size ({memory} = encoder_hidden x directions); use luong_general or change the sizes"
            )
        if self.heads > 1 and self.attention not in ("bahdanau", "luong_general"):
            raise NmtError(f"model.heads {self.heads} needs attention bahdanau or luong_general (got {self.attention})")
        ties = f"needs output_size ({self.output_size}) equal to emb_size ({self.emb_size})"
        _require(not self.tie_output or self.output_size == self.emb_size, "model.tie_output", ties)


@dataclass
class TrainConfig:
    """``train:``: batching, optimization, validation, stopping and checkpoints."""

    seed: int = 1
    batch_tokens: int = 4000  # per batch: sentences x padded (longest side + 1) length
    # a batch holds a multiple of this many sentences (the last of a pool padded with empty pairs)
    batch_multiple: int = 1
    accumulate: int = 1  # batches per optimizer step
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    clip_norm: float = 1.0  # gradient clipping by global norm (0: off)
    label_smoothing: float = 0.1
    # Scheduled sampling (Bengio et al. 2015): the share of decoder steps that read the
    # reference's previous word; the others read the model's own greedy prediction.
    teacher_forcing: float = 1.0  # the ratio (constant) or the ratio the schedule decays to
    teacher_forcing_schedule: Literal["constant", "linear", "inverse_sigmoid"] = "constant"
    teacher_forcing_steps: int = 10000  # linear: steps from 1.0 down to teacher_forcing; inverse_sigmoid: k
    schedule: Literal["constant", "plateau", "inverse_sqrt", "budget"] = "plateau"
    warmup_steps: int = 0  # linear warmup (inverse_sqrt: the peak step)
    plateau_factor: float = 0.5  # plateau: lr *= factor after plateau_patience bad validations
    plateau_patience: int = 2
    min_lr: float = 1e-5
    decay_share: float = 1.0  # budget: lr falls to min_lr over this last share of the budget, constant before it
    valid_every: int = 500  # steps
    # what decides best.pt, patience and the plateau schedule (loss, ppl: lower is better)
    valid_metric: Literal["bleu", "chrf", "loss", "ppl"] = "bleu"
    ema: float = 0.0  # > 0: validate and save as best.pt an exponential moving average of the weights, this decay
    log_every: int = 50  # steps
    patience: int = 8  # validations without improvement before stopping (0: never); budget: counted once the lr decays
    max_steps: int = 0  # 0: no limit
    max_epochs: int = 0  # 0: no limit
    max_time: str = ""  # wall-clock budget, e.g. 20m, 1h30m, 90s ("": no limit)
    keep_last: int = 2  # step checkpoints kept besides best.pt
    # auto: bf16 where this machine runs it clearly faster than fp32 (a probe at start), else
    # fp32; a resumed run keeps the precision it started with (fp16: CUDA only)
    precision: Precision = "auto"
    valid_max_len_a: float = 1.5  # greedy validation decodes at most a*src_len + b tokens
    valid_max_len_b: int = 10
    valid_batch_size: int = 200  # sentences per validation decoding batch

    def validate(self) -> None:
        for key in ("batch_tokens", "batch_multiple", "accumulate", "valid_every", "log_every", "valid_batch_size"):
            _require(getattr(self, key) >= 1, f"train.{key}", "must be >= 1")
        for key in ("patience", "max_steps", "max_epochs", "keep_last", "warmup_steps", "plateau_patience"):
            _require(getattr(self, key) >= 0, f"train.{key}", "must be >= 0")
        _require(self.lr > 0, "train.lr", "must be > 0")
        _require(0 <= self.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)")
        _require(0 <= self.teacher_forcing <= 1, "train.teacher_forcing", "must be in [0, 1]")
        _require(self.teacher_forcing_steps >= 1, "train.teacher_forcing_steps", "must be >= 1")
        _require(0 < self.plateau_factor <= 1, "train.plateau_factor", "must be in (0, 1]")
        _require(0 < self.decay_share <= 1, "train.decay_share", "must be in (0, 1]")
        _require(0 <= self.ema < 1, "train.ema", "must be in [0, 1) (0 turns it off)")
        _require(self.clip_norm >= 0, "train.clip_norm", "must be >= 0 (0 turns clipping off)")
        if self.schedule == "inverse_sqrt":
            _require(self.warmup_steps > 0, "train.warmup_steps", "must be > 0 for schedule inverse_sqrt")
        parse_duration(self.max_time)
        budget = "budget decays the lr over the run's budget: set train.max_steps, max_epochs or max_time"
        _require(
            self.schedule != "budget" or self.max_steps or self.max_epochs or self.max_time, "train.schedule", budget
        )


def parse_duration(text: str) -> float:
    """Seconds in a wall-clock budget such as ``20m``, ``1h30m``, ``90s`` or ``45`` (seconds)."""
    number = r"(\d+\.?\d*|\.\d+)"
    spelled = text.strip().lower()
    if not re.fullmatch(rf"({number}[hms])*{number}?", spelled):
        raise NmtError(f"train.max_time {shown(text)} is not a duration like 20m, 1h30m or 90s")
    return sum(float(n) * {"h": 3600, "m": 60}.get(u, 1) for n, u in re.findall(rf"{number}([hms]?)", spelled))


@dataclass
class DecodeConfig:
    """``decode:``: how ``nmt translate`` searches; each key is also a flag (``--beam 5``).
    A recipe's values travel in the checkpoint and are the defaults of ``nmt translate``."""

    beam: int = 5  # beam size; 1 is greedy search
    nbest: int = 1  # hypotheses written per input line (at most beam)
    alpha: float = 0.6  # GNMT length penalty ((5+|Y|)/6)**alpha (0: off)
    beta: float = 0.0  # GNMT coverage penalty weight (0: off)
    max_len_a: float = 1.5  # output at most a*src_len + b subwords
    max_len_b: int = 10
    batch_size: int = 0  # sentences per batch (0: 160 // beam, so memory stays flat as the beam grows)
    batch_tokens: int = 0  # source subwords per batch, padding included (0: no limit)
    replace_unk: bool = False  # replace UNK by the source subword with the most attention
    hard_attention: bool = False  # diagnostic: the context is the most attended source state alone (argmax)
    precision: Precision = "auto"  # autocast dtype; auto: as train.precision (fp16: CUDA only)
    quantize: Quantize = "none"  # int8 products, each input row on its own scale (CPU only)
    sampling: bool = False  # draw each word from the model's distribution (search/sampling.py) instead of searching
    topk: int = 0  # sampling: from the K most probable words (0: all)
    topp: float = 1.0  # sampling: from the smallest set of most probable words with mass >= P (1: all)
    temperature: float = 1.0  # sampling: p ∝ exp(score / T)
    seed: int = 0  # sampling: a line's draws depend on (seed, line, sample) alone

    @property
    def sentences_per_batch(self) -> int:
        return self.batch_size or max(1, 160 // (self.nbest if self.sampling else self.beam))

    def validate(self) -> None:
        for key in ("beam", "nbest"):
            _require(getattr(self, key) >= 1, f"--{key.replace('_', '-')} (decode.{key})", "must be >= 1")
        for key in ("alpha", "beta", "max_len_a", "max_len_b", "batch_size", "batch_tokens", "topk", "seed"):
            _require(getattr(self, key) >= 0, f"--{key.replace('_', '-')} (decode.{key})", "must be >= 0")
        _require(0 < self.topp <= 1, "--topp (decode.topp)", "must be in (0, 1]")
        _require(self.temperature > 0, "--temperature (decode.temperature)", "must be > 0")
        _require(self.nbest <= self.beam or self.sampling, "--nbest (decode.nbest)", f"must be <= --beam ({self.beam})")
        _require(self.max_len_a > 0 or self.max_len_b > 0, "--max-len-a/--max-len-b", "cannot both be 0")


@dataclass
class Config:
    """A whole recipe: one section per stage."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def validate(self) -> None:
        for section in (self.data, self.model, self.train, self.decode):
            section.validate()


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise NmtError(f"{key} {message}")


def from_dict(cls: type, values: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if not isinstance(values, dict):
        raise NmtError(f"{where or 'recipe'}: expected a mapping of keys to values, got {_kind(values)}")
    hints = typing.get_type_hints(cls)  # the dataclass's fields, in order
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in hints:
            raise NmtError(f"unknown key {shown(dotted)}{_suggest(str(key)[:200], list(hints), where)}")
        kwargs[key] = _coerce(value, hints[key], dotted)
    return cls(**kwargs)


to_dict = dataclasses.asdict  # a config as plain data (dicts, lists, scalars): YAML, JSON, manifests, checkpoints


def load_recipe(path: str | Path) -> Config:
    """Read a YAML recipe into a validated :class:`Config`.

    A recipe may start from another: ``base: multi30k_de_en.yaml`` (a path relative to
    the recipe's own folder) takes that recipe's values, and this recipe's keys replace
    them one by one, so a variant states only what it changes.
    """
    values = _recipe_values(Path(path), ())
    try:
        return _validated(values)
    except NmtError as e:
        raise NmtError(f"{path}: {e}") from None


def _recipe_values(path: Path, seen: tuple[Path, ...]) -> dict:
    """A recipe's mapping, with its ``base:`` chain merged in (the recipe's own keys win)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise NmtError(f"{path}: no such recipe file") from None
    except (IsADirectoryError, PermissionError) as e:
        raise NmtError(f"{path}: cannot read recipe ({e.__class__.__name__})") from None
    except UnicodeDecodeError as e:  # e.object: the file's bytes; 10: a newline
        raise NmtError(f"{path}:{e.object.count(10, 0, e.start) + 1}: invalid UTF-8") from None
    try:
        values = safe_yaml.load(text, str(path)) or {}
    except yaml.YAMLError as e:
        at = f":{e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) is not None else ""
        raise NmtError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(values, dict) or "base" not in values:
        return values
    base = values.pop("base")
    if not isinstance(base, str):
        raise NmtError(f"{path}: base must be the path of a recipe, got {_kind(base)}")
    base_path, seen = (path.parent / base).resolve(), (*seen, path.resolve())
    if base_path in seen:
        raise NmtError(f"{path}: base {base} leads back to itself")
    merged = _recipe_values(base_path, seen)
    if not isinstance(merged, dict):
        raise NmtError(f"{base_path}: a base recipe must be a mapping of sections, got {_kind(merged)}")
    for section, keys in values.items():
        both = isinstance(keys, dict) and isinstance(merged.get(section), dict)
        merged[section] = {**merged[section], **keys} if both else keys
    return merged


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML: 8000, true, [a, b])."""
    values = to_dict(cfg)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or "." not in key:
            raise NmtError(f"--set {shown(assignment)}: expected SECTION.KEY=VALUE, e.g. data.vocab_size=8000")
        section, _, name = key.strip().partition(".")
        if section not in values:
            raise NmtError(f"--set: unknown section {section!r}{_suggest(section, list(values), '')}")
        values[section][name] = _parse_value(raw, type(getattr(cfg, section)), name)
    return _validated(values)


def _parse_value(raw: str, section: type, name: str) -> Any:
    """A --set value as YAML (8000, true, [a, b]); text as is for string keys (so `no` stays "no")."""
    with contextlib.suppress(yaml.YAMLError):
        if typing.get_type_hints(section).get(name) is not str:
            return safe_yaml.load(raw, f"--set {name}")
    return raw


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
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if typing.get_origin(hint) is Literal:
        if value in typing.get_args(hint):
            return value
        names = [str(c) for c in typing.get_args(hint)]
        close = _suggest(str(value)[:200], names, None)
        raise NmtError(f"{key} must be one of {', '.join(names)}; got {shown(value)}{close}")
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise NmtError(f"{key} must be a list, got {_kind(value)}")
        return [_coerce(v, typing.get_args(hint)[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if hint not in (bool, int, float, str):  # pragma: no cover - a type this loader does not know
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    if hint is float and type(value) in (int, float, str):  # a bool is no number
        with contextlib.suppress(ValueError, OverflowError):  # YAML 1.1 reads 5e-3 (no dot) as text
            value = float(value)
        _require(type(value) is not float or math.isfinite(value), key, f"must be a finite number, got {value}")
    if isinstance(value, hint) and (hint is bool or not isinstance(value, bool)):
        return value
    raise NmtError(f"{key} must be {_article(hint.__name__)}, got {shown(value)}")


def _suggest(word: str, choices: list[str], where: str | None) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        return f" (valid: {', '.join(choices)})" if len(choices) <= 12 else ""
    return f"; did you mean {f'{where}.{close[0]}' if where else close[0]!r}?"


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), _article(type(value).__name__))


def _article(name: str) -> str:
    name = {"str": "string", "int": "integer", "float": "number", "bool": "boolean (true/false)"}.get(name, name)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
