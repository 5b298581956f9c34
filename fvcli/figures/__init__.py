"""Figures beyond one picture per unit: the appendix's panels, interpolations, and the recipe-quality table.

`panels` renders the appendix's rows for a unit (positive and negative, diversity facets, ...), `interpolate` the
interpolation figure (frames that share a parameterization and are aligned to their neighbours), and `quality`
scores recipe variants on the demo model against its independent judge (the article's argument in numbers). Each
renders through the runner (fvcli/runner) and is used by the CLI and by `fv article`.
"""
from __future__ import annotations

from .interpolation import interpolate, write_interpolation
from .panels import PanelRenderer, render_panels
from .quality import VARIANTS, measure, quality_table

__all__ = ["PanelRenderer", "VARIANTS", "interpolate", "measure", "quality_table", "render_panels",
           "write_interpolation"]
