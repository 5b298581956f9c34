"""Concepts: K directions of a layer found from a folder of images (NMF, PCA, k-means, sparse autoencoders), written
as a dictionary.

The job behind `fv concepts`; its output is a `(K, C)` matrix that `fv sweep LAYER --directions` renders row by row
(fvcli/units/dictionary.py). `factorize` holds the streaming factorizations, `run` the pass over the folder and the
files; `sae` (the model), `sae_train` (buffer, steps, state), `sae_stats` (per-feature statistics) and `sae_run`
(the resumable pass) the sparse autoencoders.
"""
from __future__ import annotations

from .factorize import METHODS, Measure, make_factorizer
from .run import ConceptsResult, concept_names, run_concepts, write_concepts
from .sae_run import run_sae
from .sae_train import SAESettings

SAE_METHODS = ("sae", "batchtopk")
ALL_METHODS = METHODS + SAE_METHODS

__all__ = ["ALL_METHODS", "METHODS", "SAE_METHODS", "ConceptsResult", "Measure", "SAESettings", "concept_names",
           "make_factorizer", "run_concepts", "run_sae", "write_concepts"]
