"""`inspector export`: checkpoint -> ONNX engine (+ manifest next to it).

The graph holds the whole model: uint8 input ``images`` N x h x w x 3 RGB (dynamic N) -> cast, scale,
teacher normalisation -> teacher -> OCBE -> student -> per-scale 1 - cos maps ``map_s4``,
``map_s8``, ``map_s16`` (float32 N x h/s x w/s). The map head (upsample, sum, blur, max) runs after
the graph (numpy on the CPU, the CUDA kernel on the GPU).

``--fp16`` exports a graph whose teacher and student run in float16 while the input scaling and
normalisation and the cosine head stay float32 (explicit casts in the exported module): near
cos = 1 the fp16 step (~5e-4) would otherwise be as large as the differences we score. (Converting
the float32 graph afterwards with onnxconverter-common was tried first: it took over 10 minutes on
this graph and needs an op block list to keep the head in fp32; casting in torch is exact about
which ops run in which precision.) The input and outputs keep their types: uint8 in, float32 out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import tempfile
from pathlib import Path

from .. import __version__
from ..core.signing import SigningKey, signing_key_from
from .manifest import FORMAT, INPUT_NAME, OUTPUT_NAMES, inspection_blocks, sha256_file, stats_path, write_manifest

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="trained checkpoint (.pt)")
    p.add_argument("--out", required=True, help="engine file to write, e.g. engines/NAME.onnx")
    p.add_argument("--fp16", action="store_true", help="half-precision convolutions (fp32 head)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--teacher-weights", help="teacher weights file (resnet teachers)")
    p.add_argument("--sign-key", help="the site's signing key (NAME.signing; default $INSPECTOR_SIGNING_KEY): "
                                      "the manifest is signed with it (docs/security.md)")


def export_onnx(model_path: str | Path, out: str | Path, *, fp16: bool = False, opset: int = DEFAULT_OPSET,
                teacher_weights=None, signing_key: SigningKey | None = None) -> dict:
    """Export and write the manifest, signed with ``signing_key`` (unsigned without: only for
    tools that sign later); returns the manifest."""
    import onnx
    import torch

    from ..model.checkpoint import load_model
    from ..model.network import CosineMapsModule, HalfCosineMapsModule

    from ..model.checkpoint import stats_from_checkpoint

    model, ckpt = load_model(model_path, teacher_weights=teacher_weights)
    wrapper = (HalfCosineMapsModule(model) if fp16 else CosineMapsModule(model)).eval()
    h, w = model.cfg.input_size  # one tile (or the padded inspection image)
    dummy = torch.zeros((2, h, w, 3), dtype=torch.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_onnx = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapper, (dummy,), str(tmp_onnx), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "N"}, **{name: {0: "N"} for name in OUTPUT_NAMES}},
            opset_version=opset, do_constant_folding=True, dynamo=False)
        graph = onnx.load(str(tmp_onnx))
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    stats = stats_from_checkpoint(ckpt)
    stats_block = None
    if stats is not None:
        stats_file = stats_path(out)
        stats_block = {"file": stats_file.name, "sha256": stats.save(stats_file), "n_images": stats.n_images}
    elif stats_path(out).exists():
        stats_path(out).unlink()  # a stale file from an earlier export must not look like ours
    manifest = build_manifest(out, model_path, ckpt, precision="fp16" if fp16 else "fp32", opset=opset,
                              stats=stats_block)
    if signing_key is not None:
        manifest = signing_key.sign(manifest)
    write_manifest(out, manifest)
    return manifest


def tool_versions() -> dict:
    import onnx
    import torch
    versions = {"inspector": __version__, "torch": str(torch.__version__), "onnx": onnx.__version__}
    try:
        import onnxruntime
        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def build_manifest(engine_path: Path, model_path, ckpt: dict, *, precision: str, opset: int,
                   stats: dict | None = None) -> dict:
    from ..model.network import RDConfig

    cfg = RDConfig.from_dict(ckpt["config"])
    h, w = cfg.image_size
    strides = ckpt["teacher"].get("strides", [4, 8, 16])
    grid = cfg.grid(tuple(strides))
    th, tw = grid.tile_size
    return {
        "format": FORMAT,
        "engine_file": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "model_path": str(Path(model_path).resolve()),
        "model_sha256": sha256_file(model_path),
        "teacher": ckpt["teacher"],
        "config": ckpt["config"],
        "image_size": [h, w],
        **inspection_blocks(ckpt["config"], grid, stats),
        "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC", "color": "RGB",
                  "range": [0, 255], "shape": ["N", th, tw, 3], "meaning": "tiles of the padded inspection image"},
        "outputs": [{"name": n, "dtype": "float32", "stride": s, "shape": ["N", th // s, tw // s],
                     "meaning": "1 - cosine(teacher, student) per pixel, in [0, 2]"}
                    for n, s in zip(OUTPUT_NAMES, strides)],
        "precision": precision,
        "opset": opset,
        "versions": tool_versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args) -> int:
    key = signing_key_from(args.sign_key, "inspector export")   # before the slow part: no key, no export
    manifest = export_onnx(args.model, args.out, fp16=args.fp16, opset=args.opset,
                           teacher_weights=args.teacher_weights, signing_key=key)
    print(f"wrote {args.out} ({manifest['precision']}, {manifest['image_size'][1]}x{manifest['image_size'][0]} WxH) "
          f"and its manifest {Path(args.out).with_suffix('.json')}, signed by {key.name} ({key.key_id})")
    return 0
