"""Recipes: YAML -> frozen dataclasses, precedence, validation with dotted paths, hashing, and the recipe commands."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from fvcli.errors import FvError
from fvcli.models import Preprocess
from fvcli.recipe import CONFIG_DIR, Recipe, from_dict, load_recipe, to_yaml
from fvcli.optvis.transforms import ARTICLE, LUCID, STRONG, Crop, Jitter, Pad, Rotate, Scale

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_the_article_method_with_the_quality_transforms():
    r = load_recipe(None)
    assert r == Recipe()
    assert (r.render.steps, r.render.lr, r.render.size, r.render.batch_size) == (512, 0.05, 224, "auto")
    assert (r.param.kind, r.param.decorrelate, r.param.decay_power) == ("fourier", True, 1.0)
    assert r.transforms == STRONG and r.render.transforms_at_size == 224
    assert r.model.name == "inceptionv1" and r.model.weights is None
    assert load_recipe("default") == r == load_recipe("quality")  # configs/default.yaml spells out the defaults
    article = load_recipe("article")
    assert article.render.steps == 2560 and article.transforms == ARTICLE and article.render.thresholds == (64, 256, 1024)
    assert article.render.transforms_at_size is None  # the article's pixels at any size
    small = load_recipe("article", ["render.size=64"]).loop_settings()
    assert small.transforms == ARTICLE
    assert load_recipe("lucid").transforms == LUCID
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.render.steps = 3  # type: ignore[misc]


def test_precedence_defaults_file_set_flags(tmp_path):
    f = write(tmp_path / "r.yaml", "render:\n  steps: 100\n  size: 64\n  lr: 0.1\nparam:\n  kind: pixel\n")
    r = load_recipe(str(f), ["render.steps=50", "render.lr=0.2"], {"render.steps": 10, "render.seed": None})
    assert r.render.steps == 10  # explicit flag beats --set beats the file
    assert r.render.lr == 0.2  # --set beats the file
    assert r.render.size == 64 and r.param.kind == "pixel"  # the file beats the defaults
    assert r.render.seed == 0  # a flag left unset (None) changes nothing
    assert load_recipe(None, ["transforms=none"]).transforms == ()
    assert load_recipe(None, ["render.thresholds=[8, 32]"]).render.thresholds == (8, 32)


def test_relative_paths_are_relative_to_the_recipe_file(tmp_path):
    sub = tmp_path / "recipes"
    sub.mkdir()
    f = write(sub / "r.yaml", "model:\n  weights: ../w/inception5h.pth\n  labels: labels.txt\n")
    r = load_recipe(str(f))
    assert r.model.weights == str((tmp_path / "w" / "inception5h.pth").resolve())
    assert r.model.labels == str((sub / "labels.txt").resolve())
    g = write(sub / "g.yaml", "model:\n  weights: random:3\n")
    assert load_recipe(str(g)).model.weights == "random:3"


def test_mobilenet_config():
    r = load_recipe("mobilenet_v2")
    opts = r.model_options()
    assert opts.name == "torchvision:mobilenet_v2" and opts.num_classes == 1001
    assert opts.preprocess == Preprocess(value_range=(-1.0, 1.0))
    assert opts.weights.endswith("mobilenet_v2_imagenet/mobilenet_v2_1001_torchvision_state_dict.pt")
    assert Path(opts.weights).is_absolute() and opts.labels.endswith("imagenet_labels.txt")
    s = r.loop_settings()
    assert (s.steps, s.size, s.param, s.decorrelate, s.transforms) == (256, 224, "fourier", True, STRONG)


def test_transform_lists(tmp_path):
    f = write(tmp_path / "t.yaml", "transforms:\n  - pad: {pixels: 4, value: 0.2}\n  - jitter: 2\n"
                                   "  - scale: [0.9, 1.1]\n  - rotate: [-3, 3]\n  - crop: true\n")
    assert load_recipe(str(f)).transforms == (Pad(4, 0.2), Jitter(2), Scale((0.9, 1.1)), Rotate((-3.0, 3.0)), Crop())
    assert load_recipe(str(write(tmp_path / "n.yaml", "transforms: lucid\n"))).transforms == LUCID


@pytest.mark.parametrize("sets, words", [
    (["render.stepz=3"], ["unknown recipe key render.stepz", "did you mean: steps", "valid keys of render: steps"]),
    (["regularizers.l2=1"], ["unknown recipe key regularizers.l2", "l1, l1_constant, tv, blur"]),
    (["modl.name=x"], ["unknown recipe key modl", "did you mean: model"]),
    (["render.size=4"], ["render.size", "4 out of range [8, 2048]"]),
    (["render.steps=1e9"], ["render.steps"]),
    (["render.lr=-1"], ["render.lr", "out of range"]),
    (["render.lr=nan"], ["render.lr", "expected a number"]),
    (["render.steps=true"], ["render.steps", "expected an integer"]),
    (["param.decorrelate=maybe"], ["param.decorrelate", "expected true or false"]),
    (["param.kind=fft"], ["param.kind", "'fft' is not one of fourier, pixel"]),
    (["render.precision=fp8"], ["render.precision", "fp32, bf16, fp16"]),
    (["render.batch_size=0"], ["render.batch_size", "out of range"]),
    (["render.thresholds=7"], ["render.thresholds", "expected a list"]),
    (["transforms=articel"], ["unknown preset 'articel'", "did you mean: article", "article, lucid, strong, none"]),
    (["render=3"], ["recipe key render", "expected a mapping"]),
    (["render.steps.x=3"], ["recipe key render.steps", "expected an integer"]),
    (["steps"], ["bad --set 'steps'", "key=value"]),
    (["model.preprocess={mean: [1, 2]}"], ["model.preprocess"]),
    (["units=mixed4a:1"], ["recipe key units", "list of unit strings"]),
])
def test_bad_keys_and_values_name_the_dotted_path(sets, words):
    with pytest.raises(FvError) as err:
        load_recipe(None, sets)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_bad_recipe_files(tmp_path):
    with pytest.raises(FvError, match=r"malformed YAML in recipe .*a\.yaml at line 2, column \d+: mapping values are not allowed"):
        load_recipe(str(write(tmp_path / "a.yaml", "render:\n  steps: : 3\n")))
    with pytest.raises(FvError, match=r"must be a mapping"):
        load_recipe(str(write(tmp_path / "b.yaml", "- 1\n- 2\n")))
    with pytest.raises(FvError, match=r"transforms\[1\]: each step is a one-key mapping"):
        load_recipe(str(write(tmp_path / "c.yaml", "transforms:\n  - pad: 2\n  - [1, 2]\n")))
    with pytest.raises(FvError, match=r"transforms\[0\].scale\[1\]"):
        load_recipe(str(write(tmp_path / "d.yaml", "transforms:\n  - scale: [1.0, -2]\n")))
    with pytest.raises(FvError, match=r"recipe 'nope' not found.*article, default"):
        load_recipe("nope")


def test_hash_covers_what_changes_the_pictures():
    base = load_recipe(None)
    same = load_recipe(None, ["render.batch_size=7", "render.device=cpu", "units=[mixed4a:1]"])
    assert base.hash() == same.hash() and len(base.hash()) == 16
    for change in ("render.steps=64", "render.seed=1", "render.size=128", "param.kind=pixel", "transforms=lucid",
                   "regularizers.tv=0.1", "model.weights=random:1"):
        assert load_recipe(None, [change]).hash() != base.hash(), change


@pytest.mark.parametrize("name", [p.stem for p in CONFIGS])
def test_round_trips(name):
    r = load_recipe(name)
    assert from_dict(r.to_dict()) == r
    assert from_dict(yaml.safe_load(to_yaml(r))) == r


# -- the commands ------------------------------------------------------------------------------------------------


def test_recipe_show(cli):
    r = cli("recipe", "show", "--recipe", "article", "--set", "render.steps=64", "--size", 96)
    assert r.exit_code == 0, r.output
    header, body = r.stdout.split("\n", 1)
    shown = from_dict(yaml.safe_load(body))
    assert shown.render.steps == 64 and shown.render.size == 96 and shown.transforms == ARTICLE
    assert header == f"# recipe hash {shown.hash()}"
    bad = cli("recipe", "show", "--set", "render.sizee=3")
    assert bad.exit_code == 2 and "render.sizee" in bad.stderr and "did you mean: size" in bad.stderr


def test_recipe_validate(cli, tmp_path):
    r = cli("recipe", "validate", *CONFIGS)
    assert r.exit_code == 0, r.output
    assert [ln.split()[0] for ln in r.stdout.splitlines()] == ["ok"] * len(CONFIGS)
    bad = write(tmp_path / "bad.yaml", "param:\n  kind: fft\n")
    good = write(tmp_path / "good.yaml", "render:\n  steps: 8\n")
    r = cli("recipe", "validate", bad, good)
    assert r.exit_code == 2
    assert r.stdout.startswith(f"ok {good} (hash ")
    assert r.stderr.strip() == f"fv: error: {bad}: recipe key param.kind: 'fft' is not one of fourier, pixel, maco"


def test_units_from_the_recipe_file(cli, tmp_path):
    f = write(tmp_path / "u.yaml", "model:\n  weights: random:0\nrender:\n  steps: 2\n  size: 32\n  device: cpu\n"
                                   "units: ['mixed4a:3']\n")
    r = cli("render", "-q", "-r", f, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "mixed4a-00003.png").is_file()


def test_exponent_numbers_without_a_dot(tmp_path):
    """YAML 1.1 reads `1e-4` (no dot) as a string; a number key takes it as the number it spells."""
    r = load_recipe(None, ["regularizers.l1=1e-4", "render.lr=5E-2"])
    assert (r.regularizers.l1, r.render.lr) == (1e-4, 0.05)
    assert load_recipe(str(write(tmp_path / "e.yaml", "regularizers: {tv: 2.5e-3, blur: 1e-1}\n"))).regularizers.tv == 2.5e-3
    with pytest.raises(FvError, match="render.lr: expected a number, got 'fast'"):
        load_recipe(None, ["render.lr=fast"])
    with pytest.raises(FvError, match="render.steps"):
        load_recipe(None, ["render.steps=1e2"])  # integers stay integers


def test_recipes_from_before_the_default_changed_keep_their_hashes():
    """Hashes of fv 0.x before `quality` became the default (computed with that code): the article's and lucid's
    recipes are unchanged, and the old default is the new one with the article's transforms as written."""
    assert load_recipe("article").hash() == "39dd6d5c70d6caa4"
    assert load_recipe("lucid").hash() == "339d9f7a96320c83"
    # the article's Adam, 1/f from step 0 and full size from step 0 (the default until #29)
    article_opt = ["render.beta1=0.9", "param.decay_ramp=0", "render.coarse_steps=0"]
    old_default = load_recipe(None, ["transforms=article", "render.transforms_at_size=null", *article_opt])
    assert old_default.hash() == "286c848f260cfe5e" != load_recipe(None).hash()
    # the default before issue #29 (beta1 0.5, the decay schedule): the new one with the article's optimizer/spectrum
    assert load_recipe(None, article_opt).hash() == "801a3b5aa2d8ee2a" != load_recipe(None).hash()
    # the default before #29's sixth session (a coarse phase at 224 px and more): full size from the first step. At
    # 128 px it renders what it did, under the hash it had; at 224 px what `--set render.coarse_steps=96` did
    assert load_recipe(None, ["render.coarse_steps=0"]).hash() == "5f486f29f77c2a58" != load_recipe(None).hash()
    assert load_recipe(None, ["render.size=128"]).hash() == "32537151884d2d6e"
    assert load_recipe(None).hash() == "10003571612fc735" == load_recipe("fast").hash()
    # the shipped recipe's weights are an absolute path once resolved, so pin its hash with a path-free model
    portable = ["model.weights=random:0", "model.labels=null"]
    assert load_recipe("mobilenet_v2", [*portable, *article_opt]).hash() == "8cdbebb984a2675c"  # as fv computed it then
    assert load_recipe("mobilenet_v2", portable).hash() != "8cdbebb984a2675c"
    assert load_recipe("mobilenet_v2", [*portable, "render.coarse_steps=0"]).hash() == "23c3056c9c3272d7"
