"""MACO (fvcli/optvis/maco.py) and natural-image spectra (fvcli/optvis/spectrum.py, `fv spectrum`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MOBILENET_DIR, tiny_recipe
from fvcli.optvis.maco import MacoImage
from fvcli.optvis.loop import unit_generators
from fvcli.runner.batch import run_batch
from fvcli.optvis.spectrum import (DEFAULT_ALPHA, compute_spectrum, fit_power_law, image_files, load_spectrum,
                            power_law_spectrum)
from fvcli.units.unit import parse_units

PHOTOS = MOBILENET_DIR / "photos"


def spectrum_ratio(param: MacoImage) -> torch.Tensor:
    """|rfft2| of the image before the color matrix and sigmoid, divided by the target magnitude (DC left out)."""
    with torch.no_grad():
        got = torch.fft.rfft2(param.spatial(), norm="ortho").abs()  # (B, 3, h, wf)
    mag = param.magnitude.expand_as(got)
    keep = mag > 0
    return got[keep] / mag[keep]


@pytest.mark.parametrize("h,w", [(32, 32), (24, 31)])
def test_maco_keeps_the_magnitude_fixed_while_the_phase_moves(h, w):
    p = MacoImage(unit_generators([1, 2], "init"), h, w)
    opt = torch.optim.Adam(p.parameters(), lr=0.1)
    target = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    before = p().detach()
    for _ in range(5):  # an arbitrary objective: the phase changes, the magnitude must not
        opt.zero_grad()
        (p() - target).pow(2).sum().backward()
        opt.step()
    after = p().detach()
    assert float((after - before).abs().mean()) > 0.01
    r = spectrum_ratio(p)
    # one global gain per image (the standardisation), the shape of the magnitude exactly the target's
    per_image = r.view(2, -1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), rtol=1e-3), \
        float((per_image / per_image[:, :1] - 1).abs().max())


def test_score_rises_under_maco_and_alpha_map(iv1, cli, tmp_path):
    # the article's transforms as written, as measured when this test was written
    rec = tiny_recipe("param.kind=maco", "param.maco_alpha=true", "transforms=article", "render.transforms_at_size=null",
                      steps=16, size=48, thresholds=[0])
    units = parse_units("mixed4a:3,20", iv1)
    res = run_batch(iv1, rec, units)
    first, last = res.snapshots[0].scores, res.snapshots[-1].scores
    assert bool((last > first + 0.1 * first.abs().clamp_min(1)).all()), (first, last)
    alpha = res.snapshots[-1].alpha
    assert alpha.shape == (2, 1, 48, 48) and float(alpha.max()) <= 1 and float(alpha.std()) > 0.01
    r = cli("render", "mixed4a:3", "--weights", "random:0", "--size", 32, "--steps", 3, "--device", "cpu", "-q",
            "--set", "param.kind=maco", "--set", "param.maco_alpha=true", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "out" / "mixed4a-00003.alpha.png") as im:
        assert im.size == (32, 32)


def power_law_image(n: int, alpha: float, seed: int) -> np.ndarray:
    """An RGB image whose amplitude spectrum is 1/f**alpha (random phase), as uint8."""
    g = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    f = np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1.0 / n)
    chans = [np.fft.irfft2(f ** -alpha * np.exp(2j * np.pi * g.random(f.shape)), s=(n, n)) for _ in range(3)]
    x = np.stack(chans, -1)
    x = (x - x.mean()) / x.std() * 0.18 + 0.5
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def test_fv_spectrum_on_mixed_sizes(cli, tmp_path):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    # three sizes and formats, one greyscale, one in a sub-folder; not a square among them
    Image.fromarray(power_law_image(96, 1.5, 0)[:70, :90]).save(d / "a.png")
    Image.fromarray(power_law_image(128, 1.5, 1)[:, :50]).save(d / "sub" / "b.bmp")
    Image.fromarray(power_law_image(80, 1.5, 2)[:60]).convert("L").save(d / "c.png")
    (d / "notes.txt").write_text("not an image")
    out = tmp_path / "spec.pt"
    r = cli("spectrum", d, "-o", out, "--size", 48)
    assert r.exit_code == 0, r.output
    assert "3 images" in r.output
    raw = torch.load(out, weights_only=True)
    assert raw["images"] == 3 and raw["size"] == 48
    mag = load_spectrum(out)
    assert mag.shape == (3, 48, 25) and float(mag[:, 0, 0].abs().max()) == 0
    alphas, _ = fit_power_law(mag)
    assert all(1.2 < a < 1.8 for a in alphas), alphas  # the 1/f**1.5 the images were made with
    # streamed: the mean of single-image spectra
    single = [compute_spectrum([p], 48)[0] for p in image_files(d)]
    assert torch.allclose(mag, torch.stack(single).mean(0), atol=1e-5)
    # used by a render through the recipe: the param's magnitude is the file's (same size: unchanged)
    p = MacoImage(unit_generators([0], "init"), 48, 48, mag)
    assert torch.allclose(p.magnitude[:, 1:, 1:-1], mag[:, 1:, 1:-1])
    bad = cli("spectrum", tmp_path / "nowhere", "-o", out)
    assert bad.exit_code == 2 and "not found" in bad.output


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"photos not found at {PHOTOS}")
def test_default_power_law_matches_the_photos():
    """The default magnitude's exponent is the photos' measurement (fvcli/optvis/spectrum.py DEFAULT_ALPHA)."""
    fits = {}
    for size in (128, 224):
        mag, n = compute_spectrum(image_files(PHOTOS), size)
        fits[size] = fit_power_law(mag)[0]
        assert n == 3
    lo = min(min(a) for a in fits.values())
    hi = max(max(a) for a in fits.values())
    assert lo - 0.05 <= DEFAULT_ALPHA <= hi + 0.05, fits
    mean = float(np.mean([np.mean(a) for a in fits.values()]))
    assert abs(mean - DEFAULT_ALPHA) < 0.1, fits
    # and the default spectrum itself fits back to its own exponent
    assert np.allclose(fit_power_law(power_law_spectrum(128, 128))[0], DEFAULT_ALPHA, atol=0.05)
