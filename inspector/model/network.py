"""Reverse Distillation (Deng & Li, CVPR 2022) as a plain torch model.

teacher (frozen encoder) -> OCBE (multi-scale fusion + one-class embedding) -> student decoder that
mirrors the teacher in reverse. Trained on good parts only; at test time the per-pixel 1 - cosine
between teacher and student features is high where the student fails to reproduce the teacher,
i.e. on anomalies.

Everything is sized from ``teacher.feature_info`` (channels c1, c2, c3 at strides 4, 8, 16):

* fusion (as the reference code): f1 -> conv3x3/2 (c1->c2) -> conv3x3/2 (c2->c3); f2 -> conv3x3/2
  (c2->c3); concatenated with f3 -> 3*c3 channels at stride 16. With ``fuse_channels`` F (wide
  teacher taps, where the reference fusion would cost more than the teacher), each branch first
  reduces channels with a 1x1 conv, then two / one strided 3x3 convs to F; concat -> 2F + c3.
* one-class embedding: a ResNet stage of ``embed_depth`` bottleneck blocks, stride 2 ->
  ``embed_channels`` at stride 32.
* student decoder: three stages of bottleneck blocks, each starting with a 2x2 stride-2 transposed
  conv, -> c3 @ /16, c2 @ /8, c1 @ /4 (output listed shallow to deep, like the teacher's).

Input to :meth:`ReverseDistillation.forward` and :meth:`cosine_maps`: uint8 N x H x W x 3 RGB (the
output of :mod:`inspector.core.preprocess`); the model scales to [0, 1] and normalises with the teacher's
mean/std inside, so exported engines take the same uint8 input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.geometry import TileGrid
from .teachers import Teacher


@dataclass
class RDConfig:
    """Everything needed to rebuild the model and its inspection geometry (stored in checkpoints,
    nanoGPT style). Defaults are those of checkpoints written before a field existed; the training
    defaults are in :mod:`inspector.model.train`."""

    backbone: str = "efficientnet_lite0"
    taps: str = "expanded"                 # efficientnet_lite*: "expanded" | "blocks"
    image_size: tuple[int, int] = (256, 256)  # inspection size (height, width): camera images are fitted to it
    fit: str = "squash"                    # "squash" | "letterbox" (core.geometry.fit_image)
    margin: int = 0                        # reflect padding around the inspection image, px (multiple of 16)
    tile_size: tuple[int, int] | None = None  # network input (h, w); None: one tile = the padded image
    score: dict | None = None              # score rule (core.scoring.ScoreRule.describe()); None: max
    embed_channels: int | None = None      # default: 2 * c3
    fuse_channels: int | None = None       # width of the fused f1/f2 branches; default: c3
    width_mult: float = 1.0                # bottleneck mid width = out/4 * width_mult
    embed_depth: int = 3
    decoder_depths: tuple[int, int, int] = (1, 1, 1)  # blocks to c3@/16, c2@/8, c1@/4

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["decoder_depths"] = list(self.decoder_depths)
        d["tile_size"] = list(self.tile_size) if self.tile_size else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RDConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        known["image_size"] = tuple(known.get("image_size", (256, 256)))
        known["decoder_depths"] = tuple(known.get("decoder_depths", (1, 1, 1)))
        if known.get("tile_size"):
            known["tile_size"] = tuple(known["tile_size"])
        return cls(**known)

    def grid(self, strides=(4, 8, 16)) -> TileGrid:
        """The tile grid of this model's inspection (one tile when ``tile_size`` is None)."""
        if self.tile_size:
            return TileGrid(tuple(self.image_size), tuple(self.tile_size), self.margin, tuple(strides))
        return TileGrid.single(tuple(self.image_size), self.margin, tuple(strides))

    @property
    def input_size(self) -> tuple[int, int]:
        """The network's input (h, w): the tile size, or the padded inspection size."""
        return self.grid().tile_size


def conv_bn_relu(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _mid(cout: int, width_mult: float) -> int:
    return max(8, int(round(cout / 4 * width_mult)))


class Bottleneck(nn.Module):
    """ResNet bottleneck 1x1 -> 3x3 (stride) -> 1x1 with a projected shortcut when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int = 1, width_mult: float = 1.0):
        super().__init__()
        mid = _mid(cout, width_mult)
        self.body = nn.Sequential(
            conv_bn_relu(cin, mid, k=1), conv_bn_relu(mid, mid, stride=stride),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if cin == cout and stride == 1 else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class UpBottleneck(nn.Module):
    """Decoder bottleneck: 1x1 -> 2x2 stride-2 transposed conv -> 1x1. The shortcut is a 1x1
    projection at the low resolution followed by 2x nearest upsampling (the reference uses a 2x2
    transposed conv there; that costs 4x more and, with the body's transposed conv already giving
    each sub-pixel its own weights, it measured no better here)."""

    def __init__(self, cin: int, cout: int, width_mult: float = 1.0):
        super().__init__()
        mid = _mid(cout, width_mult)
        self.body = nn.Sequential(
            conv_bn_relu(cin, mid, k=1),
            nn.ConvTranspose2d(mid, mid, 2, 2, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + F.interpolate(self.shortcut(x), scale_factor=2.0, mode="nearest"))


class OCBE(nn.Module):
    """One-Class Bottleneck Embedding: multi-scale fusion + one-class embedding (stride 32)."""

    def __init__(self, channels: tuple[int, int, int], embed_channels: int, width_mult: float, depth: int,
                 fuse_channels: int | None = None):
        super().__init__()
        c1, c2, c3 = channels
        fc = fuse_channels or c3
        if fuse_channels:  # light fusion for wide taps: 1x1 reduction before each strided 3x3
            r1, r2 = max(16, fc // 4), max(16, fc // 2)
            self.fuse1 = nn.Sequential(conv_bn_relu(c1, r1, k=1), conv_bn_relu(r1, r2, stride=2),
                                       conv_bn_relu(r2, fc, stride=2))
            self.fuse2 = nn.Sequential(conv_bn_relu(c2, r2, k=1), conv_bn_relu(r2, fc, stride=2))
        else:  # the reference fusion
            self.fuse1 = nn.Sequential(conv_bn_relu(c1, c2, stride=2), conv_bn_relu(c2, fc, stride=2))
            self.fuse2 = conv_bn_relu(c2, fc, stride=2)
        blocks = [Bottleneck(2 * fc + c3, embed_channels, stride=2, width_mult=width_mult)]
        blocks += [Bottleneck(embed_channels, embed_channels, width_mult=width_mult) for _ in range(depth - 1)]
        self.embed = nn.Sequential(*blocks)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        return self.embed(torch.cat([self.fuse1(f1), self.fuse2(f2), f3], dim=1))


class Decoder(nn.Module):
    """Student decoder: embedding -> [c1 @ /4, c2 @ /8, c3 @ /16] (shallow to deep)."""

    def __init__(self, channels: tuple[int, int, int], embed_channels: int, width_mult: float,
                 depths: tuple[int, int, int]):
        super().__init__()
        c1, c2, c3 = channels
        stages = []
        for cin, cout, depth in ((embed_channels, c3, depths[0]), (c3, c2, depths[1]), (c2, c1, depths[2])):
            blocks = [UpBottleneck(cin, cout, width_mult)]
            blocks += [Bottleneck(cout, cout, width_mult=width_mult) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            z = stage(z)
            outs.append(z)
        return outs[::-1]


class Student(nn.Module):
    """The trainable part: OCBE + decoder. Teacher features in, student features out."""

    def __init__(self, cfg: RDConfig, channels: tuple[int, int, int]):
        super().__init__()
        embed = cfg.embed_channels or 2 * channels[2]
        self.ocbe = OCBE(channels, embed, cfg.width_mult, cfg.embed_depth, cfg.fuse_channels)
        self.decoder = Decoder(channels, embed, cfg.width_mult, cfg.decoder_depths)

    def forward(self, teacher_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.ocbe(teacher_feats))


def cosine_maps(t_feats: list[torch.Tensor], s_feats: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-scale anomaly maps: 1 - cosine along channels -> float32 N x h_s x w_s in [0, 2]."""
    return [1.0 - F.cosine_similarity(t, s, dim=1) for t, s in zip(t_feats, s_feats)]


LOSSES = ("flat", "pixel", "mixed")


def rd_loss(t_feats: list[torch.Tensor], s_feats: list[torch.Tensor], kind: str = "flat") -> torch.Tensor:
    """Distillation loss, summed over scales.

    ``flat`` (the reference code): per scale, 1 - cos of each sample's flattened C*H*W maps, batch
    mean. ``pixel`` (the paper's text): the mean over pixels of the per-pixel 1 - cos along channels,
    i.e. the mean of the anomaly map itself. ``mixed``: their sum."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")
    loss = t_feats[0].new_zeros(())
    for t, s in zip(t_feats, s_feats):
        if kind in ("flat", "mixed"):
            loss = loss + (1.0 - F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1)).mean()
        if kind in ("pixel", "mixed"):
            loss = loss + (1.0 - F.cosine_similarity(t, s, dim=1)).mean()
    return loss


class ReverseDistillation(nn.Module):
    """Teacher + student. ``forward(uint8 N x H x W x 3 RGB)`` -> (teacher feats, student feats)."""

    def __init__(self, teacher: Teacher, cfg: RDConfig):
        super().__init__()
        self.cfg = cfg
        self.teacher = teacher
        self.student = Student(cfg, teacher.feature_info.channels)
        self.register_buffer("mean", torch.tensor(teacher.mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(teacher.std).view(1, 3, 1, 1) * 255.0),
                             persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x H x W x 3 RGB -> float32 N x 3 x H x W normalised for the teacher."""
        x = images.permute(0, 3, 1, 2).float()
        return (x - self.mean) * self.inv_std

    def teacher_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return self.teacher(self.normalize(images))

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        t = self.teacher_features(images)
        return t, self.student(t)

    def cosine_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        t, s = self(images)
        return cosine_maps(t, s)


class CosineMapsModule(nn.Module):
    """Export wrapper: uint8 N x H x W x 3 RGB -> three float32 N x h_s x w_s cosine maps."""

    def __init__(self, model: ReverseDistillation):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model.cosine_maps(images)
        return m[0], m[1], m[2]


class HalfCosineMapsModule(nn.Module):
    """FP16 export wrapper: uint8 input, float32 normalisation, teacher + student in float16,
    features cast back to float32 for the cosine head; outputs as :class:`CosineMapsModule`."""

    def __init__(self, model: ReverseDistillation):
        super().__init__()
        import copy

        self.model = model
        self.teacher = copy.deepcopy(model.teacher).half()
        self.student = copy.deepcopy(model.student).half()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.teacher(self.model.normalize(images).half())
        s = self.student(t)
        m = cosine_maps([a.float() for a in t], [b.float() for b in s])
        return m[0], m[1], m[2]
