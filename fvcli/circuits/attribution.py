"""Attribution: how much each channel of an earlier layer contributes to a unit on given images.

For a unit u of layer B, images x and an earlier layer A with activation a(x) (C_A, H, W), the attribution of A's
channel i is gradient x activation summed over positions:

    attr_i(x) = sum_{h,w} a_{i,h,w}(x) * d u(x) / d a_{i,h,w}

-- the first-order Taylor share of channel i in u (exact for a linear map from A to u; "Zoom In"'s attribution
between neurons). It is read on the real network (ReLUs as they are, no redirected gradients), on the images that
define the unit best: its own visualization and, where `fv examples` ran, the dataset examples that excite it most.
Unlike expanded weights it sees which inputs are actually on in those images: an input that is inhibitory by weight
but silent on the unit's favourite images gets little inhibitory attribution.

A batch mixes units: image b belongs to unit owners[b] and only that unit's objective is read on it (one forward and
one backward for a whole layer's renders; images never interact -- fv's models run in eval mode).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..models import LoadedModel
from ..models.capture import channel_first, fit_input
from ..units.unit import Unit
from .expanded import check_pair

CHUNK = 16  # images per forward pass


def attribution(model: LoadedModel, units: Sequence[Unit], images: torch.Tensor, owners: Sequence[int],
                from_layer: str, chunk: int = CHUNK) -> torch.Tensor:
    """(N, C_A): gradient x activation of units[owners[b]]'s objective with respect to `from_layer`, summed over
    positions, for each image b of `images` ((N, 3, H, W) in [0, 1])."""
    layers = {u.layer for u in units}
    for layer in layers:
        check_pair(model, layer, from_layer)
    a_info = model.layer(from_layer)
    infos = {layer: model.layer(layer) for layer in layers}
    modules = dict(model.net.named_modules())
    objectives = [u.objective(model) for u in units]
    out = []
    model.set_redirect(False)
    for start in range(0, images.shape[0], chunk):
        x = fit_input(model, model.preprocess.apply(images[start:start + chunk].to(model.device)))
        who = list(owners[start:start + chunk])
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        leaf: list[torch.Tensor] = []
        acts: dict[str, torch.Tensor] = {}

        def keep_a(_m, _inp, o):
            z = o.detach().requires_grad_(True)
            leaf.append(z)
            return z

        def catch(names):
            def hook(_m, _inp, o):
                for name in names:
                    acts[name] = channel_first(o, infos[name], hw, model.native_size)[0]
                if len(acts) == len(infos):
                    raise _Done
            return hook

        by_path: dict[str, list[str]] = {}
        for name, info in infos.items():
            by_path.setdefault(info.path, []).append(name)
        handles = [modules[a_info.path].register_forward_hook(keep_a)]
        handles += [modules[p].register_forward_hook(catch(names)) for p, names in by_path.items()]
        try:
            with torch.enable_grad():
                model.net(x)
        except _Done:
            pass
        finally:
            for h in handles:
                h.remove()
        rows = torch.arange(len(who))
        scores = torch.stack([objectives[j](acts, x)[b] for b, j in zip(rows.tolist(), who)])
        (grad,) = torch.autograd.grad(scores.sum(), leaf[0])
        a, _ = channel_first(leaf[0], a_info, hw, model.native_size)
        g, _ = channel_first(grad, a_info, hw, model.native_size)
        ga = (a * g).detach().float()
        out.append((ga.flatten(2).sum(2) if ga.dim() == 4 else ga).cpu())
    return torch.cat(out) if out else torch.zeros(0, a_info.channels)


class _Done(Exception):
    """Every unit's layer was reached."""
