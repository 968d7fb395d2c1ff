"""Engine manifests: what made an engine, checked by every loader.

``engines/NAME.onnx`` has ``engines/NAME.json`` next to it::

    format          "inspector.engine/1"
    engine_file     file name of the engine (ONNX) next to the manifest
    engine_sha256   hash of that file: a tampered or swapped engine is refused
    model_sha256    hash of the checkpoint it was exported from; model_path for reference
    teacher         name, weights_sha256, channels, strides, mean, std
    config          the model config (backbone, taps, image_size (h, w), fit, margin, tile_size, score)
    image_size      [H, W]: the inspection size camera images are fitted to (maps come out at it)
    geometry        fit, inspect_size, tile_size [th, tw], margin, n_tiles (core.geometry.TileGrid)
    head            sigma, score rule, stats: null or {file, sha256, n_images}: the good-part
                    statistics file ``NAME.stats.npz`` next to the engine (core.scoring.GoodStats)
    input           name "images", uint8, N x th x tw x 3 tiles, RGB, 0..255 (normalisation is in the graph)
    outputs         three float32 maps N x th/s x tw/s (1 - cos), s = 4, 8, 16
    precision       "fp32" | "fp16" (fp16: convolutions in half, pre-processing and cosine head in fp32)
    opset, versions (inspector, torch, onnx, onnxruntime), created (UTC ISO time)
    signature       Ed25519 signature of everything above by the site key that exported it
                    (core.signing; ``inspector export --sign-key``). It covers engine_sha256 and the
                    statistics' sha256, so the engine file and its statistics are covered too.
                    Loaders given trusted keys refuse an unsigned, foreign-signed or altered manifest.

TensorRT plans (``NAME-<fp16|fp32>-b<max batch>.<gpu slug>.trt<version>.<onnx sha256[:12]>.plan``)
are caches derived from the ONNX engine, keyed by TensorRT version, GPU model and the ONNX hash;
they carry no manifest of their own (see :mod:`inspector.engine.tensorrt_engine`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.hashing import sha256_file
from ..core.signing import SignatureError, TrustedKeys

FORMAT = "inspector.engine/1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("map_s4", "map_s8", "map_s16")


class ManifestError(ValueError):
    """Missing, malformed or mismatching manifest (or tampered engine file)."""


def manifest_path(engine_path: str | Path) -> Path:
    return Path(engine_path).with_suffix(".json")


def inspection_blocks(config: dict, grid, stats_block: dict | None) -> dict:
    """The manifest's ``geometry`` and ``head`` blocks for a model config and its tile grid."""
    from ..core.map_head import SIGMA
    from ..core.scoring import ScoreRule

    return {"geometry": {"fit": config.get("fit") or "squash", **grid.describe()},
            "head": {"sigma": SIGMA, "score": ScoreRule.from_dict(config.get("score") or {}).describe(),
                     "stats": stats_block}}


def stats_path(engine_path: str | Path) -> Path:
    """``engines/NAME.stats.npz``: the good-part statistics next to ``engines/NAME.onnx``."""
    return Path(engine_path).with_suffix(".stats.npz")


def load_stats(engine_path: str | Path, manifest: dict):
    """The engine's good-part statistics (core.scoring.GoodStats) or None; refuses a missing file,
    another hash or another inspection size (ManifestError)."""
    from ..core.scoring import GoodStats, ScoringError

    block = (manifest.get("head") or {}).get("stats")
    if not block:
        return None
    path = Path(engine_path).with_name(block["file"])
    if not path.is_file():
        raise ManifestError(f"{engine_path}: its good-part statistics {path} are missing")
    try:
        return GoodStats.load(path, sha256=block["sha256"], shape=tuple(manifest["image_size"]))
    except ScoringError as exc:
        raise ManifestError(str(exc)) from exc


def write_manifest(engine_path: str | Path, manifest: dict) -> Path:
    path = manifest_path(engine_path)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(engine_path: str | Path, *, verify_hash: bool = True, trusted: TrustedKeys | None = None) -> dict:
    """Read and check the manifest next to ``engine_path``; with ``trusted``, its signature first
    (an unsigned or altered manifest, or one signed by another key, is refused). Raises
    ManifestError."""
    engine_path = Path(engine_path)
    path = manifest_path(engine_path)
    if not engine_path.is_file():
        raise ManifestError(f"engine file not found: {engine_path}")
    if not path.is_file():
        raise ManifestError(f"no manifest for {engine_path} (expected {path}); re-export the engine")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"unreadable manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path} is not an inspector engine manifest ({FORMAT})")
    if trusted is not None:
        try:
            trusted.verify(manifest, f"engine manifest {path}")
        except SignatureError as exc:
            raise ManifestError(str(exc)) from None
    for key in ("engine_sha256", "teacher", "image_size", "precision", "config"):
        if key not in manifest:
            raise ManifestError(f"{path}: missing '{key}'")
    if manifest.get("engine_file") != engine_path.name:
        raise ManifestError(f"{path} describes {manifest.get('engine_file')!r}, not {engine_path.name!r}")
    if verify_hash:
        actual = sha256_file(engine_path)
        if actual != manifest["engine_sha256"]:
            raise ManifestError(f"{engine_path} does not match its manifest (sha256 {actual[:12]}... != "
                                f"{manifest['engine_sha256'][:12]}...): modified or replaced; refusing it")
    return manifest


def check_expectations(manifest: dict, *, image_size=None, teacher_sha256=None, model_sha256=None,
                       engine_sha256=None) -> None:
    """Refuse an engine that does not match what the caller expects (any given field)."""
    problems = []
    if image_size is not None and list(image_size) != list(manifest["image_size"]):
        problems.append(f"image size {manifest['image_size']} != expected {list(image_size)}")
    if teacher_sha256 and manifest["teacher"].get("weights_sha256") != teacher_sha256:
        problems.append("teacher weights differ")
    if model_sha256 and manifest.get("model_sha256") != model_sha256:
        problems.append("exported from another model checkpoint")
    if engine_sha256 and manifest.get("engine_sha256") != engine_sha256:
        problems.append("another engine file")
    if problems:
        raise ManifestError("engine mismatch: " + "; ".join(problems))
