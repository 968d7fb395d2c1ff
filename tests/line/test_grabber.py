"""Camera grabbers: frame sources and `inspector grab` pushing real frames over real ZeroMQ sockets."""

from __future__ import annotations

import functools
import http.server
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from inspector.line.grabber import Pacer, fit_wire_str, run_grabber
from inspector.line.sources import (
    LiveCaptureSource, SourceError, UnsupportedImageError, convert_genicam, genicam_simulator_cti,
    interleave_kinds, normalize_image, open_source, redact_url,
)
from inspector.line.wire import MAX_STR, recv_frame

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
H, W = 32, 48
TIMEOUT_S = 15


# --------------------------------------------------------------------------------------------
# fixtures and helpers


def _random_image(rng: np.random.Generator, channels: int | None, dtype=np.uint8) -> np.ndarray:
    high = 65536 if dtype == np.uint16 else 256
    shape = (H, W) if channels is None else (H, W, channels)
    return rng.integers(0, high, size=shape, dtype=dtype)


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, str]]]:
    """Folder with colour, gray, 16-bit gray, BGRA images and one corrupt file.

    Returns (folder, {file name: (expected uint8 H x W x C image, pixel format)}) for the readable
    files; the expectation follows the documented rules (16-bit >> 8, BGRA -> BGR, gray -> x 1).
    """
    rng = np.random.default_rng(7)
    folder = tmp_path / "images"
    folder.mkdir()
    colour = [_random_image(rng, 3) for _ in range(2)]
    gray = _random_image(rng, None)
    gray16 = _random_image(rng, None, np.uint16)
    bgra = _random_image(rng, 4)
    files = {
        "a_colour.png": (colour[0], colour[0], "bgr8"),
        "b_colour.bmp": (colour[1], colour[1], "bgr8"),
        "c_gray.png": (gray, gray[:, :, None], "mono8"),
        "d_gray16.tif": (gray16, (gray16 >> 8).astype(np.uint8)[:, :, None], "mono8"),
        "e_bgra.png": (bgra, bgra[:, :, :3], "bgr8"),
    }
    for name, (written, _, _) in files.items():
        assert cv2.imwrite(str(folder / name), written)
    (folder / "c_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder, {name: (expected, fmt) for name, (_, expected, fmt) in files.items()}


MVTEC_KINDS = {"good": 4, "crack": 2, "hole": 1}


@pytest.fixture
def mvtec_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """MVTec AD-layout category; returns (root, {"<kind>/<file>": image})."""
    rng = np.random.default_rng(11)
    root = tmp_path / "bottle"
    expected = {}
    ramp = np.linspace(0, 60, W)[None, :, None] + np.linspace(0, 40, H)[:, None, None]
    for kind, count in MVTEC_KINDS.items():
        (root / "test" / kind).mkdir(parents=True)
        for i in range(count):  # smooth images (a ramp on a random colour), so JPEG stays close
            image = (ramp + rng.integers(0, 150, size=3)).astype(np.uint8)
            assert cv2.imwrite(str(root / "test" / kind / f"{i:03d}.png"), image)
            expected[f"{kind}/{i:03d}.png"] = image
    (root / "train" / "good").mkdir(parents=True)
    cv2.imwrite(str(root / "train" / "good" / "000.png"), _random_image(rng, 3))
    (root / "ground_truth" / "crack").mkdir(parents=True)
    return root, expected


class Puller:
    """The daemon's side: a bound PULL socket."""

    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.sock = self.context.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        if endpoint.endswith(":0"):
            port = self.sock.bind_to_random_port(endpoint[:-2])
            endpoint = f"{endpoint[:-2]}:{port}"
        else:
            self.sock.bind(endpoint)
        self.endpoint = endpoint

    def collect(self, count: int, timeout_s: float = TIMEOUT_S) -> list:
        frames = []
        end = time.monotonic() + timeout_s
        while len(frames) < count:
            left_ms = int((end - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.sock.poll(left_ms):
                raise AssertionError(f"got {len(frames)} of {count} frames within {timeout_s} s")
            header, image = recv_frame(self.sock)
            frames.append((header, np.array(image)))
        return frames

    def assert_silent(self, wait_s: float) -> None:
        assert not self.sock.poll(int(wait_s * 1000)), "unexpected extra frame"

    def close(self) -> None:
        self.sock.close(linger=0)
        self.context.term()


@pytest.fixture
def tcp_puller():
    puller = Puller("tcp://127.0.0.1:0")
    yield puller
    puller.close()


def _grab_cmd(source, endpoint: str, *extra: str, camera: str = "cam-A") -> list[str]:
    return [sys.executable, "-m", "inspector.cli", "grab", "--source", str(source), "--camera", camera,
            "--connect", endpoint, *extra]


def _run_grab(*args, **kwargs) -> tuple[subprocess.CompletedProcess, dict | None]:
    proc = subprocess.run(_grab_cmd(*args, **kwargs), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if proc.returncode in (0, 1) and lines else None
    return proc, summary


def _start_grab(*args, **kwargs) -> tuple[subprocess.Popen, "queue.Queue[str]"]:
    """Start a grabber; its stderr lines are collected on a thread into the returned queue."""
    proc = subprocess.Popen(_grab_cmd(*args, **kwargs), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    return proc, lines


def _wait_for_line(lines: "queue.Queue[str]", text: str, timeout_s: float = TIMEOUT_S) -> None:
    end = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} on stderr within {timeout_s} s; got {seen}")


def _stop(proc: subprocess.Popen) -> tuple[int, dict]:
    """SIGTERM, wait (bounded), return (exit status, JSON summary)."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"expected one summary line on stdout, got {out!r}"
    return proc.returncode, json.loads(lines[0])


def _assert_contiguous(headers, camera: str, first_seq: int = 0) -> None:
    assert [h.camera_id for h in headers] == [camera] * len(headers)
    assert [h.seq for h in headers] == list(range(first_seq, first_seq + len(headers)))
    captures = [h.capture_ns for h in headers]
    assert captures == sorted(captures)


# --------------------------------------------------------------------------------------------
# `inspector grab` end to end


def test_image_folder_over_tcp(image_folder, tcp_puller):
    folder, expected = image_folder
    names = sorted(expected)
    before = time.time_ns()
    proc, summary = _run_grab(folder, tcp_puller.endpoint, "--deadline-ms", "250", "--part-id-start", "100")
    after = time.time_ns()
    assert proc.returncode == 0, proc.stderr
    frames = tcp_puller.collect(len(names))
    tcp_puller.assert_silent(0.2)
    headers = [h for h, _ in frames]
    _assert_contiguous(headers, "cam-A")
    assert [h.source for h in headers] == names  # sorted by name, corrupt file and .txt left out
    assert [h.part_id for h in headers] == [str(100 + i) for i in range(len(names))]
    for header, image in frames:
        want, pixel_format = expected[header.source]
        assert header.pixel_format == pixel_format and header.encoding == "raw" and header.label is None
        assert header.shape == want.shape == image.shape and image.dtype == np.uint8
        np.testing.assert_array_equal(image, want)
        assert before <= header.capture_ns <= after
        assert header.deadline_ns == header.capture_ns + 250_000_000
    assert summary["frames_sent"] == len(names) and summary["skipped"] == 1
    assert summary["stopped_by"] == "end_of_source" and summary["elapsed_s"] > 0
    assert "c_corrupt.png" in proc.stderr


def test_mvtec_folder_over_ipc_is_labelled_and_mixed(mvtec_folder, tmp_path):
    root, expected = mvtec_folder
    puller = Puller(f"ipc://{tmp_path}/f.ipc")
    try:
        proc, summary = _run_grab(root, puller.endpoint, "--jpeg", "--jpeg-quality", "100", camera="cam-B")
        assert proc.returncode == 0, proc.stderr
        frames = puller.collect(len(expected))
    finally:
        puller.close()
    headers = [h for h, _ in frames]
    _assert_contiguous(headers, "cam-B")
    assert sorted(h.source for h in headers) == sorted(expected)
    assert all(h.deadline_ns == 0 and h.encoding == "jpeg" for h in headers)
    for header, image in frames:
        assert header.label == header.source.split("/")[0]
        diff = np.abs(image.astype(int) - expected[header.source].astype(int))
        assert image.shape == (H, W, 3) and diff.mean() < 3  # JPEG: close, not exact
    first_kinds = [h.label for h in headers[:3]]
    assert len(set(first_kinds)) >= 2, f"kinds not interleaved: {[h.label for h in headers]}"
    assert summary["frames_sent"] == len(expected) and summary["skipped"] == 0


def test_video_file_is_read_back(tmp_path, tcp_puller):
    path = tmp_path / "clip.avi"
    levels = [20, 70, 120, 170, 220]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert writer.isOpened()
    for level in levels:
        frame = np.full((H, W, 3), level, np.uint8)
        frame[:, : W // 2, 0] = 255 - level  # a blue-ish left half, so the channel order matters
        writer.write(frame)
    writer.release()
    reference = cv2.VideoCapture(str(path))
    decoded = [reference.read()[1] for _ in levels]
    reference.release()

    proc, summary = _run_grab(path, tcp_puller.endpoint, "--camera", "v")
    assert proc.returncode == 0, proc.stderr
    frames = tcp_puller.collect(len(levels))
    tcp_puller.assert_silent(0.2)
    _assert_contiguous([h for h, _ in frames], "v")
    for i, ((header, image), level) in enumerate(zip(frames, levels)):
        assert header.source == f"clip.avi#{i}" and header.pixel_format == "bgr8"
        np.testing.assert_array_equal(image, decoded[i])
        assert abs(float(image[:, W // 2:].mean()) - level) < 8
        assert abs(float(image[4:-4, 4:W // 2 - 4, 0].mean()) - (255 - level)) < 12
    assert summary["frames_sent"] == len(levels)


def test_fps_pacing_and_loop(image_folder, tcp_puller):
    folder, expected = image_folder
    proc, summary = _run_grab(folder, tcp_puller.endpoint, "--fps", "50", "--loop", "--max-frames", "20")
    assert proc.returncode == 0, proc.stderr
    frames = tcp_puller.collect(20)
    tcp_puller.assert_silent(0.2)
    headers = [h for h, _ in frames]
    _assert_contiguous(headers, "cam-A")
    span_s = (headers[-1].capture_ns - headers[0].capture_ns) / 1e9
    assert 0.3 <= span_s <= 3.0, span_s  # 19 periods of 20 ms = 0.38 s
    n = len(expected)
    assert [h.source for h in headers[n:2 * n]] == [h.source for h in headers[:n]]  # looped
    assert summary["frames_sent"] == 20 and summary["stopped_by"] == "max_frames"
    assert summary["skipped"] == 1  # the corrupt file counts once, not once per pass


def test_sigterm_gives_clean_exit_and_summary(image_folder, tcp_puller):
    folder, _ = image_folder
    proc, _ = _start_grab(folder, tcp_puller.endpoint, "--fps", "100", "--loop")
    try:
        frames = tcp_puller.collect(10)
        returncode, summary = _stop(proc)
    finally:
        proc.kill()
    assert returncode == 0
    assert summary["stopped_by"] == "stop" and summary["camera_id"] == "cam-A"
    assert summary["frames_sent"] >= len(frames) and summary["skipped"] == 1
    assert {"elapsed_s", "late", "dropped_on_stop"} <= set(summary)
    _assert_contiguous([h for h, _ in frames], "cam-A")


def test_sigterm_while_no_daemon_listens(image_folder, tmp_path):
    """Blocked on a daemon that is not there: SIGTERM still ends it promptly, frame not half-sent."""
    folder, _ = image_folder
    proc, lines = _start_grab(folder, f"ipc://{tmp_path}/nobody.ipc", "--linger-ms", "200")
    try:
        _wait_for_line(lines, "grabbing")
        time.sleep(0.3)
        assert proc.poll() is None
        started = time.monotonic()
        returncode, summary = _stop(proc)
    finally:
        proc.kill()
    assert returncode == 0 and time.monotonic() - started < 5
    assert summary["frames_sent"] == 0 and summary["dropped_on_stop"] == 1


def test_grabber_waits_for_daemon_then_daemon_restart(image_folder):
    """Grabber before the daemon: frames wait (seq from 0). Daemon killed and restarted on the same
    port: frames keep flowing with increasing seq."""
    folder, _ = image_folder
    probe = Puller("tcp://127.0.0.1:0")
    endpoint = probe.endpoint
    probe.close()
    proc, lines = _start_grab(folder, endpoint, "--fps", "100", "--loop", "--camera", "r")
    try:
        _wait_for_line(lines, "grabbing")
        time.sleep(0.2)
        first = Puller(endpoint)
        before = [h for h, _ in first.collect(8)]
        first.close()  # the daemon dies
        time.sleep(0.3)
        second = Puller(endpoint)  # and comes back on the same endpoint
        try:
            after = [h for h, _ in second.collect(8)]
        finally:
            second.close()
        returncode, summary = _stop(proc)
    finally:
        proc.kill()
    _assert_contiguous(before, "r", first_seq=0)
    seqs = [h.seq for h in after]
    assert seqs == sorted(set(seqs)) and seqs[0] > before[-1].seq  # in flight at the kill may be lost
    assert returncode == 0 and summary["frames_sent"] > seqs[-1]


def test_bad_command_lines_fail_clearly(tmp_path, tcp_puller):
    proc, _ = _run_grab(tmp_path / "missing", tcp_puller.endpoint)
    assert proc.returncode == 2 and "missing" in proc.stderr and "error" in proc.stderr
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((4, 4, 3), np.uint8))
    proc, _ = _run_grab(tmp_path / "img", tcp_puller.endpoint, camera="bad\ncamera")
    assert proc.returncode == 2 and "camera id" in proc.stderr
    proc, _ = _run_grab(tmp_path / "img", tcp_puller.endpoint, "--jpeg-quality", "80")
    assert proc.returncode == 2 and "--jpeg" in proc.stderr


# --------------------------------------------------------------------------------------------
# GenICam simulated camera (harvesters + the genicam wheel's viky.cti)


def _genicam_available() -> str | None:
    try:
        import harvesters.core  # noqa: F401
    except ImportError as exc:
        return f"harvesters not installed ({exc}); pip install harvesters genicam"
    if genicam_simulator_cti() is None:
        return "genicam wheel with the simulated camera (viky.cti) not installed"
    return None


@pytest.mark.skipif(_genicam_available() is not None, reason=str(_genicam_available()))
def test_genicam_simulated_camera(tcp_puller):
    proc, summary = _run_grab("genicam:sim#2", tcp_puller.endpoint, "--max-frames", "3",
                              "--genicam-set", "PixelFormat=Mono8", camera="gc")
    assert proc.returncode == 0, proc.stderr
    frames = tcp_puller.collect(3)
    _assert_contiguous([h for h, _ in frames], "gc")
    for header, image in frames:
        assert header.pixel_format == "mono8" and image.shape[2] == 1 and image.shape[0] > 0
        assert header.source == "genicam:2"
    assert summary["frames_sent"] == 3

    # default RGBa8 -> BGR: the "red" device (serial 0) is strongest in BGR channel 2, "blue" in 0
    for serial, strongest in (("0", 2), ("2", 0)):
        with open_source(f"genicam:sim#{serial}") as source:
            frames_iter = iter(source)
            frame = next(frames_iter)
            frames_iter.close()
        assert frame.pixel_format == "bgr8" and frame.image.flags.c_contiguous
        means = frame.image.reshape(-1, 3).astype(float).mean(axis=0)
        assert int(np.argmax(means)) == strongest, means


@pytest.mark.skipif(_genicam_available() is not None, reason=str(_genicam_available()))
def test_genicam_bad_device_and_feature_fail_clearly():
    with pytest.raises(SourceError, match="not found"):
        open_source("genicam:sim#no-such-serial")
    with pytest.raises(SourceError, match="PixelFormat"):
        open_source("genicam:sim", node_values={"PixelFormat": "NoSuchFormat"})


# --------------------------------------------------------------------------------------------
# sources in process


def test_normalize_image_rules():
    rng = np.random.default_rng(3)
    word = rng.integers(0, 65536, size=(5, 6, 3), dtype=np.uint16)
    image, fmt = normalize_image(word)
    assert fmt == "bgr8" and image.dtype == np.uint8
    np.testing.assert_array_equal(image, word >> 8)
    gray_alpha = rng.integers(0, 256, size=(5, 6, 2), dtype=np.uint8)
    image, fmt = normalize_image(gray_alpha)
    assert fmt == "mono8" and image.shape == (5, 6, 1)
    np.testing.assert_array_equal(image[:, :, 0], gray_alpha[:, :, 0])
    strided = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)[::2, ::2]
    image, _ = normalize_image(strided)
    assert image.flags.c_contiguous
    np.testing.assert_array_equal(image, strided)
    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 5), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(UnsupportedImageError):
            normalize_image(bad)


def test_convert_genicam_formats():
    bgr = np.array([30, 120, 210], np.uint8)  # B, G, R
    mosaic = np.zeros((8, 8), np.uint8)  # BayerRG8: rows R G R G / G B G B
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = bgr[2], bgr[1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = bgr[1], bgr[0]
    image, fmt = convert_genicam(mosaic.ravel(), 8, 8, "BayerRG8")
    assert fmt == "bgr8" and image.shape == (8, 8, 3)
    np.testing.assert_array_equal(image[3:5, 3:5].reshape(-1, 3), np.tile(bgr, (4, 1)))

    mono12 = np.arange(0, 4096, 64, dtype=np.uint16)  # 64 samples, 8 x 8
    image, fmt = convert_genicam(mono12, 8, 8, "Mono12")
    assert fmt == "mono8" and image.shape == (8, 8, 1)
    np.testing.assert_array_equal(image.ravel(), (mono12 >> 4).astype(np.uint8))

    rgb = np.dstack([np.full((2, 3), v, np.uint8) for v in (200, 100, 10)])  # R, G, B
    image, fmt = convert_genicam(rgb.ravel(), 3, 2, "RGB8")
    assert fmt == "bgr8" and image[0, 0].tolist() == [10, 100, 200]

    with pytest.raises(UnsupportedImageError, match="YUV422"):
        convert_genicam(np.zeros(16, np.uint8), 4, 2, "YUV422_8")
    with pytest.raises(UnsupportedImageError, match="does not match"):
        convert_genicam(np.zeros(15, np.uint8), 4, 4, "Mono8")


def test_interleave_kinds_spreads_and_seed_is_reproducible():
    files = {kind: [Path(f"{kind}{i}.png") for i in range(n)] for kind, n in {"good": 6, "crack": 3, "hole": 2}.items()}
    order = interleave_kinds(files)
    assert len(order) == 11 and sorted(p.name for _, p in order) == sorted(p.name for ps in files.values() for p in ps)
    kinds = [k for k, _ in order]
    assert set(kinds[:4]) == {"good", "crack", "hole"}
    assert max(len(run) for run in "".join(k[0] for k in kinds).replace("c", " ").replace("h", " ").split()) <= 2
    assert interleave_kinds(files) == order
    shuffled = interleave_kinds(files, seed=5)
    assert shuffled == interleave_kinds(files, seed=5) and sorted(shuffled) == sorted(order)
    assert shuffled != interleave_kinds(files, seed=6)


def test_open_source_dispatch_and_errors(tmp_path, mvtec_folder, image_folder):
    root, expected = mvtec_folder
    with open_source(f"mvtec:{root}", seed=1) as source:
        labels = [f.label for f in source]
    assert sorted(labels) == sorted(k.split("/")[0] for k in expected)
    with open_source(str(root), split="train") as source:
        assert [f.source for f in source] == ["good/000.png"]
    folder, _ = image_folder
    with open_source(str(folder / "a_colour.png"), loop=True) as source:
        stream = iter(source)
        assert [next(stream).source for _ in range(3)] == ["a_colour.png"] * 3
    with pytest.raises(SourceError, match="seed"):
        open_source(str(folder), seed=3)  # shuffling does not apply to a plain folder
    with pytest.raises(SourceError, match="neither"):
        open_source(str(tmp_path / "missing"))
    with pytest.raises(SourceError, match="scheme"):
        open_source("ftp://example.invalid/x")
    with pytest.raises(SourceError, match="unknown file type"):
        open_source(str(folder / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))
    only_bad = tmp_path / "only_bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"junk")
    with open_source(str(only_bad), loop=True) as source:  # ends instead of spinning forever
        assert list(source) == [] and source.skipped == 1


def test_redact_and_fit_wire_strings():
    assert redact_url("rtsp://user:secret@10.0.0.5:554/stream1") == "rtsp://10.0.0.5:554/stream1"
    assert redact_url("http://host/x") == "http://host/x"
    long = "kind/" + "x" * 300 + ".png"
    fitted = fit_wire_str(long)
    assert len(fitted.encode()) <= MAX_STR and fitted.startswith("...") and fitted.endswith("x.png")
    assert fit_wire_str("a\tb") == "a?b" and fit_wire_str(None) is None


def test_pacer_counts_late_and_reanchors():
    stop = threading.Event()
    pacer = Pacer(100.0, stop)
    t0 = time.monotonic()
    assert pacer.wait() and pacer.wait()
    assert time.monotonic() - t0 >= 0.009
    time.sleep(0.05)  # fall five periods behind
    assert pacer.wait() and pacer.late == 1
    stop.set()
    assert not pacer.wait()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.timeout(60)
def test_stream_source_reconnects_and_gives_up_bounded(tmp_path):
    """An HTTP video stream that ends is reopened; once the server is gone, bounded retries end it."""
    path = tmp_path / "stream.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for level in (40, 140, 240):
        writer.write(np.full((H, W, 3), level, np.uint8))
    writer.release()
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/stream.avi"
    stop = threading.Event()
    try:
        source = open_source(url, reconnect_initial_s=0.02, reconnect_max_s=0.05, max_reconnects=3)
        assert isinstance(source, LiveCaptureSource)
        stream = iter(source)
        means = [round(float(next(stream).image.mean()), -1) for _ in range(7)]
        assert means == [40, 140, 240, 40, 140, 240, 40] and source.reconnects >= 2
        patient = open_source(url, reconnect_initial_s=5.0, stop_event=stop)  # long backoff
        patient_stream = iter(patient)
        next(patient_stream)
    finally:
        server.shutdown()
        server.server_close()
    started = time.monotonic()
    with pytest.raises(SourceError, match="gave up"):
        for _ in range(10):
            next(stream)
    assert time.monotonic() - started < 10
    source.close()
    # a stop request ends a reconnect wait at once instead of after the 5 s backoff
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert len(list(patient_stream)) <= 2
    assert time.monotonic() - started < 3
    patient.close()


def test_run_grabber_in_process_with_stop_event(image_folder, tcp_puller):
    folder, expected = image_folder
    stop = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: result.update(run_grabber(
        str(folder), "inproc", tcp_puller.endpoint, fps=200, loop=True, stop_event=stop)))
    thread.start()
    try:
        frames = tcp_puller.collect(12)
    finally:
        stop.set()
        thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    _assert_contiguous([h for h, _ in frames], "inproc")
    assert result["stopped_by"] == "stop" and result["frames_sent"] >= 12
