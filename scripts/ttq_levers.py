"""The early-quality levers of issue #29, written down before any of them was rendered on the class sets.

Each lever is a list of `--set` items on top of the model's default recipe (configs/default.yaml /
configs/mobilenet_v2.yaml); scripts/bench_time_to_quality.py renders it as the row `fv NAME`. They are chosen on the
TUNE200 classes (scripts/bench_imagenet_quality.py's rule) and kept only if they win on BENCH200. Every schedule here
is in absolute steps (the first 64 steps of a 128-step render are those of a 512-step one), so a short tuning run
shows exactly the early curve of the full render.
"""
from __future__ import annotations

from collections.abc import Callable

from fvcli.figures.quality import ARTICLE_OPT

LEVERS: dict[str, Callable[[int], list[str]]] = {
    # transform strength, weak to strong: a quarter of the written pixel shifts, angles and log-scales at step 0,
    # rising linearly to the full strength at step 64 (fvcli/optvis/transforms.py, `strength`)
    "ramp": lambda steps: ["render.transforms_from=0.25", "render.transforms_ramp=64"],
    # the reverse: 1.5 times the strength at step 0, down to the written strength at step 64
    "reverse": lambda steps: ["render.transforms_from=1.5", "render.transforms_ramp=64"],
    # a higher learning rate (twice the article's), constant
    "lr0.1": lambda steps: ["render.lr=0.1"],
    # coarse to fine done with what was learned: 64 steps at half the size (a quarter of the pixels), then handed on
    # (fvcli/optvis/coarse.py); run as `render.coarse` = 64 / steps, the same as `render.coarse_steps=64` (added later)
    "coarse64": lambda steps: ["render.coarse_steps=64"],
    # round 2, added after the first 32 TUNE200 classes of round 1 (coarse64 and lr0.1 ahead there on the judge at
    # 224 px; ramp and reverse not): a longer coarse phase, and the two together
    "coarse96": lambda steps: ["render.coarse_steps=96"],  # kept on BENCH200: configs/fast.yaml
    "coarse64+lr0.1": lambda steps: ["render.coarse_steps=64", "render.lr=0.1"],
    # round 3, for 128 px (written 7 December, before any was rendered): at 128 px coarse96's 64-px phase lost (the
    # network recognizes little at 64 px), so the coarse phase at three quarters of the size (96 px at 128, a step
    # at ~56 % of the cost), short and long; and a steeper spectrum (smoother pictures: fewer steps wasted on high
    # frequencies early), constant, to see whether a decay schedule is worth building
    "coarse48x0.75": lambda steps: ["render.coarse_steps=48", "render.coarse_scale=0.75"],
    "coarse96x0.75": lambda steps: ["render.coarse_steps=96", "render.coarse_scale=0.75"],
    "decay1.5": lambda steps: ["param.decay_power=1.5"],
    "decay1.25": lambda steps: ["param.decay_power=1.25"],
    # round 4, after round 3 on TUNE200 at 128 px (decay 1.5 ahead to step 64 -- 0.16 vs 0.07 at step 16 -- and
    # behind at 128: 0.41 vs 0.46): the decay as a schedule, steep first and the article's 1/f from the ramp's end
    # (the new param.decay_from / param.decay_ramp, fvcli/optvis/decay_schedule.py)
    "decay1.5to1@64": lambda steps: ["param.decay_from=1.5", "param.decay_ramp=64"],
    "decay2to1@64": lambda steps: ["param.decay_from=2.0", "param.decay_ramp=64"],
    "decay1.5to1@128": lambda steps: ["param.decay_from=1.5", "param.decay_ramp=128"],
    # round 5, after round 4 at 128 px (decay1.5to1@64 ahead of the default to step 96 -- 0.17 vs 0.07 at step 16 --
    # and level at 128: 0.44 vs 0.46; a start at 2.0 saturates: 0.07 throughout): at 224 px, alone and with coarse96
    "coarse96+decay1.5to1@64": lambda steps: ["render.coarse_steps=96", "param.decay_from=1.5",
                                              "param.decay_ramp=64"],
    # the other models at 224 px are compute-bound on one CPU thread (fv's step per unit ~2x lucent's: the truncated
    # forward, no weight gradients); the opt-in bf16 autocast (2.2x the convolution throughput on an AVX512-BF16 CPU,
    # far slower on an AVX2-only one) is the remaining per-step lever there: measured, not a default
    "bf16": lambda steps: ["render.precision=bf16"],
    # round 6 (written 7 December, fourth session, before any was rendered), at 128 steps on TUNE200, both sizes.
    # The learning rate annealed over the render's own steps (half a cosine to 0 at the last step; issue #20's 25
    # classes said it helps at 256 steps): a schedule of the whole render, so only its LAST snapshot is a render of
    # that length -- the rows of a deadline table would each be rendered at their own steps
    "cosine": lambda steps: ["render.lr_schedule=cosine"],
    "cosine+lr0.1": lambda steps: ["render.lr_schedule=cosine", "render.lr=0.1"],
    # the optimizer's moments (the new render.beta1 / render.beta2; Adam's 0.9 / 0.999 as the article): less
    # momentum, and a second moment that forgets the first steps' small gradients sooner
    "beta1=0.5": lambda steps: ["render.beta1=0.5"],
    "beta2=0.99": lambda steps: ["render.beta2=0.99"],
    # the initial image (the new param.init_std; lucid's 0.01 on the spectrum): a flat grey start, and 5x the noise
    "init0": lambda steps: ["param.init_std=0.0"],
    "init0.05": lambda steps: ["param.init_std=0.05"],
    # several transformed copies per step (the `copies` step: the objective averaged over 2 independent draws of the
    # transforms, twice the compute of a step): measured constant first -- "copies early" is worth a schedule only if
    # a step of 2 copies buys more than 2 plain steps
    "copies2": lambda steps: ["transforms=[{pad: 32}, {jitter: 32}, {scale: [0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, "
                              "1.15, 1.2]}, {rotate: [-20, -15, -10, -5, 0, 5, 10, 15, 20]}, {jitter: 16}, "
                              "{crop: true}, {copies: 2}]"],
    # round 7, after round 6 at 128 px on TUNE200 (beta1 0.5 ahead early -- 0.12 vs 0.07 at step 16, 0.22 vs 0.15 at
    # 32 -- and level at 128, 0.47 vs 0.46; cosine, beta2 0.99 and the initial image not; 2 copies ahead per step,
    # behind per second): beta1 0.5 at 224 px alone and with coarse96, and at 128 px with the decay schedule
    "beta1=0.5+decay1.5to1@64": lambda steps: ["render.beta1=0.5", "param.decay_from=1.5", "param.decay_ramp=64"],
    "coarse96+beta1=0.5": lambda steps: ["render.coarse_steps=96", "render.beta1=0.5"],
    # round 8, after round 7 (128 px: beta1 0.5 with the decay schedule 0.23 vs 0.07 at step 16, 0.42 vs 0.30 at 64,
    # 0.51 vs 0.46 at 128 -- the two stack; 224 px: beta1 0.5 0.41 vs 0.36 at 128, with coarse96 0.54 vs 0.47): the
    # decay schedule with beta1 0.5 at 224 px (row beta1=0.5+decay1.5to1@64 above), and the three together
    "coarse96+beta1=0.5+decay1.5to1@64": lambda steps: ["render.coarse_steps=96", "render.beta1=0.5",
                                                        "param.decay_from=1.5", "param.decay_ramp=64"],
    # round 9 (written 7 December, fifth session, before any was rendered), on top of the new default (beta1 0.5, the
    # decay schedule): beta1 as a schedule (the new render.beta1_from / render.beta1_ramp), 0.5 for the first steps
    # and up to the article's 0.9 -- the early gain of less momentum, and the article's momentum for the finish,
    # where a constant 0.5 left ResNet-50 `layer3` 8 % below lucent at 512 steps (the previous default passed it)
    "beta1=0.5to0.9@64": lambda steps: ["render.beta1=0.9", "render.beta1_from=0.5", "render.beta1_ramp=64"],
    "beta1=0.5to0.9@128": lambda steps: ["render.beta1=0.9", "render.beta1_from=0.5", "render.beta1_ramp=128"],
    # round 10, after round 9 (beta1's schedule changed nothing on ResNet-50 `layer3` -- 1010 at 512 steps either
    # way -- so the late cost there is the steep start's: 59 % of its 512-step values within 2 levels of 0 or 255
    # against the previous default's 33 %; 28 % against 5 % at exactly 0 or 255, counted after this was written):
    # a milder and a shorter steep start, with the default's beta1 0.5
    "decay1.25to1@64": lambda steps: ["param.decay_from=1.25", "param.decay_ramp=64"],
    "decay1.5to1@32": lambda steps: ["param.decay_from=1.5", "param.decay_ramp=32"],
    # round 11 (written 7 December, sixth session, before any was rendered), at 224 px to 128 steps on TUNE200, on top
    # of the default: coarse96 (`-r fast`, 0.63 at 128 steps on BENCH200 at 224 px, the best early picture so far)
    # with a longer coarse phase (16 fine steps left at 128), and with its coarse phase at 5/8 of the size (140 px:
    # the network sees more than at 112 px, a step at ~40 % of the full size's cost)
    "coarse112": lambda steps: ["render.coarse_steps=112"],
    "coarse96x0.625": lambda steps: ["render.coarse_steps=96", "render.coarse_scale=0.625"],
    # round 12 (written 7 December, sixth session, after round 11 and before rendering), 224 px to 128 steps on
    # TUNE200: the 0.70 at 128 steps is a better step, not a sooner one (the default's 224 px curve is flat
    # from 128 to 512 steps), and the best step measured is several transformed copies' (round 6: 2 copies 0.53 vs
    # 0.46 at 128 px, 128 steps, behind per second) -- on top of the coarse phase, whose steps cost a quarter
    "coarse96+copies2": lambda steps: ["render.coarse_steps=96", *LEVERS["copies2"](steps)],
    "coarse96+copies4": lambda steps: ["render.coarse_steps=96",
                                       LEVERS["copies2"](steps)[0].replace("{copies: 2}", "{copies: 4}")],
}


# fv's default changed after round 8 (fourth session, 7 December): Adam's beta1 0.5 and the decay schedule 1.5 -> 1
# over 64 steps (DEFAULT_LEVER), kept on BENCH200 at 128 and 224 px. A row `fv default` of a run before that is the
# previous default, which these `--set` items give back (the article's Adam, 1/f from the first step).
DEFAULT_LEVER = "beta1=0.5+decay1.5to1@64"
PREVIOUS_DEFAULT = ARTICLE_OPT  # the article's Adam and 1/f from step 0


LEVERS["prev-default"] = lambda steps: PREVIOUS_DEFAULT  # the rows `fv default` of the runs before the change
LEVERS["prev-coarse96"] = lambda steps: PREVIOUS_DEFAULT + ["render.coarse_steps=96"]  # `fv coarse96` then

# It changed again in the sixth session (7 December, after round 11 -- TUNE200, 224 px, judge top-1 at 128 steps:
# coarse96 0.60, coarse112 0.60, coarse96x0.625 0.58, the last ahead to step 96 -- 0.55 vs 0.47 -- and none ahead
# at 128): renders of 224 px and more take their first 96 steps at half the size (coarse96, kept on BENCH200 at
# 224 px in the fourth session; render.coarse_steps: auto). Every lever above was
# written when a render was full size unless the lever said otherwise, so FULL_SIZE goes before each lever's own
# items: a lever without a coarse phase stays full size (a coarse one's render.coarse_steps comes after and wins) --
# the same recipes, the same hashes.
FULL_SIZE = ["render.coarse_steps=0"]
LEVERS["no-coarse"] = lambda steps: []  # the default before that change (`fv default` of the runs before it)


def lever_sets(row: str, steps: int) -> list[str]:
    """The `--set` items of a row `fv NAME` in a render of `steps` steps (none for the rows that are not levers)."""
    name = row.removeprefix("fv ")
    return FULL_SIZE + LEVERS[name](steps) if name in LEVERS else []
