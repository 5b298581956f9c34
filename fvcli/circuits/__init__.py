"""Circuits: how each unit is built from the layer before it -- its strongest inputs, by two methods, as figures.

After feature visualization, the Distill Circuits thread (Olah et al. 2020, "Zoom In"; Cammarata et al., "Curve
Detectors") reads a feature off the connections from the previous layer. This stage computes them for any unit fv
can render and hands them to the gallery and to figures:

  linear_path.py   the linear path between two layers (ReLUs bypassed, max pooling averaged, the rest recorded)
  expanded.py      expanded weights: the exact linear map from every earlier channel to the unit, as kernels
  attribution.py   gradient x activation, summed over positions, on the unit's render and dataset examples
  record.py        one unit's record: excitatory and inhibitory inputs by both methods, kernels (KEY.circuit.json)
  compute.py       records for a group of units of one layer (both methods in a few passes)
  sweep_job.py     `fv sweep --with circuits`: every done unit of a sweep, resumable and byte-identical
  figure.py        the figure's layout, drawn as SVG and PNG
  figure_job.py    `fv circuit UNIT`: pictures (reused or rendered), records and the figure, --depth levels down

It sits above the sweep and examples stages (it reads their directories) and below the command line; the gallery,
below the sweep, reads the records it writes by file name.
"""
from __future__ import annotations

from .attribution import attribution
from .compute import unit_circuits
from .expanded import ExpandedWeights, expanded_weights
from .figure_job import CircuitFigure, circuit_figure
from .record import TOP_K, circuit_name, top_inputs
from .sweep_job import source_layer, sweep_circuits

__all__ = ["CircuitFigure", "ExpandedWeights", "TOP_K", "attribution", "circuit_figure", "circuit_name",
           "expanded_weights", "source_layer", "sweep_circuits", "top_inputs", "unit_circuits"]
