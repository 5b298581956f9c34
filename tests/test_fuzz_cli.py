"""Whole `fv` argument lists fuzzed in-process (typer's CliRunner): exit 0, or 1 / 2 with a clean message; never a
traceback, never an exception other than SystemExit.

Why: the parsers are fuzzed one by one in tests/test_fuzz_bulk.py, but a user types whole command lines, where
options interact (a --set overriding --size, a unit of another model, a shard spec with --finalize). The argument
lists are built from a seeded pool of real subcommands, options and values, valid and hostile, on the small demo
model so that the ones that do run finish in milliseconds. Commands that download or write outside the case's own
temporary directory (weights fetch / add, article) are left out. FV_FUZZ_SCALE multiplies the count.
"""
from __future__ import annotations

import os
import random

import pytest
from conftest import FUZZ_CASES
from typer.testing import CliRunner

from fvcli.cli import app

SCALE = max(0.01, float(os.environ.get("FV_FUZZ_SCALE", "1")))
SEED = int(os.environ.get("FV_FUZZ_SEED", "22"))

COMMANDS = [["render"], ["layers"], ["recipe", "show"], ["recipe", "validate"], ["recipe", "list"], ["sweep"],
            ["examples"], ["interpolate"], ["weights", "list"], ["gallery"], ["spectrum"], ["bogus"], []]
UNITS = ["block2:1", "block3:0-2", "logit:3", "prob:2", "block2:1@3,3", "block2:1 + 0.5*block2:2", "mixed4a:11",
         "block9:1", "block2:999", "logit:stripes_0", "dream:block1", "", "\x00", "é:1", "demo:block2:1", "-block2:1"]
OPTIONS = {
    "--size": ["16", "24", "0", "-1", "x", "1e9", "3000", ""],
    "--steps": ["1", "2", "0", "-5", "abc", "200000"],
    "--seed": ["0", "7", "-1", "x"],
    "--batch-size": ["1", "auto", "0", "-2", "lots"],
    "--device": ["cpu", "gpu", "cuda:99", ""],
    "--model": ["demo", "demo", "demo", "nosuch", "torchvision:nope", "./no.py:build", ""],
    "--set": ["render.steps=1", "render.size=16", "render.lr=nan", "param.kind=fft", "param.kind=bogus", "x=1",
              "render.size", "=", "render..steps=2", "units=[block2:1]", "transforms=none", "render.steps=&a 1"],
    "--recipe": ["default", "lucid", "nosuch", "/dev/null", "../../etc/passwd", ""],
    "--weights": ["random:0", "random:x", "/no/such.pth", "torchvision", ""],
    "--shard": ["1/2", "2/2", "0/2", "3/2", "x", "1/0", ""],
    "--panels": ["none", "bogus", "4"],
    "--time-limit": ["0", "-1", "x"],
    "--with": ["facets", "negatives", "examples", "bogus", ""],
    "--images": ["imgs", "/no/such/dir", ""],
    "--frames": ["2", "0", "-1", "x"],
    "--limit": ["1", "0", "-1"],
}
FLAGS = ["-q", "--finalize", "--no-finalize", "--overwrite", "--negative", "--both", "--help", "--json", "--bogus"]


def argv(rng: random.Random) -> list[str]:
    args = list(rng.choice(COMMANDS))
    for _ in range(rng.randint(0, 3)):
        args.append(rng.choice(UNITS))
    for opt in rng.sample(sorted(OPTIONS), rng.randint(0, 4)):
        args += [opt, rng.choice(OPTIONS[opt])]
    if rng.random() < 0.3:
        args.append(rng.choice(FLAGS))
    # keep what does run tiny: the demo model, one or two steps at 16 px unless the case overrides it
    for opt, val in (("--model", "demo"), ("--steps", "1"), ("--size", "16"), ("--device", "cpu")):
        if args[:1] in (["render"], ["sweep"], ["examples"], ["interpolate"]) and opt not in args and rng.random() < 0.9:
            args += [opt, val]
    if args[:1] in (["render"], ["sweep"], ["examples"], ["interpolate"]) and rng.random() < 0.9:
        args += ["--out", "out"]
    return args


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    from PIL import Image
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 80, 40, 200 - i * 60)).save(imgs / f"{i}.png")
    (imgs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return tmp_path


def test_whole_argument_lists(sandbox):
    rng = random.Random(SEED)
    runner = CliRunner()
    codes: dict[int, int] = {}
    for _ in range(max(1, int(300 * SCALE))):
        args = argv(rng)
        res = runner.invoke(app, args)
        codes[res.exit_code] = codes.get(res.exit_code, 0) + 1
        assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
        out = res.output
        assert "Traceback" not in out, (args, out)
        assert res.exit_code in (0, 1, 2), (args, res.exit_code, out)
        if res.exit_code and "fv: error:" in out:
            err = [ln for ln in out.splitlines() if ln.startswith("fv: error:")]
            assert all(len(e) > len("fv: error: ") for e in err), (args, out)
            assert len(err) == 1 or args[:2] == ["recipe", "validate"], (args, out)  # validate: one line per file
        FUZZ_CASES["cli-argv"] = FUZZ_CASES.get("cli-argv", 0) + 1
    if sum(codes.values()) >= 100:  # both paths exercised: some lines run, some are refused
        assert codes.get(0) and codes.get(2), codes
