"""The recipe's shape: one frozen dataclass per YAML section, each key with its type, default and bounds.

A recipe is everything that decides a picture (model, render size and steps, parameterization, transforms,
regularizers, gradient preconditioner) plus the settings of the jobs built on renders (dataset examples, variants,
interpolation). The dataclasses are the single source of truth: the validator (fvcli/recipe/validate.py) reads
their type hints and `metadata` bounds, and the reference page docs/reference/recipe.md is generated from them.
`Recipe.hash()` identifies everything that changes the pictures (not the batch size, device or unit list), so a sweep
resumes only into a directory rendered with the same recipe.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from ..models import ModelOptions, Preprocess, parse_layouts
from ..optvis.coarse import COARSE_PARAMS, coarse_size
from ..optvis.loop import LoopSettings
from ..optvis.optim import BETAS as ADAM_BETAS
from ..optvis.optim import LR_SCHEDULES
from ..optvis.preconditioners import KINDS as PRECONDITIONERS
from ..optvis.preconditioners import GradientSpec
from ..optvis.transforms import PRESETS, Step, at_size
from .chains import transforms_to_yaml
from .values import MAX_SIZE

# Documented bounds: large enough for any real use, small enough that a typo cannot exhaust the machine.
MAX_STEPS = 100_000
MAX_BATCH = 1024
# fv's default optimizer and spectrum schedule where the article's differ (issue #29: chosen on the TUNE200 classes,
# kept on BENCH200 at 128 and 224 px, docs/reports/time-to-quality.md): Adam's beta1 0.5, and the spectrum's decay
# from 1.5 to the article's 1/f over the first 64 steps. `-r article` and `-r lucid` write the article's values.
DEFAULT_BETA1 = 0.5
DEFAULT_DECAY = (1.5, 64)  # (param.decay_from, param.decay_ramp)
# ... and, in renders of 224 px and more, the first 96 steps at half the size (render.coarse_steps: auto; the sixth
# session, kept on BENCH200 at 224 px; at 128 px its 64 px phase loses, so smaller renders are plain), at most three
# quarters of a short render's steps. `-r article` / `-r lucid` and a converging stream are full size throughout.
AUTO_COARSE = (96, 224, 0.75)  # (steps, from this render size, at most this share of the steps)


def _bounds(lo: float | None = None, hi: float | None = None, choices: tuple | None = None) -> dict:
    return {"lo": lo, "hi": hi, "choices": choices}


@dataclass(frozen=True)
class ModelRecipe:
    # a registered model (`fv weights list`), torchvision:NAME, timm:NAME, path/to/net.py:CALLABLE, pkg.mod:CALLABLE
    name: str = "inceptionv1"
    weights: str | None = None  # None: the model's default; PATH; random:SEED; torchvision; timm
    num_classes: int | None = field(default=None, metadata=_bounds(1, 100_000))
    preprocess: dict | None = None  # {value_range: [lo, hi]} or {mean: [r,g,b], std: [r,g,b]}
    labels: str | None = None  # labels file: line i names class i
    redirect_relu: bool | None = None  # None: the model's default (on for inceptionv1, as lucid)
    kwargs: dict | None = None  # keyword arguments of the model's callable (user code, timm.create_model)
    weights_key: str | None = None  # the key holding the state_dict in a checkpoint dict (None: found)
    native_size: int | None = field(default=None, metadata=_bounds(8, MAX_SIZE))  # None: the model's (user: 224)
    # {layer or glob: nchw | nhwc | tokens | vector, or {layout: tokens, prefix: N, grid: [H, W]}}; None: detected
    layouts: dict | None = None


@dataclass(frozen=True)
class RenderRecipe:
    steps: int = field(default=512, metadata=_bounds(1, MAX_STEPS))
    lr: float = field(default=0.05, metadata=_bounds(1e-6, 100.0))  # Adam learning rate (the article: 0.05)
    # the learning rate over the steps: constant (the article's) or cosine (decays to 0 at the last step)
    lr_schedule: str = field(default="constant", metadata=_bounds(choices=LR_SCHEDULES))
    lr_warmup: int = field(default=0, metadata=_bounds(0, MAX_STEPS))  # steps of linear warm-up first
    size: int = field(default=224, metadata=_bounds(8, MAX_SIZE))
    batch_size: int | str = field(default="auto", metadata=_bounds(1, MAX_BATCH, choices=("auto",)))  # or "auto"
    seed: int = field(default=0, metadata=_bounds(0, 2**62))
    thresholds: tuple[int, ...] = ()  # extra snapshot steps (the last step is always one)
    device: str = field(default="auto", metadata=_bounds(choices=("auto", "cpu", "cuda")))
    channels_last: bool = True
    precision: str = field(default="fp32", metadata=_bounds(choices=("fp32", "bf16", "fp16")))  # bf16: CUDA+CPU; fp16: CUDA
    compile: bool = False  # torch.compile the step (for CUDA; slower on the CPU); not hashed: same pictures
    # the render size the transforms' pixel amounts (pad, jitter, blur) are written for: at another size they are
    # scaled by size / transforms_at_size, the same relative strength (None: used as written, the article's way)
    transforms_at_size: int | None = field(default=224, metadata=_bounds(8, MAX_SIZE))
    # coarse to fine (fvcli/optvis/coarse.py): this fraction of the steps first, at coarse_scale times the size, then
    # the picture handed on at full size (0: render.coarse_steps decides; pixel and Fourier params)
    coarse: float = field(default=0.0, metadata=_bounds(0.0, 0.95))
    coarse_scale: float = field(default=0.5, metadata=_bounds(0.1, 1.0))
    # the same in steps: this many first steps coarse, whatever render.steps is (0: off); auto: 96 in renders of
    # 224 px and more (at most three quarters of the steps), none below -- a half-size phase of a 128 px render
    # runs at 64 px, where an ImageNet network recognizes little
    coarse_steps: int | str = field(default="auto", metadata=_bounds(0, MAX_STEPS, choices=("auto",)))
    # the transforms' strength over the steps (fvcli/optvis/transforms.py, `strength`): this multiple of the written
    # amounts at step 0, linear to the written strength at step `transforms_ramp` (0: as written throughout)
    transforms_from: float = field(default=1.0, metadata=_bounds(0.0, 4.0))
    transforms_ramp: int = field(default=0, metadata=_bounds(0, MAX_STEPS))
    # Adam's moments: the decay of the running mean of the gradient and of its square (the article's Adam: 0.9,
    # 0.999; fv's default 0.5: less momentum, a good picture sooner -- docs/reports/time-to-quality.md)
    beta1: float = field(default=DEFAULT_BETA1, metadata=_bounds(0.0, 0.9999))
    beta2: float = field(default=ADAM_BETAS[1], metadata=_bounds(0.0, 0.99999))
    # beta1 over the steps (fvcli/optvis/optim.py): this value at step 0, linear to render.beta1 at step
    # `beta1_ramp` (null or 0: render.beta1 throughout)
    beta1_from: float | None = field(default=None, metadata=_bounds(0.0, 0.9999))
    beta1_ramp: int = field(default=0, metadata=_bounds(0, MAX_STEPS))


@dataclass(frozen=True)
class StopRecipe:
    # a unit whose objective has stopped improving leaves its batch before `render.steps`, and the next unit of the
    # plan takes its slot (continuous batching, fvcli/optvis/stream.py); never in the article's recipe
    converge: bool = False
    min_steps: int = field(default=128, metadata=_bounds(1, MAX_STEPS))  # no stop before this step
    window: int = field(default=32, metadata=_bounds(1, MAX_STEPS))  # steps per mean of the objective
    tol: float = field(default=0.01, metadata=_bounds(0.0, 1.0))  # stop when the last window's mean rose by less
    queue: int = field(default=4, metadata=_bounds(1, 64))  # sweeps: units per slot in a planned batch (refill)


@dataclass(frozen=True)
class ParamRecipe:
    kind: str = field(default="fourier", metadata=_bounds(choices=("fourier", "pixel", "maco")))
    decorrelate: bool = True  # lucid's color decorrelation
    sigmoid: bool = True
    decay_power: float = field(default=1.0, metadata=_bounds(0.0, 4.0))  # spectrum scale 1/f**decay_power
    # the decay over the steps (fvcli/optvis/decay_schedule.py): this power at step 0, linear to decay_power at step
    # `decay_ramp` (0: decay_power throughout; fv's default 1.5 -> 1 over 64 steps, the article's 1/f throughout);
    # Fourier params (the other kinds ignore the default)
    decay_from: float = field(default=DEFAULT_DECAY[0], metadata=_bounds(0.0, 4.0))
    decay_ramp: int = field(default=DEFAULT_DECAY[1], metadata=_bounds(0, MAX_STEPS))
    # the initial image: the std of the random draw of the spectrum (Fourier) or pixels (pixel); 0 starts from flat
    # grey (None: lucid's 0.01)
    init_std: float | None = field(default=None, metadata=_bounds(0.0, 10.0))
    spectrum: str | None = None  # maco: magnitude spectrum file from `fv spectrum` (None: fitted 1/f**alpha)
    maco_alpha: bool = False  # maco: also write the transparency map KEY.alpha.png


@dataclass(frozen=True)
class RegularizerRecipe:
    l1: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # weight of the L1 penalty
    l1_constant: float = field(default=0.5, metadata=_bounds(0.0, 1.0))
    tv: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # weight of the total-variation penalty
    blur: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # weight of lucid's blur-each-step term
    bilateral: float = field(default=0.0, metadata=_bounds(0.0, 1e6))  # the same with a bilateral filter (edges kept)


@dataclass(frozen=True)
class GradientRecipe:
    """A gradient preconditioner applied before every optimizer step (fvcli/optvis/preconditioners.py)."""

    precondition: str = field(default="none", metadata=_bounds(choices=PRECONDITIONERS))  # blur/laplacian: pixel param
    sigma: float = field(default=1.0, metadata=_bounds(0.1, 64.0))  # blur: Gaussian sigma in pixels
    levels: int = field(default=4, metadata=_bounds(1, 12))  # laplacian: pyramid levels


@dataclass(frozen=True)
class ExamplesRecipe:
    """`fv examples` (dataset examples, fvcli/examples/scan.py); not part of Recipe.hash(): it changes no rendering."""

    images: str | None = None  # folder of images (ImageFolder or flat, recursive); relative to the recipe file
    top_k: int = field(default=10, metadata=_bounds(1, 1000))  # examples kept at each end of every unit
    limit: int | None = field(default=None, metadata=_bounds(1, 10**9))  # first N images (after sampling)
    sample: int | None = field(default=None, metadata=_bounds(1, 10**9))  # a random sample of N images ...
    seed: int = field(default=0, metadata=_bounds(0, 2**62))  # ... drawn with this seed (also the reservoir's)
    batch_size: int = field(default=32, metadata=_bounds(1, MAX_BATCH))
    workers: int = field(default=2, metadata=_bounds(0, 64))  # data-loader processes (0: load in the main one)
    size: int | None = field(default=None, metadata=_bounds(8, MAX_SIZE))  # None: the model's native size
    reduce: str = field(default="max", metadata=_bounds(choices=("max", "mean")))  # channel score over positions
    spectrum: tuple[float, ...] = field(default=(0.4, 0.6), metadata=_bounds(0.0, 1.0))  # slightly -/+ quantiles
    reservoir: int = field(default=512, metadata=_bounds(16, 1_000_000))  # sampled scores per unit for quantiles
    checkpoint_every: int = field(default=50, metadata=_bounds(1, 10**9))  # batches between checkpoints
    tile: int = field(default=96, metadata=_bounds(16, 1024))  # grid tile size in pixels


@dataclass(frozen=True)
class VariantsRecipe:
    """Several pictures per unit (`fv render --diversity/--negative/--both`, `fv sweep --panels`)."""

    diversity: int = field(default=1, metadata=_bounds(1, 64))  # facets per unit rendered jointly (1: off)
    diversity_weight: float = field(default=1e2, metadata=_bounds(0.0, 1e6))  # lucid's notebooks: 1e2
    diversity_layer: str | None = None  # layer of the Gram matrices (None: the unit's own layer)
    sign: str = field(default="positive", metadata=_bounds(choices=("positive", "negative", "both")))
    panels: str = field(default="none", metadata=_bounds(choices=("none", "appendix")))  # fv sweep only


@dataclass(frozen=True)
class InterpolationRecipe:
    """`fv interpolate A B`: frames and the alignment term (the article's interpolation section)."""

    frames: int = field(default=6, metadata=_bounds(2, 64))
    align_layer: str | None = None  # None: the main layer before A's
    align_weight: float = field(default=0.1, metadata=_bounds(0.0, 1e6))  # "a small alignment objective"; 0: off
    align_decay: float = field(default=2.0, metadata=_bounds(1e-6, 1e6))  # lucid's decay_ratio


@dataclass(frozen=True)
class Recipe:
    model: ModelRecipe = ModelRecipe()
    render: RenderRecipe = RenderRecipe()
    param: ParamRecipe = ParamRecipe()
    transforms: tuple[Step, ...] = PRESETS["strong"]  # the `quality` recipe's (docs/reports/quality.md)
    regularizers: RegularizerRecipe = RegularizerRecipe()
    units: tuple[str, ...] = ()  # units to render when the command line names none
    examples: ExamplesRecipe = ExamplesRecipe()  # `fv examples` settings (not hashed)
    variants: VariantsRecipe = VariantsRecipe()  # diversity facets, negatives, appendix panels
    interpolation: InterpolationRecipe = InterpolationRecipe()  # `fv interpolate`
    gradient: GradientRecipe = GradientRecipe()  # gradient preconditioner (default: none)
    stop: StopRecipe = StopRecipe()  # convergence stop and continuous batching (default: off)

    # -- derived views --------------------------------------------------------------------------------------
    def model_options(self) -> ModelOptions:
        pre = None
        if self.model.preprocess:
            p = self.model.preprocess
            pre = Preprocess(value_range=tuple(p["value_range"])) if "value_range" in p else Preprocess(
                mean=tuple(p["mean"]), std=tuple(p["std"]))
        m = self.model
        return ModelOptions(m.name, m.weights, m.num_classes, pre, m.labels, m.redirect_relu, m.kwargs,
                            m.weights_key, m.native_size, layouts=parse_layouts(m.layouts))

    def loop_settings(self) -> LoopSettings:
        r, p = self.render, self.param
        full = at_size(self.transforms, r.size, r.transforms_at_size)
        coarse = at_size(full, coarse_size(r.size, r.coarse_scale), r.size)  # the same strength at the coarse size
        return LoopSettings(steps=r.steps, lr=r.lr, size=r.size, thresholds=r.thresholds, param=p.kind,
                            decorrelate=p.decorrelate, sigmoid=p.sigmoid, decay_power=p.decay_power,
                            transforms=full, spectrum=p.spectrum, maco_alpha=p.maco_alpha,
                            channels_last=r.channels_last, precision=r.precision,
                            compile=r.compile, gradient=GradientSpec(**dataclasses.asdict(self.gradient)),
                            coarse_steps=self.coarse_steps(),
                            coarse_scale=r.coarse_scale, coarse_transforms=coarse,
                            lr_schedule=r.lr_schedule, lr_warmup=r.lr_warmup,
                            transforms_from=r.transforms_from, transforms_ramp=r.transforms_ramp,
                            decay_from=p.decay_from, decay_ramp=p.decay_ramp,
                            betas=(r.beta1, r.beta2), beta1_from=r.beta1_from, beta1_ramp=r.beta1_ramp,
                            init_std=p.init_std)

    def coarse_steps(self) -> int:
        """The steps of the coarse phase (0: a plain render): render.coarse's fraction of the steps where it is set,
        else render.coarse_steps (auto: AUTO_COARSE; never in a converging stream, whose refilled batch renders at
        one size -- validate refuses a number beside stop.converge)."""
        r = self.render
        if r.coarse:
            return int(round(r.coarse * r.steps))
        if r.coarse_steps != "auto":
            return min(int(r.coarse_steps), r.steps)
        steps, from_size, share = AUTO_COARSE
        if r.size < from_size or self.stop.converge or self.param.kind not in COARSE_PARAMS:  # (MACO: one spectrum
            return 0  # per size)
        return min(steps, r.steps - int(r.steps * (1 - share)))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["transforms"] = transforms_to_yaml(self.transforms)
        d["render"]["thresholds"] = list(self.render.thresholds)
        d["units"] = list(self.units)
        d["examples"]["spectrum"] = list(self.examples.spectrum)
        return d

    def hash(self) -> str:
        """sha256 (16 hex) of what determines the pictures: not batch size, device or unit list."""
        d = self.to_dict()
        d["render"].pop("batch_size")
        d["render"].pop("device")
        d["render"].pop("compile")  # same pictures up to float rounding, like the device
        r = self.render
        if at_size(self.transforms, r.size, r.transforms_at_size) == self.transforms:  # scaling changes nothing
            d["render"].pop("transforms_at_size")  # (at its size, no pixel amounts, or null): the hash it always had
        if r.lr_schedule == "constant" and r.lr_warmup == 0:  # recipes from before schedules keep their hash
            d["render"].pop("lr_schedule")
            d["render"].pop("lr_warmup")
        if r.transforms_ramp == 0 or r.transforms_from == 1.0:  # no ramp: recipes from before it keep their hash
            d["render"].pop("transforms_from")
            d["render"].pop("transforms_ramp")
        loop = self.loop_settings()
        if loop.decay() is None:  # no decay schedule (off, or not a Fourier param):
            d["param"].pop("decay_from")  # recipes from before it keep their hash
            d["param"].pop("decay_ramp")
        if (r.beta1, r.beta2) == ADAM_BETAS:  # the article's Adam: recipes from before the keys keep their hash
            d["render"].pop("beta1")
            d["render"].pop("beta2")
        if loop.beta1_schedule() is None:  # a constant beta1: recipes from before the keys keep
            d["render"].pop("beta1_from")  # their hash
            d["render"].pop("beta1_ramp")
        if self.param.init_std is None:  # lucid's initial noise: the same
            d["param"].pop("init_std")
        if r.coarse_steps == "auto":  # what it resolves to: the hash of the number (0 below 224 px: of a plain
            d["render"]["coarse_steps"] = loop.coarse_steps if not r.coarse else 0  # render, as before the key)
        steps = d["render"]["coarse_steps"]
        if steps == 0 or r.coarse:  # not used: recipes from before the key keep their hash
            d["render"].pop("coarse_steps")
        if r.coarse == 0 and steps == 0:  # off: recipes from before coarse to fine keep their hash
            d["render"].pop("coarse")
            d["render"].pop("coarse_scale")
        d.pop("units")
        d.pop("examples")
        for key in _NEWER_MODEL_KEYS:  # unset, they add nothing: recipes written before them keep their hash
            if d["model"].get(key) is None:
                d["model"].pop(key)
        if self.regularizers.bilateral == 0:  # recipes from before the key existed keep their hash
            d["regularizers"].pop("bilateral")
        d["param"].pop("maco_alpha")  # an extra output, same pictures
        if self.param.spectrum is None:  # keys added with MACO: recipes without it keep their hash
            d["param"].pop("spectrum")
        for name, cls in (("variants", VariantsRecipe), ("interpolation", InterpolationRecipe),
                          ("gradient", GradientRecipe)):
            if getattr(self, name) == cls():  # at their defaults they add nothing: plain recipes keep their hash
                d.pop(name)
        if self.stop.converge:
            d["stop"].pop("queue")  # how many units wait per slot: the same pictures
        else:  # off, its settings change nothing: every recipe without a stop keeps its hash
            d.pop("stop")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


_NEWER_MODEL_KEYS = ("kwargs", "weights_key", "native_size", "layouts")
