"""Any timm model as `timm:NAME` (e.g. timm:resnet18, timm:convnext_tiny, timm:vit_tiny_patch16_224).

timm is an optional extra (`pip install 'fvcli[timm]'`), imported only when a `timm:` model is asked for. Each
model's pretrained config gives what fv needs to feed it: mean and std, input size (the native size), the
interpolation its data pipeline uses, the class count and the classifier's module path (the logits layer).
`NAME` may carry a pretrained tag (`resnet18.a1_in1k`); without one timm's default tag is used. The recipe's
`model.kwargs` are passed to `timm.create_model` (e.g. `drop_path_rate`), `model.num_classes` resizes the head.

Weights: `--weights timm` loads timm's published weights (from the Hugging Face cache, `$HF_HOME/hub`, or torch's
cache for the older URL-hosted files; downloaded on first use); `--weights PATH` a state_dict, checkpoint or
.safetensors file; `--weights random:SEED`. Without `--weights`, timm models need one of those (no silent download).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket

from torch import nn

from ..errors import FvError, did_you_mean, summarize_choices
from . import IMAGENET_MEAN, IMAGENET_STD, ModelOptions, ModelSpec, Preprocess
from .weights import apply_state_dict, state_dict_sha256

log = logging.getLogger(__name__)

EXTRA = "pip install 'fvcli[timm]'"


def require_timm():
    try:
        import timm
    except ImportError:
        raise FvError(f"timm models need the timm package, an optional extra: {EXTRA} (or `pip install timm`)") \
            from None
    return timm


def _pretrained_cfg(timm, arch: str):
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    return cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else dict(vars(cfg)) if cfg else {}


def timm_spec(name: str) -> ModelSpec:
    timm = require_timm()
    arch = name.split(":", 1)[1]
    if not timm.is_model(arch):
        names = timm.list_models()
        raise FvError(f"unknown timm model {arch!r}{did_you_mean(arch, names)}; valid: {summarize_choices(names)} "
                      f"(`python -c 'import timm; print(timm.list_models(\"*vit*\"))'` searches)")
    cfg = _pretrained_cfg(timm, arch)
    size = tuple(cfg.get("input_size") or (3, 224, 224))
    classifier = cfg.get("classifier") or ""
    if isinstance(classifier, (list, tuple)):  # distilled models have two heads; the first is the class head
        classifier = classifier[0]
    num_classes = int(cfg.get("num_classes") or 1000)

    def build(opts: ModelOptions) -> nn.Module:
        kwargs = dict(opts.kwargs or {})
        try:
            return timm.create_model(arch, pretrained=False, num_classes=opts.num_classes or num_classes, **kwargs)
        except TypeError as exc:
            raise FvError(f"model.kwargs {kwargs} do not fit timm model {arch}: {exc}") from None

    return ModelSpec(
        name=name,
        description=f"timm {arch}",
        build=build,
        preprocess=Preprocess(mean=tuple(cfg.get("mean") or IMAGENET_MEAN), std=tuple(cfg.get("std") or IMAGENET_STD)),
        native_size=int(size[-1]),
        num_classes=num_classes,
        main_layers=(),
        logits_layer=classifier,
        named_weights={"timm": load_timm_pretrained},
        interpolation=str(cfg.get("interpolation") or "bicubic"),
    )


def _where(cfg: dict) -> str:
    if cfg.get("hf_hub_id"):
        return f"https://huggingface.co/{cfg['hf_hub_id']}"
    return cfg.get("url") or "?"


def _hf_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "$HF_HOME/hub"


def _hub_offline_mode() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.is_offline_mode())
    except (ImportError, AttributeError):
        return False


def missing_message(name: str, cfg: dict, reason: str) -> str:
    return (f"timm weights for {name} are not cached and cannot be downloaded ({reason}). Provide them one of "
            f"three ways: `fv weights fetch {name}` on a machine with network that shares this cache "
            f"({_hf_cache()}; set HF_HOME to move it), download the weights file (model.safetensors) from "
            f"{_where(cfg)} and pass `--weights PATH`, or `--weights random:SEED` for random weights")


HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a hub repo, in its order
HUB_HOST = "huggingface.co"


def _hf_cached(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    repo = repo.split("@", 1)[0]
    return any(isinstance(try_to_load_from_cache(repo, f), str) for f in HF_FILES)


def _online(host: str, timeout: float = 5.0) -> bool:
    """Can we open a connection to `host`? (A proxy is assumed to work: we cannot tell.) Checked before a hub
    download, which otherwise retries for about a minute before giving up."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline():
    """Hugging Face hub in offline mode: a cached file is used without asking the network for a newer one."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def load_timm_pretrained(spec: ModelSpec, net: nn.Module, opts: ModelOptions) -> tuple[str, str]:
    """timm's published weights for `spec`: timm builds a pretrained copy (its own download, cache and key
    remapping; files read with safetensors or weights_only=True), whose state_dict is checked into `net`."""
    timm = require_timm()
    arch = spec.name.split(":", 1)[1]
    cfg = _pretrained_cfg(timm, arch)
    if not (cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")):
        raise FvError(f"timm publishes no weights for {arch}; use --weights PATH or random:SEED")
    where: contextlib.AbstractContextManager = contextlib.nullcontext()
    hub = cfg.get("hf_hub_id")
    if hub and _hf_cached(hub):
        where = _hub_offline()
    elif hub and not _hub_offline_mode() and not _online(HUB_HOST):
        raise FvError(missing_message(spec.name, cfg, f"{HUB_HOST} is not reachable from here"))
    try:
        with where:
            pre = timm.create_model(arch, pretrained=True, num_classes=opts.num_classes or spec.num_classes,
                                    **dict(opts.kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - offline, missing file, hub errors: all mean "no weights here"
        log.debug("timm pretrained %s failed", arch, exc_info=True)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:240]
        raise FvError(missing_message(spec.name, cfg, reason)) from None
    source = f"timm:{cfg.get('hf_hub_id') or cfg.get('url')}"
    sd = pre.state_dict()
    apply_state_dict(net, sd, source)
    return source, state_dict_sha256(sd)
