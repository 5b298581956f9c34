"""The command line is tidy (issue 16): every command's output ends with a newline, --quiet leaves only results,
`fv --version`, `fv recipe list`, shell completion without torch, and no temporary file left by a killed writer."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fvcli.recipe import named as named_recipes
from fvcli.cli.completion import REGISTERED_MODELS, complete_model, complete_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "32", "--steps", "2"]


def test_every_command_ends_with_a_newline_and_quiet_leaves_only_results(cli, tmp_path, torch_home):
    r_out, s_out, i_out = tmp_path / "r", tmp_path / "s", tmp_path / "i"
    commands = [
        ["--version"],
        ["recipe", "list"],
        ["recipe", "show", "-r", "lucid"],
        ["recipe", "validate", "default", "article"],
        ["layers", "demo"],
        ["weights", "list"],
        ["render", "demo:logit:0-1", *TINY, "-o", r_out],
        ["interpolate", "logit:0", "logit:1", "--model", "demo", "--frames", "2", *TINY, "-o", i_out],
        ["sweep", "logit:0-1", "--model", "demo", *TINY, "-o", s_out],
        ["sweep", "--finalize", "-o", s_out],
        ["examples", r_out, "logit:0", "--model", "demo", "--workers", "0", "-o", s_out],
    ]
    for args in commands:
        loud = cli(*args)
        assert loud.exit_code == 0, (args, loud.output)
        assert loud.stdout.strip() and loud.stdout.endswith("\n"), (args, loud.stdout[-80:])
        if args == ["--version"]:
            continue
        quiet = cli(*args, "-q")
        assert quiet.exit_code == 0, (args, quiet.output)
        assert quiet.stderr == "", (args, quiet.stderr)  # no progress bar, no warning
        lines = quiet.stdout.splitlines()
        if args[:2] == ["recipe", "validate"]:
            assert quiet.stdout == ""  # only problems
            continue
        assert lines and quiet.stdout.endswith("\n"), (args, quiet.stdout)
        if args[0] != "recipe" or args[1] != "show":  # a recipe's YAML has comments of its own
            assert not any(line.startswith("#") for line in lines), (args, quiet.stdout)  # no headers
    bad = cli("render", "--model", "demo", "mixed4a:1", "-q")
    assert bad.exit_code == 2 and bad.stderr.startswith("fv: error: ") and bad.stderr.endswith("\n")


def test_version_names_fv_torch_torchvision_and_cuda(cli):
    import torch
    import torchvision

    import fvcli

    out = cli("--version").stdout
    assert out.startswith(f"fv {fvcli.__version__} ({Path(fvcli.__file__).parent})\n")
    assert f"torch {torch.__version__}, torchvision {torchvision.__version__}" in out
    assert ("\nCUDA not available" in out) != torch.cuda.is_available()
    assert cli("-V").stdout == out


def test_recipe_list_is_generic_over_the_configs_directory(cli, tmp_path, monkeypatch):
    listed = cli("recipe", "list", "-q").stdout.splitlines()
    names = [line.split()[0] for line in listed]
    assert names == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))  # every file in configs/
    assert all(len(line.split(None, 1)) == 2 for line in listed)  # each with a description
    # a recipe someone adds is listed, completed and found by name with no code change
    d = tmp_path / "configs"
    d.mkdir()
    (d / "zebra.yaml").write_text("# Stripes for days: 3 steps.\nrender:\n  steps: 3\n")
    (d / "plain.yaml").write_text("render:\n  steps: 4\n")
    monkeypatch.setattr(named_recipes, "CONFIG_DIR", d)
    assert cli("recipe", "list", "-q").stdout == "plain\nzebra  Stripes for days: 3 steps.\n"
    assert complete_recipe("ze") == [("zebra", "Stripes for days: 3 steps.")]
    assert "steps: 3" in cli("recipe", "show", "-r", "zebra").stdout
    err = cli("recipe", "show", "-r", "zebr").stderr
    assert "'zebr' not found" in err and "plain, zebra" in err


def test_completion_names_models_and_recipes_without_importing_torch(tmp_path):
    import fvcli.models as models

    assert set(REGISTERED_MODELS) == set(models.registered_names())  # a newly registered model must be added
    assert [n for n, _ in complete_model("inc")] == ["inceptionv1"]
    assert [n for n, _ in complete_model("torch")] == ["torchvision:"]
    (tmp_path / "mine.yaml").write_text("render:\n  steps: 1\n")
    assert (f"{tmp_path}/mine.yaml", "recipe file") in complete_recipe(f"{tmp_path}/mi")

    probe = ("import atexit, sys; atexit.register(lambda: print('torch' in sys.modules, file=sys.stderr)); "
             "from fvcli.cli import app; app(prog_name='fv')")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_FV_COMPLETE": "complete_bash"}

    def complete(words: str) -> tuple[list[str], str]:
        cword = len(words.split()) - (0 if words.endswith(" ") else 1)
        r = subprocess.run([sys.executable, "-c", probe], env={**env, "COMP_WORDS": words, "COMP_CWORD": str(cword)},
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        return r.stdout.split(), r.stderr.strip()

    t0 = time.perf_counter()
    assert complete("fv render --recipe ar") == (["article"], "False")  # False: torch was not imported
    assert complete("fv render --model ") == (["demo", "inceptionv1", "torchvision:"], "False")
    assert complete("fv sweep -m d") == (["demo"], "False")
    assert complete("fv layers inc") == (["inceptionv1"], "False")
    assert complete("fv rec") == (["recipe"], "False")
    assert complete("fv recipe l") == (["list"], "False")
    words, imported = complete("fv render --st")
    assert words == ["--steps"] and imported == "False"
    print(f"7 completions in {time.perf_counter() - t0:.2f} s")


def _killed_writer(target: Path, keep_alive: bool = False) -> subprocess.Popen:
    """A process writing `target` with fv's atomic writer that dies (SIGKILL) -- or hangs -- just before the rename,
    as a process killed in the middle of a write does; returns once its temporary file exists."""
    code = ("import os, signal, sys, time\nfrom fvcli import outputs\n"
            "os.replace = (lambda a, b: time.sleep(600)) if sys.argv[2] == 'hang' else "
            "(lambda a, b: os.kill(os.getpid(), signal.SIGKILL))\n"
            "outputs.atomic_write_bytes(sys.argv[1], b'partial')\n")
    before = set(target.parent.glob(".*.tmp"))
    p = subprocess.Popen([sys.executable, "-c", code, str(target), "hang" if keep_alive else "die"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not set(target.parent.glob(".*.tmp")) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    if not keep_alive:
        assert p.wait(60) == -signal.SIGKILL
    return p


def test_resumed_sweep_removes_killed_writers_temp_files_but_not_a_live_ones(cli, tmp_path):
    out = tmp_path / "s"
    args = ["sweep", "logit:0-1", "--model", "demo", *TINY, "-o", out, "-q"]
    assert cli(*args).exit_code == 0
    layer = out / "layers" / "fc"
    png = (layer / "logit-00000.png").read_bytes()
    _killed_writer(layer / "logit-00000.png")
    _killed_writer(out / "manifest.json")
    live = _killed_writer(layer / "logit-00001.png", keep_alive=True)
    try:
        live_tmp = [p for p in layer.glob(".*.tmp") if f"~{live.pid}~" in p.name]
        assert len(live_tmp) == 1 and len(list(out.rglob(".*.tmp"))) == 3
        # another host's writer whose shard lock is free (its state names it as the shard's last run)
        state_path = next((out / "shards").glob("*.json"))
        state = json.loads(state_path.read_text())
        state["runs"][-1].update(host="node-7.cluster", pid=4242)
        state_path.write_text(json.dumps(state))
        (out / "shards" / ".x.json.node-7_cluster~4242~abcd1234.tmp").write_text("partial")
        other = out / "shards" / ".y.json.node-8~99~abcd1234.tmp"  # unknown writer, young: kept
        other.write_text("partial")

        r = cli(*args)  # the resumed (here: already complete) sweep
        assert r.exit_code == 0 and "0 rendered, 2 already done" in r.stdout
        assert sorted(out.rglob(".*.tmp")) == sorted([*live_tmp, other])  # only the live writer's and the unknown
        assert (layer / "logit-00000.png").read_bytes() == png  # the killed writer never replaced the file
    finally:
        live.kill()
        live.wait()
    assert cli(*args).exit_code == 0
    assert sorted(out.rglob(".*.tmp")) == [other]
