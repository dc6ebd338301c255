"""The typed config: defaults, strict recipe loading, --set overrides (nmt_cli/config.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nmt_cli import config
from nmt_cli.config import Config, DataConfig
from nmt_cli.errors import NmtError


def load(tmp_path, text: str) -> Config:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return config.load_recipe(path)


def load_error(tmp_path, text: str) -> str:
    with pytest.raises(NmtError) as e:
        load(tmp_path, text)
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'r.yaml'}") and "\n" not in message
    return message


def test_defaults():
    d = Config().data
    assert (d.src_lang, d.tgt_lang, d.train, d.valid, d.test) == ("", "", "", "", [])
    assert (d.nfkc, d.whitespace, d.drop_empty, d.dedup) == (True, True, True, False)
    assert (d.max_len, d.max_ratio, d.on_invalid_utf8) == (128, 3.0, "error")
    assert (d.spm_type, d.joint, d.vocab_size, d.character_coverage, d.spm_sample) == (
        "unigram",
        True,
        8000,
        1.0,
        1_000_000,
    )
    assert (d.spm_model, d.src_spm_model, d.tgt_spm_model, d.seed) == ("", "", "", 1)
    Config().validate()
    assert Config().data.test is not DataConfig().test  # no shared mutable default


def test_recipe_sets_values(tmp_path):
    cfg = load(
        tmp_path, "data:\n  vocab_size: 16000\n  joint: false\n  test: [a, b]\n  max_ratio: 2\n  spm_type: bpe\n"
    )
    assert (cfg.data.vocab_size, cfg.data.joint, cfg.data.test, cfg.data.spm_type) == (16000, False, ["a", "b"], "bpe")
    assert cfg.data.max_ratio == 2.0 and isinstance(cfg.data.max_ratio, float)  # an int is a fine float
    assert cfg.data.max_len == 128  # untouched keys keep their defaults


@pytest.mark.parametrize("text", ["", "# nothing\n", "data: {}\n"])
def test_empty_recipe_is_defaults(tmp_path, text):
    assert load(tmp_path, text) == Config()


def test_to_dict_from_dict_round_trip():
    cfg = Config(DataConfig(src_lang="de", test=["x"], vocab_size=123))
    values = config.to_dict(cfg)
    assert values["data"]["vocab_size"] == 123 and values["data"]["test"] == ["x"]
    assert config.from_dict(Config, values) == cfg


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data:\n  vocab_szie: 1\n", "unknown key 'data.vocab_szie'; did you mean 'data.vocab_size'?"),
        ("data:\n  dedupe: true\n", "unknown key 'data.dedupe'; did you mean 'data.dedup'?"),
        ("dta:\n  vocab_size: 1\n", "unknown key 'dta'; did you mean 'data'?"),
        ("datum:\n  vocab_size: 1\n", "unknown key 'datum'; did you mean 'data'?"),
        ("data:\n  zzzzzz: 1\n", "unknown key 'data.zzzzzz'"),  # no close key, too many to list
    ],
)
def test_unknown_key_suggests_closest(tmp_path, text, expected):
    assert load_error(tmp_path, text).endswith(f": {expected}")


def test_unknown_section_without_a_close_match_lists_the_sections(tmp_path):
    message = load_error(tmp_path, "qqqqqq:\n  a: 1\n")
    assert ": unknown key 'qqqqqq' (valid: " in message
    assert "data" in message.split("(valid: ")[1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("data:\n  vocab_size: big\n", "data.vocab_size must be an integer, got 'big'"),
        ("data:\n  vocab_size: 8000.5\n", "data.vocab_size must be an integer, got 8000.5"),
        ("data:\n  vocab_size: true\n", "data.vocab_size must be an integer, got True"),
        ("data:\n  dedup: 1\n", "data.dedup must be a boolean (true/false), got 1"),
        ("data:\n  max_ratio: x\n", "data.max_ratio must be a number, got 'x'"),
        ("data:\n  src_lang: 5\n", "data.src_lang must be a string, got 5"),
        ("data:\n  test: x\n", "data.test must be a list, got a string"),
        ("data:\n  test: [a, 2]\n", "data.test[1] must be a string, got 2"),
        ("data: 5\n", "data: expected a mapping of keys to values, got an integer"),
        ("data: [1]\n", "data: expected a mapping of keys to values, got a list"),
        ("- data\n", "recipe: expected a mapping of keys to values, got a list"),
        ("data:\n  spm_type: bep\n", "data.spm_type must be one of unigram, bpe; got 'bep'; did you mean 'bpe'?"),
        ("data:\n  spm_type: word\n", "data.spm_type must be one of unigram, bpe; got 'word' (valid: unigram, bpe)"),
        (
            "data:\n  on_invalid_utf8: replac\n",
            "data.on_invalid_utf8 must be one of error, replace; got 'replac'; did you mean 'replace'?",
        ),
    ],
)
def test_wrong_type(tmp_path, text, expected):
    assert load_error(tmp_path, text).endswith(f": {expected}")


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"max_len": -1}, "data.max_len must be >= 0"),
        ({"max_ratio": 0.5}, "data.max_ratio must be >= 1"),
        ({"vocab_size": 7}, "data.vocab_size must be at least 8"),
        ({"character_coverage": 0.0}, "data.character_coverage must be in (0, 1]"),
        ({"character_coverage": 1.5}, "data.character_coverage must be in (0, 1]"),
        ({"spm_sample": 0}, "data.spm_sample must be >= 1"),
        ({"spm_model": "a", "src_spm_model": "b", "tgt_spm_model": "c"}, "exclude each other"),
        ({"tgt_spm_model": "c"}, "give both or neither"),
    ],
)
def test_validate_ranges(values, expected):
    with pytest.raises(NmtError, match=expected.replace("(", r"\(").replace("]", r"\]")):
        DataConfig(**values).validate()


@pytest.mark.parametrize(
    "values", [{"max_len": 0, "max_ratio": 0}, {"max_ratio": 1}, {"vocab_size": 8}, {"character_coverage": 1.0}]
)
def test_validate_accepts_bounds(values):
    DataConfig(**values).validate()


def test_recipe_range_error_names_the_file(tmp_path):
    assert load_error(tmp_path, "data:\n  max_len: -5\n").endswith(
        ": data.max_len must be >= 0 (0 turns the filter off)"
    )


def test_invalid_yaml_names_file_and_line(tmp_path):
    message = load_error(tmp_path, "data:\n  vocab_size: 1\n  test: [a,\n")
    assert message.startswith(f"{tmp_path / 'r.yaml'}:") and "not valid YAML" in message


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("data:\n  vocab_size: 200\n  vocab_size: 300\n", 3, "vocab_size"),
        ("data:\n  vocab_size: 200\nmodel: {}\ndata: {}\n", 4, "data"),
        ("decode: {beam: 2, 'beam': 3}\n", 1, "beam"),  # quoted or not, the same key
        ('"a\\nb": 1\n"a\\nb": 2\n', 2, "a b"),  # the message stays one line
    ],
)
def test_a_duplicate_key_names_its_line(tmp_path, text, line, key):
    """YAML would keep the last value silently."""
    assert load_error(tmp_path, text) == f"{tmp_path / 'r.yaml'}:{line}: duplicate key {key}"


def test_a_key_may_replace_one_from_a_merge_key(tmp_path):
    text = "shared: &d {vocab_size: 200, max_len: 5}\ndata:\n  <<: *d\n  vocab_size: 300\n"
    assert config._recipe_values(write(tmp_path / "r.yaml", text), ())["data"] == {"vocab_size": 300, "max_len": 5}


def test_the_safe_loader_still_refuses_python_tags(tmp_path):
    assert "not valid YAML" in load_error(tmp_path, "data: !!python/object/apply:os.system [echo hi]\n")


def test_invalid_utf8_names_its_line(tmp_path):
    (tmp_path / "r.yaml").write_bytes(b"data:\n  max_len: \xff\n")
    with pytest.raises(NmtError) as e:
        config.load_recipe(tmp_path / "r.yaml")
    assert str(e.value) == f"{tmp_path / 'r.yaml'}:2: invalid UTF-8"


@pytest.mark.parametrize("value", ["inf", ".inf", "-.inf", "nan", ".NaN", "1e999"])
@pytest.mark.parametrize("key", ["train.lr", "data.max_ratio", "model.dropout", "decode.temperature"])
def test_every_float_setting_must_be_finite(tmp_path, key, value):
    """In a recipe, --set or a flag: inf passes range checks such as lr > 0 (and trains
    nothing but nan losses)."""
    section, name = key.split(".")
    assert f": {key} must be a finite number, got " in load_error(tmp_path, f"{section}:\n  {name}: {value}\n")
    with pytest.raises(NmtError, match=rf"^{key} must be a finite number, got "):
        config.apply_overrides(Config(), [f"{key}={value}"])


def test_sampling_settings_stay_a_recipes_defaults_without_sampling(tmp_path):
    """They are what a later ``nmt translate --sampling`` takes (the flags alone must come
    with --sampling: tests/decode/test_inference.py)."""
    assert load(tmp_path, "decode:\n  topk: 40\n  temperature: 0.7\n").decode.topk == 40


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_a_flag_must_be_finite_too(number):
    with pytest.raises(NmtError, match=r"^decode.temperature must be a finite number, got "):
        config.with_values(Config(), "decode", {"temperature": number})


@pytest.mark.parametrize(
    "make, expected",
    [(lambda p: p / "nope.yaml", "no such recipe file"), (lambda p: p, "cannot read recipe (IsADirectoryError)")],
)
def test_unreadable_recipe(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(NmtError, match=rf"^{path}: {expected.replace('(', '[(]').replace(')', '[)]')}$"):
        config.load_recipe(path)


# --------------------------------------------------------------------------- --set


def test_apply_overrides_parses_yaml_values():
    cfg = config.apply_overrides(
        Config(),
        [
            "data.vocab_size=16000",
            "data.dedup=true",
            "data.test=[a, b]",
            "data.max_ratio=2",
            "data.src_lang=de",
            " data.seed =7",
        ],
    )
    d = cfg.data
    assert (d.vocab_size, d.dedup, d.test, d.max_ratio, d.src_lang, d.seed) == (16000, True, ["a", "b"], 2.0, "de", 7)


def test_apply_overrides_later_wins_and_keeps_the_rest():
    base = Config(DataConfig(vocab_size=100, joint=False))
    cfg = config.apply_overrides(base, ["data.vocab_size=200", "data.vocab_size=300"])
    assert (cfg.data.vocab_size, cfg.data.joint) == (300, False)
    assert base.data.vocab_size == 100  # the input is not modified


def test_apply_overrides_unparsable_yaml_is_a_string():
    assert config.apply_overrides(Config(), ["data.train=[oops"]).data.train == "[oops"


@pytest.mark.parametrize(
    "assignment, expected",
    [
        ("data.vocab_size", "--set 'data.vocab_size': expected SECTION.KEY=VALUE"),
        ("vocab_size=5", "--set 'vocab_size=5': expected SECTION.KEY=VALUE"),
        ("dat.vocab_size=5", "--set: unknown section 'dat'; did you mean 'data'?"),
        ("data.vocab_sise=5", "unknown key 'data.vocab_sise'; did you mean 'data.vocab_size'?"),
        ("data.vocab_size=five", "data.vocab_size must be an integer, got 'five'"),
        ("data.spm_type=bep", "did you mean 'bpe'?"),
        ("data.max_len=-1", "data.max_len must be >= 0"),
    ],
)
def test_apply_overrides_errors(assignment, expected):
    with pytest.raises(NmtError) as e:
        config.apply_overrides(Config(), [assignment])
    assert expected in str(e.value)


def test_with_values_ignores_none():
    cfg = config.with_values(
        Config(DataConfig(vocab_size=100)), "data", {"vocab_size": None, "dedup": True, "test": None}
    )
    assert (cfg.data.vocab_size, cfg.data.dedup, cfg.data.test) == (100, True, [])


def test_with_values_validates():
    with pytest.raises(NmtError, match="data.vocab_size must be at least 8"):
        config.with_values(Config(), "data", {"vocab_size": 4})


# --------------------------------------------------------------------------- base: recipes

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
COURSE = sorted((RECIPES / "course").glob("*.yaml"))


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_base_values_are_taken_and_overridden_key_by_key(tmp_path):
    write(
        tmp_path / "base.yaml",
        "data:\n  vocab_size: 16000\n  max_len: 50\n  test: [a, b]\n"
        "model:\n  cell: lstm\n  emb_size: 128\ntrain:\n  lr: 0.01\n",
    )
    child = write(
        tmp_path / "child.yaml",
        "base: base.yaml\nmodel:\n  emb_size: 64\n  residual: true\ndata:\n  test: [c]\ndecode:\n  beam: 3\n",
    )
    cfg = config.load_recipe(child)
    assert (cfg.model.cell, cfg.model.emb_size, cfg.model.residual) == ("lstm", 64, True)  # section merged key by key
    assert (cfg.data.vocab_size, cfg.data.max_len) == (16000, 50)
    assert cfg.data.test == ["c"]  # a list is a value: replaced, not merged
    assert cfg.train.lr == 0.01  # a section only the base has
    assert cfg.decode.beam == 3  # a section only the child has
    assert cfg.model.encoder_layers == Config().model.encoder_layers  # neither: the default


def test_a_child_that_changes_nothing_is_its_base(tmp_path):
    base = write(tmp_path / "base.yaml", "model:\n  heads: 2\n  attention: luong_general\n")
    child = write(tmp_path / "child.yaml", "# only a base\nbase: base.yaml\n")
    assert config.load_recipe(child) == config.load_recipe(base)


def test_base_chains_resolve_each_path_from_its_own_recipe(tmp_path):
    """child -> ../common/mid.yaml -> root.yaml (relative to common/): the nearest recipe wins."""
    write(tmp_path / "common" / "root.yaml", "model:\n  cell: rnn\n  emb_size: 32\n  window: 3\n")
    write(tmp_path / "common" / "mid.yaml", "base: root.yaml\nmodel:\n  emb_size: 48\n  attention: luong_local_m\n")
    child = write(tmp_path / "exp" / "child.yaml", "base: ../common/mid.yaml\nmodel:\n  window: 4\n")
    m = config.load_recipe(child).model
    assert (m.cell, m.emb_size, m.attention, m.window) == ("rnn", 48, "luong_local_m", 4)


def test_base_is_read_relative_to_the_recipe_not_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path / "r" / "base.yaml", "model:\n  cell: rnn\n")
    child = write(tmp_path / "r" / "child.yaml", "base: base.yaml\n")
    write(tmp_path / "base.yaml", "model:\n  cell: lstm\n")  # a decoy in the working directory
    monkeypatch.chdir(tmp_path)
    assert config.load_recipe("r/child.yaml").model.cell == "rnn"
    assert config.load_recipe(child).model.cell == "rnn"


def test_missing_base_is_a_one_line_error_naming_it(tmp_path):
    child = write(tmp_path / "child.yaml", "base: nowhere.yaml\nmodel:\n  cell: rnn\n")
    with pytest.raises(NmtError) as e:
        config.load_recipe(child)
    message = str(e.value)
    assert "\n" not in message
    assert "nowhere.yaml" in message and "no such recipe file" in message


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, id="a-b-a"),
        pytest.param({"a.yaml": "base: a.yaml\n"}, id="self"),
        pytest.param({"a.yaml": "base: ./sub/../a.yaml\n", "sub/x": ""}, id="self-other-spelling"),
        pytest.param(
            {"a.yaml": "base: b.yaml\n", "b.yaml": "base: c.yaml\n", "c.yaml": "base: b.yaml\n"}, id="a-b-c-b"
        ),
    ],
)
def test_a_base_cycle_is_an_error(tmp_path, files):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(NmtError, match="leads back to itself") as e:
        config.load_recipe(tmp_path / "a.yaml")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value, kind", [("3", "an integer"), ("[a.yaml]", "a list"), ("", "nothing")])
def test_base_must_be_a_path(tmp_path, value, kind):
    message = load_error(tmp_path, f"base: {value}\n")
    assert message.endswith(f"base must be the path of a recipe, got {kind}")


def test_errors_in_a_base_are_one_line(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  cel: rnn\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\n")
    with pytest.raises(NmtError, match="unknown key 'model.cel'; did you mean 'model.cell'") as e:
        config.load_recipe(child)
    assert "\n" not in str(e.value)
    write(tmp_path / "bad.yaml", "model: [oops\n")
    with pytest.raises(NmtError, match=r"bad\.yaml:\d+: not valid YAML"):
        config.load_recipe(write(tmp_path / "child2.yaml", "base: bad.yaml\n"))


def test_a_value_from_the_base_is_validated_with_the_childs(tmp_path):
    """The merged recipe is validated as a whole: luong_dot's sizes may come from either."""
    write(tmp_path / "base.yaml", "model:\n  attention: luong_dot\n  encoder_hidden: 8\n  decoder_hidden: 16\n")
    assert config.load_recipe(write(tmp_path / "ok.yaml", "base: base.yaml\n")).model.attention == "luong_dot"
    with pytest.raises(NmtError, match="luong_dot needs decoder_hidden"):
        config.load_recipe(write(tmp_path / "bad.yaml", "base: base.yaml\nmodel:\n  decoder_hidden: 20\n"))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n"])
def test_a_base_that_is_not_a_mapping_is_a_one_line_error(tmp_path, text):
    write(tmp_path / "base.yaml", text)
    child = write(tmp_path / "child.yaml", "base: base.yaml\nmodel:\n  cell: rnn\n")
    with pytest.raises(NmtError) as e:
        config.load_recipe(child)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "path",
    COURSE or [pytest.param(None, marks=pytest.mark.skip(reason="no recipes/course/*.yaml"))],
    ids=lambda p: p.stem if p else "none",
)
def test_course_recipes_load_and_change_only_what_they_state(path):
    import yaml

    cfg = config.load_recipe(path)
    cfg.validate()
    own = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "base" not in own:
        return
    base = config.load_recipe((path.parent / own.pop("base")).resolve())
    # every key the recipe states is what it says; every other key is the base's
    for section, keys in config.to_dict(cfg).items():
        stated = own.get(section) or {}
        for key, value in keys.items():
            want = stated[key] if key in stated else getattr(getattr(base, section), key)
            assert value == want, (path.name, section, key)


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_every_shipped_recipe_trains_in_the_precision_this_machine_runs_fastest(path):
    assert config.load_recipe(path).train.precision == "auto"
