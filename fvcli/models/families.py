"""Main layers per architecture family: what `fv sweep` renders by default and `fv layers --main` lists.

The rules read a network's module tree (names and class names only, so a network built on the meta device will do)
and work for torchvision and timm alike, whatever the module paths:

  ViT, Swin, ConvNeXt     every transformer / ConvNeXt block (the units of these networks' depth, like the
                          article's mixed layers): torchvision `encoder.layers.encoder_layer_6`, `features.5.3`;
                          timm `blocks.6`, `layers.2.blocks.3`, `stages.2.blocks.4`
  ResNet, RegNet          every stage (the containers of the residual blocks): `layer1`..`layer4`,
                          `trunk_output.block1`..`block4`
  MobileNet, EfficientNet every child of the sequence that holds the inverted-residual blocks (stem, each block or
                          stage, head conv): `features.0`..`features.18`, timm `blocks.0`..`blocks.6`

Other networks get the children of their `features` sequence when they have one (VGG, AlexNet, DenseNet), else
their top-level children. The loader keeps only names its catalog has.
"""
from __future__ import annotations

from torch import nn

# Class names of one block of each family (torchvision, timm).
BLOCKS = {
    "EncoderBlock",  # torchvision ViT
    "SwinTransformerBlock", "SwinTransformerBlockV2",  # torchvision and timm Swin
    "CNBlock", "ConvNeXtBlock",  # torchvision and timm ConvNeXt
}
STAGED = {"BasicBlock", "Bottleneck", "ResBottleneckBlock"}  # ResNet / ResNeXt / Wide ResNet, RegNet
INVERTED = {"InvertedResidual", "MBConv", "FusedMBConv", "DepthwiseSeparableConv", "EdgeResidual",
            "UniversalInvertedResidual"}


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _is_timm_vit_block(name: str, module: nn.Module) -> bool:
    """timm's ViT blocks are plain `Block`s (attention + MLP) inside a `blocks` sequence."""
    return type(module).__name__ in ("Block", "ResPostBlock", "ParallelScalingBlock") and \
        _parent(name).rpartition(".")[2] == "blocks" and hasattr(module, "attn") and hasattr(module, "mlp")


def main_layers(net: nn.Module) -> tuple[str, ...]:
    """The family's main layers for `net` (see the module docstring), in module order."""
    mods = [(n, m) for n, m in net.named_modules() if n]
    names = [n for n, _ in mods]
    kinds = {n: type(m).__name__ for n, m in mods}
    blocks = [n for n, m in mods if kinds[n] in BLOCKS or _is_timm_vit_block(n, m)]
    if blocks:
        return tuple(blocks)
    staged = [n for n in names if kinds[n] in STAGED]
    if staged:
        return tuple(dict.fromkeys(_parent(n) for n in staged if _parent(n)))
    inverted = [n for n in names if kinds[n] in INVERTED]
    if inverted:
        # the outermost sequence holding the blocks: its children are stem, blocks or stages, and head
        top = min((_parent(n) for n in inverted), key=lambda p: p.count("."))
        holder = top.split(".")[0] if top else ""
        if holder:
            return tuple(n for n in names if _parent(n) == holder)
    if isinstance(getattr(net, "features", None), nn.Sequential):
        return tuple(n for n in names if _parent(n) == "features")
    return tuple(n for n in names if "." not in n)
