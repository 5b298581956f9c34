"""Objective expressions: what parses (and into which objective), what does not (and where), and that the parsed
objective is what gets optimized."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.errors import FvError
from fvcli.units.expr import ExprError, ExprUnit, is_expression, parse_expression, parse_unit_arg, tokenize
from fvcli.models import ModelOptions, load_model
from fvcli.optvis.objectives import Channel, ClassLogit, ClassProb, Direction, LayerDream, Neuron, Sum
from fvcli.recipe import load_recipe
from fvcli.runner.batch import run_batch
from fvcli.units.unit import Unit


@pytest.fixture(scope="module")
def model():
    return load_model(ModelOptions(weights="random:0"), "cpu", channels_last=False)


def terms(u: ExprUnit) -> list[tuple[float, object]]:
    o = u.objective()
    return list(o.terms) if isinstance(o, Sum) else [(1.0, o)]


GOOD = [
    ("mixed4a:476 + mixed4a:460", "mixed4a:476 + mixed4a:460", [(1.0, Channel("mixed4a", 476)), (1.0, Channel("mixed4a", 460))]),
    ("-mixed4a:492", "-mixed4a:492", [(-1.0, Channel("mixed4a", 492))]),
    ("0.2*mixed4a:20 + 0.8*mixed4a:21", "0.2*mixed4a:20 + 0.8*mixed4a:21",
     [(0.2, Channel("mixed4a", 20)), (0.8, Channel("mixed4a", 21))]),
    ("mixed4a:11@7,7 - 0.5*mixed4a:11", "mixed4a:11@7,7 - 0.5*mixed4a:11",
     [(1.0, Neuron("mixed4a", 11, 7, 7)), (-0.5, Channel("mixed4a", 11))]),
    ("mixed4a:11@center+mixed4a:12", "mixed4a:11@center + mixed4a:12",
     [(1.0, Neuron("mixed4a", 11)), (1.0, Channel("mixed4a", 12))]),
    ("logit:208 - 0.1*prob:3", "logit:208 - 0.1*prob:3",
     [(1.0, ClassLogit("softmax2_pre_activation", 208)), (-0.1, ClassProb("softmax2_pre_activation", 3))]),
    ("2*(mixed4b:1 + mixed4b:2) - mixed4b:1", "mixed4b:1 + 2*mixed4b:2",  # like terms merged
     [(1.0, Channel("mixed4b", 1)), (2.0, Channel("mixed4b", 2))]),
    ("mixed4a:476-mixed4a:460", "mixed4a:476 - mixed4a:460", [(1.0, Channel("mixed4a", 476)), (-1.0, Channel("mixed4a", 460))]),
    ("mixed4a:3 * 0.5", "0.5*mixed4a:3", [(0.5, Channel("mixed4a", 3))]),
    ("1e-3*dream:mixed3a", "0.001*dream:mixed3a", [(0.001, LayerDream("mixed3a"))]),
    ("--mixed4a:1", "mixed4a:1", [(1.0, Channel("mixed4a", 1))]),
    ("-(mixed4a:1 - 2*mixed4a:2)", "-mixed4a:1 + 2*mixed4a:2", [(-1.0, Channel("mixed4a", 1)), (2.0, Channel("mixed4a", 2))]),
]


@pytest.mark.parametrize("text,normalized,expected", GOOD, ids=[g[0] for g in GOOD])
def test_good_expressions_parse_into_typed_objectives(model, text, normalized, expected):
    u = parse_expression(text, model)
    assert u.normalized == normalized
    got = terms(u)
    assert [(pytest.approx(w), o) for w, o in expected] == [(w, o) for w, o in got]


def test_direction_atoms(model):
    u = parse_expression("mixed4d:dir=random:7", model)
    (w, d), = terms(u)
    assert isinstance(d, Direction) and d.layer == "mixed4d" and len(d.vector) == 528 and d.cossim_pow == 0
    u2 = parse_expression("mixed4d:dir=random:7:cossim=2 + mixed4d:3", model)
    (_, d2), (_, c) = terms(u2)
    assert d2.cossim_pow == 2 and d2.vector == d.vector and c == Channel("mixed4d", 3)
    assert u2.normalized == "mixed4d:dir=random:7:cossim=2 + mixed4d:3"


def test_keys_are_safe_deterministic_and_spelling_independent(model):
    same = ["mixed4a:476 + mixed4a:460", "  mixed4a:476+mixed4a:460 ", "(mixed4a:476) + 1*mixed4a:460",
            "mixed4a:476 + 0.5*mixed4a:460 + 0.5*mixed4a:460"]
    keys = {parse_expression(t, model).key for t in same}
    assert len(keys) == 1
    key = keys.pop()
    assert key.startswith("expr-mixed4a_476_mixed4a_460-") and "/" not in key and " " not in key
    others = ["mixed4a:476 - mixed4a:460", "-mixed4a:476 + mixed4a:460", "mixed4a:460 + 2*mixed4a:476"]
    assert len({parse_expression(t, model).key for t in others} | {key}) == 4


BAD = [  # text, column (1-based), words in the message
    ("mixed4a:476 + * mixed4a:460", 15, "expected a unit"),
    ("mixed4a:476 +", 14, "found the end"),
    ("mixed4a:476 * mixed4a:460", 15, "cannot multiply two objectives"),
    ("mixed4a:1 + 3", 13, "cannot add a number"),
    ("(mixed4a:1 + mixed4a:2", 23, "expected ')'"),
    ("mixed4a:1 )", 11, "expected '+', '-', '*' or the end"),
    ("mixed4a:1 $ mixed4a:2", 11, "unexpected character '$'"),
    ("mixed4a:1 + mixed9z:2", 13, "unknown layer 'mixed9z'"),
    ("mixed4a:1 + mixed4a:508", 13, "valid 0-507"),
    ("mixed4a:1 - mixed4a:1", 1, "weights cancel out"),
    ("3*4", 1, "is a number"),
    ("", 1, "empty expression"),
    ("mixed4d:dir=random:x", 20, "integer seed"),
    ("mixed4d:dir=random:7:cossim=abc", 29, "expected a number after ':cossim='"),
    ("mixed4d:dir=missing.npy", 13, "cannot read direction file"),
    ("mixed4a:1 + mixed4a:3,4", 22, "names one channel"),
]


@pytest.mark.parametrize("text,column,words", BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_expressions_point_at_the_offending_character(model, text, column, words):
    with pytest.raises(ExprError) as info:
        parse_expression(text, model)
    exc = info.value
    assert exc.column == column
    msg = str(exc)
    assert f"at column {column}:" in msg and words in msg
    assert msg.endswith(text[: column - 1] + "^" + text[column - 1 :])  # the expression, marked at the column
    assert "\n" not in msg and exc.exit_code == 2


def test_is_expression_keeps_plain_unit_syntax(model):
    assert not is_expression("mixed4a:0-15") and not is_expression("mixed4a:3,7") and not is_expression("mixed4a:11@7,7")
    assert not is_expression("logit:Shih-Tzu")
    for t in ("mixed4a:1+mixed4a:2", "-mixed4a:1", "mixed4a:1-mixed4a:2", "0.5*mixed4a:1", "mixed4d:dir=random:1", "(mixed4a:1)"):
        assert is_expression(t)
    assert parse_unit_arg("mixed4a:0-2", model) == [Unit("channel", "mixed4a", c) for c in range(3)]
    assert isinstance(parse_unit_arg("mixed4a:0 - mixed4a:2", model)[0], ExprUnit)


def test_tokenizer_names_with_dots_and_digit_layers():
    kinds = [(t.kind, t.text) for t in tokenize("features.14:7-0.5*features.14:3")]
    assert kinds == [("atom", "features.14:7"), ("op", "-"), ("num", "0.5"), ("op", "*"), ("atom", "features.14:3"),
                     ("end", "")]
    assert [t.text for t in tokenize("logit:Shih-Tzu - logit:pug-mixed4a:3")][:5] == \
        ["logit:Shih-Tzu", "-", "logit:pug", "-", "mixed4a:3"]


def test_expression_scores_are_the_weighted_sum(model):
    u = parse_expression("0.2*mixed4a:20 - 0.8*mixed4a:21@1,2", model)
    act = torch.randn(3, 508, 4, 4)
    got = u.objective()({"mixed4a": act}, torch.zeros(3, 3, 8, 8))
    want = 0.2 * act[:, 20].mean((1, 2)) - 0.8 * act[:, 21, 2, 1]
    assert torch.allclose(got, want)


def test_expression_objective_rises_under_optimization(model):
    """Rendered through the ordinary runner: the expression's score rises (inceptionv1, random:0 weights, 64 px,
    48 steps; measured 23 -> 186 for the sum, 3 -> 59 for the difference)."""
    rec = load_recipe(None, [], {"model.weights": "random:0", "render.steps": 48, "render.size": 64,
                                 "render.thresholds": [0]})
    units = [parse_expression(t, model) for t in ("mixed4a:476 + mixed4a:460", "0.5*mixed4a:20 - mixed4a:21")]
    res = run_batch(model, rec, units)
    first, last = res.snapshots[0].scores, res.snapshots[-1].scores
    assert (last > first + 0.5 * first.abs() + 1).all(), (first, last)


def test_cli_expression_error_is_one_line_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["render", "--weights", "random:0", "-o", str(tmp_path), "-q",
                                 "mixed4a:476 + * mixed4a:460"])
    assert r.exit_code == 2
    assert "fv: error: bad objective expression at column 15" in r.output
    assert "mixed4a:476 + ^* mixed4a:460" in r.output
    assert not list(tmp_path.iterdir())


def test_cli_renders_an_expression_after_double_dash(tmp_path):
    r = CliRunner().invoke(app, ["render", "--weights", "random:0", "--steps", "2", "--size", "32", "-o",
                                 str(tmp_path), "-q", "--", "-mixed4a:492"])
    assert r.exit_code == 0, r.output
    (png,) = tmp_path.glob("expr-neg_mixed4a_492-*.png")
    import json

    rec = json.loads(png.with_suffix(".json").read_text())
    assert rec["unit"] == "-mixed4a:492" and rec["kind"] == "expr" and rec["objective"] == "- channel mixed4a:492"


def test_errors_are_fv_errors(model):
    with pytest.raises(FvError):
        parse_unit_arg("mixed4a:1 +", model)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_pieces = st.sampled_from(["mixed4a:1", "mixed4a:507", "mixed4a:508", "logit:3", "prob:tiger_cat", "dream:mixed3a",
                           "mixed4d:dir=random:7", "mixed4d:dir=random:", ":cossim=2", "dir=", "@7,7", "@center", "@",
                           "+", "-", "*", "(", ")", " ", "0.5", "1e-3", "1e999", ".", ",", ":", "x", "Shih-Tzu",
                           "features.14:3", "\x00", "é", "$", "nan", "inf"])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.lists(_pieces, max_size=8).map("".join), st.text(max_size=30)))
def test_fuzzed_arguments_parse_or_raise_fv_error(model, text):
    """Any argument becomes units or an FvError (the CLI's one-line exit-2 error), never another exception."""
    from conftest import FUZZ_CASES

    FUZZ_CASES["expressions"] = FUZZ_CASES.get("expressions", 0) + 1
    try:
        out = parse_unit_arg(text, model)
    except FvError as exc:
        assert "\n" not in str(exc)
        return
    assert out and all(u.key and "/" not in u.key for u in out)
