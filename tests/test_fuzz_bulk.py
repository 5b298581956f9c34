"""Fuzzing in bulk: >= 10,000 seeded cases per suite run over every text fv parses, with zero tracebacks.

Why a second fuzz file: hypothesis (tests/test_fuzz.py) shrinks failures well but spends milliseconds per example on
generation; the bulk of the count comes from here, where a seeded `random.Random` mutates realistic inputs (valid
ones with characters inserted, dropped, swapped or replaced by hostile ones) so most cases land near the edges of the
grammar. Every case must end in a value or in an FvError whose message is one line and names the bad input; any
other exception fails the test with the offending input. FV_FUZZ_SCALE multiplies every count (`make fuzz` = 10).
Counts go into conftest.FUZZ_CASES, printed in pytest's summary.
"""
from __future__ import annotations

import os
import random
import re
import string
from pathlib import Path

import pytest
import yaml
from conftest import FUZZ_CASES

from fvcli.errors import FvError
from fvcli.models import ModelOptions, get_spec, load_model, parse_layouts
from fvcli.recipe import TOP_KEYS, from_dict
from fvcli.recipe.files import parse_set
from fvcli.units.expr import parse_expression
from fvcli.units.unit import parse_units

SCALE = max(0.01, float(os.environ.get("FV_FUZZ_SCALE", "1")))
SEED = int(os.environ.get("FV_FUZZ_SEED", "22"))
HOSTILE = ["\x00", "\n", "é", "ü", "∞", "../", "/", "\\", ":", "@", ",", "-", "+", "*", "(", ")", "..", " ", "=",
           "1e999", "nan", "-1", "0", "99999999999999999999", "[", "]", "{", "}", "'", '"', "#", "&a", "*a", "!!python"]


def n(base: int) -> int:
    return max(1, int(base * SCALE))


def count(kind: str, k: int = 1) -> None:
    FUZZ_CASES[kind] = FUZZ_CASES.get(kind, 0) + k


def mutate(rng: random.Random, text: str, edits: int | None = None) -> str:
    """`text` with 0-3 random edits (insert / delete / replace / duplicate a slice)."""
    s = list(text)
    for _ in range(rng.randint(0, 3) if edits is None else edits):
        op = rng.randrange(4)
        i = rng.randint(0, len(s))
        if op == 0:
            s[i:i] = list(rng.choice(HOSTILE + list(string.printable[:62])))
        elif op == 1 and s:
            del s[min(i, len(s) - 1)]
        elif op == 2 and s:
            s[min(i, len(s) - 1)] = rng.choice(string.printable)
        elif s:
            j = rng.randint(0, len(s))
            s[i:i] = s[min(i, j):max(i, j)][:8]
    return "".join(s)


def names(msg: str, text: str) -> bool:
    """Does `msg` name (part of) the bad input `text`? Plain or repr-escaped, carets of expression errors removed;
    an empty part is named as ''."""
    parts = [text.strip()] + re.split(r"[\s:@,()=+*.\[\]{}\-]+", text) + [q.strip() for q in re.split("[:@=]", text)]
    quoted = re.findall(r"'([^']+)'", msg)  # e.g. "unexpected character '^'"
    return (any(p and (p in m or repr(p)[1:-1] in m) for p in parts for m in (msg, msg.replace("^", "")))
            or "''" in msg or any(q in text for q in quoted))


def rejected(exc: FvError, case: object) -> None:
    """The clean-rejection contract: a non-empty one-line message naming the bad value (for text inputs)."""
    msg = str(exc)
    assert msg and "\n" not in msg, (case, msg)
    if isinstance(case, str) and case.strip():
        assert names(msg, case), (case, msg)


@pytest.fixture(scope="module")
def demo():
    return load_model(ModelOptions(name="demo"), "cpu")


@pytest.fixture(scope="module")
def iv1_random():
    return load_model(ModelOptions(weights="random:0"), "cpu")


UNIT_SEEDS = ["block2:1", "block3:0-7", "block2:1@3,3", "block1:2,5,7", "logit:3", "prob:2", "dream:block1",
              "block2:1@center", "demo:block3:4", "block3:x", "mixed4a:11", "mixed4a:0-15", "mixed4a:11@7,7",
              "inceptionv1:mixed4a:1", "logit:208", "softmax2_pre_activation:3", "mixed3b_3x3:1-4"]


def test_units_bulk(demo, iv1_random):
    rng = random.Random(SEED)
    for i in range(n(3000)):
        text = mutate(rng, rng.choice(UNIT_SEEDS))
        model = demo if i % 2 else iv1_random
        try:
            units = parse_units(text, model)
        except FvError as exc:
            rejected(exc, text)
        else:
            assert units, text
            for u in units:
                assert "/" not in u.key and not u.key.startswith("."), (text, u.key)
        count("units")


EXPR_SEEDS = ["block2:1 + 0.5*block2:3", "-block3:4", "block2:dir=random:7", "2*(block1:1 - block1:2)",
              "mixed4a:476 + 0.5*mixed4a:460", "-mixed4a:492", "mixed4d:dir=random:7", "0.5*logit:3 + prob:2",
              "block2:1 * block2:2", "(block2:1)", "block2:1@3,3 - block2:1@4,4"]


def test_expressions_bulk(demo, iv1_random):
    rng = random.Random(SEED + 1)
    for i in range(n(2000)):
        text = mutate(rng, rng.choice(EXPR_SEEDS))
        try:
            parse_expression(text, demo if i % 2 else iv1_random)
        except FvError as exc:
            rejected(exc, text)
        count("expressions")


SET_KEYS = ["render.steps", "render.size", "render.lr", "render.batch_size", "render.seed", "param.kind",
            "param.decorrelate", "transforms", "model.weights", "model.name", "model.num_classes", "regularizers.tv",
            "regularizers.l1", "objective.kind", "variants.sign", "variants.diversity", "units", "render", "x.y",
            "model.layouts", "examples.size", "sweep.shards"]
SET_VALUES = ["64", "0", "-3", "1e400", "nan", "inf", "lucid", "article", "fft", "none", "null", "true", "[1, 2]",
              "{a: 1}", "random:3", "'a'", "128", "0.05", "&x 1", "*x", "!!python/object:os.system", "[", "demo"]


def test_set_values_bulk():
    rng = random.Random(SEED + 2)
    for _ in range(n(2000)):
        item = mutate(rng, f"{rng.choice(SET_KEYS)}={rng.choice(SET_VALUES)}", rng.randint(0, 2))
        try:
            key, value = parse_set(item)
            raw: dict = {}
            d = raw
            for part in key[:-1]:
                d = d.setdefault(part, {})
                if not isinstance(d, dict):
                    break
            else:
                d[key[-1]] = value
            from_dict(raw)
        except FvError as exc:
            rejected(exc, item)
        count("sets")


def random_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 2 or r < 0.6:
        return rng.choice([None, True, False, 0, -1, 1, 7, 64, 10**12, 0.5, -0.0, float("nan"), float("inf"), "",
                           "auto", "lucid", "fft", "pixel", "random:1", "../../x", "\x00", "mixed4a", "tokens", [],
                           {}, rng.randint(-10, 5000), rng.random() * 10, mutate(rng, "block2:1")])
    if r < 0.8:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["steps", "lr", "size", "batch_size", "seed", "kind", "decorrelate", "name", "weights", "l1", "tv",
            "layout", "prefix", "grid", "pad", "jitter", "scale", "rotate", "bogus"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def test_recipe_dicts_bulk():
    rng = random.Random(SEED + 3)
    top = sorted(TOP_KEYS) + ["bogus", ""]
    for _ in range(n(1500)):
        raw = {rng.choice(top): random_value(rng) for _ in range(rng.randint(0, 4))}
        try:
            rec = from_dict(raw)
        except FvError as exc:
            rejected(exc, raw)
        else:
            yaml.safe_dump(rec.to_dict())
        count("recipes")


LAYOUT_KEYS = ["block2", "blocks.*", "mixed4a", "*", "", "blocks.6", "x?"]
LAYOUT_VALUES = ["channels", "tokens", "flat", "nchw", "nhwc", "bogus", None, 3, {"layout": "tokens"},
                 {"layout": "tokens", "prefix": 1, "grid": [14, 14]}, {"prefix": -1}, {"grid": [0, 3]},
                 {"grid": "14x14"}, {"layout": "channels", "prefix": 1}, {"extra": 1}, {"grid": [True, 2]}]


def test_layouts_bulk():
    rng = random.Random(SEED + 4)
    for _ in range(n(1000)):
        raw = {rng.choice(LAYOUT_KEYS): rng.choice(LAYOUT_VALUES) for _ in range(rng.randint(0, 3))}
        if rng.random() < 0.1:
            raw = rng.choice([[1], "tokens", 3])
        try:
            parse_layouts(raw)
        except FvError as exc:
            rejected(exc, raw)
        count("layouts")


MODEL_SEEDS = ["inceptionv1", "demo", "mobilenet_v2", "torchvision:googlenet", "torchvision:resnet18",
               "torchvision:nope", "timm:x", "net.py:build", "pkg.module:build", "./no/such/file.py:build"]


def test_model_specs_bulk():
    rng = random.Random(SEED + 5)
    for _ in range(n(1000)):
        name = mutate(rng, rng.choice(MODEL_SEEDS))
        if name.startswith("timm:") or (":" in name and not name.endswith(".py") and "." in name.split(":")[0]
                                        and not name.startswith("torchvision:")):
            name = "x" + name  # never import a real module or timm from random text
        try:
            get_spec(name)
        except FvError as exc:
            rejected(exc, name)
        count("model-specs")


def _odd_file(rng: random.Random, path: Path) -> None:
    kind = rng.randrange(6)
    if kind == 0:
        path.write_bytes(b"")
    elif kind == 1:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
    elif kind == 2:
        path.mkdir()
    elif kind == 3:
        path.symlink_to(path.parent / "nowhere")
    elif kind == 4:
        path.write_text("not an image")
    else:
        path.write_bytes(os.urandom(rng.randint(1, 64)))


def test_image_folders_bulk(tmp_path):
    from fvcli.examples import list_images

    rng = random.Random(SEED + 6)
    names = ["a.png", "B.JPG", ".hidden.png", "x.webp", "y.bmp", "z.gif", "no_ext", "é.jpeg", "sp ace.png", "d.png.txt"]
    for i in range(n(200)):
        root = tmp_path / f"f{i}"
        root.mkdir()
        for name in rng.sample(names, rng.randint(0, 5)):
            sub = root / rng.choice(["", "sub", ".hid"])
            sub.mkdir(exist_ok=True)
            _odd_file(rng, sub / name)
        try:
            folder = list_images(root, limit=rng.choice([None, 1, 3]), sample=rng.choice([None, 2]), seed=i)
        except FvError as exc:
            rejected(exc, sorted(p.name for p in root.rglob("*")))
        else:
            assert folder.files and all(not f.startswith(".") and "/." not in f for f in folder.files)
            folder.signature()
        count("image-folders")


def test_a_direction_path_with_a_nul_byte_is_a_clean_error(demo):
    """Found by this file at FV_FUZZ_SCALE=10: `dir=` followed by a NUL byte raised a bare ValueError
    ('embedded null byte') out of Path.read_bytes -- a traceback instead of a one-line message."""
    with pytest.raises(FvError, match=r"bad direction file path '\\x00x.npy'"):
        parse_expression("block2:dir=\x00x.npy", demo)
