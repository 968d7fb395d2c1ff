"""TensorRT backend: on machines without a GPU (or TensorRT) it refuses cleanly with EngineError and
never touches TensorRT; the plan cache key and the FP16 build route are right; on a GPU with TensorRT
it builds a plan from the tiny engine and scores like onnxruntime."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from inspector.engine import EngineError, open_engine
from fake_cuda import FakeRuntime, install_fake_cuda
from fake_cuda import view as _view
from inspector.engine import cuda_runtime as cr
from inspector.engine import tensorrt_engine as te
from inspector.engine.cuda_runtime import has_cuda_gpu
from inspector.engine.manifest import FORMAT, OUTPUT_NAMES, sha256_file, write_manifest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _has_tensorrt() -> bool:
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except Exception:
        return False


def _fake_engine(folder: Path, precision: str = "fp32") -> Path:
    """A file with a valid manifest (hash included): enough to pass the manifest checks."""
    onnx = folder / "fake.onnx"
    onnx.write_bytes(b"not a real model, only its manifest is checked before the GPU")
    write_manifest(onnx, {
        "format": FORMAT, "engine_file": onnx.name, "engine_sha256": sha256_file(onnx), "teacher": {},
        "config": {}, "image_size": [64, 96], "precision": precision,
        "outputs": [{"name": n, "stride": s, "shape": ["N", 64 // s, 96 // s], "dtype": "float32"}
                    for n, s in zip(OUTPUT_NAMES, (4, 8, 16))]})
    return onnx


def test_without_a_gpu_the_engine_refuses_cleanly_and_never_imports_tensorrt(tmp_path):
    onnx = _fake_engine(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from inspector.engine import EngineError, open_engine
        try:
            open_engine("tensorrt", {str(onnx)!r})
        except EngineError as exc:
            print("ENGINE_ERROR:", exc)
        print("TENSORRT_IMPORTED:", "tensorrt" in sys.modules)
    """)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "ENGINE_ERROR: the tensorrt backend needs an NVIDIA GPU" in proc.stdout
    assert "onnxruntime backend" in proc.stdout
    assert "TENSORRT_IMPORTED: False" in proc.stdout


def test_manifest_is_checked_before_anything_else(tmp_path):
    onnx = _fake_engine(tmp_path)
    onnx.write_bytes(onnx.read_bytes() + b"tampered")
    with pytest.raises(EngineError, match="does not match its manifest"):
        te.TensorRTEngine(onnx)
    with pytest.raises(EngineError, match="image size"):
        te.TensorRTEngine(_fake_engine(tmp_path), expect={"image_size": [32, 32]})
    with pytest.raises(EngineError, match="max_batch"):
        te.TensorRTEngine(_fake_engine(tmp_path), max_batch=0)


def test_missing_tensorrt_is_an_engine_error(tmp_path, monkeypatch):
    monkeypatch.setattr(te, "cuda_device_count", lambda: 1)   # pretend a GPU; TensorRT is the next step
    monkeypatch.setitem(sys.modules, "tensorrt", None)        # makes `import tensorrt` raise ImportError
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        te.TensorRTEngine(_fake_engine(tmp_path))


def test_plan_cache_key():
    kw = dict(gpu="NVIDIA H200", trt_version="10.13.0.35", onnx_sha256="0123456789ab" + "f" * 52,
              precision="fp16", max_batch=8)
    path = te.plan_path("engines/bottle.onnx", None, **kw)
    assert path == Path("engines/bottle-fp16-b8.nvidia-h200.trt10.13.0.35.0123456789ab.plan")
    assert te.plan_path("engines/bottle.onnx", "/var/cache/plans", **kw).parent == Path("/var/cache/plans")
    changed = [dict(kw, gpu="NVIDIA GeForce RTX 4090"), dict(kw, trt_version="11.4.0.1"),
               dict(kw, onnx_sha256="abcdef012345" + "0" * 52), dict(kw, precision="fp32"), dict(kw, max_batch=4)]
    names = {te.plan_path("engines/bottle.onnx", None, **c).name for c in changed}
    assert len(names) == len(changed) and path.name not in names
    with pytest.raises(ValueError):
        te.plan_path("engines/bottle.onnx", None, **dict(kw, precision="int8"))
    with pytest.raises(ValueError):
        te.plan_path("engines/bottle.onnx", None, **dict(kw, onnx_sha256="../../etc"))


def test_gpu_slug_and_version_parsing():
    assert te.gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert te.gpu_slug("Orin (nvgpu)") == "orin-nvgpu"
    assert te.gpu_slug("???") == "gpu"
    assert te.trt_major("10.13.0.35") == 10 and te.trt_major("11.4.0") == 11
    with pytest.raises(EngineError):
        te.trt_major("unknown")


def test_build_route_for_tensorrt_10_and_11():
    choose = te.choose_build
    for major in (10, 11):
        # an --fp16 export is FP16 and strongly typed whatever fp16 says
        for fp16 in (True, False):
            assert choose(major, "fp16", fp16, have_fp16_flag=major < 11) == \
                te.BuildChoice("fp16", strongly_typed=True, fp16_flag=False)
        assert choose(major, "fp32", False, have_fp16_flag=major < 11) == \
            te.BuildChoice("fp32", strongly_typed=True, fp16_flag=False)
    # FP16 from an FP32 export: TensorRT 10's weakly typed FP16 flag; TensorRT 11 has none
    assert choose(10, "fp32", True, have_fp16_flag=True) == te.BuildChoice("fp16", strongly_typed=False, fp16_flag=True)
    with pytest.raises(EngineError, match="export --fp16"):
        choose(11, "fp32", True, have_fp16_flag=False)
    with pytest.raises(EngineError, match="too old"):
        choose(8, "fp32", False, have_fp16_flag=True)


# ---------------------------------------------------------------- on a GPU with TensorRT

@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not (_has_tensorrt() and has_cuda_gpu()), reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_fp32_scores_like_onnxruntime(tiny_engine, tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    ort = open_engine("onnxruntime", str(tiny_engine))
    ref = ort.infer_prepared(x, want_maps=True)
    ref_scale = ort.scale_maps(x[:3])
    trt = open_engine("tensorrt", str(tiny_engine), cache_dir=str(tmp_path), fp16=False, max_batch=4)
    try:
        assert trt.built and trt.plan_path.is_file() and trt.precision == "fp32"
        got = trt.infer_prepared(x, want_maps=True)       # 5 > max_batch: two chunks
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-3, atol=1e-4)
        for a, b in zip(trt.scale_maps(x[:3]), ref_scale):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
        assert trt.infer_prepared(x[:1]).maps is None
    finally:
        trt.close()
    again = open_engine("tensorrt", str(tiny_engine), cache_dir=str(tmp_path), fp16=False, max_batch=4)
    try:
        assert not again.built                               # the cached plan was loaded
        np.testing.assert_allclose(again.infer_prepared(x).scores, ref.scores, rtol=1e-3, atol=1e-5)
    finally:
        again.close()


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not (_has_tensorrt() and has_cuda_gpu()), reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_fp16_stays_close_to_fp32(tiny_model, tiny_engine, tmp_path):
    fp16_onnx = tmp_path / "tiny16.onnx"
    proc = subprocess.run([sys.executable, "-m", "inspector.cli", "export", "--model", str(tiny_model), "--out",
                           str(fp16_onnx), "--fp16"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    x = np.random.default_rng(1).integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    ref = open_engine("onnxruntime", str(tiny_engine)).infer_prepared(x).scores
    trt = open_engine("tensorrt", str(fp16_onnx), cache_dir=str(tmp_path), fp16=True)
    try:
        assert trt.precision == "fp16" and trt.plan_path.name.startswith("tiny16-fp16-b8.")
        got = trt.infer_prepared(x).scores
    finally:
        trt.close()
    np.testing.assert_allclose(got, ref, rtol=2e-2, atol=2e-3)


# ---------------------------------------------------------------- the whole engine on a fake GPU
# TensorRTEngine's plumbing (build route, plan cache, I/O checks, buffers, chunking, head on device
# pointers, cleanup) against a fake TensorRT whose "plan" is the ONNX file and whose execution is
# onnxruntime reading and writing the fake device memory of fake_cuda's FakeRuntime.


def _tiny_onnx(folder: Path, H: int = 64, W: int = 96, *, config: dict | None = None, stats=None,
               stem: str = "tiny") -> Path:
    """uint8 N x th x tw x 3 tiles -> three float32 maps (mean colour per s x s cell / 255) + manifest for
    an H x W inspection; ``config`` (margin, tile_size, fit, score) sets the tile size, ``stats`` (GoodStats)
    is saved next to it and named in the manifest's head block."""
    onnx = pytest.importorskip("onnx")
    from inspector.core.geometry import TileGrid
    from inspector.engine.manifest import stats_path
    config = dict(config or {})
    margin = int(config.get("margin") or 0)
    grid = (TileGrid((H, W), tuple(config["tile_size"]), margin, (4, 8, 16)) if config.get("tile_size")
            else TileGrid.single((H, W), margin, (4, 8, 16)))
    image_size, (H, W) = [H, W], grid.tile_size
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2], name="nchw")]
    outputs = []
    for name, s in zip(OUTPUT_NAMES, (4, 8, 16)):
        nodes += [helper.make_node("AveragePool", ["x"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s], name=f"pool{s}"),
                  helper.make_node("ReduceMean", [f"p{s}"], [f"r{s}"], axes=[1], keepdims=0, name=f"mean{s}"),
                  helper.make_node("Mul", [f"r{s}", "scale"], [name], name=f"scale{s}")]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", H // s, W // s]))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", H, W, 3])],
                              outputs, initializer=[helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255])])
    path = folder / f"{stem}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    head = None
    if stats is not None:
        sha = stats.save(stats_path(path))
        head = {"stats": {"file": stats_path(path).name, "sha256": sha, "n_images": stats.n_images}}
    write_manifest(path, {
        "format": FORMAT, "engine_file": path.name, "engine_sha256": sha256_file(path), "teacher": {},
        "config": config, "image_size": image_size, "precision": "fp32", **({"head": head} if head else {}),
        "outputs": [{"name": n, "stride": s, "shape": ["N", H // s, W // s], "dtype": "float32"}
                    for n, s in zip(OUTPUT_NAMES, (4, 8, 16))]})
    return path


class FakeTensorRT:
    """The TensorRT Python API surface TensorRTEngine uses; records what the engine asked for."""

    def __init__(self, runtime: FakeRuntime, version: str):
        import types
        self.rt, self.__version__ = runtime, version
        self.builds: list[dict] = []
        self.runtimes = 0
        fake = self
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
        flags = {"TF32": "TF32", "OBEY_PRECISION_CONSTRAINTS": "OBEY"}
        if version.startswith("10."):
            flags["FP16"] = "FP16"
        self.BuilderFlag = types.SimpleNamespace(**flags)
        self.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
        self.DataType = types.SimpleNamespace(UINT8="uint8", FLOAT="float32", HALF="float16")
        self.LayerType = types.SimpleNamespace(REDUCE="reduce", UNARY="unary", ELEMENTWISE="elementwise")
        self.float32 = "float32"

        class Network:
            num_layers = 0

            def __init__(self, flags):
                self.flags, self.onnx = flags, None

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                self.network = network

            def parse_from_file(self, path):
                self.network.onnx = Path(path).read_bytes()
                return True

        class Config:
            def __init__(self):
                self.flags, self.profiles = set(), []

            def set_flag(self, flag):
                self.flags.add(flag)

            def clear_flag(self, flag):
                self.flags.discard(flag)
                self.flags.add("-" + flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                self.shape = (name, tuple(lo), tuple(opt), tuple(hi))

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                return Network(flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.builds.append({"network_flags": network.flags, "flags": config.flags,
                                    "profile": config.profiles[0].shape})
                return b"FAKEPLAN" + network.onnx

        self.Builder, self.OnnxParser = Builder, Parser

        class Runtime:
            def __init__(self, logger):
                fake.runtimes += 1

            def deserialize_cuda_engine(self, data):
                return FakeEngine(fake, bytes(data)[8:]) if bytes(data).startswith(b"FAKEPLAN") else None

        self.Runtime = Runtime


class FakeEngine:
    def __init__(self, trt: FakeTensorRT, onnx_bytes: bytes):
        import onnx
        import onnxruntime
        self.trt = trt
        self.session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        graph = onnx.load_from_string(onnx_bytes).graph
        types = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}
        self.io = {}
        for vi, mode in [(v, "input") for v in graph.input] + [(v, "output") for v in graph.output]:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
            self.io[vi.name] = (mode, types[vi.type.tensor_type.elem_type], dims)
        self.num_io_tensors = len(self.io)

    def get_tensor_name(self, i):
        return list(self.io)[i]

    def get_tensor_mode(self, name):
        return self.io[name][0]

    def get_tensor_dtype(self, name):
        return self.io[name][1]

    def get_tensor_shape(self, name):
        return self.io[name][2]

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine, self.addresses, self.shape = engine, {}, None
        self.runs: list[int] = []

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return name in self.engine.io

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return name == "images"

    def execute_async_v3(self, stream):
        assert int(stream) in self.engine.trt.rt.streams
        n = self.shape[0]
        images = _view(self.addresses["images"], np.uint8, self.shape)
        outs = self.engine.session.run(None, {"images": images.copy()})
        for meta, out in zip(self.engine.session.get_outputs(), outs):
            _view(self.addresses[meta.name], np.float32, out.shape)[:] = out
        self.runs.append(n)
        return True


@pytest.fixture
def fake_gpu(monkeypatch):
    """Fake CUDA runtime + cuda-core for cuda_head and tensorrt_engine; returns a TensorRT installer."""
    rt, _ = install_fake_cuda(monkeypatch, te)

    def install(version: str) -> FakeTensorRT:
        trt = FakeTensorRT(rt, version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    return rt, install


def test_engine_on_a_fake_gpu_scores_like_onnxruntime_and_caches_its_plan(fake_gpu, tmp_path):
    rt, install = fake_gpu
    trt = install("10.13.0.35")
    onnx_path = _tiny_onnx(tmp_path)
    x = np.random.default_rng(0).integers(0, 255, (5, 64, 96, 3), dtype=np.uint8)
    ref_engine = open_engine("onnxruntime", str(onnx_path))
    ref = ref_engine.infer_prepared(x, want_maps=True)

    engine = open_engine("tensorrt", str(onnx_path), max_batch=2, fp16=False, cache_dir=str(tmp_path / "plans"))
    assert engine.built and engine.precision == "fp32"
    assert engine.plan_path == tmp_path / "plans" / (
        f"tiny-fp32-b2.fake-gpu-9000.trt10.13.0.35.{engine.manifest['engine_sha256'][:12]}.plan")
    assert engine.plan_path.is_file()
    build = trt.builds[-1]
    assert build["network_flags"] == 1 << 5                      # STRONGLY_TYPED on TensorRT 10
    assert "-TF32" in build["flags"] and "FP16" not in build["flags"]
    assert build["profile"] == ("images", (1, 64, 96, 3), (2, 64, 96, 3), (2, 64, 96, 3))
    got = engine.infer_prepared(x, want_maps=True)               # chunks of 2, 2, 1
    np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-5)
    np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-5, atol=1e-7)
    assert engine._context.runs == [2, 2, 1]
    for a, b in zip(engine.scale_maps(x), ref_engine.scale_maps(x)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    head = engine.head(ref_engine.scale_maps(x[:2]), None, want_maps=False)
    np.testing.assert_allclose(head.scores, ref.scores[:2], rtol=1e-5)
    rt.copies.clear()
    assert engine.infer_prepared(x[:2]).maps is None
    assert [c for c in rt.copies if c[0] == "d2h"] == [("d2h", 8)]  # maps stay on the GPU: only 2 scores back
    engine.close()
    assert rt.live == {} and rt.streams == set()
    with pytest.raises(EngineError, match="closed"):
        engine.infer_prepared(x)

    again = open_engine("tensorrt", str(onnx_path), max_batch=2, fp16=False, cache_dir=str(tmp_path / "plans"))
    assert not again.built and len(trt.builds) == 1             # loaded from the cache
    np.testing.assert_allclose(again.infer_prepared(x).scores, ref.scores, rtol=1e-5)
    again.close()
    again.plan_path.write_bytes(b"garbage from another TensorRT")
    third = open_engine("tensorrt", str(onnx_path), max_batch=2, fp16=False, cache_dir=str(tmp_path / "plans"))
    assert third.built and len(trt.builds) == 2                  # unloadable plan: rebuilt
    third.close()


def test_fp16_routes_on_fake_tensorrt_10_and_11(fake_gpu, tmp_path):
    rt, install = fake_gpu
    onnx_path = _tiny_onnx(tmp_path)
    trt10 = install("10.13.0.35")
    engine = te.TensorRTEngine(onnx_path, fp16=True, cache_dir=tmp_path)
    assert engine.precision == "fp16" and engine.plan_path.name.startswith("tiny-fp16-b8.")
    assert trt10.builds[-1]["network_flags"] == 0 and {"FP16", "OBEY"} <= trt10.builds[-1]["flags"]
    engine.close()
    trt11 = install("11.4.0.7")
    with pytest.raises(EngineError, match="export --fp16"):
        te.TensorRTEngine(onnx_path, fp16=True, cache_dir=tmp_path)
    assert rt.live == {} and rt.streams == set()                 # the failed open cleaned up
    engine = te.TensorRTEngine(onnx_path, fp16=False, cache_dir=tmp_path)
    assert trt11.builds[-1]["network_flags"] == 0 and ".trt11.4.0.7." in engine.plan_path.name
    engine.close()


def test_no_gpu_means_no_tensorrt_runtime(fake_gpu, tmp_path, monkeypatch):
    _, install = fake_gpu
    trt = install("11.4.0.7")
    monkeypatch.setattr(te, "cuda_device_count", lambda: 0)
    with pytest.raises(EngineError, match="needs an NVIDIA GPU"):
        te.TensorRTEngine(_tiny_onnx(tmp_path))
    assert trt.runtimes == 0


def _good_stats(folder: Path, config: dict, H: int = 64, W: int = 96):
    """Good-part statistics measured with the onnxruntime engine itself (as calibrate does)."""
    from inspector.core.scoring import GoodStats
    plain = open_engine("onnxruntime", str(_tiny_onnx(folder, H, W, config=config, stem="plain")))
    good = np.random.default_rng(7).integers(90, 140, (6, H, W, 3), dtype=np.uint8)
    return GoodStats.fit(plain.infer_prepared(good, want_maps=True).maps)


def _regions(n: int, H: int = 64, W: int = 96) -> np.ndarray:
    valid = np.ones((n, H, W), bool)
    valid[0, :, : W // 3] = False                              # an ROI
    valid[1, : H // 4] = valid[1, -H // 4:] = False            # a letterbox fill
    valid[2] = False                                           # nothing to judge: NaN (fail closed)
    valid[3, 5:9, 60:70] = False
    return valid


def test_fused_gpu_head_with_stats_margin_and_valid_region_on_a_fake_gpu(fake_gpu, tmp_path):
    rt, install = fake_gpu
    install("10.13.0.35")
    config = {"margin": 16, "fit": "letterbox"}
    stats = _good_stats(tmp_path, config)
    onnx_path = _tiny_onnx(tmp_path, config=config, stats=stats)
    ref_engine = open_engine("onnxruntime", str(onnx_path))
    assert ref_engine.stats is not None and ref_engine.stats.sha256 == stats.sha256
    engine = open_engine("tensorrt", str(onnx_path), max_batch=2, fp16=False, cache_dir=str(tmp_path / "plans"))
    cc = cr.import_cuda_core()
    try:
        assert engine.fused and engine.stats.sha256 == stats.sha256 and engine._head.stats is engine.stats
        assert engine.input_size == (96, 128) and engine._head.image_size == (64, 96)
        x = np.random.default_rng(3).integers(0, 255, (5, 64, 96, 3), dtype=np.uint8)
        valid = _regions(5)
        # the statistics scale the head's float32 rounding (~1e-7 on raw maps ~1.4) by inv_std (here up
        # to ~220: good parts' std ~5e-3): 1e-6 in raw map units, i.e. |dz| <= 1e-6 * max(inv_std)
        tol = 1e-6 * float(stats.inv_std.max())
        for v in (valid, None):
            ref = ref_engine.infer_prepared(x, want_maps=True, valid=v)
            cc.stage2_args.clear()
            got = engine.infer_prepared(x, want_maps=True, valid=v)     # chunks of 2, 2, 1
            assert [a["stats"] for a in cc.stage2_args] == [True] * 3    # the kernel normalised (fused path)
            assert [a["valid"] for a in cc.stage2_args] == [v is not None] * 3
            np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=tol)
            np.testing.assert_allclose(got.maps, ref.maps, rtol=0, atol=tol)   # outside: the valid minimum
            assert (got.valid is None) == (v is None) and (v is None or np.array_equal(got.valid, v))
            only = engine.infer_prepared(x, valid=v)
            assert only.maps is None and np.array_equal(only.scores, got.scores, equal_nan=True)
        assert np.isfinite(got.scores).all()                             # without a region (last pass)
        assert np.isnan(engine.infer_prepared(x, valid=valid).scores[2])
        rt.copies.clear()
        engine.infer_prepared(x[:2], valid=valid[:2])
        d2h = [c for c in rt.copies if c[0] == "d2h"]
        assert d2h == [("d2h", 8)] and ("h2d", 2 * 64 * 96) in rt.copies    # scores back, the mask up
        # camera images through the letterbox fit, with an ROI: the valid region reaches the kernel
        cams = [np.random.default_rng(i).integers(0, 255, (40, 120, 3), dtype=np.uint8) for i in range(3)]
        rois = [None, np.ones((40, 120), bool), None]
        rois[1][:, :30] = False
        ref = ref_engine.infer(cams, "rgb8", want_maps=True, rois=rois)
        got = engine.infer(cams, "rgb8", want_maps=True, rois=rois)
        assert ref.valid is not None and not ref.valid.all()
        np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=tol)
        np.testing.assert_allclose(got.maps, ref.maps, rtol=0, atol=tol)
        # the Engine.head hook on host scale maps takes the same GPU path
        scale = ref_engine.scale_maps(engine.grid.pad(x[:4]))
        head = engine.head(scale, valid[:4], want_maps=True)
        ref = ref_engine.head(scale, valid[:4], want_maps=True)
        np.testing.assert_allclose(head.scores, ref.scores, rtol=0, atol=tol)
        np.testing.assert_allclose(head.maps, ref.maps, rtol=0, atol=tol)
        with pytest.raises(EngineError, match="valid region"):
            engine.infer_prepared(x, valid=valid[:3])
    finally:
        engine.close()
    assert rt.live == {} and rt.streams == set()


@pytest.mark.parametrize("config", [{"score": {"rule": "topk", "fraction": 0.01}, "margin": 16},
                                    {"tile_size": [64, 64], "margin": 16}], ids=["topk", "tiled"])
def test_topk_and_tiled_engines_use_the_cpu_head_on_a_fake_gpu(fake_gpu, tmp_path, config):
    rt, install = fake_gpu
    install("10.13.0.35")
    stats = _good_stats(tmp_path, config)
    onnx_path = _tiny_onnx(tmp_path, config=config, stats=stats)
    ref_engine = open_engine("onnxruntime", str(onnx_path))
    engine = open_engine("tensorrt", str(onnx_path), max_batch=2, fp16=False, cache_dir=str(tmp_path / "plans"))
    cc = cr.import_cuda_core()
    try:
        assert not engine.fused
        x = np.random.default_rng(4).integers(0, 255, (4, 64, 96, 3), dtype=np.uint8)
        valid = _regions(4)
        cc.launches.clear()
        got = engine.infer_prepared(x, want_maps=True, valid=valid)
        ref = ref_engine.infer_prepared(x, want_maps=True, valid=valid)
        assert cc.launches == []                                        # no head kernel ran
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got.maps, ref.maps, rtol=1e-6, atol=1e-6)
        assert np.isnan(got.scores[2])
    finally:
        engine.close()
    assert rt.live == {} and rt.streams == set()
