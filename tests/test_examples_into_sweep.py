"""`fv examples` and `fv sweep` into one directory, in either order: the examples end where the gallery looks.

A directory becomes a sweep's when `fv sweep` creates its sweep.json; `fv examples` run before that writes its files
at the top. The chaos run (scripts/chaos.py) found the placement depending on timing; now the sweep's finalize adopts
such files (fvcli/sweep/adopt.py), so both orders end with the same files, byte for byte.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest


from conftest import write_demo_images

pytestmark = pytest.mark.usefixtures("one_thread")

UNITS = "block3:0-3"
LAYER = "block3"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_demo_images(tmp_path_factory.mktemp("imgs"), 8, 40, 0, flat=True)


def _examples(cli, images: Path, out: Path) -> None:
    r = cli("examples", images, UNITS, "--model", "demo", "-o", out, "-q", "--workers", "0", "--batch-size", "4",
            "--top-k", "2", "--device", "cpu")
    assert r.exit_code == 0, r.output


def _sweep(cli, out: Path) -> None:
    r = cli("sweep", UNITS, "--model", "demo", "--size", "32", "--steps", "3", "-b", "4", "--device", "cpu",
            "-o", out, "-q")
    assert r.exit_code == 0, r.output


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.examples.*"))}


def test_examples_before_the_sweep_end_beside_the_renders(cli, images, tmp_path):
    first, later = tmp_path / "examples-first", tmp_path / "sweep-first"
    _examples(cli, images, first)
    assert sorted(p.name for p in first.glob("*.examples.json")) == [f"block3-{c:05d}.examples.json" for c in range(4)]
    _sweep(cli, first)  # claims the directory, renders, finalizes: the examples move to layers/block3/
    _sweep(cli, later)
    _examples(cli, images, later)
    assert not list(first.glob("*.examples.*")), "examples left at the top of a sweep's directory"
    got, want = _files(first), _files(later)
    assert sorted(got) == sorted(want) and len(got) == 8
    assert all(got[k] == want[k] for k in want), [k for k in want if got[k] != want[k]]
    summaries = [json.loads((d / "examples-summary.json").read_text()) for d in (first, later)]
    assert summaries[0]["records"] == summaries[1]["records"] == [
        f"layers/block3/block3-{c:05d}.examples.json" for c in range(4)]
    # the gallery's unit page shows them
    assert "block3-00002.examples.png" in (first / "layers" / LAYER / "block3-00002.html").read_text()


def test_a_top_level_file_that_differs_from_the_sweeps_is_kept(cli, images, tmp_path):
    """Adoption never overwrites: examples already beside the renders win, the other copy stays where it was."""
    out = tmp_path / "s"
    _sweep(cli, out)
    _examples(cli, images, out)
    d = out / "layers" / LAYER
    (out / "block3-00001.examples.json").write_text(json.dumps({"layer": LAYER, "key": "block3-00001", "x": 1}))
    r = cli("sweep", "--finalize", "-o", out, "-q")
    assert r.exit_code == 0, r.output
    assert (out / "block3-00001.examples.json").is_file()
    assert json.loads((d / "block3-00001.examples.json").read_text())["key"] == "block3-00001"
    assert "x" not in json.loads((d / "block3-00001.examples.json").read_text())
