"""`fv article`: every figure builds (demo model, 32 px, a few steps), the page opens in headless Chromium with every
image loaded, reruns write the same bytes; the methods the figures compare measurably do what the article says:
the bilateral filter keeps an edge that blur removes, the L-infinity direction has more high-frequency energy than
the L2 one and the decorrelated Fourier direction less (on the real MobileNetV2), and the gradient preconditioners
work in a plain `fv render`.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fvcli.article import FIGURES, build_article
from fvcli.article.core import Network
from fvcli.article.network import choose_network, make_context
from fvcli.article.optimization import directions, start_image
from fvcli.optvis.bilateral import bilateral_filter
from fvcli.optvis.metrics import high_frequency_energy
from fvcli.models import load_model
from fvcli.optvis.preconditioners import gaussian_blur, laplacian_normalize
from fvcli.recipe import load_recipe

SIZE = 32
SCALE = 0.006  # 3 steps for a 512-step render, 15 for the 2560-step filmstrip


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny renders run on one thread


def _folder(root: Path) -> Path:
    """A few small images for the dataset-examples figure: stripes and blobs of different colors."""
    root.mkdir(parents=True)
    g = np.random.default_rng(0)
    for i in range(6):
        yy, xx = np.mgrid[0:48, 0:48]
        a = (np.sin(xx * (0.2 + 0.1 * i)) > 0)[..., None] * g.uniform(0, 255, 3)
        Image.fromarray(a.astype(np.uint8)).save(root / f"img{i}.png")
    return root


def _demo_context(**kw):
    net = choose_network(None, [], {"model.name": "demo", "render.size": SIZE, "render.device": "cpu"})
    model = load_model(net.recipe.model_options(), "cpu")
    return make_context(net, model, steps_scale=SCALE, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("article")
    ctx = _demo_context(images=_folder(root / "images"))
    out = root / "out"
    report = build_article(ctx, out)
    return ctx, out, report


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_every_figure_builds_with_its_record(built):
    ctx, out, report = built
    assert report.built == [f.id for f in FIGURES] and not report.not_built
    for number, f in enumerate(FIGURES, 1):
        rec = json.loads((out / f"{f.id}.json").read_text())
        png = np.asarray(Image.open(out / rec["png"]))
        assert png.ndim == 3 and png.shape[0] >= SIZE and png.std() > 0  # a picture, not a blank
        assert rec["number"] == number and rec["network"]["model"] == "demo" and rec["recipe"]["model"]["name"] == "demo"
        assert rec["unit"] and rec["seed"] == 0 and rec["size"] == SIZE and rec["steps"] is not None
        assert rec["panels"], f.id
    reg = json.loads((out / "regularization.json").read_text())
    labels = [p["label"] for p in reg["panels"]]
    assert labels[:5] == ["none", "L1", "total variation", "blur", "bilateral filter"]
    assert {"gradient blur", "Laplacian pyramid", "L-inf (sign) steps", "the article's"} <= set(labels)
    assert all(0.0 <= p["hf_fraction"] <= 1.0 and p["score"] is not None for p in reg["panels"])
    # plain pixel optimization is the noisiest, the article's combination far less so (HF fraction)
    by = {p["label"]: p["hf_fraction"] for p in reg["panels"]}
    assert by["the article's"] < by["none"]
    enemy = json.loads((out / "enemy.json").read_text())
    assert [p["step"] for p in enemy["panels"]] == enemy["steps"] and len(enemy["steps"]) >= 3
    progress = json.loads((out / "progress.json").read_text())
    assert progress["steps"][-1] == round(2560 * SCALE)
    page = (out / "index.html").read_text()
    assert page.index('data-figure="objectives"') < page.index('data-figure="appendix"')
    assert 'data-network="demo"' in page


def test_rerun_skips_and_writes_the_same_bytes(built, tmp_path):
    ctx, out, _ = built
    before = _files(out)
    again = build_article(ctx, out)
    assert again.built == [] and again.skipped == [f.id for f in FIGURES]
    assert _files(out) == before
    # a fresh directory, two figures only: rendered again from scratch, byte for byte the same
    fresh = tmp_path / "again"
    rep = build_article(_demo_context(images=ctx.images), fresh, ["enemy", "preconditioning"])
    assert rep.built == ["enemy", "preconditioning"]
    for name in ("enemy.png", "enemy.json", "preconditioning.png", "preconditioning.json"):
        assert (fresh / name).read_bytes() == before[name], name
    page = (fresh / "index.html").read_text()
    assert 'data-missing="objectives"' in page and 'data-figure="enemy"' in page


def test_cli_builds_a_figure_and_rejects_unknown_ones(cli, tmp_path):
    r = cli("article", "checkerboard", "--model", "demo", "--size", SIZE, "--steps-scale", SCALE,
            "--device", "cpu", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "checkerboard.png").is_file() and "page:" in r.stdout
    assert "network demo" in r.stderr
    r = cli("article", "enemyy", "--model", "demo", "--out", tmp_path)
    assert r.exit_code == 2 and "did you mean" in r.stderr and "regularization" in r.stderr


# ------------------------------------------------------------------------------------------------------------------
# the page in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# Fetches the page (XHR on file:// needs --allow-file-access-from-files), loads each <img> with new Image() and
# prints their natural sizes into <pre id=result>, which --dump-dom prints once the page is idle.
LOADER = r"""<!doctype html><html><body><pre id="result">pending</pre><script>
const page = decodeURIComponent(location.hash.slice(1));
const x = new XMLHttpRequest(); x.open('GET', page);
x.onload = async () => {
  const doc = new DOMParser().parseFromString(x.responseText, 'text/html');
  const out = {figures: [...doc.querySelectorAll('[data-figure]')].map(e => e.dataset.figure), images: {}};
  for (const im of doc.querySelectorAll('img[src]')) {
    const u = new URL(im.getAttribute('src'), page).href;
    out.images[u] = await new Promise(res => { const i = new Image();
      i.onload = () => res([i.naturalWidth, i.naturalHeight]); i.onerror = () => res(null); i.src = u; });
  }
  document.getElementById('result').textContent = JSON.stringify(out);
};
x.onerror = () => { document.getElementById('result').textContent = 'unreadable'; };
x.send();
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make chromium` installs it as root)")
def test_page_opens_in_chromium_with_every_image_loaded(built, tmp_path):
    _, out, _ = built
    (tmp_path / "load.html").write_text(LOADER)
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
                        "--virtual-time-budget=60000", "--dump-dom",
                        f"file://{tmp_path / 'load.html'}#{(out / 'index.html').as_uri()}"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout, re.S)
    assert m and m.group(1) not in ("pending", "unreadable"), f"no result (rc {r.returncode}): {r.stderr[-1500:]}"
    res = json.loads(unescape(m.group(1)))
    assert res["figures"] == [f.id for f in FIGURES]
    assert len(res["images"]) == len(FIGURES)
    for url, size in res["images"].items():
        png = np.asarray(Image.open(out / Path(url).name))
        assert size == [png.shape[1], png.shape[0]], url  # decoded by the browser at its real size


# ------------------------------------------------------------------------------------------------------------------
# the methods, measured


def test_bilateral_filter_keeps_an_edge_that_blur_removes():
    g = torch.Generator().manual_seed(0)
    img = torch.full((1, 3, 32, 32), 0.2)
    img[..., 16:] = 0.8  # a vertical edge between columns 15 and 16
    noisy = (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)

    def edge(x: torch.Tensor) -> float:  # contrast across the edge, from the two columns beside it
        return float((x[..., 16] - x[..., 15]).mean())

    def noise(x: torch.Tensor) -> float:  # residual noise in the flat parts
        return float((x - img)[..., 2:12].std() + (x - img)[..., 20:30].std()) / 2

    box = F.conv2d(F.pad(noisy, (1, 1, 1, 1), mode="replicate"), torch.ones(3, 1, 3, 3) / 9, groups=3)
    gauss = gaussian_blur(noisy, 1.5)
    bil = bilateral_filter(noisy)
    assert edge(noisy) == pytest.approx(0.6, abs=0.02)
    assert edge(bil) > 0.95 * edge(noisy)  # the bilateral filter keeps the edge ...
    assert edge(box) < 0.7 * edge(noisy) and edge(gauss) < 0.5 * edge(noisy)  # ... blurs do not
    assert noise(bil) < 0.6 * noise(noisy)  # and it still smooths the noise


def test_linf_direction_is_noisier_and_decorrelated_fourier_smoother_on_mobilenet(mobilenet):
    rec = load_recipe("mobilenet_v2", [], {"render.size": 96, "render.device": "cpu"})
    ctx = make_context(Network(rec, "test", True), mobilenet, unit="features.11:5")
    d = directions(ctx, ctx.unit.objective(mobilenet), start_image(ctx, "test"))
    hf = {k: float(high_frequency_energy(v)[0]) for k, v in d.items()}
    assert hf["L-inf (sign)"] > hf["L2 (gradient)"] > hf["decorr. Fourier"]
    assert hf["decorr. Fourier"] < 0.5 * hf["L2 (gradient)"]
    assert hf["gradient blur"] < hf["L2 (gradient)"]


def test_preconditioners_keep_shape_and_do_what_they_say():
    g = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    g[1] *= 100  # image by image: the second image's scale does not leak into the first
    lap = laplacian_normalize(g, 4)
    assert lap.shape == g.shape and torch.allclose(lap[0], laplacian_normalize(g[:1], 4)[0], atol=1e-5)
    assert lap[1].abs().mean() / lap[0].abs().mean() == pytest.approx(1.0, rel=0.2)  # normalized scale
    assert float(high_frequency_energy(gaussian_blur(g, 1.0))[0]) < 0.5 * float(high_frequency_energy(g)[0])


@pytest.mark.parametrize("pre", ["blur", "laplacian", "sign"])
def test_gradient_preconditioner_in_a_plain_render_raises_the_score(cli, tmp_path, pre):
    r = cli("render", "block2:3", "--model", "demo", "--size", SIZE, "--steps", 12, "--device", "cpu",
            "--set", "param.kind=pixel", "--set", f"gradient.precondition={pre}", "--set", "render.thresholds=[0]",
            "--set", "transforms=none", "--out", tmp_path, "-q")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "block2-00003.json").read_text())
    assert rec["recipe"]["gradient"]["precondition"] == pre
    assert rec["scores"]["12"] > rec["scores"]["0"] + 1e-3


def test_spatial_preconditioners_need_a_pixel_param(cli, tmp_path):
    r = cli("render", "block2:3", "--model", "demo", "--set", "gradient.precondition=laplacian", "--out", tmp_path)
    assert r.exit_code == 2 and "param.kind: pixel" in r.stderr
    r = cli("render", "block2:3", "--model", "demo", "--set", "gradient.precondition=sharpen", "--out", tmp_path)
    assert r.exit_code == 2 and "none, blur, laplacian, sign" in r.stderr
