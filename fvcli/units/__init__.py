"""Units: what to render, from the strings people type to typed values that know their objective.

`unit` parses `mixed4a:11`, `mixed4a:0-15`, `mixed4a:11@7,7`, `logit:208`, `dream:mixed4a`, `mixed4d:dir=v.npy`
into frozen `Unit`s checked against the model's layer catalog (errors name the valid range); `expr` parses
objective arithmetic such as `"mixed4a:476 + 0.5*mixed4a:460"` into an `ExprUnit`. Both build their objective
from fvcli/optvis/objectives.py; strings are parsed here, at the edge, and nowhere below.
"""
from __future__ import annotations

from .expr import ExprError, ExprUnit, is_expression, parse_expression, parse_unit_arg
from .unit import Unit, parse_units, safe_name, split_model_prefix

__all__ = ["ExprError", "ExprUnit", "Unit", "is_expression", "parse_expression", "parse_unit_arg", "parse_units",
           "safe_name", "split_model_prefix"]
