"""Make the example pictures of docs/guide/beyond.md (diversity, expressions, directions, interpolation, negatives, appendix
panels) from the real ImageNet MobileNetV2 in ../shared, through the same library calls the CLI makes.

    .venv/bin/python scripts/make_examples.py                     # docs/img/*.png (small, palette PNGs)
    .venv/bin/python scripts/make_examples.py --out out/examples --steps 512 --size 224 --tile 160

Every picture is labelled with the command that makes the same images (`fv ... -r mobilenet_v2`). When the PNGs
add up to more than --max-kb, the script says so (keep big sets out of git: write them under out/).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fvcli.units.expr import parse_unit_arg  # noqa: E402
from fvcli.figures.interpolation import interpolate  # noqa: E402
from fvcli.models import load_model  # noqa: E402
from fvcli.outputs import atomic_write_bytes, grid, to_uint8  # noqa: E402
from fvcli.figures.panels import render_panels  # noqa: E402
from fvcli.runner.variants import expand, run_variant_batch  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.runner.batch import run_batch  # noqa: E402

# Units of the real MobileNetV2 (1001-class TF-slim weights) whose pictures read well at small sizes.
DIVERSITY_UNIT = "features.14:4"
ADD_A, ADD_B = "features.14:4", "features.14:9"
DIRECTIONS = ("features.16:dir=random:7", "features.16:dir=random:7:cossim=1")
NEG_UNITS = ("features.14:4", "features.12:3")
PANEL_UNITS = "features.14:4"


def palette_png(arr: np.ndarray, colors: int) -> bytes:
    """A palette PNG: feature visualizations are noisy, so true-colour PNGs of them are large."""
    import io

    im = Image.fromarray(arr).quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--tile", type=int, default=80, help="tile size in the pictures (px)")
    ap.add_argument("--colors", type=int, default=128, help="palette size of the PNGs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-kb", type=float, default=200.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rec = load_recipe("mobilenet_v2", [], {"render.steps": args.steps, "render.size": args.size})
    m = load_model(rec.model_options(), "cpu", channels_last=False)
    tile = args.tile
    written: list[Path] = []

    def save(name: str, arr: np.ndarray) -> None:
        p = args.out / name
        atomic_write_bytes(p, palette_png(arr, args.colors))
        written.append(p)
        print(f"{p}  {p.stat().st_size / 1024:.0f} KB", flush=True)

    def unit(text: str):
        (u,) = parse_unit_arg(text, m)
        return u

    t0 = time.time()
    # 1. Diversity: the same 4 seeds without and with the diversity term.
    u = unit(DIVERSITY_UNIT)
    vs = expand([u], facets=4)
    rows = [run_variant_batch(m, rec, vs, diversity_weight=w) for w in (0.0, 1e2)]
    tiles = [to_uint8(r.snapshots[-1].images[b]) for r in rows for b in range(4)]
    labels = [f"{r.activation[b]:.1f} / {r.gram_cosine[b]:.2f}" for r in rows for b in range(4)]  # act / cos
    for w, r in zip((0, 1e2), rows):
        print(f"  diversity weight {w:g}: activation {[round(a, 1) for a in r.activation]}, "
              f"gram cosine {[round(c, 3) for c in r.gram_cosine]}")
    save("diversity.png", grid(tiles, labels, cols=4, tile=tile, rows_labels=["weight 0", "weight 1e2"]))

    # 2. Expressions: two channels and their sum (the article's neuron addition), and a weighted mix.
    exprs = [ADD_A, ADD_B, f"{ADD_A} + {ADD_B}", f"0.2*{ADD_A} + 0.8*{ADD_B}"]
    res = run_batch(m, rec, [unit(e) for e in exprs])
    save("expressions.png", grid([to_uint8(x) for x in res.snapshots[-1].images],
                                 ["A", "B", "A + B", "0.2A + 0.8B"], cols=4, tile=tile))

    # 3. Directions: a random direction (seed 7) by dot product and by lucid's cosine-weighted variant.
    res = run_batch(m, rec, [unit(d) for d in DIRECTIONS])
    save("directions.png", grid([to_uint8(x) for x in res.snapshots[-1].images], ["dot", "cossim=1"], cols=2,
                                tile=tile))

    # 4. Interpolation A -> B over 6 frames.
    it = interpolate(m, rec, unit(ADD_A), unit(ADD_B), 6)
    print(f"  interpolation: A {[round(a, 1) for a in it.score_a]}, B {[round(b, 1) for b in it.score_b]}")
    save("interpolation.png", grid([to_uint8(x) for x in it.frames], [f"t={t:.1f}" for t in it.ts], cols=6,
                                   tile=tile))

    # 5. Negatives: the most inhibiting and the most exciting image of two channels.
    both = expand([unit(t) for t in NEG_UNITS], negative=True, both=True)
    res = run_variant_batch(m, rec, both)
    print(f"  negatives: activation {dict(zip([v.key for v in both], [round(a, 1) for a in res.activation]))}")
    save("negatives.png", grid([to_uint8(x) for x in res.snapshots[-1].images], [v.tag for v in both], cols=4,
                               tile=tile))

    # 6. The appendix's panel rows (what a sweep with --panels appendix draws per channel).
    prow = list(render_panels(m, rec, parse_unit_arg(PANEL_UNITS, m), batch_size=14))
    tiles = [to_uint8(p.image) for r in prow for p in r.panels]
    names = ["neuron", "channel", "negative"] + [f"div {i}" for i in range(4)]
    save("panels.png", grid(tiles, names * len(prow), cols=7, tile=tile, rows_labels=[r.unit.label for r in prow]))

    total = sum(p.stat().st_size for p in written) / 1024
    print(f"{len(written)} pictures, {total:.0f} KB in all, {time.time() - t0:.0f} s "
          f"({args.steps} steps at {args.size} px, MobileNetV2 {m.weights_sha256[:12]})")
    if total > args.max_kb:
        print(f"warning: more than {args.max_kb:.0f} KB; do not commit these (write them under out/)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
