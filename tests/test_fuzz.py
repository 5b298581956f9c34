"""Fuzzed edges (hypothesis): unit strings, --set overrides and whole YAML recipes.

Every case must end in a valid value or an FvError (the CLI's one-line, exit-2 error) -- never another exception.
"""
from __future__ import annotations

import os
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.recipe import Recipe, TOP_KEYS, from_dict, load_recipe
from fvcli.units.unit import Unit, parse_units

from conftest import FUZZ_CASES as CASES  # printed in pytest's terminal summary

SCALE = max(0.01, float(os.environ.get("FV_FUZZ_SCALE", "1")))  # `make fuzz`: 10


def _n(base: int) -> int:
    return max(1, int(base * SCALE))


FUZZ = settings(max_examples=_n(300), deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def model():
    return load_model(ModelOptions(weights="random:0"), "cpu", channels_last=False)


def _count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


layer_names = st.sampled_from(["mixed4a", "mixed3b_3x3", "conv2d0", "softmax2_pre_activation", "mixed4a_pre_relu",
                               "mixed9z", "", "../etc", "a/b", "mixed4a\x00", "ü"])
spec_text = st.text(alphabet=string.digits + ",-@: xcenterabc.", max_size=14)
unit_strings = st.one_of(
    st.builds(lambda l, s: f"{l}:{s}", layer_names, spec_text),
    st.builds(lambda k, s: f"{k}:{s}", st.sampled_from(["logit", "prob", "dream", "demo", "inceptionv1"]), spec_text),
    st.text(max_size=30),
)


@FUZZ
@given(unit_strings)
def test_unit_strings_parse_or_fail_cleanly(model, text):
    _count("units")
    try:
        units = parse_units(text, model)
    except FvError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert units and all(isinstance(u, Unit) for u in units)
    for u in units:
        assert "/" not in u.key and not u.key.startswith(".")
        if u.kind in ("channel", "neuron"):
            assert 0 <= u.channel < model.layer(u.layer).channels


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.just("auto"), st.just("../../x"))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), c, max_size=4)), max_leaves=12)
section_keys = st.sampled_from(["steps", "lr", "size", "batch_size", "seed", "kind", "decorrelate", "name", "weights",
                                "l1", "tv", "blur", "preprocess", "num_classes", "thresholds", "device", "bogus"])
recipes = st.dictionaries(
    st.one_of(st.sampled_from(list(TOP_KEYS)), st.text(max_size=6)),
    st.one_of(values, st.dictionaries(section_keys, values, max_size=5),
              st.lists(st.dictionaries(st.sampled_from(["pad", "jitter", "scale", "rotate", "crop", "x"]), values,
                                       min_size=1, max_size=2), max_size=4)),
    max_size=5,
)


@FUZZ
@given(recipes)
def test_whole_recipes_validate_or_fail_cleanly(raw):
    _count("recipes")
    try:
        rec = from_dict(raw)
    except FvError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(rec, Recipe)
    assert 1 <= rec.render.steps <= 100_000 and 8 <= rec.render.size <= 2048
    yaml.safe_dump(rec.to_dict())  # a valid recipe always serialises
    rec.hash()


set_items = st.builds(lambda k, v: f"{k}={v}",
                      st.sampled_from(["render.steps", "render.size", "render.lr", "render.batch_size", "param.kind",
                                       "transforms", "model.weights", "regularizers.tv", "render", "x.y.z", "",
                                       "render..steps", "units"]),
                      st.one_of(st.text(max_size=10), st.integers(-5, 10**9).map(str),
                                st.sampled_from(["[1, 2]", "{a: 1}", "lucid", "article", "none", "1e400", "nan"])))


@FUZZ
@given(st.lists(set_items, max_size=3))
def test_set_overrides_validate_or_fail_cleanly(items):
    _count("sets")
    try:
        load_recipe(None, items)
    except FvError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=_n(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(set_items, min_size=1, max_size=2))
def test_cli_set_overrides_exit_0_or_2_with_one_line(items):
    _count("cli")
    args = ["recipe", "show"]
    for it in items:
        args += ["--set", it]
    res = CliRunner().invoke(app, args)
    assert res.exit_code in (0, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    if res.exit_code == 2:
        err = res.stderr.strip() if hasattr(res, "stderr") else res.output.strip()
        assert err.count("\n") == 0 and err.startswith("fv: error:") or "Usage" in err


cli_units = st.one_of(
    st.lists(st.sampled_from(["block2:1", "block3:127", "block3:128", "block9:1", "logit:3", "logit:99", "prob:2",
                              "dream:block1", "block2:dir=random:3", "block2:0-2", "block2:1@3,3", "demo:logit:1",
                              "inceptionv1:mixed4a:1", "+", "-", "*", "0.5", "(", ")", " ", "@", ":", "..", "/",
                              "\x00", "é", "1e999", "nan"]), min_size=1, max_size=5).map("".join),
    st.text(max_size=16),
)


@settings(max_examples=_n(25), deadline=None, suppress_health_check=list(HealthCheck))
@given(cli_units)
def test_cli_render_units_and_expressions_exit_0_or_2_without_partial_output(tmp_path_factory, text):
    """`fv render TEXT` end to end on the small demo model: pictures, or one line + exit 2 and no files."""
    _count("cli-render")
    out = tmp_path_factory.mktemp("r") / "out"
    res = CliRunner().invoke(app, ["render", text, "-m", "demo", "--steps", "1", "--size", "16", "-o", str(out),
                                   "-q", "--device", "cpu"])
    assert res.exit_code in (0, 2), (text, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit), (text, res.exception)
    if res.exit_code == 2:
        err = res.output.strip()
        assert (err.count("\n") == 0 and err.startswith("fv: error:")) or "Usage" in err, (text, err)
        assert not out.exists(), text  # bad input writes nothing
    else:
        assert list(out.glob("*.png")) and list(out.glob("*.json"))


@settings(max_examples=_n(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(recipes)
def test_cli_recipe_files_validate_or_exit_2_with_one_line(tmp_path_factory, raw):
    """Random YAML recipe files through `fv recipe validate`: ok, or one line and exit 2."""
    _count("cli-recipes")
    path = tmp_path_factory.mktemp("y") / "recipe.yaml"
    try:
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    except yaml.YAMLError:
        return
    res = CliRunner().invoke(app, ["recipe", "validate", str(path)])
    assert res.exit_code in (0, 2), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    if res.exit_code == 2:
        assert res.output.strip().count("\n") == 0 and "error" in res.output
