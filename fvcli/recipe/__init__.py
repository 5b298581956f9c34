"""Recipes: the settings of a render, from YAML and the command line to frozen, validated dataclasses.

`schema` holds the shape (one dataclass per YAML section, with types, defaults and bounds, and `Recipe.hash()`),
`validate` turns a raw mapping into a `Recipe` with errors that name the bad key, `files` reads recipe files and
stacks the layers (defaults < YAML < `--set` < flags), `named` lists the recipes shipped in fvcli/configs, `chains`
converts transform chains to and from YAML, and `values` checks single numbers.

The face is imported on first use, so `fvcli.recipe.named` (used by shell completion) stays torch-free.
"""
from __future__ import annotations

_FACE = {
    "Recipe": "schema", "ModelRecipe": "schema", "RenderRecipe": "schema", "ParamRecipe": "schema",
    "RegularizerRecipe": "schema", "GradientRecipe": "schema", "ExamplesRecipe": "schema", "VariantsRecipe": "schema",
    "InterpolationRecipe": "schema", "StopRecipe": "schema", "MAX_STEPS": "schema", "MAX_BATCH": "schema",
    "from_dict": "validate", "SECTIONS": "validate", "TOP_KEYS": "validate",
    "load_recipe": "files", "read_yaml": "files", "resolve_recipe_path": "files", "parse_set": "files",
    "set_path": "files", "to_yaml": "files",
    "CONFIG_DIR": "named", "named_recipes": "named", "describe": "named",
}
__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name in _FACE:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_FACE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
