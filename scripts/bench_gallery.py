"""Benchmark the gallery: what finalizing adds to a demo sweep's wall time, and what each extra costs.

    .venv/bin/python scripts/bench_gallery.py                    # demo model, block1-3 (224 units), 32 px, 32 steps
    .venv/bin/python scripts/bench_gallery.py --steps 64 --extras   # also diversity (4 facets), negative, examples

It renders the sweep with `run_sweep` (which finalizes at the end: sheets, manifest, gallery), then times the
gallery alone (`gallery.write_gallery`) three times: cold with media -- pages, sprites, HF caches and the examples'
thumbnails and crops removed first --, cold (the media kept: they are made once, when examples arrive, like the
examples themselves) and warm (a re-finalize, nothing changed). The target (issue #23): the cold gallery adds
< 5 % to the sweep's wall time. Prints one JSON line; name the CPU beside the numbers when you quote them.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fvcli.gallery import write_gallery  # noqa: E402
from fvcli.models import load_model  # noqa: E402
from fvcli.recipe import load_recipe  # noqa: E402
from fvcli.sweep import collect, finalize, run_sweep, select_units  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def clear_gallery(out: Path, media: bool = False) -> None:
    """Remove the pages, sprites and caches (and with `media` the examples' thumbnails and crops)."""
    for pat in ("index.html", "gallery.js", "layers/*/*.html", "layers/*/gallery/*"):
        for p in out.glob(pat):
            p.unlink()
    for p in out.glob("layers/*/ex") if media else []:
        shutil.rmtree(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["block1", "block2", "block3"])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--extras", action="store_true", help="also add diversity, negative and examples (fv gallery)")
    ap.add_argument("--dir", type=Path, default=None, help="work here (default: a temporary directory)")
    ap.add_argument("--reuse", action="store_true", help="time the gallery of the sweep already in --dir only")
    a = ap.parse_args()
    root = a.dir or Path(tempfile.mkdtemp(prefix="fv-bench-gallery-"))
    out = root / "run"
    if out.exists() and not a.reuse:
        shutil.rmtree(out)
    recipe = load_recipe(None, [f"render.thresholds=[{a.steps // 2}]"],
                         {"model.name": "demo", "render.steps": a.steps, "render.size": a.size, "render.device": "cpu"})
    model = load_model(recipe.model_options(), "cpu", recipe.render.channels_last)
    units = select_units(model, a.layers)
    if a.reuse:  # the earlier run's numbers
        old = json.loads((root / "bench.json").read_text())
        sweep_s, extras = old["sweep_wall_s"], old.get("extras")
    else:
        t0 = time.perf_counter()
        run_sweep(model, recipe, units, out, batch_size=a.batch_size)
        sweep_s, extras = time.perf_counter() - t0, None
    res = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "units": len(units), "size": a.size,
           "steps": a.steps, "sweep_wall_s": round(sweep_s, 2)}
    if extras is not None:
        res["extras"] = extras
    elif a.extras:
        from fvcli.cli.gallery import Extras, add_extras
        from fvcli.models.demo_data import DEMO_CLASSES  # noqa: F401  (the images' classes)

        sys.path.insert(0, str(ROOT / "tests"))
        from test_gallery_rich import make_images

        images = make_images(root / "images", n=48)
        res["extras"] = add_extras(out, Extras(4, True, images), top_k=5, quiet=True)
    for label in ("cold_with_media", "cold", "warm"):
        if label.startswith("cold"):
            clear_gallery(out, media=label == "cold_with_media")
        t0 = time.perf_counter()
        _sweep, _states, layers = collect(out)
        manifest = json.loads((out / "manifest.json").read_text())
        write_gallery(out, manifest, layers)
        res[f"gallery_{label}_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    finalize(out)
    res["finalize_warm_s"] = round(time.perf_counter() - t0, 3)
    res["gallery_cold_pct_of_sweep"] = round(100 * res["gallery_cold_s"] / sweep_s, 2)
    extras_s = sum(c["seconds"] for c in res.get("extras") or [])
    res["gallery_cold_with_media_pct_of_sweep_and_extras"] = round(
        100 * res["gallery_cold_with_media_s"] / (sweep_s + extras_s), 2)
    print(json.dumps(res))
    (root / "bench.json").write_text(json.dumps(res) + "\n")
    if not a.dir:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
