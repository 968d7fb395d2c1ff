"""The GPU map head: CUDA source compiles (NVRTC, no GPU needed), the numpy emulator of the kernel's
indexing equals MapHead and the plain reference (interpolate + scipy blur), with good-part statistics
and a valid region it equals GoodStats.apply + image_scores, the order-preserving key trick behind
atomicMax, and - on a GPU - the real kernel against MapHead (+ statistics and valid region)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inspector.core.map_head import MapHead
from inspector.core.scoring import GoodStats, image_scores
from fake_cuda import install_fake_cuda
from inspector.engine import cuda_emulator as emu
from inspector.engine import cuda_head as ch
from inspector.engine import cuda_kernel as ck
from inspector.engine import cuda_runtime as cr


def _has_cuda_core() -> bool:
    try:
        cr.import_cuda_core()
        return True
    except Exception:
        return False


needs_cuda_core = pytest.mark.skipif(not _has_cuda_core(), reason="cuda-core (NVRTC) is not installed")

# (H, W), per-scale shapes, batch: square, non-square (768 wide x 320 tall), partial tiles, odd sizes
CASES = [
    ((64, 64), [(16, 16), (8, 8), (4, 4)], 2),
    ((96, 160), [(24, 40), (12, 20), (6, 10)], 3),
    ((320, 768), [(80, 192), (40, 96), (20, 48)], 1),
    ((70, 45), [(17, 11), (9, 6), (4, 3)], 2),
    ((64, 32), [(16, 8), (8, 4)], 2),                     # two scales, W smaller than one tile
    ((40, 72), [(10, 18)], 1),                             # one scale
]


def _maps(shapes, n, seed=0, low=0.0, high=0.6):
    rng = np.random.default_rng(seed)
    return [(low + (high - low) * rng.random((n, h, w))).astype(np.float32) for h, w in shapes]


def _plain_reference(maps, size):
    """The recipe as written: bilinear (align_corners=True) upsample, sum, scipy gaussian sigma 4."""
    torch = pytest.importorskip("torch")
    ndimage = pytest.importorskip("scipy.ndimage")
    up = sum(torch.nn.functional.interpolate(torch.from_numpy(m.astype(np.float64))[:, None], size=size,
                                             mode="bilinear", align_corners=True)[:, 0] for m in maps).numpy()
    full = np.stack([ndimage.gaussian_filter(u, sigma=4) for u in up])
    return full, full.reshape(len(full), -1).max(axis=1)


# ---------------------------------------------------------------- (a) the CUDA source and its host side

@needs_cuda_core
@pytest.mark.parametrize("arch", ["sm_87", "sm_89"])
def test_kernel_compiles_with_nvrtc_without_a_gpu(arch):
    compiled = ck.compile_kernel(arch)
    assert compiled.code[:4] == b"\x7fELF" and compiled.size > 4000
    for name in ck.KERNEL_SIGNATURES:
        assert name.encode() in compiled.code


@needs_cuda_core
def test_bad_tile_configuration_fails_to_compile(monkeypatch):
    monkeypatch.setitem(ck.TILES, "TX", 12)  # 64 % 12 != 0: the source's #error guard must fire
    with pytest.raises(Exception, match="tile sizes must divide evenly"):
        ck.compile_kernel("sm_89")


def test_tile_defaults_in_source_match_the_host():
    src = ck.kernel_source()
    defaults = dict(re.findall(r"#ifndef (\w+)\s*\n#define \1 (\d+)", src))
    assert {k: int(v) for k, v in defaults.items()} == ck.TILES


def test_kernel_parameter_lists_match_the_host_signatures():
    src = ck.kernel_source()
    found = {}
    for name, params in re.findall(r'extern "C" __global__ void(?: __launch_bounds__\([^)]*\))?\s+(\w+)\(([^)]*)\)',
                                   src):
        kinds = []
        for p in params.split(","):
            p = " ".join(p.split())
            kinds.append("ptr" if "*" in p else "i32" if re.fullmatch(r"(const )?int \w+", p) else f"?{p}")
        found[name] = tuple(kinds)
    assert found == ck.KERNEL_SIGNATURES


def test_kernel_arguments_pack_to_the_parameter_widths():
    param_holder = pytest.importorskip("cuda.core._kernel_arg_handler").ParamHolder
    import ctypes
    values = tuple(range(1, len(ck.KERNEL_SIGNATURES["rows_times_right"]) + 1))
    args = ch._pack_args("rows_times_right", values)
    holder = param_holder(args)  # keep it alive while its memory is read
    slots = (ctypes.c_void_p * len(args)).from_address(holder.ptr)
    for kind, value, slot in zip(ck.KERNEL_SIGNATURES["rows_times_right"], values, slots):
        width = 8 if kind == "ptr" else 4
        assert ctypes.string_at(slot, width) == int(value).to_bytes(width, "little")
    del holder
    with pytest.raises(cr.CudaHeadError):
        ch._pack_args("decode_scores", (1, 2))
    with pytest.raises(cr.CudaHeadError):
        ch._pack_args("decode_scores", (1, 2, 2 ** 31))


def test_operators_are_maphead_matrices_concatenated():
    ref = MapHead((96, 160), [(24, 40), (12, 20), (6, 10)])
    ops = ck.HeadOperators.build((96, 160), [(24, 40), (12, 20), (6, 10)])
    assert ops.left_t.shape == (42, 96) and ops.right_t.shape == (70, 160) and ops.K == 42
    np.testing.assert_array_equal(ops.left_t[24:36], ref.left[1].T)
    np.testing.assert_array_equal(ops.right_t[40:60], ref.right_t[1])
    with pytest.raises(ValueError):
        ck.HeadOperators.build((64, 64), [(16, 16)] * 4)


def test_gpu_discovery_never_raises():
    assert isinstance(cr.cuda_device_count(), int) and cr.cuda_device_count() >= 0
    assert cr.has_cuda_gpu() == (cr.cuda_device_count() > 0)


# ---------------------------------------------------------------- (b) emulator == MapHead == reference

@pytest.mark.parametrize("size,shapes,n", CASES)
def test_emulated_kernel_equals_maphead(size, shapes, n):
    maps = _maps(shapes, n, seed=n + size[0])
    ops = ck.HeadOperators.build(size, shapes)
    scores, full = emu.emulate_head(ops, maps, want_maps=True)
    ref_full, ref_scores = MapHead(size, shapes).maps_and_scores(maps)
    assert full.shape == (n, *size) and full.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_allclose(full, ref_full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, ref_scores, rtol=2e-6, atol=0)
    no_maps_scores, none = emu.emulate_head(ops, maps, want_maps=False)
    assert none is None and np.array_equal(no_maps_scores, scores)


@pytest.mark.parametrize("size,shapes,n", [CASES[1], CASES[2], CASES[3]])
def test_emulated_kernel_equals_the_plain_reference(size, shapes, n):
    maps = _maps(shapes, n, seed=7)
    ref_full, ref_scores = _plain_reference(maps, size)
    scores, full = emu.emulate_head(ck.HeadOperators.build(size, shapes), maps)
    np.testing.assert_allclose(full, ref_full, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


def test_emulated_kernel_with_negative_values_and_nan():
    size, shapes, n = CASES[0]
    maps = _maps(shapes, 3, seed=3, low=-2.0, high=-0.5)  # all negative: a float-bits max would fail
    ops = ck.HeadOperators.build(size, shapes)
    scores, _ = emu.emulate_head(ops, maps)
    np.testing.assert_allclose(scores, MapHead(size, shapes).scores(maps), rtol=2e-6)
    assert np.all(scores < 0)
    maps[1][1, 2, 3] = np.nan  # one image poisoned -> its score is NaN (fail closed), the others not
    scores, _ = emu.emulate_head(ops, maps)
    assert np.isnan(scores[1]) and np.all(np.isfinite(scores[[0, 2]]))


def test_emulator_rejects_wrong_shapes():
    ops = ck.HeadOperators.build((64, 64), [(16, 16), (8, 8), (4, 4)])
    with pytest.raises(ValueError):
        emu.emulate_head(ops, _maps([(16, 16), (8, 8), (4, 5)], 1))
    with pytest.raises(ValueError):
        emu.emulate_head(ops, _maps([(16, 16), (8, 8)], 1))


# ---------------------------------------------------------------- (b2) statistics and the valid region
# The kernel's epilogue: z = (acc - mean) * inv_std (two float32 roundings), the max over valid pixels.
# The emulator's epilogue is bit-exact against GoodStats.apply / image_scores on its own raw maps; against
# the numpy head (MapHead + GoodStats + image_scores) the difference is the head's float32 rounding
# (~2e-7 raw) times inv_std: asserted as <= 1e-6 in raw map units and <= 1e-5 absolute on z (the bar).

# inspection size (H, W), reflect margin (the head's crop): non-square, square-ish odd, a real margin
STAT_CASES = [((64, 96), 16, 3), ((96, 160), 0, 2), ((70, 45), 5, 3), ((32, 64), 16, 2)]


def _cropped_head(size, margin):
    H, W = size[0] + 2 * margin, size[1] + 2 * margin
    head = MapHead((H, W), [(H // s, W // s) for s in (4, 8, 16)], crop=margin)
    return head, ck.HeadOperators.build(head.image_size, head.scale_shapes, crop=margin)


def _stats_for(head, seed=1):
    return GoodStats.fit(head.maps(_maps(head.scale_shapes, 6, seed=seed, low=0.05, high=0.25)))


def _masks(out_size, n, seed=4):
    rng = np.random.default_rng(seed)
    per_image = rng.random((n, *out_size)) < 0.6
    per_image[0, :, : out_size[1] // 3] = False                 # an ROI-like band
    per_image[-1] = False                                       # no valid pixel: NaN
    shared = np.zeros(out_size, bool)
    shared[out_size[0] // 4: -out_size[0] // 4 or None, 3:] = True   # a letterbox-like window
    return per_image, shared


def _numpy_head(head, stats, maps, valid):
    z = stats.apply(head.maps(maps))
    return z, image_scores(z, valid=valid)


@pytest.mark.parametrize("size,margin,n", STAT_CASES)
def test_emulated_kernel_with_stats_and_valid_equals_the_numpy_head(size, margin, n):
    head, ops = _cropped_head(size, margin)
    assert ops.image_size == head.out_size == size
    stats = _stats_for(head)
    maps = _maps(head.scale_shapes, n, seed=n + size[1])
    per_image, shared = _masks(size, n)
    raw_scores, raw = emu.emulate_head(ops, maps)
    for valid in (per_image, shared, None):
        scores, z = emu.emulate_head(ops, maps, mean=stats.mean, inv_std=stats.inv_std, valid=valid)
        assert z.dtype == np.float32 and z.shape == (n, *size) and scores.dtype == np.float32
        # the epilogue mirrors numpy exactly: bit for bit on the emulator's own raw maps
        np.testing.assert_array_equal(z, stats.apply(raw))
        np.testing.assert_array_equal(scores, image_scores(stats.apply(raw), valid=valid))
        ref_z, ref_scores = _numpy_head(head, stats, maps, valid)
        np.testing.assert_allclose(z, ref_z, rtol=0, atol=1e-5)
        assert (np.abs(z - ref_z) / stats.inv_std).max() <= 1e-6       # in raw map units
        np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-5)  # NaN where ref is NaN
        only_scores, none = emu.emulate_head(ops, maps, want_maps=False, mean=stats.mean,
                                            inv_std=stats.inv_std, valid=valid)
        assert none is None and np.array_equal(only_scores, scores, equal_nan=True)
    assert np.isnan(emu.emulate_head(ops, maps, mean=stats.mean, inv_std=stats.inv_std, valid=per_image)[0][-1])
    # a valid region without statistics: raw maps, max over the region
    scores, full = emu.emulate_head(ops, maps, valid=per_image)
    np.testing.assert_array_equal(full, raw)
    np.testing.assert_array_equal(scores, image_scores(raw, valid=per_image))
    assert np.array_equal(emu.emulate_head(ops, maps, valid=np.ones(size, bool))[0], raw_scores)


def test_shared_mask_equals_the_same_mask_per_image():
    head, ops = _cropped_head((64, 96), 16)
    stats, maps = _stats_for(head), _maps(head.scale_shapes, 3, seed=8)
    _, shared = _masks((64, 96), 3)
    a = emu.emulate_head(ops, maps, mean=stats.mean, inv_std=stats.inv_std, valid=shared)
    b = emu.emulate_head(ops, maps, mean=stats.mean, inv_std=stats.inv_std,
                        valid=np.broadcast_to(shared, (3, 64, 96)).astype(np.uint8) * 7)  # any nonzero = valid
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_an_image_without_valid_pixels_keeps_its_key_and_decodes_to_nan():
    head, ops = _cropped_head((96, 160), 0)
    maps = _maps(head.scale_shapes, 3, seed=2)
    valid = np.ones((3, 96, 160), bool)
    valid[1] = False
    valid[2] = False
    valid[2, 95, 159] = True                                     # one pixel, in the last partial tile
    t_cat, keys = emu.emulate_rows_times_right(ops, maps, 3)
    emu.emulate_left_times_rows_max(ops, t_cat, keys, False, valid=valid)
    assert keys[1] == ck.ORDERED_MIN and keys[0] != ck.ORDERED_MIN and keys[2] != ck.ORDERED_MIN
    scores = ck.keys_to_float(keys)
    _, full = emu.emulate_head(ops, maps)                          # the same raw maps, bit for bit
    assert np.isnan(scores[1]) and scores[0] == full[0].max() and scores[2] == full[2, 95, 159]
    t_cat, keys = emu.emulate_rows_times_right(ops, maps, 3)      # an empty shared mask: all NaN
    emu.emulate_left_times_rows_max(ops, t_cat, keys, False, valid=np.zeros((96, 160), bool))
    assert np.all(keys == ck.ORDERED_MIN) and np.all(np.isnan(ck.keys_to_float(keys)))


def test_non_finite_values_count_only_inside_the_valid_region():
    head, ops = _cropped_head((64, 96), 16)
    stats, maps = _stats_for(head), _maps(head.scale_shapes, 2, seed=5)
    mean = stats.mean.copy()
    mean[10, 20] = -3e38                                        # (v - mean) * inv_std overflows: +inf there
    mean[30, 40] = np.nan                                       # and NaN here
    with np.errstate(over="ignore", invalid="ignore"):
        ref = GoodStats(mean, stats.inv_std, 2).apply(head.maps(maps))
    assert np.isposinf(ref[:, 10, 20]).all() and np.isnan(ref[:, 30, 40]).all()
    valid = np.ones((2, 64, 96), bool)
    valid[1, 10, 20] = valid[1, 30, 40] = False
    with np.errstate(over="ignore", invalid="ignore"):
        scores, z = emu.emulate_head(ops, maps, mean=mean, inv_std=stats.inv_std, valid=valid)
        only_inf, _ = emu.emulate_head(ops, maps, mean=mean, inv_std=stats.inv_std,
                                      valid=np.broadcast_to(np.arange(96) == 20, (64, 96)))
    assert np.isposinf(z[:, 10, 20]).all() and np.isnan(z[:, 30, 40]).all()   # the map holds them as computed
    assert np.isnan(scores[0]) and np.isfinite(scores[1])         # fail closed only where it is scored
    np.testing.assert_array_equal(scores, image_scores(ref, valid=valid))
    assert np.isnan(only_inf).all()                               # +inf scores NaN, as image_scores does
    # a NaN in a scale map reaches every pixel through the dense head: NaN whatever the region
    nan_maps = [m.copy() for m in maps]
    nan_maps[0][1, 0, 0] = np.nan
    scores, _ = emu.emulate_head(ops, nan_maps, mean=stats.mean, inv_std=stats.inv_std, valid=valid)
    assert np.isnan(scores[1]) and np.isfinite(scores[0])


def test_emulator_rejects_bad_statistics_and_masks():
    head, ops = _cropped_head((64, 96), 16)
    stats, maps = _stats_for(head), _maps(head.scale_shapes, 2)
    with pytest.raises(ValueError, match="together"):
        emu.emulate_head(ops, maps, mean=stats.mean)
    with pytest.raises(ValueError, match="do not match"):
        emu.emulate_head(ops, maps, mean=np.zeros((96, 128), np.float32), inv_std=np.ones((96, 128), np.float32))
    with pytest.raises(ValueError, match="valid region"):
        emu.emulate_head(ops, maps, valid=np.ones((3, 64, 96), bool))
    with pytest.raises(ValueError, match="valid region"):
        emu.emulate_head(ops, maps, valid=np.ones((96, 128), bool))


# ---------------------------------------------------------------- order-preserving keys (atomicMax)

def _interesting_floats(rng, n):
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 1.17549435e-38, -1.17549435e-38,
                        3.4028235e38, -3.4028235e38, 1.0, -1.0, 2.0], dtype=np.float32)
    scales = 10.0 ** rng.integers(-40, 38, n)
    values = (rng.standard_normal(n) * scales).astype(np.float32)
    return np.concatenate([special, values, np.nextafter(values, np.float32(np.inf))])


def test_ordered_keys_preserve_order_and_round_trip():
    rng = np.random.default_rng(11)
    v = _interesting_floats(rng, 4000)
    keys = ck.ordered_keys(v)
    assert keys.dtype == np.int32
    a, b = rng.integers(0, len(v), (2, 20000))
    fa, fb, ka, kb = v[a], v[b], keys[a], keys[b]
    same_zero = (fa == 0) & (fb == 0)
    assert np.all((fa < fb) <= (ka < kb)) and np.all((fa > fb) <= (ka > kb))
    assert np.all(((fa == fb) & ~same_zero) <= (ka == kb))
    np.testing.assert_array_equal(ck.keys_to_float(keys).view(np.int32), v.view(np.int32))  # bit-exact
    assert ck.ordered_keys(np.float32(-0.0)) < ck.ordered_keys(np.float32(0.0))
    nan_key = ck.ordered_keys(np.array([np.nan, -np.nan], dtype=np.float32))
    assert np.all(nan_key == ck.NAN_KEY) and np.all(nan_key > keys.max())
    assert ck.ORDERED_MIN < keys.min() and np.isnan(ck.keys_to_float(np.array([ck.ORDERED_MIN]))[0])


def test_max_of_keys_is_key_of_max():
    rng = np.random.default_rng(5)
    for _ in range(200):
        v = _interesting_floats(rng, int(rng.integers(1, 40)))
        v = v[np.isfinite(v) | (rng.random(len(v)) < 0.5)]
        if not len(v):
            continue
        decoded = ck.keys_to_float(np.array([ck.ordered_keys(v).max()]))[0]
        assert decoded == v.max()


# ---------------------------------------------------------------- (c) the real kernel on a GPU

def _skip_without_gpu():
    if not (cr.has_cuda_gpu() and _has_cuda_core()):
        pytest.skip("needs a CUDA GPU and cuda-core")


@pytest.fixture
def gpu_head_factory():
    heads = []

    def make(size, shapes, **kw):
        head = ch.CudaMapHead(size, shapes, **kw)
        heads.append(head)
        return head

    yield make
    for head in heads:
        head.close()


@pytest.mark.gpu
@pytest.mark.parametrize("size,shapes,n", CASES)
def test_gpu_kernel_equals_maphead(size, shapes, n, gpu_head_factory):
    _skip_without_gpu()
    head = gpu_head_factory(size, shapes, max_batch=2)
    ref = MapHead(size, shapes)
    for batch in sorted({1, n, 8}):  # 8 > max_batch: buffers grow
        maps = _maps(shapes, batch, seed=batch)
        scores, full = head.scores_and_maps(maps, want_maps=True)
        ref_full, ref_scores = ref.maps_and_scores(maps)
        np.testing.assert_allclose(full, ref_full, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)
        only_scores, none = head.scores_and_maps(maps, want_maps=False)
        assert none is None and np.array_equal(only_scores, scores)


@pytest.mark.gpu
def test_gpu_kernel_from_device_pointers_negative_and_nan(gpu_head_factory):
    _skip_without_gpu()
    size, shapes, n = CASES[1]
    head = gpu_head_factory(size, shapes)
    maps = _maps(shapes, n, seed=9, low=-1.0, high=-0.1)
    maps[2][1, 0, 0] = np.nan
    buffers = []
    try:
        for m in maps:
            buf = cr.DeviceBuffer.allocate(m.nbytes)
            buffers.append(buf)
            cr.memcpy_async(buf.ptr, m.ctypes.data, m.nbytes, "h2d", head.stream_handle)
        head.synchronize()
        scores, _ = head.scores_and_maps([b.ptr for b in buffers], n=n, want_maps=False)
    finally:
        for b in buffers:
            b.free()
    ref = MapHead(size, shapes).scores(maps)
    assert np.isnan(scores[1]) and np.isnan(ref[1])
    np.testing.assert_allclose(scores[[0, 2]], ref[[0, 2]], rtol=1e-5)
    assert np.all(scores[[0, 2]] < 0)


@pytest.mark.gpu
def test_gpu_kernel_equals_emulator_bit_for_bit_on_scores(gpu_head_factory):
    _skip_without_gpu()
    size, shapes, n = CASES[3]
    maps = _maps(shapes, n, seed=21)
    head = gpu_head_factory(size, shapes)
    gpu_scores, gpu_full = head.scores_and_maps(maps, want_maps=True)
    emu_scores, emu_full = emu.emulate_head(ck.HeadOperators.build(size, shapes), maps)
    # same order of FMAs; only the emulator's rare double rounding may differ by one ulp
    np.testing.assert_allclose(gpu_full, emu_full, rtol=3e-7, atol=1e-7)
    np.testing.assert_allclose(gpu_scores, emu_scores, rtol=3e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("size,margin,n", STAT_CASES)
def test_gpu_kernel_with_stats_and_valid_equals_the_numpy_head(size, margin, n, gpu_head_factory):
    _skip_without_gpu()
    head, ops = _cropped_head(size, margin)
    stats = _stats_for(head)
    gpu = gpu_head_factory(head.image_size, head.scale_shapes, crop=margin, stats=stats, max_batch=1)
    maps = _maps(head.scale_shapes, n, seed=n + size[1])
    per_image, shared = _masks(size, n)
    for valid in (per_image, shared, None):
        scores, z = gpu.scores_and_maps(maps, want_maps=True, valid=valid)
        ref_z, ref_scores = _numpy_head(head, stats, maps, valid)
        np.testing.assert_allclose(z, ref_z, rtol=0, atol=1e-5)
        np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-5)   # NaN for the empty image
        emu_scores, emu_z = emu.emulate_head(ops, maps, mean=stats.mean, inv_std=stats.inv_std, valid=valid)
        np.testing.assert_allclose(z, emu_z, rtol=3e-7, atol=1e-6)
        only, none = gpu.scores_and_maps(maps, want_maps=False, valid=valid)
        assert none is None and np.array_equal(only, scores, equal_nan=True)
    gpu.set_stats(None)
    scores, full = gpu.scores_and_maps(maps, want_maps=True)
    np.testing.assert_allclose(full, head.maps(maps), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the host side on a fake device
# CudaMapHead's plumbing (allocations, copies, argument order, launch geometry, buffer growth, cleanup)
# run against a fake CUDA runtime whose "device memory" is host memory and whose kernel launches run
# the emulator on the raw pointers they are given - so a wrong pointer, size or grid fails here.

@pytest.fixture
def fake_cuda(monkeypatch):
    """The CUDA runtime and cuda-core seen by the head replaced with the fakes of fake_cuda.py."""
    return install_fake_cuda(monkeypatch)


def test_head_plumbing_on_a_fake_device(fake_cuda):
    rt, cc = fake_cuda
    size, shapes, _ = CASES[3]
    ref = MapHead(size, shapes)
    head = ch.CudaMapHead(size, shapes, max_batch=2)
    for n, want in ((1, True), (2, False), (5, True), (3, False)):       # 5 > max_batch: buffers grow
        maps = _maps(shapes, n, seed=n)
        scores, full = head.scores_and_maps(maps, want_maps=want)
        np.testing.assert_allclose(scores, ref.scores(maps), rtol=2e-6)
        if want:
            np.testing.assert_allclose(full, ref.maps(maps), rtol=1e-5, atol=1e-6)
        else:
            assert full is None
    assert cc.launches[-3:] == ["rows_times_right", "left_times_rows_max", "decode_scores"]
    # device pointers written elsewhere on the stream (as TensorRT does)
    maps = _maps(shapes, 2, seed=42, low=-1.0, high=-0.2)
    bufs = [cr.DeviceBuffer.allocate(m.nbytes) for m in maps]
    for b, m in zip(bufs, maps):
        cr.memcpy_async(b.ptr, m.ctypes.data, m.nbytes, "h2d", head.stream_handle)
    rt.copies.clear()
    scores, _ = head.scores_and_maps([b.ptr for b in bufs], n=2, want_maps=False)
    np.testing.assert_allclose(scores, ref.scores(maps), rtol=2e-6)
    assert rt.copies == [("d2h", 8)]                                      # only the two scores come back
    with pytest.raises(ValueError):
        head.scores_and_maps([b.ptr for b in bufs], want_maps=False)      # n is required with pointers
    for b in bufs:
        b.free()
    head.close()
    assert rt.live == {} and rt.streams == set()                          # nothing leaked


def test_head_on_a_shared_stream_leaves_it_alone(fake_cuda):
    rt, _ = fake_cuda
    _, stream = rt.cudaStreamCreateWithFlags(1)
    head = ch.CudaMapHead((64, 64), [(16, 16), (8, 8), (4, 4)], stream_handle=stream)
    scores, _ = head.scores_and_maps(_maps([(16, 16), (8, 8), (4, 4)], 1))
    assert scores.shape == (1,)
    head.close()
    assert rt.streams == {stream} and rt.live == {}


def test_head_with_stats_and_valid_on_a_fake_device(fake_cuda):
    rt, cc = fake_cuda
    head, ops = _cropped_head((64, 96), 16)
    stats = _stats_for(head)
    gpu = ch.CudaMapHead(head.image_size, head.scale_shapes, crop=16, stats=stats, max_batch=2)
    assert gpu.image_size == (64, 96) and gpu.stats is stats
    for n in (2, 4, 1):                                                  # 4 > max_batch: buffers grow
        maps = _maps(head.scale_shapes, n, seed=n)
        per_image, shared = _masks((64, 96), n)
        for valid, stride in ((per_image, 64 * 96), (shared, 0), (None, 0)):
            rt.copies.clear()
            scores, z = gpu.scores_and_maps(maps, want_maps=True, valid=valid)
            ref_z, ref_scores = _numpy_head(head, stats, maps, valid)
            np.testing.assert_allclose(z, ref_z, rtol=0, atol=1e-5)
            np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-5)
            assert cc.stage2_args[-1] == {"stats": True, "valid": valid is not None, "valid_stride": stride}
            mask_bytes = 0 if valid is None else (n if valid.ndim == 3 else 1) * 64 * 96
            assert [c for c in rt.copies if c[0] == "h2d"][len(maps):] == ([("h2d", mask_bytes)] if mask_bytes else [])
    with pytest.raises(ValueError, match="valid region"):
        gpu.scores_and_maps(maps, valid=np.ones((96, 128), bool))
    with pytest.raises(ValueError):
        gpu.set_stats(GoodStats(np.zeros((96, 128), np.float32), np.ones((96, 128), np.float32), 2))
    assert gpu.stats is stats                                            # a refused upload changes nothing
    gpu.set_stats(None)
    scores, full = gpu.scores_and_maps(maps, want_maps=True)
    assert cc.stage2_args[-1] == {"stats": False, "valid": False, "valid_stride": 0} and "mean" not in gpu._buffers
    np.testing.assert_allclose(full, head.maps(maps), rtol=1e-5, atol=1e-6)
    gpu.set_stats(stats)
    np.testing.assert_allclose(gpu.scores_and_maps(maps)[0], _numpy_head(head, stats, maps, None)[1], atol=1e-5)
    gpu.close()
    assert rt.live == {} and rt.streams == set()
    with pytest.raises(ValueError, match="do not match"):                # checked before any CUDA work
        ch.CudaMapHead(head.image_size, head.scale_shapes, stats=stats)
    assert rt.live == {} and rt.streams == set()
