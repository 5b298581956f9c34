"""The user's own networks: `--model path/to/net.py:build`, `--model package.module:build`, or a module in memory.

A reference names a callable that returns an `nn.Module` (a function, or the class itself); it is called with the
recipe's `model.kwargs`. Without `--weights` the module is used exactly as the callable returns it, its own weights
included; `--weights PATH` loads a state_dict or a training checkpoint into it (models/checkpoint.py). An
attribute that already is an `nn.Module` instance is used as it is (a copy). Preprocessing, labels and the native
size come from the recipe (`model.preprocess`, default ImageNet mean/std; `model.labels`; `model.native_size`,
default 224). The logits are the last layer with a vector output.

Importing the file runs the user's code, with the user's permissions, exactly as `python net.py` would: it is
the user's own code, so fv does nothing to sandbox it (weight files, in contrast, are untrusted data and are read
with weights_only=True). The file is imported once per process and content (an edited file is imported again);
its directory is on `sys.path` while it is imported, so it can import its neighbours. `package.module` is imported
as Python would, with the current directory searched last.
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import nn

from ..errors import FvError, did_you_mean, summarize_choices
from . import IMAGENET_MEAN, IMAGENET_STD, ModelOptions, ModelSpec, Preprocess

log = logging.getLogger(__name__)

DEFAULT_NATIVE_SIZE = 224  # a user model's input size unless the recipe says (model.native_size)
_IDENT = r"[A-Za-z_]\w*"
_DOTTED = re.compile(rf"{_IDENT}(\.{_IDENT})*")
SOURCE_PREFIXES = ("torchvision", "timm")  # other model sources written SOURCE:NAME (for did-you-mean)


def is_user_reference(name: str) -> bool:
    """`path/to/net.py:CALLABLE` or `package.module:CALLABLE`."""
    target, sep, attr = name.rpartition(":")
    if not sep or not _DOTTED.fullmatch(attr):
        return False
    return target.endswith(".py") or bool(_DOTTED.fullmatch(target))


def import_file(path: Path) -> object:
    """Import a Python file as a module (once per content: an edited file is imported again)."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise FvError(f"model file {path} {what}; expected path/to/net.py:CALLABLE")
    data = path.read_bytes()
    tag = hashlib.sha256(str(path.resolve()).encode() + b"\0" + data).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"fv_user_{stem}_{tag}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise FvError(f"model file {path} cannot be imported as Python (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look their module up here
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code failed: one line, not a traceback
        del sys.modules[mod_name]
        log.debug("importing %s failed", path, exc_info=True)
        raise FvError(f"importing model file {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(folder)
    return module


def import_module(name: str) -> object:
    """Import `package.module` as Python would, with the current directory searched last."""
    cwd, added = os.getcwd(), False
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
        added = True
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        hint = did_you_mean(name.split(".")[0], SOURCE_PREFIXES)
        raise FvError(f"cannot import module {name!r} for --model {name}:CALLABLE: {exc}{hint}; is it installed or "
                      f"in the current directory ({cwd})? A file is written path/to/net.py:CALLABLE") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code failed
        log.debug("importing %s failed", name, exc_info=True)
        raise FvError(f"importing module {name!r} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)


def _callables(module: object) -> list[str]:
    """Public callables defined in `module` (those imported into it only when it defines none)."""
    items = [(n, v) for n, v in vars(module).items() if not n.startswith("_") and callable(v)]
    own = [n for n, v in items if getattr(v, "__module__", None) == getattr(module, "__name__", None)]
    return sorted(own or [n for n, _ in items])


def resolve(ref: str) -> Callable | nn.Module:
    """The object a reference names: imports its file or module and looks the (dotted) attribute up."""
    target, _, attr = ref.rpartition(":")
    module = import_file(Path(target)) if target.endswith(".py") else import_module(target)
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            valid = _callables(module)
            raise FvError(f"{target} has no callable {attr!r}{did_you_mean(attr, valid)}; it defines: "
                          f"{summarize_choices(valid) or 'no public callables'}")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module) and not callable(obj):
        raise FvError(f"{ref} is a {type(obj).__name__}, not a callable returning a torch.nn.Module")
    return obj  # type: ignore[return-value]


def call_builder(ref: str, fn: Callable | nn.Module, kwargs: Mapping | None) -> nn.Module:
    """Call the user's callable with the recipe's kwargs; the result must be an nn.Module."""
    kwargs = dict(kwargs or {})
    if isinstance(fn, nn.Module):
        if kwargs:
            raise FvError(f"{ref} is a module instance, not a callable: model.kwargs {kwargs} cannot apply")
        return copy.deepcopy(fn)  # fv installs its own ReLUs and freezes the net: never touch the original
    bad = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise FvError(f"model.kwargs: keys must be Python identifiers, got {bad}")
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        raise FvError(f"model.kwargs {kwargs} do not fit {ref}: {exc}") from None
    except ValueError:  # no signature available (some builtins): let the call decide
        pass
    try:
        net = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's code failed: one line, not a traceback
        log.debug("%s raised", ref, exc_info=True)
        raise FvError(f"{ref}(**{kwargs}) raised {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise FvError(f"{ref} returned a {type(net).__module__}.{type(net).__qualname__}, not a torch.nn.Module; "
                      "the callable must build and return the network")
    return net


def _spec(name: str, description: str, build: Callable[[ModelOptions], nn.Module]) -> ModelSpec:
    return ModelSpec(
        name=name,
        description=description,
        build=build,
        preprocess=Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        native_size=DEFAULT_NATIVE_SIZE,
        num_classes=0,  # known after the probe: the logits layer's width
        main_layers=(),
        logits_layer="",  # the last layer with a vector output
        own_weights=True,
    )


def user_spec(ref: str) -> ModelSpec:
    """The spec of `path/to/net.py:CALLABLE` or `package.module:CALLABLE` (imports it now: errors come early)."""
    fn = resolve(ref)
    return _spec(ref, f"user code {ref}", lambda opts: call_builder(ref, fn, opts.kwargs))


def module_name(net: nn.Module) -> str:
    """A name for a module built in memory: where its class lives (`__main__:Net` in a notebook)."""
    return f"{type(net).__module__}:{type(net).__qualname__}"


def module_spec(net: nn.Module, name: str | None = None) -> ModelSpec:
    """The spec of a module already in memory; fv works on a copy (it installs its own ReLUs, freezes the weights
    and moves the copy to the device), so the caller's module is left as it was."""
    if not isinstance(net, nn.Module):
        raise FvError(f"expected a torch.nn.Module or a model name, got a {type(net).__name__}")
    return _spec(name or module_name(net), f"in-memory {type(net).__qualname__}", lambda opts: copy.deepcopy(net))
