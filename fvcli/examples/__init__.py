"""Dataset examples: the images of a folder that excite and inhibit each unit most (the article's other half).

One streaming, resumable pass over a folder serves every unit at once: `folder` reads the images, `scan` scores
them and runs the pass, `state` keeps the bounded running top-k / bottom-k / reservoir and its checkpoints,
`settings` says how a pass runs, and `results` writes each unit's strip and record (beside its render when the
folder is a sweep directory). fvcli/examples/scan.py's header tells the whole story.
"""
from __future__ import annotations

from .folder import IMAGE_EXTENSIONS, ImageFolder, list_images, load_image, square_box
from .results import (
    MAX_LISTED_UNREADABLE,
    SPECTRUM_NAMES,
    ExamplesResult,
    crop_box,
    examples_dir,
    examples_grid,
    is_sweep_dir,
    refresh_sweep_gallery,
    unit_examples,
    write_examples,
)
from .scan import UnitScorer, fold_batchnorm, parse_example_units, run_examples
from .settings import ExampleSettings
from .state import (
    FORMAT,
    StreamState,
    checkpoint_path,
    load_checkpoint,
    merge_extreme,
    pass_id,
    reservoir_draw,
    save_checkpoint,
)

__all__ = ["ExampleSettings", "ExamplesResult", "FORMAT", "IMAGE_EXTENSIONS", "ImageFolder", "MAX_LISTED_UNREADABLE",
           "SPECTRUM_NAMES", "StreamState", "UnitScorer", "checkpoint_path", "crop_box", "examples_dir",
           "examples_grid", "fold_batchnorm", "is_sweep_dir", "list_images", "load_checkpoint", "load_image",
           "merge_extreme", "parse_example_units", "pass_id", "refresh_sweep_gallery", "reservoir_draw",
           "run_examples", "save_checkpoint", "square_box", "unit_examples", "write_examples"]
