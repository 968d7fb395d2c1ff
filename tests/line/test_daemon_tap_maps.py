"""``[daemon] tap_maps``: the daemon sends each judged REJECT / FAULT frame's anomaly map on its tap
(for the reject archive), never an OK frame's, and an engine without a fit cannot make it lose a
verdict. In process, scripted engine (test_daemon_failures.InProcess), inproc sockets."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inspector.line import transport, wire
from daemon_helpers import by_key, send
from test_daemon_failures import InProcess, ScriptedEngine, coded

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


class MappingEngine(ScriptedEngine):
    """Maps whose value is the score everywhere, a hot pixel at (2, 3); fitted by letterbox."""

    inspection = type("Inspection", (), {"fit": "letterbox"})()

    def infer(self, images, pixel_formats, want_maps=False, rois=None):
        result = super().infer(images, pixel_formats, want_maps, rois)
        if want_maps:
            result.maps = np.stack([np.full((8, 8), s, np.float32) for s in result.scores])
            result.maps[:, 2, 3] += 1.0
        return result


def collect_maps(line: InProcess, tap: str, frames: list[tuple[int, int]]) -> dict:
    sub = transport.subscriber(line.context, tap, (wire.TOPIC_MAP,))
    try:
        time.sleep(0.3)                                   # the subscription reaches the daemon
        for seq, code in frames:
            send(line.push, "cam0", seq, coded(code))
        verdicts = by_key(line.listener.wait_verdicts(len(frames)))
        maps = {}
        while sub.poll(500):
            m = wire.decode_map(sub.recv_multipart())
            maps[(m.camera_id, m.seq)] = m
        return verdicts, maps
    finally:
        sub.close(0)


def test_maps_of_rejects_go_on_the_tap(tmp_path):
    name = f"t{time.monotonic_ns()}"
    line = InProcess(tmp_path, daemon={"tap": f"inproc://{name}-tap", "tap_maps": True})
    line.daemon.engine = line.engine = MappingEngine()
    try:
        verdicts, maps = collect_maps(line, f"inproc://{name}-tap", [(0, 30), (1, 70), (2, 90), (3, 10)])
        assert [verdicts[("cam0", s)].decision for s in range(4)] == ["OK", "REJECT", "REJECT", "OK"]
        assert set(maps) == {("cam0", 1), ("cam0", 2)}
        m = maps[("cam0", 2)]
        assert m.fit == "letterbox" and m.values.shape == (8, 8) and m.pixel_threshold is None
        assert m.floats()[2, 3] == pytest.approx(1.9, abs=0.01) and m.floats()[0, 0] == pytest.approx(0.9, abs=0.01)
        assert line.stop()["frames_without_verdict"] == 0
    finally:
        line.close()


def test_an_engine_without_a_fit_still_gives_every_verdict(tmp_path):
    name = f"t{time.monotonic_ns()}"
    line = InProcess(tmp_path, daemon={"tap": f"inproc://{name}-tap", "tap_maps": True})
    try:                                                  # ScriptedEngine has no .inspection
        verdicts, maps = collect_maps(line, f"inproc://{name}-tap", [(0, 70), (1, 20)])
        assert [verdicts[("cam0", s)].decision for s in range(2)] == ["REJECT", "OK"] and maps == {}
    finally:
        line.close()
