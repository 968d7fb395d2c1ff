"""A fake CUDA runtime and cuda-core for tests without a GPU: "device memory" is host memory and kernel
launches run the numpy emulator on the raw pointers they are given, so a wrong pointer, size, argument
order or grid fails. Used by test_kernel.py (CudaMapHead's plumbing) and test_tensorrt.py (the TensorRT
engine's buffers, with a fake TensorRT on top)."""

from __future__ import annotations

import numpy as np

from inspector.engine import cuda_emulator as emu
from inspector.engine import cuda_head as ch
from inspector.engine import cuda_kernel as ck
from inspector.engine import cuda_runtime as cr


class FakeRuntime:
    """The subset of cuda.bindings.runtime that cuda_head / tensorrt_engine call."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice = 1, 2, 3

    cudaStreamNonBlocking = 1

    def __init__(self):
        import ctypes
        self._ctypes = ctypes
        self.live: dict[int, object] = {}
        self.streams: set[int] = set()
        self.copies: list[tuple[str, int]] = []

    def _alloc(self, size):
        buf = self._ctypes.create_string_buffer(int(size))
        ptr = self._ctypes.addressof(buf)
        self.live[ptr] = buf
        return 0, ptr

    def _free(self, ptr):
        if int(ptr) not in self.live:
            return (1,)  # like cudaErrorInvalidValue
        del self.live[int(ptr)]
        return (0,)

    def cudaGetDeviceCount(self):
        return 0, 1

    def cudaSetDevice(self, device):
        return (0,)

    def cudaGetDeviceProperties(self, device):
        class Prop:
            name = b"Fake GPU 9000\0\0"
        return 0, Prop()

    def cudaMalloc(self, size):
        return self._alloc(size)

    cudaMallocHost = cudaMalloc

    def cudaFree(self, ptr):
        return self._free(ptr)

    cudaFreeHost = cudaFree

    def _owned(self, ptr, nbytes):
        return any(base <= int(ptr) and int(ptr) + nbytes <= base + len(buf) for base, buf in self.live.items())

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        assert int(stream) in self.streams, "copy on a stream that was never created"
        if kind in (1, 3):
            assert self._owned(dst, count), "H2D/D2D destination is not a device allocation (or overruns it)"
        if kind in (2, 3):
            assert self._owned(src, count), "D2H/D2D source is not a device allocation (or overruns it)"
        self._ctypes.memmove(int(dst), int(src), int(count))
        self.copies.append(({1: "h2d", 2: "d2h", 3: "d2d"}[kind], int(count)))
        return (0,)

    def cudaStreamCreateWithFlags(self, flags):
        handle = 1000 + len(self.streams)
        self.streams.add(handle)
        return 0, handle

    def cudaStreamSynchronize(self, stream):
        return (0,) if int(stream) in self.streams else (400,)

    def cudaStreamDestroy(self, stream):
        self.streams.discard(int(stream))
        return (0,)

    def cudaGetErrorName(self, err):
        return 0, b"cudaErrorFake"


def view(ptr, dtype, shape):
    """numpy view of ``shape`` x ``dtype`` at the (fake) device address ``ptr``."""
    import ctypes
    count = int(np.prod(shape))
    raw = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(int(ptr))
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


class FakeCudaCore:
    """cuda.core stand-in: Program/compile checks the source compiles by name only; launch runs the
    emulator on device memory (= host memory of FakeRuntime) after checking the launch geometry."""

    def __init__(self, runtime: FakeRuntime):
        self.rt = runtime
        self.launches: list[str] = []
        self.stage2_args: list[dict] = []
        outer = self

        class Device:
            compute_capability = (9, 0)

            def __init__(self, device_id=0):
                pass

            def set_current(self):
                return None

        class ProgramOptions:
            def __init__(self, **kw):
                self.kw = kw

        class Program:
            def __init__(self, code, code_type, options):
                assert code_type == "c++" and dict(options.kw["define_macro"]) == {k: str(v) for k, v in ck.TILES.items()}
                self.code = code

            def compile(self, target, logs=None):
                code = self.code

                class Obj:
                    def get_kernel(self, name):
                        assert f"{name}(" in code
                        return name
                return Obj()

        class LaunchConfig:
            def __init__(self, grid, block):
                self.grid, self.block = grid, block

        class Stream:
            @staticmethod
            def from_handle(handle):
                assert int(handle) in outer.rt.streams
                return ("stream", int(handle))

        self.Device, self.ProgramOptions, self.Program = Device, ProgramOptions, Program
        self.LaunchConfig, self.Stream = LaunchConfig, Stream

    def launch(self, stream, config, kernel, *args):
        assert stream[0] == "stream"
        sig = ck.KERNEL_SIGNATURES[kernel]
        assert [("ptr" if a.dtype == np.uint64 else "i32") for a in args] == list(sig)
        self.launches.append(kernel)
        getattr(self, "_" + kernel)(config, *[int(a) for a in args])

    def _rows_times_right(self, cfg, m0, m1, m2, h0, w0, h1, w1, h2, w2, right_t, t_cat, keys, W):
        K, n = h0 + h1 + h2, cfg.grid[2]
        assert (cfg.grid, cfg.block) == ck.stage1_launch(W, K, n)
        shapes = [(h, w) for h, w in ((h0, w0), (h1, w1), (h2, w2)) if h]
        ops = ck.HeadOperators((1, W), shapes, np.zeros((K, 1), np.float32),
                               view(right_t, np.float32, (w0 + w1 + w2, W)), (h0, h1, h2), (w0, w1, w2))
        maps = [view(p, np.float32, (n, h, w)) for p, (h, w) in zip((m0, m1, m2), shapes)]
        t, k = emu.emulate_rows_times_right(ops, maps, n)
        view(t_cat, np.float32, (n, K, W))[:] = t
        view(keys, np.int32, (n,))[:] = k

    def _left_times_rows_max(self, cfg, left_t, t_cat, keys, out_map, mean, inv_std, valid, valid_stride,
                             K, H, W, write_map):
        n = cfg.grid[2]
        assert (cfg.grid, cfg.block) == ck.stage2_launch(W, H, n)
        ops = ck.HeadOperators((H, W), [(K, 1)], view(left_t, np.float32, (K, H)), np.zeros((1, W), np.float32),
                               (K, 0, 0), (1, 0, 0))
        assert (mean == 0) == (inv_std == 0), "mean and inv_std go together"
        stats = {"mean": view(mean, np.float32, (H, W)), "inv_std": view(inv_std, np.float32, (H, W))} if mean else {}
        if valid:
            assert valid_stride in (0, H * W)
            mask = view(valid, np.uint8, (n, H, W) if valid_stride else (H, W))
        else:
            assert valid_stride == 0
            mask = None
        self.stage2_args.append({"stats": bool(mean), "valid": bool(valid), "valid_stride": valid_stride})
        key_view = view(keys, np.int32, (n,))
        out = emu.emulate_left_times_rows_max(ops, view(t_cat, np.float32, (n, K, W)), key_view, bool(write_map),
                                             valid=mask, **stats)
        if write_map:
            view(out_map, np.float32, (n, H, W))[:] = out
        else:
            assert out_map == 0

    def _decode_scores(self, cfg, keys, scores, n):
        assert (cfg.grid, cfg.block) == ck.decode_launch(n)
        view(scores, np.float32, (n,))[:] = ck.keys_to_float(view(keys, np.int32, (n,)))


def install_fake_cuda(monkeypatch, *users) -> tuple[FakeRuntime, FakeCudaCore]:
    """Make the CUDA runtime and cuda-core seen by the engine's CUDA modules (and by ``users``, modules
    that imported ``cudart`` / ``cuda_device_count`` themselves, e.g. tensorrt_engine) the fakes, with
    one GPU. Returns (runtime, cuda-core)."""
    rt = FakeRuntime()
    cc = FakeCudaCore(rt)
    for module in (cr, ch, *users):
        monkeypatch.setattr(module, "cudart", lambda: rt)
    for module in (ch, *users):
        monkeypatch.setattr(module, "cuda_device_count", lambda: 1)
    for module in (cr, ck, ch):
        monkeypatch.setattr(module, "import_cuda_core", lambda: cc)
    return rt, cc
