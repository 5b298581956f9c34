"""The article's figures about *how* to optimize: the enemy (high frequencies), the spectrum of regularization,
preconditioning (steepest-descent directions under different metrics) and checkerboard gradients.

The directions of figure 7 are exact, not rendered: from one starting image x0 we take the pixel gradient g of the
objective (the lucid-style redirected ReLU on, as in the first steps of a render) and show the first step each
method would take, in image space:
- L2: g itself (steepest descent in pixel space);
- L-infinity: sign(g);
- Fourier / decorrelated Fourier: L L^T g, where L maps the parameter to the pre-sigmoid image (irfft2 of the
  1/f-scaled spectrum, then the color matrix). A gradient step of size e on the parameter moves the image by
  e L L^T g: steepest descent under the metric that parameterization induces;
- the gradient preconditioners of fvcli/optvis/preconditioners.py (gradient blur, Laplacian-pyramid normalization).
Each is shown as 0.5 + 0.5 d / max|d| with its high-frequency fraction; the article's claim is that L-infinity has
more high-frequency energy than L2 and the decorrelated Fourier direction much less.
"""
from __future__ import annotations

import torch

from ..models import Capture
from ..optvis.bilateral import BilateralEachStep
from ..optvis.color import COLOR_CORRELATION_NORMALIZED
from ..optvis.objectives import Objective
from ..optvis.param import FOURIER_MAGIC, fft_scale
from ..optvis.penalties import L1, BlurEachStep, TotalVariation
from ..optvis.preconditioners import GradientSpec, gaussian_blur, laplacian_normalize
from ..optvis.transforms import Crop, Jitter, Pad, Rotate, Scale
from ..units.unit import Unit
from .core import Context, FigureResult, Panel, hf

ENEMY_STEPS = (1, 16, 64, 256, 1024)
# lucid's regularization notebook (64 px pixel image): L1 0.05 around 0.5, TV 0.25, blur 1.0; bilateral as blur.
L1_WEIGHT, TV_WEIGHT, BLUR_WEIGHT, BILATERAL_WEIGHT = 0.05, 0.25, 1.0, 1.0
ROBUST_JITTER = 8  # lucid's robustness demo: pad 2J, jitter J (J = 8 at 224 px, scaled to the size)
ROBUST_SCALES = tuple(1.1 ** (n / 10) for n in range(-10, 11))
ROBUST_ANGLES = tuple(float(a) for a in range(-5, 6))
START_NOISE = 0.1  # the steepest-descent figure's start: mid grey plus this much Gaussian noise


def enemy_figure(ctx: Context) -> FigureResult:
    """Plain pixel optimization, no regularization: the march to high-frequency noise."""
    stops = sorted({ctx.steps(s) for s in ENEMY_STEPS})
    u = ctx.unit
    obj, seed = u.objective(ctx.model), ctx.seed("enemy", u.key)
    snaps = ctx.render([obj], [seed], ctx.settings(stops[-1], param="pixel", decorrelate=False, transforms=(),
                                                    thresholds=stops))
    panels = [Panel(f"step {s.step}", s.images[0], ctx.measure(obj, s.images)[0], hf(s.images[0]),
                    {"step": s.step, "seed": seed}) for s in snaps if s.step in stops]
    return FigureResult(panels, len(panels), u.label, stops)


def _robust(ctx: Context, scale: bool, rotate: bool) -> tuple:
    j = ctx.px(ROBUST_JITTER)
    chain = [Pad(2 * j), Jitter(j)]
    if scale:
        chain.append(Scale(ROBUST_SCALES))
    if rotate:
        chain.append(Rotate(ROBUST_ANGLES))
    return tuple(chain + [Crop()])


def regularization_rows(ctx: Context) -> list[tuple[str, str, dict, Objective | None]]:
    """(group, label, settings keywords, penalty term) per row, in the article's order."""
    pixel = {"param": "pixel", "decorrelate": False, "transforms": ()}
    return [
        ("none", "none", pixel, None),
        ("frequency penalization", "L1", pixel, -L1_WEIGHT * L1(0.5)),
        ("frequency penalization", "total variation", pixel, -TV_WEIGHT * TotalVariation()),
        ("frequency penalization", "blur", pixel, BLUR_WEIGHT * BlurEachStep()),
        ("frequency penalization", "bilateral filter", pixel, BILATERAL_WEIGHT * BilateralEachStep()),
        ("transformation robustness", "jitter", {**pixel, "transforms": _robust(ctx, False, False)}, None),
        ("transformation robustness", "+ scale", {**pixel, "transforms": _robust(ctx, True, False)}, None),
        ("transformation robustness", "+ rotate", {**pixel, "transforms": _robust(ctx, True, True)}, None),
        ("preconditioning", "Fourier", {"param": "fourier", "decorrelate": False, "transforms": ()}, None),
        ("preconditioning", "+ decorrelation", {"param": "fourier", "decorrelate": True, "transforms": ()}, None),
        ("gradient preconditioning", "gradient blur", {**pixel, "gradient": GradientSpec("blur", 1.0)}, None),
        ("gradient preconditioning", "Laplacian pyramid", {**pixel, "gradient": GradientSpec("laplacian", levels=4)},
         None),
        ("gradient preconditioning", "L-inf (sign) steps", {**pixel, "gradient": GradientSpec("sign")}, None),
        ("combination", "the article's", {}, None),
    ]


def regularization_figure(ctx: Context) -> FigureResult:
    """One row per method, same unit and seed, each with its objective value and high-frequency fraction."""
    u = ctx.unit
    obj, seed, steps = u.objective(ctx.model), ctx.seed("regularization", u.key), ctx.base_steps
    panels = []
    for group, label, kw, penalty in regularization_rows(ctx):
        settings = ctx.settings(steps, **kw)
        img = ctx.render([obj if penalty is None else obj + penalty], [seed], settings)[-1].images
        pre = settings.gradient.precondition if settings.gradient else "none"
        panels.append(Panel(label, img[0], ctx.measure(obj, img)[0], hf(img[0]),
                            {"group": group, "param": settings.param, "decorrelate": settings.decorrelate,
                             "transforms": len(settings.transforms), "gradient": pre,
                             "penalty": None if penalty is None else penalty.describe(), "seed": seed}))
    return FigureResult(panels, 5, u.label, steps)


# ------------------------------------------------------------------------------------------------------------------
# preconditioning: steepest-descent directions


def pixel_gradient(ctx: Context, objective: Objective, image: torch.Tensor) -> torch.Tensor:
    """d objective / d image at `image` (B, 3, H, W), with the redirected ReLU of a render's first steps."""
    m = ctx.model
    x = image.clone().to(m.device).requires_grad_(True)
    m.set_redirect(True)
    try:
        with Capture(m, objective.layers) as cap:
            objective(cap(m.preprocess.apply(x)), x).sum().backward()
    finally:
        m.set_redirect(False)
    return x.grad.detach().float().cpu()


def fourier_direction(g: torch.Tensor, decorrelate: bool, decay_power: float = 1.0) -> torch.Tensor:
    """L L^T g for the Fourier parameterization (optionally with the color decorrelation): (B, 3, H, W)."""
    b, c, h, w = g.shape
    scale = fft_scale(h, w, decay_power)
    mat = torch.as_tensor(COLOR_CORRELATION_NORMALIZED)

    def lin(p: torch.Tensor) -> torch.Tensor:  # (B, 3, h, w//2+1, 2) -> (B, 3, H, W), linear
        t = torch.fft.irfft2(torch.view_as_complex(p) * scale, s=(h, w), norm="ortho") / FOURIER_MAGIC
        return torch.matmul(mat, t.flatten(2)).view(t.shape) if decorrelate else t

    p = torch.zeros(b, c, h, w // 2 + 1, 2, requires_grad=True)
    (lin(p) * g).sum().backward()  # p.grad = L^T g
    with torch.no_grad():
        return lin(p.grad)


def show_direction(d: torch.Tensor) -> torch.Tensor:
    """(3, H, W) direction -> image in [0, 1]: grey is zero, the largest component reaches black or white."""
    return 0.5 + 0.5 * d / d.abs().max().clamp_min(1e-12)


def directions(ctx: Context, objective: Objective, x0: torch.Tensor) -> dict[str, torch.Tensor]:
    g = pixel_gradient(ctx, objective, x0)
    dp = ctx.recipe.param.decay_power
    return {"L2 (gradient)": g, "L-inf (sign)": torch.sign(g),
            "Fourier": fourier_direction(g, False, dp), "decorr. Fourier": fourier_direction(g, True, dp),
            "gradient blur": gaussian_blur(g, 1.0), "Laplacian pyramid": laplacian_normalize(g, 4)}


def start_image(ctx: Context, tag: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(ctx.seed("start", tag))
    return (0.5 + START_NOISE * torch.randn(1, 3, ctx.size, ctx.size, generator=gen)).clamp(0, 1)


def preconditioning_figure(ctx: Context) -> FigureResult:
    """The first step of each metric from the same start image, as images, with their high-frequency fractions."""
    u = ctx.unit
    obj = u.objective(ctx.model)
    x0 = start_image(ctx, "preconditioning")
    panels = [Panel("start image", x0[0], ctx.measure(obj, x0)[0], hf(x0[0]))]
    for label, d in directions(ctx, obj, x0).items():
        panels.append(Panel(label, show_direction(d[0]), None, hf(d[0]), {"norm": float(d.norm())}))
    return FigureResult(panels, len(panels), u.label, 0,
                        extra={"start": f"0.5 + {START_NOISE} N(0, 1), seed {ctx.seed('start', 'preconditioning')}"})


def checkerboard_figure(ctx: Context) -> FigureResult:
    """|d channel / d image| at a flat grey and at a noise image, for an early layer and the unit's layer:
    strided convolutions and pools imprint their grid on the gradient. The channel of each layer is the one most
    active on the flat image (a channel that is off there has no gradient to show)."""
    m, u = ctx.model, ctx.unit
    mains = [name for name in m.main_layers if m.layer(name).spatial is not None] or [u.layer]
    early = mains[max(0, min(len(mains) - 1, len(mains) // 3))]
    layers = list(dict.fromkeys([early, u.layer]))
    starts = {"flat": torch.full((1, 3, ctx.size, ctx.size), 0.5), "noise": start_image(ctx, "checkerboard")}
    panels, labels = [], []
    for layer in layers:
        ch = u.channel if layer == u.layer and _active(ctx, layer, starts["flat"], u.channel) else \
            most_active(ctx, layer, starts["flat"])
        obj = Unit("channel", layer, ch).objective(m)
        labels.append(f"{layer}:{ch}")
        for name, x in starts.items():
            mag = pixel_gradient(ctx, obj, x)[0].norm(dim=0)  # (H, W)
            shown = (mag / mag.max().clamp_min(1e-12)).expand(3, -1, -1)
            panels.append(Panel(f"{name} image", shown, None, hf(mag.expand(3, -1, -1)),
                                {"layer": layer, "channel": ch, "period_energy": period_energy(mag)}))
    return FigureResult(panels, len(starts), ", ".join(labels), 0, row_labels=labels)


def _mean_acts(ctx: Context, layer: str, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), Capture(ctx.model, [layer]) as cap:
        a = cap(ctx.model.preprocess.apply(image.to(ctx.model.device)))[layer].float()
    return (a.flatten(2).mean(2) if a.dim() > 2 else a)[0].cpu()  # (C,)


def _active(ctx: Context, layer: str, image: torch.Tensor, channel: int) -> bool:
    return bool(_mean_acts(ctx, layer, image)[channel] > 0)


def most_active(ctx: Context, layer: str, image: torch.Tensor) -> int:
    return int(_mean_acts(ctx, layer, image).argmax())


def period_energy(mag: torch.Tensor) -> dict[str, float]:
    """Fraction of the gradient magnitude's (mean-removed) power at the frequencies of a 2-, 4- and 8-pixel grid:
    the checkerboard of stride-2 layers shows up as peaks there."""
    x = mag.double() - mag.double().mean()
    p = torch.fft.fft2(x).abs().pow(2)
    h, w = x.shape
    total = float(p.sum()) or 1.0
    out = {}
    for period in (2, 4, 8):
        if h % period or w % period:
            continue
        ky, kx = h // period, w // period
        idx = {(a * ky % h, b * kx % w) for a in range(period) for b in range(period)} - {(0, 0)}
        out[f"{period}px"] = float(sum(p[i, j] for i, j in idx)) / total
    return out
