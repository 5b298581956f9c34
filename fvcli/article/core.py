"""What every article figure shares: the context it is built in, its panels, and how it is written to disk.

A figure is a function `Context -> FigureResult`: a list of panels (an image, a label, and the numbers the article
prints under it: the objective value and the high-frequency fraction), laid out in `cols` columns, optionally with
a ready-made picture instead (the dataset-examples figure). `write_figure` turns a result into FIGURE.png (the
labelled panels) and FIGURE.json (network, recipe, unit, seeds, steps, scores), the PNG first and the JSON last,
both atomically; a figure whose JSON carries the same identity is done and is skipped on a rerun (`figure_done`).

Determinism: every panel's seed derives from the run seed, the model, the figure and the panel (`Context.seed`);
every render is a `render_batch` on the CPU, which is bitwise reproducible; the JSON holds no timestamps. So a
rerun, or a run of one figure alone, writes the same bytes.

Sizes: step counts are the article's (512-step renders, the 1..1024 and 1..2560 filmstrips) times
`steps_scale`; pixel amounts of the article's transforms (pad 16, jitter 16/8 at 224 px) scale with the image size.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..models import Capture, LoadedModel
from ..optvis.loop import LoopSettings, Snapshot, derive_seed, render_batch
from ..optvis.metrics import high_frequency_energy
from ..optvis.objectives import Objective, PerImage
from ..optvis.preconditioners import GradientSpec
from ..optvis.transforms import ARTICLE, Step, at_size
from ..outputs import atomic_write_bytes, atomic_write_json, png_bytes, to_uint8
from ..recipe import Recipe
from ..units.unit import Unit

FIGURE_FORMAT = 1  # bump when a figure's content changes, so old outputs are rebuilt rather than skipped
ARTICLE_SIZE = 224  # the size the article's pixel amounts (pad 16, jitter 16 / 8) refer to
MIN_TILE = 112  # small renders are shown enlarged (nearest neighbour: the pixels stay visible)


@dataclass(frozen=True)
class Network:
    """The network the figures were made with, and why it was chosen (shown on the page and logged)."""

    recipe: Recipe
    note: str  # e.g. "InceptionV1 weights are not cached: using the real MobileNetV2 instead"
    requested: bool  # chosen by --model / --recipe rather than the default chain


@dataclass
class Context:
    """Everything a figure builder needs."""

    model: LoadedModel
    recipe: Recipe  # the network's recipe at the figure size
    network: Network
    unit: Unit  # the main channel unit
    unit_b: Unit  # a second channel of the same layer (interaction)
    diversity_unit: Unit
    class_index: int
    steps_scale: float = 1.0
    images: Path | None = None  # a folder for the dataset-examples figure

    @property
    def size(self) -> int:
        return self.recipe.render.size

    def steps(self, n: int) -> int:
        return max(1, round(n * self.steps_scale))

    @property
    def base_steps(self) -> int:
        """The step count of a single render (the recipe's), scaled."""
        return self.steps(self.recipe.render.steps)

    def seed(self, figure: str, panel: object = "") -> int:
        return derive_seed(self.recipe.render.seed, self.model.name, "article", figure, panel)

    def px(self, n: int) -> int:
        """A pixel amount of the article (at 224 px) at this size."""
        return max(1, round(n * self.size / ARTICLE_SIZE)) if n else 0

    def scaled_chain(self, chain: Sequence[Step] = ARTICLE) -> tuple[Step, ...]:
        return at_size(chain, self.size, ARTICLE_SIZE)

    def settings(self, steps: int, *, param: str = "fourier", decorrelate: bool = True,
                 transforms: Sequence[Step] | None = None, thresholds: Sequence[int] = (),
                 gradient: GradientSpec | None = None) -> LoopSettings:
        """Loop settings for one figure render; by default the article's method (scaled transforms)."""
        r = self.recipe
        return LoopSettings(steps=steps, lr=r.render.lr, size=self.size, thresholds=tuple(thresholds), param=param,
                            decorrelate=decorrelate, sigmoid=r.param.sigmoid, decay_power=r.param.decay_power,
                            transforms=self.scaled_chain() if transforms is None else tuple(transforms),
                            channels_last=r.render.channels_last, precision="fp32", gradient=gradient)

    def render(self, objectives: Sequence[Objective] | Objective, seeds: Sequence[int],
               settings: LoopSettings) -> list[Snapshot]:
        """Render len(seeds) images; a list of objectives gives image b objective b (PerImage)."""
        obj = PerImage(tuple(objectives)) if isinstance(objectives, (list, tuple)) else objectives
        return list(render_batch(self.model, obj, list(seeds), settings))

    def measure(self, objective: Objective, images: torch.Tensor) -> list[float]:
        """`objective` on each (untransformed) image: (B, 3, H, W) -> B floats."""
        with torch.no_grad(), Capture(self.model, objective.layers) as cap:
            x = images.to(self.model.device)
            return objective(cap(self.model.preprocess.apply(x)), x).float().cpu().tolist()


@dataclass
class Panel:
    label: str
    image: torch.Tensor | None  # (3, H, W) in [0, 1]; None leaves the cell empty
    score: float | None = None  # the unit's objective on the image
    hf: float | None = None  # high-frequency fraction (metrics.high_frequency_energy)
    info: dict = field(default_factory=dict)  # more numbers for the JSON (seed, steps, ...)
    detail: str | None = None  # a second caption line (e.g. the unit)

    def caption(self) -> list[str]:
        lines = [self.label] + ([self.detail] if self.detail else [])
        if self.score is not None:
            lines.append(f"score {self.score:.3g}")
        if self.hf is not None:
            lines.append(f"HF {self.hf:.3f}")
        return lines

    def record(self) -> dict:
        rec = {"label": self.label, "score": self.score, "hf_fraction": self.hf, **self.info}
        return {**rec, "detail": self.detail} if self.detail else rec


def hf(image: torch.Tensor) -> float:
    return float(high_frequency_energy(image[None])[0])


@dataclass
class FigureResult:
    panels: list[Panel]
    cols: int
    unit: str  # the unit (or units) the figure shows
    steps: int | list[int] | None
    row_labels: list[str] | None = None
    picture: np.ndarray | None = None  # a ready-made picture (H, W, 3) uint8 instead of the panels' layout
    extra: dict = field(default_factory=dict)
    note: str | None = None  # shown under the caption (e.g. a fallback that was taken)


@dataclass(frozen=True)
class Figure:
    id: str  # file stem and command-line name
    title: str
    caption: str
    build: Callable[[Context], FigureResult]
    needs_images: bool = False


# ------------------------------------------------------------------------------------------------------------------
# layout


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def layout(panels: Sequence[Panel], cols: int, size: int, row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Panels in a grid, each with its caption lines below; row labels on the left."""
    t = max(size, MIN_TILE)
    font = _font()
    n_lines = max((len(p.caption()) for p in panels), default=1)
    cap_h, pad = 12 * n_lines + 4, 6
    chars = max(8, t // 5)
    left = 8 + 6 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    rows = -(-len(panels) // cols)
    canvas = Image.new("RGB", (left + cols * (t + pad) + pad, rows * (t + cap_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, p in enumerate(panels):
        r, c = divmod(i, cols)
        x0, y0 = left + pad + c * (t + pad), pad + r * (t + cap_h + pad)
        if p.image is None:
            continue
        im = Image.fromarray(to_uint8(p.image))
        if im.size != (t, t):
            im = im.resize((t, t), Image.NEAREST if im.size[0] < t else Image.BILINEAR)
        canvas.paste(im, (x0, y0))
        for k, line in enumerate(p.caption()):
            draw.text((x0, y0 + t + 2 + 12 * k), line[:chars], fill="black", font=font)
    for r, s in enumerate((row_labels or [])[:rows]):
        draw.text((4, pad + r * (t + cap_h + pad) + t // 2 - 5), s, fill="black", font=font)
    return np.asarray(canvas)


# ------------------------------------------------------------------------------------------------------------------
# identity, skipping, writing


def figure_identity(ctx: Context, fig: Figure) -> str:
    """What determines the figure's bytes: not the output directory, the device or the time."""
    m = ctx.model
    parts = {"format": FIGURE_FORMAT, "figure": fig.id, "model": m.name, "weights_sha256": m.weights_sha256,
             "recipe": ctx.recipe.hash(), "steps_scale": ctx.steps_scale, "unit": ctx.unit.label,
             "unit_b": ctx.unit_b.label, "diversity_unit": ctx.diversity_unit.label, "class": ctx.class_index,
             "images": str(ctx.images.resolve()) if (fig.needs_images and ctx.images) else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def read_record(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def figure_done(out: Path, ctx: Context, fig: Figure) -> bool:
    rec = read_record(out / f"{fig.id}.json")
    return bool(rec) and rec.get("identity") == figure_identity(ctx, fig) and (out / f"{fig.id}.png").is_file()


def write_figure(out: Path, ctx: Context, fig: Figure, number: int, res: FigureResult) -> Path:
    """FIGURE.png, then FIGURE.json (the record that marks the figure done)."""
    picture = res.picture if res.picture is not None else layout(res.panels, res.cols, ctx.size, res.row_labels)
    atomic_write_bytes(out / f"{fig.id}.png", png_bytes(picture))
    m = ctx.model
    rec = {
        "figure": fig.id, "number": number, "title": fig.title, "caption": fig.caption, "note": res.note,
        "identity": figure_identity(ctx, fig),
        "network": {"model": m.name, "weights": m.weights_source, "weights_sha256": m.weights_sha256,
                    "note": ctx.network.note, "requested": ctx.network.requested},
        "unit": res.unit, "seed": ctx.recipe.render.seed, "size": ctx.size, "steps": res.steps,
        "steps_scale": ctx.steps_scale, "png": f"{fig.id}.png",
        "panels": [p.record() for p in res.panels if p.image is not None or p.info],
        **res.extra,
        "recipe": ctx.recipe.to_dict(), "recipe_hash": ctx.recipe.hash(),
    }
    atomic_write_json(out / f"{fig.id}.json", rec)
    return out / f"{fig.id}.png"


def with_render(recipe: Recipe, **render) -> Recipe:
    return replace(recipe, render=replace(recipe.render, **render))
