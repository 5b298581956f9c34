"""fv: batch feature visualization for PyTorch models (Olah, Mordvintsev, Schubert, Distill 2017).

The Python API (fvcli/api.py), which the `fv` command is built on:

    import fvcli
    res = fvcli.render(net, "layer4.1:7", steps=256)   # net: an nn.Module in memory, or a name ("inceptionv1")
    res.images, res.records, res.pil()

`fvcli.load_model`, `fvcli.render`, `fvcli.make_recipe` and the result types are imported on first use, so
`import fvcli` itself stays cheap (it does not import torch). The optimization loop itself is `fvcli.optvis.loop`.
"""
from __future__ import annotations

from ._version import __version__

_API = ("load_model", "render", "make_recipe", "Rendering", "Picture")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'fvcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
