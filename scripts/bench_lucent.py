"""torch-lucent's side of the speed benchmark: `render_vis` on the same network, weights, units and transforms.

Run inside the bench venv (`make bench-lucent` builds it: the project's packages plus torch-lucent) as
`bench_render.py --worker lucent`. lucent gets what a lucent user would hand it: the network as its builder makes it
(no fv rewrites, no channels_last) behind the model's own preprocessing, with `preprocess=False`; for InceptionV1
lucent's own model with random weights (any download attempt is refused and fails the run). The article's transforms
are written with lucent's own transform functions, its Fourier image, Adam lr 0.05, `fixed_image_size` = the
render size. The worker prints the same JSON fields as fv's worker, so the two are compared line by line.
"""
from __future__ import annotations

import time

import torch

from bench_common import count_flops, machine_gflops, model_options, peak_rss_mb, rss_mb


def plain_network(args):
    """(network as its builder makes it, with the benchmark's weights, in eval mode, behind its preprocessing;
    the module path prefix lucent's names get). No fv rewrites: this is what a lucent user would hand it."""
    from torch import nn

    from fvcli.models import _load_weights, get_spec

    opts = model_options(args)
    spec = get_spec(opts.name)
    net = spec.build(opts)
    _load_weights(spec, net, opts)
    prep = opts.preprocess or spec.preprocess

    class Preprocessed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(prep.apply(x))

    return Preprocessed().eval(), "net"


def _refuse_download(*_a, **_k):
    raise RuntimeError("bench_render: lucent tried to download weights; the benchmark uses random weights only")


def lucent_channel(model, path: str, size: int, device="cpu"):
    """lucent's channel objective for the module at `path`, as `channel(c, batch)`: lucent's own for a (B, C, H, W)
    output; for a token layer (B, N, D), the mean of channel c over the patch tokens (the class token first), which
    lucent has no objective for. The layout is read from one forward pass of a blank image."""
    from lucent.optvis import objectives

    name = path.replace(".", "_")  # lucent's name for the module at `path`
    probe: dict = {}
    with torch.no_grad():
        h = model.get_submodule(path).register_forward_hook(lambda _m, _i, o: probe.update(dim=o.dim()))
        model(torch.zeros(1, 3, size, size, device=device))
        h.remove()
    if probe.get("dim") != 3:
        return lambda c, b: objectives.channel(name, c, batch=b)

    @objectives.wrap_objective()
    def token_channel(layer, n_channel, batch=None):
        @objectives.handle_batch(batch)
        def inner(model):
            return -model(layer)[:, 1:, n_channel].mean()
        return inner

    return lambda c, b: token_channel(name, c, batch=b)

def worker_lucent(args) -> dict:
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    torch.hub.load_state_dict_from_url = _refuse_download  # lucent's only download path; fail loudly if used
    torch.hub.download_url_to_file = _refuse_download
    from lucent.modelzoo import inceptionv1
    from lucent.optvis import param, render, transform

    from fvcli.models import resolve_device

    dev = resolve_device(args.device)
    torch.manual_seed(0)
    np.random.seed(0)
    preprocess = False
    if args.model == "inceptionv1" and not args.recipe:
        model, path = inceptionv1(pretrained=False).to(dev).eval(), args.layer
        preprocess = True  # lucent's own InceptionV1 input range
    else:
        try:
            model, prefix = plain_network(args)
        except Exception as exc:  # noqa: BLE001 - reported, the matrix goes on
            return {"tool": "lucent", "unavailable": f"{type(exc).__name__}: {exc}"}
        model, path = model.to(dev), f"{prefix}.{args.layer}"
    channel = lucent_channel(model, path, args.size, dev)

    base_rss = rss_mb()
    tfs = [transform.pad(16, mode="constant", constant_value=0.5), transform.jitter(16),
           transform.random_scale([1, 0.975, 1.025, 0.95, 1.05]), transform.random_rotate(list(range(-5, 6))),
           transform.jitter(8)]
    units = list(range(args.units))
    bs = min(args.lucent_batch or args.batch_size, len(units))
    batches = [units[i : i + bs] for i in range(0, len(units), bs)]

    def run(chunk, steps):
        obj = channel(chunk[0], 0)
        for i, c in enumerate(chunk[1:], 1):
            obj = obj + channel(c, i)
        render.render_vis(model, obj, lambda: param.image(args.size, batch=len(chunk)), transforms=list(tfs),
                          thresholds=(steps,), show_image=False, progress=False, fixed_image_size=args.size,
                          preprocess=preprocess)

    tot2, _ = count_flops(lambda: run(batches[0], 2))
    tot1, _ = count_flops(lambda: run(batches[0], 1))
    machine = machine_gflops(dev)
    t0 = time.perf_counter()
    for chunk in batches:
        run(chunk, args.steps)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"tool": "lucent", "device": str(dev), "batch_size": bs, "seconds": time.perf_counter() - t0, "units": len(units),
            "steps": args.steps, "flops_per_image_step": (tot2 - tot1) / bs, "machine": machine,
            "base_rss_mb": base_rss, "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}
