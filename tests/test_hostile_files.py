"""Hostile files, one regression test each (issue 22's list): a decompression-bomb PNG and a truncated file in an
examples folder, a recipe built from YAML aliases, a safetensors file whose header lies, a second sweep with another
recipe in the same directory, and two sweeps with the same recipe on one directory at once.

Why: each of these is how a shared cluster directory or a downloaded file actually goes wrong; the answer must be a
skip that is listed, or a one-line refusal naming the file -- never a traceback, a hang or a silently mixed result.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fvcli.cli import app
from fvcli.errors import FvError
from fvcli.models import ModelOptions, load_model
from fvcli.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["--model", "demo", "--size", "16", "--steps", "2", "--device", "cpu", "-q"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 40_000) -> None:
    """A PNG of a few hundred bytes declaring side x side pixels (1.6 G pixels: PIL's bomb limit is 179 M)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 3 * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def test_examples_skip_and_list_a_decompression_bomb_and_a_truncated_file(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(imgs / f"ok{i}.png")
    bomb_png(imgs / "bomb.png")
    whole = (imgs / "ok0.png").read_bytes()
    (imgs / "truncated.png").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["examples", str(imgs), "block2:0-1", "--model", "demo", "--device", "cpu", "-o",
                                   str(out), "-q", "--workers", "0", "--top-k", "2"])
    assert res.exit_code == 0, res.output
    assert "2 unreadable file(s) skipped" in res.output
    summary = json.loads((out / "examples-summary.json").read_text())
    assert summary["unreadable"] == 2 and summary["readable"] == 4
    assert sorted(summary["unreadable_files"]) == ["bomb.png", "truncated.png"]
    rec = json.loads((out / "block2-00000.examples.json").read_text())
    assert {e["file"] if isinstance(e, dict) and "file" in e else None for e in rec["top"]} .isdisjoint(
        {"bomb.png", "truncated.png"})


def test_a_recipe_built_from_yaml_aliases_is_refused_in_one_line(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text("render: &r {steps: 4, size: 32}\nunits: &u [block2:1]\nvariants: {}\nparam: {kind: fft}\n"
                    "examples: {}\ntransforms: *u\n")
    with pytest.raises(FvError, match=r"uses the YAML alias \*u at line 6: refused"):
        load_recipe(str(path), [])
    laughs = tmp_path / "bomb.yaml"
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]'] + [
        f'{c}: &{c} [{",".join([f"*{p}"] * 9)}]' for p, c in zip("abcdefgh", "bcdefghi")]
    laughs.write_text("\n".join(rows) + "\n")  # 9**9 strings if expanded
    res = CliRunner().invoke(app, ["recipe", "validate", str(laughs)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "YAML alias *a at line 2" in res.output
    anchors_only = tmp_path / "anchor.yaml"
    anchors_only.write_text("render: &r {steps: 4, size: 32}\n")  # an anchor nobody uses is harmless
    assert load_recipe(str(anchors_only), []).render.steps == 4


@pytest.mark.parametrize("lie", ["length", "offsets"])
def test_a_safetensors_file_whose_header_lies_is_refused(tmp_path, lie):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    net = load_model(ModelOptions(name="demo"), "cpu").net
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(good))
    raw = good.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    if lie == "length":
        bad_bytes = struct.pack("<Q", 2**40) + raw[8:]  # claims a terabyte of header
    else:
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"] = [0, len(data) * 1000]  # points past the end of the file
        h = json.dumps(header).encode()
        bad_bytes = struct.pack("<Q", len(h)) + h + data
    bad = tmp_path / "lying.safetensors"
    bad.write_bytes(bad_bytes)
    with pytest.raises(FvError) as err:
        load_model(ModelOptions(name="demo", weights=str(bad)), "cpu")
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and "not a valid safetensors file" in msg


def test_a_second_sweep_with_another_recipe_in_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "sweep"
    run = CliRunner()
    first = run.invoke(app, ["sweep", "block2:0-1", *DEMO, "-o", str(out)])
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    second = run.invoke(app, ["sweep", "block2:0-1", *DEMO, "-o", str(out), "--set", "render.lr=0.01"])
    assert second.exit_code == 2
    line = second.output.strip()
    assert line.count("\n") == 0 and "holds a different sweep" in line and str(out) in line
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before  # nothing of the other recipe written


def _sweep_cmd(out: Path) -> list[str]:
    return [sys.executable, "-m", "fvcli", "sweep", "block2:0-7", "--model", "demo", "--size", "24", "--steps",
            "6", "-b", "2", "--device", "cpu", "-o", str(out), "-q"]


def test_two_sweeps_with_the_same_recipe_on_one_directory_finish_with_the_result_of_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    assert subprocess.run(_sweep_cmd(ref), capture_output=True, env=env, timeout=300, check=False).returncode == 0
    out = tmp_path / "shared"
    procs = [subprocess.Popen(_sweep_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se
        assert "Traceback" not in se
    # whichever came second either waited for nothing (the lock was held) or found every unit done
    assert any("being rendered by another process" in so or "0 rendered, 8 already done" in so for so, _ in outs) \
        or sum("8 rendered" in so for so, _ in outs) == 1, outs
    a = {p.relative_to(ref).as_posix(): p.read_bytes() for p in ref.rglob("*.png")}
    b = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png")}
    assert a.keys() == b.keys() and a == b
    recs = [json.loads(p.read_text()) for p in (out / "layers").glob("*/*.json")]
    assert sorted(r["key"] for r in recs) == sorted(f"block2-{i:05d}" for i in range(8))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or "~" in p.name]
    assert json.loads((out / "manifest.json").read_text())["complete"]
