"""Concepts: K directions of a layer found from a folder of images (NMF, PCA, k-means), written as a dictionary.

The job behind `fv concepts`; its output is a `(K, C)` matrix that `fv sweep LAYER --directions` renders row by row
(fvcli/units/dictionary.py). `factorize` holds the streaming methods, `run` the pass over the folder and the files.
"""
from __future__ import annotations

from .factorize import METHODS, Measure, make_factorizer
from .run import ConceptsResult, concept_names, run_concepts, write_concepts

__all__ = ["METHODS", "ConceptsResult", "Measure", "concept_names", "make_factorizer", "run_concepts",
           "write_concepts"]
