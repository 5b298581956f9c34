"""`fv examples`: dataset examples from a folder, with the real ImageNet MobileNetV2 (skipped when ../shared is absent).

The folder holds the three shared photos among ~40 synthetic noise / texture images generated here. Checks: the
planted photos rank first for their classes and for a channel (against an independent brute-force pass); the
streaming top-k / bottom-k equals a brute-force sort of every score exactly, for any batch size; the receptive
fields match hand-derived values; a pass interrupted (in-process, and by SIGKILL in a subprocess) resumes to the same
result as an uninterrupted one; unreadable files are skipped and counted; an empty folder is a clear error.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fvcli.examples import scan as ex
from fvcli.errors import FvError
from fvcli.examples import (
    ExampleSettings,
    StreamState,
    checkpoint_path,
    list_images,
    load_image,
    merge_extreme,
    parse_example_units,
    pass_id,
    run_examples,
    write_examples,
)
from fvcli.models import Capture
from fvcli.models.receptive import receptive_field

from conftest import MOBILENET_DIR, write_demo_images

PHOTOS = MOBILENET_DIR / "photos"
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny renders run on one thread


# ----------------------------------------------------------------------------------------------------------------
# A folder with planted content


def synthetic_image(i: int) -> np.ndarray:
    """Noise, stripes, checkerboards, gradients and blobs of varied sizes (none looks like a cat or a coffee)."""
    rng = np.random.default_rng(1000 + i)
    h, w = int(rng.integers(48, 140)), int(rng.integers(48, 140))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = i % 5
    if kind == 0:
        a = rng.random((h, w, 3))
    elif kind == 1:
        t = rng.uniform(0, np.pi)
        f = rng.uniform(0.1, 0.8)
        a = 0.5 + 0.5 * np.sin(f * (np.cos(t) * xx + np.sin(t) * yy))[..., None] * rng.random(3)
    elif kind == 2:
        s = int(rng.integers(3, 16))
        a = (((xx // s + yy // s) % 2)[..., None] * rng.random(3) + (1 - ((xx // s + yy // s) % 2))[..., None] * rng.random(3))
    elif kind == 3:
        a = np.stack([xx / w, yy / h, np.full_like(xx, rng.random())], -1)
    else:
        a = np.zeros((h, w, 3))
        for _ in range(5):
            cy, cx, r = rng.random() * h, rng.random() * w, rng.uniform(5, 30)
            a += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.random(3)
    return (np.clip(a, 0, 1) * 255).astype(np.uint8)


def make_folder(root: Path, n_synthetic: int = 40) -> Path:
    """ImageFolder layout (class folders, one nested), mixed formats, the 3 shared photos under planted/."""
    (root / "planted").mkdir(parents=True)
    for p in PHOTOS.iterdir():
        shutil.copy(p, root / "planted" / p.name)
    exts = ("png", "jpg", "webp", "bmp")
    for i in range(n_synthetic):
        d = root / ("noise" if i % 2 else "texture") / ("deep" if i % 7 == 0 else "")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_image(i)).save(d / f"s{i:02d}.{exts[i % 4]}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mobilenet) -> Path:
    return make_folder(tmp_path_factory.mktemp("examples") / "imgs")


def _settings(**kw) -> ExampleSettings:
    base = dict(top_k=5, batch_size=8, workers=0, checkpoint_every=2)
    base.update(kw)
    return ExampleSettings(**base)


PLANTED_UNITS = ["logit:tiger_cat", "logit:espresso", "logit:military_uniform", "features.14:4", "features.7:3@5,5"]


@pytest.fixture(scope="module")
def planted(folder, mobilenet, tmp_path_factory):
    """One pass at the native 224 px over the planted folder, with two data-loader workers; records written."""
    units = parse_example_units(PLANTED_UNITS, mobilenet)
    res = run_examples(mobilenet, units, list_images(folder), _settings(workers=2))
    out = tmp_path_factory.mktemp("planted-out")
    summary = write_examples(out, res)
    return res, out, summary


# ----------------------------------------------------------------------------------------------------------------
# Planted content ranks first


def _record(out: Path, unit) -> dict:
    return json.loads((out / f"{unit.key}.examples.json").read_text())


def test_planted_photos_rank_first_for_their_classes(planted):
    res, out, _ = planted
    want = ["chelsea.png", "coffee.png", "grace_hopper.bmp"]  # tiger cat, espresso, military uniform
    for u, photo in zip(res.units[:3], want):
        rec = _record(out, u)
        top = rec["top"]
        assert top[0]["relpath"] == f"planted/{photo}", (rec["unit"], [e["relpath"] for e in top])
        # the winning photo wins by a margin over every synthetic image
        assert top[0]["activation"] > top[1]["activation"] + 1.0
        assert rec["class_label"] and rec["weights_sha256"] == res.model.weights_sha256
        assert rec["model"] == "torchvision:mobilenet_v2" and rec["readable"] == 43
        # logits have no position: the example is the whole square the network saw
        w, h = top[0]["image_size"]
        s = min(w, h)
        assert top[0]["crop_box"] == pytest.approx([(w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2])


def _brute_channel(model, folder, files, layer, channel, size):
    """An independent pass: every image preprocessed alone, all in one forward, max over positions."""
    x = torch.stack([torch.from_numpy(load_image(folder / f, size)[0]).permute(2, 0, 1) for f in files])
    x = model.preprocess.apply(x.float() / 255).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), Capture(model, [layer]) as cap:
        a = cap(x)[layer][:, channel]  # (N, H, W)
    mx, arg = a.flatten(1).max(1)
    return mx, arg, a.shape[-1]


def test_channel_examples_match_brute_force_and_crop_at_the_maximum(planted, folder, mobilenet):
    res, out, _ = planted
    u = res.units[3]  # features.14:4
    rec = _record(out, u)
    mx, arg, w = _brute_channel(mobilenet, folder, res.folder.files, u.layer, u.channel, 224)
    order = sorted(range(len(mx)), key=lambda i: (-float(mx[i]), i))
    got = [e["index"] for e in rec["top"]]
    assert got[:3] == order[:3]
    assert {res.folder.files[i] for i in got[:3]} == {f"planted/{p.name}" for p in PHOTOS.iterdir()}
    np.testing.assert_allclose([e["activation"] for e in rec["top"]], mx[got].numpy(), rtol=1e-4, atol=1e-4)
    rf = res.fields[u.layer]
    assert rec["receptive_field"]["size"] == rf.size and rf.stride == 32
    for e in rec["top"]:
        i = e["index"]
        assert e["position"] == {"x": int(arg[i]) % w, "y": int(arg[i]) // w}
        # the crop is the receptive field around that position, mapped back to the original image
        iw, ih = e["image_size"]
        s = min(iw, ih)
        f = s / 224
        cx = (iw - s) / 2 + (rf.offset + e["position"]["x"] * rf.stride) * f
        cy = (ih - s) / 2 + (rf.offset + e["position"]["y"] * rf.stride) * f
        l, t, r, b = e["crop_box"]
        assert l <= cx <= r and t <= cy <= b
        assert r - l <= rf.size * f + 0.01 and b - t <= rf.size * f + 0.01
        assert 0 <= l < r <= iw and 0 <= t < b <= ih
    # bottom-k: the lowest maxima, lowest first
    low = sorted(range(len(mx)), key=lambda i: (float(mx[i]), i))
    assert [e["index"] for e in rec["bottom"]][:3] == low[:3]


def test_records_and_grids_are_written(planted):
    res, out, summary = planted
    for u in res.units:
        rec = _record(out, u)
        assert rec["examples_png"] == f"{u.key}.examples.png"
        png = Image.open(out / rec["examples_png"])
        assert png.size[0] > 5 * 96 and png.size[1] > 4 * 96  # 4 rows of k=5 tiles
        sp = rec["spectrum"]
        assert list(sp) == ["minimum", "slightly_negative", "slightly_positive", "maximum"]
        assert sp["slightly_negative"]["exact"] and sp["slightly_negative"]["quantile"] == 0.4
        vals = lambda k: [e["activation"] for e in sp[k]["examples"]]  # noqa: E731
        assert max(vals("minimum")) <= min(vals("slightly_negative")) + 1e-6 or len(vals("minimum")) == 5
        assert min(vals("maximum")) >= max(vals("slightly_positive")) - 1e-6
        assert rec["stats"]["min"] <= rec["stats"]["mean"] <= rec["stats"]["max"]
    neuron = _record(out, res.units[4])
    assert neuron["position"] == {"x": 5, "y": 5} and all(e["position"] == {"x": 5, "y": 5} for e in neuron["top"])
    assert summary["readable"] == 43 and summary["unreadable"] == 0 and summary["units"] == 5
    assert not list(out.glob(".examples-*.ckpt"))


# ----------------------------------------------------------------------------------------------------------------
# Streaming equals brute force, exactly


def _lexsort_topk(vals: np.ndarray, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: per unit, sort every (value, image) by value, ties by lower image index."""
    idx = np.arange(vals.shape[0])
    out_i, out_v = [], []
    for j in range(vals.shape[1]):
        o = np.lexsort((idx, -vals[:, j] if largest else vals[:, j]))[:k]
        out_i.append(idx[o])
        out_v.append(vals[o, j])
    return np.array(out_i), np.array(out_v)


def test_merge_equals_sort_with_ties_for_any_batching():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (57, 9), generator=g).float()  # many ties
    scores[3, 2] = float("nan")
    for k in (1, 4, 60):
        bi, bv = _lexsort_topk(torch.nan_to_num(scores, nan=-np.inf).numpy(), k, True)
        for splits in ([57], [1] * 57, [5, 13, 2, 30, 7]):
            st = (torch.empty(9, 0), torch.empty(9, 0, dtype=torch.int64), torch.empty(9, 0, dtype=torch.int64))
            start = 0
            for n in splits:
                ids = torch.arange(start, start + n)
                st = merge_extreme(*st, scores[start:start + n].t(), ids, ids.expand(9, -1), k, largest=True)
                start += n
            assert np.array_equal(st[1].numpy(), bi) and np.array_equal(st[0].numpy(), bv)
            assert np.array_equal(st[2].numpy(), bi)  # positions travel with their images


class _Recorder:
    """Wraps UnitScorer.__call__ to keep every score matrix the pass computed (the brute-force reference)."""

    def __init__(self, monkeypatch):
        self.scores: list[torch.Tensor] = []
        orig = ex.UnitScorer.__call__

        def call(scorer, acts):
            s, p = orig(scorer, acts)
            self.scores.append(s.clone())
            return s, p

        monkeypatch.setattr(ex.UnitScorer, "__call__", call)

    def take(self) -> np.ndarray:
        out = torch.cat(self.scores).numpy()
        self.scores.clear()
        return out


def test_streaming_topk_equals_brute_force_exactly_across_batch_sizes(folder, mobilenet, monkeypatch):
    rec = _Recorder(monkeypatch)
    units = parse_example_units(["features.7", "features.5:2@3,3"], mobilenet)  # 64 channels + a neuron
    imgs = list_images(folder)
    sorted_by_bs = {}
    for bs in (1, 5, 43):
        res = run_examples(mobilenet, units, imgs, _settings(size=64, batch_size=bs, top_k=7))
        allv = rec.take()  # (N, U), rows in image order
        assert allv.shape == (43, len(units))
        for largest, got in ((True, res.state.top), (False, res.state.bottom)):
            bi, bv = _lexsort_topk(allv, 7, largest)
            assert np.array_equal(got[1].numpy(), bi)  # image indices, exactly
            assert np.array_equal(got[0].numpy(), bv)  # values, bitwise
        # the reservoir holds every image (43 <= 512): the quantile examples are the exact ranks
        q_vals, q_idx, _ = res.state.spectrum_ranks(0.4)
        r = round(0.4 * 42)
        for j in (0, 64):
            o = np.lexsort((np.arange(43), allv[:, j]))
            assert np.array_equal(q_idx[j].numpy(), o[r - 3:r + 4])
        sorted_by_bs[bs] = np.sort(allv, 0)
    # across batch sizes the activations agree to float precision
    np.testing.assert_allclose(sorted_by_bs[1], sorted_by_bs[43], rtol=1e-4, atol=1e-4)


def test_folding_batchnorm_keeps_activations_and_the_original_model(mobilenet, monkeypatch):
    from torch import nn

    from fvcli.examples import fold_batchnorm
    from fvcli.models import load_model, rewrites
    from fvcli.recipe import load_recipe

    assert fold_batchnorm(mobilenet)[1] == 0  # load_model already folded them (fvcli/models/rewrites.py)
    with monkeypatch.context() as m:  # the network as built, without the load-time rewrites
        m.setattr(rewrites, "apply_rewrites", lambda net: {})
        mobilenet = load_model(load_recipe("mobilenet_v2").model_options(), "cpu")
    folded, n = fold_batchnorm(mobilenet, keep=["features.1.conv.1"])
    assert n == 51  # MobileNetV2 has 52 conv+BN pairs; the one whose conv output is a requested layer is kept
    mods, orig = dict(folded.net.named_modules()), dict(mobilenet.net.named_modules())
    assert isinstance(mods["features.2.conv.0.1"], nn.Identity) and isinstance(orig["features.2.conv.0.1"], nn.BatchNorm2d)
    assert isinstance(mods["features.1.conv.2"], nn.BatchNorm2d)  # kept: features.1.conv.1 stays the raw conv
    x = mobilenet.preprocess.apply(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    layers = ["features.1.conv.1", "features.7", "classifier"]
    with torch.no_grad(), Capture(mobilenet, layers) as a, Capture(folded, layers) as b:
        ra, rb = a(x), b(x)
    for name in layers:
        torch.testing.assert_close(ra[name], rb[name], rtol=1e-4, atol=1e-4)
    assert fold_batchnorm(folded)[1] == 1 and fold_batchnorm(fold_batchnorm(folded)[0])[1] == 0


# ----------------------------------------------------------------------------------------------------------------
# Receptive fields


def test_receptive_fields_match_hand_derived_values(iv1, mobilenet):
    # InceptionV1: conv 7/2 -> 7; pool 3/2 -> 11; conv 3 (stride 4) -> 19; pool 3/2 -> 27; mixed3a's 5x5 at
    # stride 8 -> 59; mixed3b's 5x5 -> 91; pool 3/2 -> 107; mixed4a's 5x5 at stride 16 -> 171.
    assert (receptive_field(iv1, "conv2d0").size, receptive_field(iv1, "conv2d0").stride) == (7, 2)
    assert (receptive_field(iv1, "mixed3a").size, receptive_field(iv1, "mixed3a").stride) == (59, 8)
    assert (receptive_field(iv1, "mixed4a").size, receptive_field(iv1, "mixed4a").stride) == (171, 16)
    # MobileNetV2: conv 3/2 -> 3; depthwise 3 at stride 2 -> 7; features.2's depthwise 3/2 -> 11.
    rf = receptive_field(mobilenet, "features.2")
    assert (rf.size, rf.stride, rf.clipped) == (11, 4, False)


# ----------------------------------------------------------------------------------------------------------------
# Resume after an interruption


RESUME_UNITS = ["features.7:0-7", "logit:tiger_cat", "features.5:2@3,3"]


def _state_tensors(st: StreamState) -> list[torch.Tensor]:
    return [*st.top, *st.bottom, st.res_idx, st.res_vals, st.res_pos, st.total, st.total_sq]


def _assert_same_state(a: StreamState, b: StreamState) -> None:
    assert (a.seen, a.next_index, a.unreadable) == (b.seen, b.next_index, b.unreadable)
    for x, y in zip(_state_tensors(a), _state_tensors(b)):
        assert torch.equal(x.nan_to_num(-7.0), y.nan_to_num(-7.0))


def test_interrupted_pass_resumes_to_the_same_result(folder, mobilenet, tmp_path):
    units = parse_example_units(RESUME_UNITS, mobilenet)
    imgs = list_images(folder)
    s = _settings(size=64, batch_size=5, reservoir=16)  # 43 images > 16 slots: the sampled reservoir must resume too
    full = run_examples(mobilenet, units, imgs, s)

    calls = []

    def crash(n):
        calls.append(n)
        if len(calls) == 5:
            raise KeyboardInterrupt  # like Ctrl-C / SIGTERM in the CLI

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_examples(mobilenet, units, imgs, s, out=out, on_batch=crash)
    assert checkpoint_path(out, pass_id(mobilenet, units, imgs, s, 64)).is_file()
    resumed = run_examples(mobilenet, units, imgs, s, out=out)
    assert resumed.resumed_from == 25  # the interrupt saved the state after the 5th batch
    _assert_same_state(full.state, resumed.state)


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
from fvcli.examples import ExampleSettings, list_images, parse_example_units, run_examples
from fvcli.models import load_model
from fvcli.recipe import load_recipe
m = load_model(load_recipe("mobilenet_v2").model_options(), "cpu")
units = parse_example_units({units!r}, m)
seen = []
def kill(n):
    seen.append(n)
    if len(seen) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind
run_examples(m, units, list_images({folder!r}), ExampleSettings(top_k=5, batch_size=4, workers=0, size=64,
             checkpoint_every=2, reservoir=16), out={out!r}, on_batch=kill)
"""


def test_killed_cli_pass_resumes_to_identical_records(folder, mobilenet, tmp_path, cli):
    """SIGKILL after batch 3 (checkpoint after batch 2); `fv examples` on the same directory resumes and writes the
    same records as an uninterrupted `fv examples`."""
    args = ["--recipe", "mobilenet_v2", "--size", 64, "--batch-size", 4, "--top-k", 5, "--workers", 0,
            "--checkpoint-every", 2, "--set", "examples.reservoir=16", "-q"]
    killed = tmp_path / "killed"
    script = KILL_SCRIPT.format(root=str(ROOT), units=RESUME_UNITS, folder=str(folder), out=str(killed))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=120, env=env)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    assert len(list(killed.glob(".examples-*.ckpt"))) == 1 and not list(killed.glob("*.examples.json"))

    r = cli("examples", folder, *RESUME_UNITS, *args, "--out", killed)
    assert r.exit_code == 0, r.output
    assert "resumed after 8" in r.output
    clean = tmp_path / "clean"
    r = cli("examples", folder, *RESUME_UNITS, *args, "--out", clean)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in clean.glob("*.examples.json"))
    assert len(names) == 8 + 2 and names == sorted(p.name for p in killed.glob("*.examples.json"))
    for n in names:
        assert json.loads((killed / n).read_text()) == json.loads((clean / n).read_text()), n
        assert (killed / n.replace(".json", ".png")).read_bytes() == (clean / n.replace(".json", ".png")).read_bytes()
    assert not list(killed.glob(".examples-*.ckpt"))
    assert json.loads((killed / "examples-summary.json").read_text())["resumed_from"] == 8


# ----------------------------------------------------------------------------------------------------------------
# Bad inputs


def test_unreadable_files_are_skipped_and_counted(tmp_path, mobilenet, cli):
    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(PHOTOS / "coffee.png", d / "coffee.png")
    for i in range(3):
        Image.fromarray(synthetic_image(i)).save(d / f"ok{i}.png")
    (d / "text.png").write_text("not a png")
    (d / "empty.webp").write_bytes(b"")
    good = (PHOTOS / "chelsea.png").read_bytes()
    (d / "truncated.png").write_bytes(good[: len(good) // 3])
    (d / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    r = cli("examples", d, "logit:espresso", "--recipe", "mobilenet_v2", "--size", 96, "-j", 0, "-o", out,
            "--threads", 1)
    assert r.exit_code == 0, r.output
    assert "3 unreadable file(s) skipped" in r.output
    s = json.loads((out / "examples-summary.json").read_text())
    assert (s["readable"], s["unreadable"], s["ignored_non_image_files"]) == (4, 3, 1)
    assert sorted(s["unreadable_files"]) == ["empty.webp", "text.png", "truncated.png"]
    rec = json.loads((out / "logit-00968.examples.json").read_text())
    assert rec["top"][0]["relpath"] == "coffee.png" and rec["unreadable"] == 3 and len(rec["top"]) == 4


def test_empty_or_missing_folder_is_a_clear_error(tmp_path, cli, mobilenet):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "README.txt").write_text("no images here")
    r = cli("examples", empty, "logit:1", "--recipe", "mobilenet_v2")
    assert r.exit_code == 2
    assert "no images in" in r.output and "1 other file(s) ignored" in r.output and "Traceback" not in r.output
    r = cli("examples", tmp_path / "nope", "logit:1", "--recipe", "mobilenet_v2")
    assert r.exit_code == 2 and "does not exist" in r.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("x")
    r = cli("examples", bad, "logit:1", "--recipe", "mobilenet_v2", "-j", 0)
    assert r.exit_code == 2 and "could be read" in r.output
    with pytest.raises(FvError, match="no images"):
        list_images(empty)


def test_sample_and_limit_select_deterministically(folder):
    all_ = list_images(folder)
    assert len(all_.files) == 43 and all_.files == tuple(sorted(all_.files)) and all_.ignored == 0
    assert any(f.count("/") == 2 for f in all_.files)  # found recursively
    a, b = list_images(folder, sample=10, seed=3), list_images(folder, sample=10, seed=3)
    assert a.files == b.files and len(a.files) == 10 and set(a.files) <= set(all_.files)
    assert list_images(folder, sample=10, seed=4).files != a.files
    assert list_images(folder, sample=10, seed=3, limit=4).files == a.files[:4]


def test_recipe_form(folder, tmp_path, cli, mobilenet):
    recipe = tmp_path / "ex.yaml"
    rel = os.path.relpath(folder, tmp_path)  # a relative examples.images is relative to the recipe file
    # model weights etc. come from the shared mobilenet recipe; --set/flags layer on top of the file
    base = ROOT / "configs" / "mobilenet_v2.yaml"
    text = base.read_text().replace("../../shared", str(MOBILENET_DIR.parents[1]))
    recipe.write_text(text + textwrap.dedent(f"""
        units: [features.7:3]
        examples: {{images: {rel}, top_k: 3, size: 64, workers: 0, spectrum: [0.3, 0.7], sample: 12, seed: 5}}
    """))
    out = tmp_path / "out"
    r = cli("examples", "--recipe", recipe, "-o", out)
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "features.7-00003.examples.json").read_text())
    picked = list_images(folder, sample=12, seed=5).files
    assert len(rec["top"]) == 3 and rec["size"] == 64 and rec["readable"] == 12
    assert {e["relpath"] for e in rec["top"] + rec["bottom"]} <= set(picked)
    assert rec["spectrum"]["slightly_positive"]["quantile"] == 0.7
    assert rec["images_dir"] == str(folder.resolve())
    r = cli("examples", "--recipe", recipe, "--set", "examples.spectrum=[0.7, 0.3]", "-o", out)
    assert r.exit_code == 2 and "spectrum" in r.output


# ----------------------------------------------------------------------------------------------------------------
# Beside a sweep's renders (the offline demo model: no ../shared needed)


def test_examples_in_a_sweep_dir_go_beside_the_renders_and_into_the_gallery(tmp_path, cli):
    """`fv examples --out SWEEP_DIR` writes each unit's examples into layers/<layer>/ next to its render and rebuilds
    the gallery: a unit page shows the optimized image and the dataset examples; a unit with no render gets none."""
    imgs = write_demo_images(tmp_path / "imgs", 24, 48, 5)  # ImageFolder layout
    sweep = tmp_path / "sweep"
    r = cli("sweep", "demo:block2:0-1", "logit:0", "--model", "demo", "--steps", 4, "--size", 32, "-b", 4, "-q",
            "-o", sweep)
    assert r.exit_code == 0, r.output
    r = cli("examples", imgs, "block2:0-2", "logit:0", "prob:stripes_90", "--model", "demo", "-k", 3, "-j", 0, "-q",
            "-o", sweep)
    assert r.exit_code == 0, r.output
    assert f"gallery: {sweep / 'index.html'}" in r.output
    layer = sweep / "layers" / "block2"
    for key in ("block2-00000", "block2-00001", "block2-00002"):
        assert (layer / f"{key}.examples.png").is_file() and (layer / f"{key}.examples.json").is_file()
        assert not (sweep / f"{key}.examples.json").exists()
    page = (layer / "block2-00001.html").read_text()
    assert 'src="block2-00001.png"' in page or "block2-00001" in page
    assert 'src="block2-00001.examples.png"' in page and "dataset examples" in page
    assert not (layer / "block2-00002.html").exists()  # examples alone make no unit page: the sweep did not render it
    logit = (sweep / "layers" / "fc" / "logit-00000.html").read_text()
    assert 'src="logit-00000.examples.png"' in logit
    # the class-2 probability's top examples are the two vertical-stripe images: the demo model knows its classes
    rec = json.loads((sweep / "layers" / "fc" / "prob-00002.examples.json").read_text())
    assert all(e["relpath"].startswith("stripes_90/") for e in rec["top"][:2]), [e["relpath"] for e in rec["top"]]
    s = json.loads((sweep / "examples-summary.json").read_text())
    assert "layers/block2/block2-00000.examples.json" in s["records"]
    # a plain output directory keeps the flat layout
    flat = tmp_path / "flat"
    r = cli("examples", imgs, "block2:0", "--model", "demo", "-j", 0, "-q", "-o", flat)
    assert r.exit_code == 0 and (flat / "block2-00000.examples.json").is_file() and "gallery:" not in r.output


def test_bad_units_name_the_valid_choices(tmp_path, cli):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(synthetic_image(0)).save(d / "a.png")
    for args, words in ((["block9"], ["unknown layer 'block9'", "did you mean: block4", "main layers: block1"]),
                        (["block3:200"], ["channel 200 out of range for layer block3: valid 0-127"]),
                        (["logit:zebra"], ["unknown class 'zebra'", "valid: stripes_0, stripes_45", "index 0-11"]),
                        (["block3", "--reduce", "median"], ["examples.reduce", "max, mean"])):
        r = cli("examples", d, *args, "--model", "demo", "-q", "-o", tmp_path / "out")
        assert r.exit_code == 2, (args, r.output)
        line = r.output.strip()
        assert "\n" not in line and "Traceback" not in line
        for w in words:
            assert w in line, line
    assert not (tmp_path / "out").exists()  # nothing written before the input is validated
