"""Recipe files: where a recipe comes from and how layers of settings stack.

Precedence: defaults < YAML file < `--set key=value` < explicit CLI flags. A recipe is a file path or a bare name of
a shipped recipe (fvcli/configs, `fv recipe list`). Relative paths inside a recipe file (`model.weights`,
`model.labels`, `param.spectrum`, `examples.images`) are relative to that file, so a recipe and its files travel
together. YAML is read with the safe loader only, and aliases (`*name`) are refused: an alias shares one node
among many places, so a file of a few hundred bytes can expand to gigabytes of lists ("billion laughs"), and a recipe
is small enough to write out in full.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import FvError
from .named import named_recipes
from .schema import Recipe
from .validate import TOP_KEYS, from_dict


def resolve_recipe_path(name: str) -> Path:
    """A recipe file path, or a bare name of a file in configs/ (e.g. `article`)."""
    p = Path(os.path.expanduser(name))
    if p.is_file():
        return p
    known = named_recipes()
    if "/" not in name and name in known:
        return known[name]
    raise FvError(f"recipe {name!r} not found: not a file, nor a named recipe ({', '.join(known) or 'none shipped'}; "
                  f"`fv recipe list`)")


class _AliasRefused(Exception):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that stops at the first alias instead of expanding it."""

    def compose_node(self, parent, index):  # PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise _AliasRefused(ev.anchor, ev.start_mark.line + 1)
        return super().compose_node(parent, index)


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FvError(f"cannot read recipe {path}: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # a yaml.SafeLoader subclass
    except _AliasRefused as exc:
        raise FvError(f"recipe {path} uses the YAML alias *{exc.anchor} at line {exc.line}: refused (aliases can "
                      f"expand a small file without bound); write the values out in full") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FvError(f"malformed YAML in recipe {path}{where}: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FvError(f"recipe {path} must be a mapping with keys {', '.join(TOP_KEYS)}")
    base = path.resolve().parent
    model = raw.get("model")
    if isinstance(model, dict):  # relative paths in a recipe are relative to the recipe file
        for key in ("weights", "labels"):
            v = model.get(key)
            named = v in ("torchvision", "timm") or str(v).startswith("random:")
            if isinstance(v, str) and v and not named and not os.path.isabs(os.path.expanduser(v)):
                model[key] = str((base / v).resolve())
        v = model.get("name")
        if isinstance(v, str) and ".py:" in v and not os.path.isabs(os.path.expanduser(v)):  # path/to/net.py:build
            model["name"] = str((base / v).resolve())
    par = raw.get("param")
    if isinstance(par, dict) and isinstance(par.get("spectrum"), str) and par["spectrum"] and not os.path.isabs(
            os.path.expanduser(par["spectrum"])):
        par["spectrum"] = str((base / par["spectrum"]).resolve())
    ex = raw.get("examples")
    if isinstance(ex, dict) and isinstance(ex.get("images"), str) and ex["images"] and not os.path.isabs(
            os.path.expanduser(ex["images"])):
        ex["images"] = str((base / ex["images"]).resolve())
    return raw


def parse_set(item: str) -> tuple[list[str], Any]:
    """`render.steps=64` -> (['render', 'steps'], 64); the value is read as a YAML scalar or list."""
    if "=" not in item:
        raise FvError(f"bad --set {item!r}: expected key=value, e.g. render.steps=64")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise FvError(f"bad --set {item!r}: empty key part in {key!r}")
    try:
        val = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        val = value
    return parts, val


def set_path(raw: dict, parts: list[str], value: Any) -> None:
    cur = raw
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise FvError(f"bad override {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a section")
        cur = nxt
    cur[parts[-1]] = value


def load_recipe(path: str | None = None, sets: list[str] | tuple[str, ...] = (),
                overrides: dict[str, Any] | None = None) -> Recipe:
    """defaults < YAML file < `--set` items < explicit overrides ({'render.steps': 64, ...})."""
    raw = copy.deepcopy(read_yaml(resolve_recipe_path(path))) if path else {}
    for item in sets:
        parts, val = parse_set(item)
        set_path(raw, parts, val)
    for key, val in (overrides or {}).items():
        if val is not None:
            set_path(raw, key.split("."), val)
    return from_dict(raw)


def to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
