"""Shell completion of named recipes and model names (Typer's mechanism: `fv --install-completion`).

The shell runs `fv` on every <TAB> with the words typed so far, so these callbacks must answer in well under a
second: they import neither torch nor the model registry (importing torch alone takes seconds). Recipe names come
from the files shipped in fvcli/configs (fvcli/recipe/named.py), so a new recipe completes without code. Model
names are the registered ones, written here once; tests/test_completion.py checks that they equal the registry, so
a newly registered model cannot be forgotten silently.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..recipe.named import describe, named_recipes

# name -> one-line description, as registered in fvcli/models (checked by tests/test_completion.py)
REGISTERED_MODELS = {
    "demo": "fv's own demo CNN (offline)",
    "inceptionv1": "InceptionV1 / GoogLeNet as in lucid, the article's network",
}
# model sources addressed by a prefix and a name (completed up to the colon)
MODEL_PREFIXES = {"torchvision:": "a torchvision classifier, e.g. torchvision:googlenet"}


def complete_recipe(incomplete: str) -> list[tuple[str, str]]:
    """Named recipes starting with `incomplete` (with their description), then matching .yaml files/directories."""
    names = [(name, describe(path)) for name, path in named_recipes().items() if name.startswith(incomplete)]
    return names + _paths(incomplete, (".yaml", ".yml"))


def complete_model(incomplete: str) -> list[tuple[str, str]]:
    """Registered model names and source prefixes starting with `incomplete`."""
    items = {**REGISTERED_MODELS, **MODEL_PREFIXES}
    return [(name, help_) for name, help_ in items.items() if name.startswith(incomplete)]


def _paths(incomplete: str, suffixes: tuple[str, ...]) -> list[tuple[str, str]]:
    """Files with one of `suffixes` and directories whose path starts with `incomplete` (only once it looks like a
    path, so that a bare <TAB> offers the names first)."""
    if not incomplete or not any(c in incomplete for c in "/.~"):
        return []
    expanded = os.path.expanduser(incomplete)
    parent, prefix = os.path.split(expanded)
    try:
        entries = sorted(Path(parent or ".").iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        if not p.name.startswith(prefix) or (p.name.startswith(".") and not prefix.startswith(".")):
            continue
        shown = incomplete[: len(incomplete) - len(prefix)] + p.name
        if p.is_dir():
            out.append((shown + "/", "directory"))
        elif p.name.endswith(suffixes):
            out.append((shown, "recipe file"))
    return out
