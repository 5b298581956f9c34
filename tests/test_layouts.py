"""Layouts: Swin (NHWC), ConvNeXt (NHWC inside its blocks), ViT (tokens + a class token) and ambiguous custom modules.

Random-weight torchvision models: the catalog's channels and grids are the true ones, the channel-first adapter reads
the right slice of the raw output (checked against hand-computed means), renders raise the objective on every
layout, a token-layer sweep resumes after an interruption and finalizes, and an ambiguous layout is an error that
names the recipe key `model.layouts`, which resolves it.
"""
from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from conftest import raw_output
from fvcli.errors import FvError
from fvcli.units.expr import parse_expression
from fvcli.models import (
    Capture,
    LoadedModel,
    ModelOptions,
    Preprocess,
    build_catalog,
    load_model,
    parse_layouts,
    prefix_key,
)
from fvcli.optvis.objectives import Channel, LayerDream, Neuron, random_direction
from fvcli.recipe import load_recipe
from fvcli.optvis.loop import LoopSettings, render_batch
from fvcli.sweep import finalize, run_sweep, select_units
from fvcli.units.unit import parse_units

VIT_BLOCK = "encoder.layers.encoder_layer_1"  # early: truncation stops the forward after two blocks


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny renders run on one thread


def _load(arch: str) -> LoadedModel:
    return load_model(ModelOptions(name=f"torchvision:{arch}", weights="random:0"), "cpu")


@pytest.fixture(scope="module")
def swin():
    return _load("swin_t")


@pytest.fixture(scope="module")
def convnext():
    return _load("convnext_tiny")


@pytest.fixture(scope="module")
def vit():
    return _load("vit_b_16")


def scores_of(model: LoadedModel, obj, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), Capture(model, obj.layers) as cap:
        return obj(cap(model.preprocess.apply(x)), x)


# -- the catalog --------------------------------------------------------------------------------------------------


def test_fv_layers_reports_true_channels_grids_and_layouts(cli):
    rows = {}
    for arch in ("swin_t", "vit_b_16"):
        r = cli("layers", f"torchvision:{arch}")
        assert r.exit_code == 0, r.output
        rows[arch] = r.stdout
    assert re.search(r"^  features\.0\s+nhwc\s+96\s+56x56$", rows["swin_t"], re.M)
    assert re.search(r"^\* features\.5\.3\s+nhwc\s+384\s+14x14$", rows["swin_t"], re.M)  # a main layer: a block
    assert re.search(r"^  features\.0\.0\s+nchw\s+96\s+56x56$", rows["swin_t"], re.M)  # the patch conv, before Permute
    for i in range(12):
        assert re.search(rf"^\* encoder\.layers\.encoder_layer_{i}\s+tokens\s+768\s+14x14  \+ 1 class token$",
                         rows["vit_b_16"], re.M)
    assert re.search(r"^  encoder\.layers\.encoder_layer_6\.mlp\.1\s+tokens\s+3072\s+14x14", rows["vit_b_16"], re.M)
    assert re.search(r"^  conv_proj\s+nchw\s+768\s+14x14$", rows["vit_b_16"], re.M)
    assert "fixed size" in rows["vit_b_16"].splitlines()[0]


def test_convnext_block_internals_are_nhwc_and_its_blocks_are_main_layers(convnext):
    c = convnext.catalog
    assert (c["features.1.0.block.3"].layout, c["features.1.0.block.3"].channels) == ("nhwc", 384)
    assert (c["features.1.0.block.4"].layout, c["features.1.0.block.4"].spatial) == ("nhwc", (56, 56))  # the GELU
    assert c["features.1.0.block.0"].layout == "nchw" and c["features.1.0"].layout == "nchw"
    assert len(convnext.main_layers) == 18 and convnext.main_layers[0] == "features.1.0"
    assert convnext.layer("classifier.2").layout == "vector" and not convnext.fixed_size


# -- the adapter: the right slice of the raw output -----------------------------------------------------------


def test_channel_on_nhwc_and_token_layers_equals_the_hand_computed_mean(swin, convnext, vit):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    raw = raw_output(swin, "features.3", x)  # (B, H, W, C)
    assert raw.shape == (2, 8, 8, 192)
    assert torch.allclose(scores_of(swin, Channel("features.3", 10), x), raw[..., 10].mean((1, 2)), atol=1e-5)
    raw = raw_output(convnext, "features.1.0.block.4", x)  # the MLP hidden units, NHWC
    assert torch.allclose(scores_of(convnext, Channel("features.1.0.block.4", 300), x), raw[..., 300].mean((1, 2)),
                          atol=1e-5)

    xv = torch.rand(1, 3, 224, 224, generator=g)
    raw = raw_output(vit, VIT_BLOCK, xv)  # (B, 197, 768): class token, then 14x14 patches
    assert raw.shape == (1, 197, 768)
    assert torch.allclose(scores_of(vit, Channel(VIT_BLOCK, 10), xv), raw[:, 1:, 10].mean(1), atol=1e-5)
    (cls,) = parse_units(f"{VIT_BLOCK}:10@cls", vit)
    assert cls.label == f"{VIT_BLOCK}:10@cls" and cls.key.endswith("-00010-neuron-cls")
    assert torch.allclose(scores_of(vit, cls.objective(vit), xv), raw[:, 0, 10], atol=1e-6)
    # a neuron at patch (x=3, y=5) is token 1 + 5 * 14 + 3
    assert torch.allclose(scores_of(vit, Neuron(VIT_BLOCK, 7, 3, 5), xv), raw[:, 1 + 5 * 14 + 3, 7], atol=1e-6)
    with torch.no_grad(), Capture(vit, [VIT_BLOCK]) as cap:
        acts = cap(vit.preprocess.apply(xv))
    assert acts[VIT_BLOCK].shape == (1, 768, 14, 14) and acts[prefix_key(VIT_BLOCK)].shape == (1, 768, 1)


def test_cls_is_refused_where_there_is_no_class_token(swin, vit):
    with pytest.raises(FvError, match="has no prefix tokens"):
        parse_units("features.3:1@cls", swin)
    with pytest.raises(FvError, match=r"valid @cls \(= @prefix0\) .. @prefix0"):
        parse_units(f"{VIT_BLOCK}:1@prefix1", vit)
    expr = parse_expression(f"{VIT_BLOCK}:10@cls - 0.5*{VIT_BLOCK}:10", vit)  # expressions take @cls too
    assert expr.label == f"{VIT_BLOCK}:10@cls - 0.5*{VIT_BLOCK}:10"


# -- optimization on every layout ---------------------------------------------------------------------------------


def _rises(model: LoadedModel, obj, size: int, steps: int) -> tuple[float, float]:
    s = LoopSettings(steps=steps, lr=0.05, size=size, thresholds=(0,), transforms=())
    snaps = list(render_batch(model, obj, [1], s))
    return float(snaps[0].scores[0]), float(snaps[-1].scores[0])


def test_short_renders_raise_channels_on_nhwc_and_token_layers(swin, convnext, vit):
    for model, obj, size, steps in (
        (swin, Channel("features.1.0", 5), 64, 8),
        (convnext, Channel("features.1.0.block.4", 5), 64, 8),
        # 96 px: the fixed-size ViT gets its input resized to 224 inside the pipeline
        (vit, Channel(VIT_BLOCK, 5), 96, 3),
        (vit, Neuron(VIT_BLOCK, 5, prefix=0), 96, 3),
        (vit, LayerDream(VIT_BLOCK), 96, 2),
        (vit, random_direction(VIT_BLOCK, 768, seed=7), 96, 2),
    ):
        before, after = _rises(model, obj, size, steps)
        assert after > before, (obj, before, after)


def test_a_non_native_size_on_a_fixed_size_model_is_resized_not_a_traceback(vit, cli, tmp_path):
    assert vit.fixed_size
    r = cli("render", f"{VIT_BLOCK}:3", "--model", "torchvision:vit_b_16", "--weights", "random:0", "--steps", 1,
            "--size", 48, "-q", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / f"{VIT_BLOCK}-00003.json").read_text())["size"] == 48


def test_diversity_on_a_token_layer(cli, tmp_path):
    r = cli("render", f"{VIT_BLOCK}:2", "--model", "torchvision:vit_b_16", "--weights", "random:0", "--steps", 2,
            "--size", 32, "--diversity", 2, "-q", "-o", tmp_path)
    assert r.exit_code == 0, r.output
    recs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*-div*.json"))]
    assert len(recs) == 2
    assert all("diversity" in rec["objective"] for rec in recs)


def test_a_sweep_over_a_transformer_block_resumes_and_finalizes(vit, tmp_path):
    recipe = load_recipe(None, ["render.steps=2", "render.size=32", "model.name=torchvision:vit_b_16",
                                "model.weights=random:0"])
    units = select_units(vit, [f"{VIT_BLOCK}:0-3"])
    out = tmp_path / "sweep"

    class Stop(Exception):
        pass

    def stop(_batch, _n):
        raise Stop

    with pytest.raises(Stop):
        run_sweep(vit, recipe, units, out, batch_size=2, on_batch=stop)
    done = list((out / "layers").glob("*/*.json"))
    assert len(done) == 2  # one batch of two channels
    report = run_sweep(vit, recipe, units, out, batch_size=2)
    assert report.rendered == 2 and report.skipped == 2 and report.complete
    manifest = finalize(out)
    assert (out / "index.html").is_file() and manifest
    recs = [json.loads(p.read_text()) for p in (out / "layers").glob("*/*.json")]
    assert sorted(r["channel"] for r in recs) == [0, 1, 2, 3]
    with pytest.raises(FvError, match="not"):
        select_units(vit, [f"{VIT_BLOCK}:1@cls"])  # a sweep renders channels


# -- ambiguity, and the recipe key that resolves it -------------------------------------------------------------


class Toy(nn.Module):
    """A conv, then two outputs no rule can read: a cube (B, 8, 8, 8) and a token sequence of 10 (not a square)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)  # (B, 8, 8, 8) at 32 px: NCHW by type
        self.cube = nn.Identity()  # the same tensor permuted to (B, H, W, C): 8 x 8 x 8
        self.seq = nn.Identity()  # (B, 10, 8): 10 tokens
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 32:
            raise ValueError("this toy accepts only 32 px")  # fixed size: the second probe cannot help
        a = self.cube(self.conv(x).permute(0, 2, 3, 1))  # (B, 8, 8, 8) NHWC
        t = self.seq(a.flatten(1, 2)[:, :10])  # (B, 10, 8)
        return self.head(t.mean(1))


def toy_model(declared=()) -> LoadedModel:
    net = Toy().eval().requires_grad_(False)
    cands = [(n, n) for n, _ in net.named_modules() if n]
    cat = build_catalog(net, cands, 32, torch.device("cpu"), declared)
    return LoadedModel(name="toy", net=net, preprocess=Preprocess(), catalog=cat, native_size=32, logits_layer="head",
                       main_layers=("conv", "cube"), labels=None, weights_source="test", weights_sha256="",
                       device=torch.device("cpu"), redirect_relu=False)


def test_an_ambiguous_layout_is_an_error_naming_the_recipe_key_and_a_declaration_resolves_it():
    m = toy_model()
    assert m.catalog["conv"].layout == "nchw" and m.catalog["head"].layout == "vector" and m.fixed_size
    assert m.catalog["cube"].problem and m.catalog["seq"].problem
    assert m.main_layers == ("conv",)  # undecided layers are never swept by default
    for layer in ("cube", "seq"):
        with pytest.raises(FvError, match=rf"layer {layer}: .*model\.layouts"):
            parse_units(f"{layer}:1", m)
        with pytest.raises(FvError, match="model.layouts"):
            Capture(m, [layer])

    m = toy_model(parse_layouts({"cube": "nhwc", "seq": {"layout": "tokens", "prefix": 1, "grid": [3, 3]}}))
    cube, seq = m.layer("cube"), m.layer("seq")
    assert (cube.layout, cube.channels, cube.spatial) == ("nhwc", 8, (8, 8))
    assert (seq.layout, seq.channels, seq.spatial, seq.prefix) == ("tokens", 8, (3, 3), 1)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    conv = m.net.conv(x)  # (B, C, H, W)
    assert torch.allclose(scores_of(m, Channel("cube", 6), x), conv[:, 6].mean((1, 2)), atol=1e-6)
    tokens = conv.permute(0, 2, 3, 1).flatten(1, 2)[:, :10]  # (B, 10, 8)
    assert torch.allclose(scores_of(m, Channel("seq", 2), x), tokens[:, 1:, 2].mean(1), atol=1e-6)
    assert torch.allclose(scores_of(m, parse_units("seq:2@cls", m)[0].objective(m), x), tokens[:, 0, 2], atol=1e-6)


def test_bad_layout_declarations_name_the_key():
    with pytest.raises(FvError, match=r"model\.layouts\.a: unknown layout 'hwc'; valid: nchw, nhwc, tokens, vector"):
        parse_layouts({"a": "hwc"})
    with pytest.raises(FvError, match=r"model\.layouts\.a\.grid"):
        parse_layouts({"a": {"prefix": 1, "grid": [3]}})
    with pytest.raises(FvError, match="model.layouts"):
        load_recipe(None, ["model.layouts={x: bad}"])
    m = toy_model(parse_layouts({"cube": "tokens"}))  # wrong rank: still undecided, with the reason
    assert "needs a 3-D output" in m.catalog["cube"].problem
    m = toy_model(parse_layouts({"cu*": "nhwc", "s?q": {"prefix": 1}}))  # globs; the grid follows from the prefix
    assert m.layer("cube").layout == "nhwc" and m.layer("seq").spatial == (3, 3)


class TinyViT(nn.Module):
    """timm's shape conventions in miniature: `num_prefix_tokens`, a flattening patch embedding (no class token yet),
    blocks over [cls, patches], and an attention map (B, heads, N, N) as a module output."""

    num_prefix_tokens = 1

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 8, 8, stride=8)
        self.tokens = nn.Identity()  # (B, 16, 8): 4x4 patches, no prefix
        self.block = nn.Linear(8, 8)  # (B, 17, 8)
        self.attn = nn.Identity()  # (B, 2, 17, 17)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.tokens(self.patch_embed(x).flatten(2).transpose(1, 2))  # (B, 16, 8)
        t = self.block(torch.cat([t.mean(1, keepdim=True), t], 1))  # (B, 17, 8)
        a = self.attn(torch.einsum("bnd,bmd->bnm", t, t)[:, None].expand(-1, 2, -1, -1))
        return self.head(t[:, 0] + a.mean((1, 2, 3))[:, None])


def test_a_models_own_prefix_count_splits_its_tokens_and_attention_maps_are_not_images():
    net = TinyViT().eval()
    cat = build_catalog(net, [(n, n) for n, _ in net.named_modules() if n], 32, torch.device("cpu"))
    assert (cat["tokens"].layout, cat["tokens"].prefix, cat["tokens"].spatial) == ("tokens", 0, (4, 4))
    assert (cat["block"].layout, cat["block"].prefix, cat["block"].spatial) == ("tokens", 1, (4, 4))
    assert cat["patch_embed"].layout == "nchw" and cat["attn"].problem  # (B, 2, 17, 17) is not a 2-channel map


# -- timm (an optional extra; in the test extra, so CI has it) ----------------------------------------------------


def test_timm_vit_and_convnext_layouts_channels_and_renders(cli):
    pytest.importorskip("timm")
    r = cli("layers", "timm:vit_tiny_patch16_224", "--main")
    assert r.exit_code == 0, r.output
    for i in range(12):  # timm's plain `Block`s are the main layers; num_prefix_tokens = 1 splits the class token
        assert re.search(rf"^\* blocks\.{i}\s+tokens\s+192\s+14x14  \+ 1 class token$", r.stdout, re.M), r.stdout
    vit = load_model(ModelOptions(name="timm:vit_tiny_patch16_224", weights="random:0"), "cpu")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    raw = raw_output(vit, "blocks.1", x)  # (B, 197, 192)
    assert torch.allclose(scores_of(vit, Channel("blocks.1", 10), x), raw[:, 1:, 10].mean(1), atol=1e-5)
    (cls,) = parse_units("blocks.1:10@cls", vit)
    assert torch.allclose(scores_of(vit, cls.objective(vit), x), raw[:, 0, 10], atol=1e-6)

    cnx = load_model(ModelOptions(name="timm:convnext_atto", weights="random:0"), "cpu")
    assert cnx.main_layers[0] == "stages.0.blocks.0" and cnx.layer("stages.1.blocks.0").layout == "nchw"
    mlp = next(n for n in cnx.catalog if n.startswith("stages.1.blocks.0.mlp.fc1"))
    assert cnx.layer(mlp).channels == 4 * cnx.layer("stages.1.blocks.0").channels
    before, after = _rises(cnx, Channel("stages.1.blocks.0", 3), 64, 8)
    assert after > before
