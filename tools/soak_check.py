"""What ``tools/soak.py`` checks, as pure functions of its files: every frame the grabbers sent
(their ``--capture-log`` lines) against what the simulated PLC logged (``inspector plc-sim --log``).

For each captured frame, its outcome at the PLC is, in this order:

* **verdict**: a ring entry of its own, matched by camera block and part code (the soak gives
  every grabber run its own ``--part-id-start``, so part codes are unique);
* **covered by a FAULT**: a ``sequence_gap`` FAULT entry standing for it: such an entry stands for
  every seq of its grabber session after the session's previous entry, up to its own seq
  (docs/plc.md, "Sequence rules"); its session is that of the next entry of the camera that is a
  frame's own;
* **covered by a line stop**: the PLC program (the reference routine the simulator runs) had the
  line stopped (line-stop coil, gateway heartbeat lost, or the PLC itself down) at some time
  between the frame's capture and ``window_s`` later (the part on its way to the reject station);
* else **uncovered**. An uncovered frame is also a **silent pass** when nothing at the PLC would
  reject it even without a part sensor: no later entry of its session reveals it as skipped
  (rule 4 of the reference routine). OK entries that belong to no captured frame count as silent
  passes too (a pass for a part nobody captured).

Times are ``time.time_ns()`` on one machine (grabbers and simulator share the clock).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from inspector.plc import modbus_map as mm

GAP = mm.REASON_CODES["sequence_gap"]
REPLAYED = mm.REASON_CODES["sequence_replayed"]
OK = mm.DECISION_CODES["OK"]


@dataclass(frozen=True)
class Captured:
    camera: int          # camera block
    session: int
    seq: int
    part_code: int
    capture_ns: int


def read_jsonl(path: Path) -> Iterator[dict]:
    """Records of a JSON-lines file; a line cut by a killed writer is skipped."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def captured_frames(logs: Iterable[Path], cameras: list[str]) -> list[Captured]:
    """Every frame of the grabbers' capture logs (``--capture-log``)."""
    index = {name: i for i, name in enumerate(cameras)}
    return [Captured(index[r["camera_id"]], r["session"], r["seq"], int(r["part_id"]), r["capture_ns"])
            for path in logs if path.is_file() for r in read_jsonl(path) if r.get("camera_id") in index]


def stop_intervals(records: list[dict], outages: list[tuple[int, int]], start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """When the PLC had the line stopped: its program's ``line_stop`` .. ``line_run`` events, the
    time from ``start_ns`` to its first ``line_run``, and every PLC outage (``(down_ns, up_ns)``)
    up to the next ``line_run`` after it."""
    events = sorted((r["t_ns"], r["event"]) for r in records if r.get("kind") == "plc" and r.get("event") in ("line_stop", "line_run"))
    runs = [t for t, event in events if event == "line_run"]
    intervals: list[tuple[int, int]] = []
    stopped_at: int | None = start_ns
    for t, event in events:
        if event == "line_stop" and stopped_at is None:
            stopped_at = t
        elif event == "line_run" and stopped_at is not None:
            intervals.append((stopped_at, t))
            stopped_at = None
    if stopped_at is not None:
        intervals.append((stopped_at, end_ns))
    for down, up in outages:
        after = bisect.bisect_left(runs, up)
        intervals.append((down, runs[after] if after < len(runs) else end_ns))
    return sorted(intervals)


def _stopped_during(intervals: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a <= end and start <= b for a, b in intervals)


def gap_covered(entries: list[dict], frames_by_code: dict[tuple[int, int], Captured]) -> set[tuple[int, int, int]]:
    """(camera, session, seq) that ``sequence_gap`` FAULT entries stand for (see module doc)."""
    covered: set[tuple[int, int, int]] = set()
    by_camera: dict[int, list[dict]] = defaultdict(list)
    for e in entries:
        by_camera[e["camera"]].append(e)
    for camera, stream in by_camera.items():
        sessions = [None] * len(stream)   # the session of each entry: its frame's, or the next own entry's
        following = None
        for i in range(len(stream) - 1, -1, -1):
            own = frames_by_code.get((camera, stream[i]["part_code"])) if not stream[i]["flags"] & mm.FLAG_PART_ID_CRC32 else None
            following = own.session if own is not None else following
            sessions[i] = following
        last_seq: dict[int, int] = {}
        for e, session in zip(stream, sessions):
            if session is None or e["reason"] == REPLAYED:
                continue
            if e["reason"] == GAP and e["decision"] != OK:
                covered.update((camera, session, s) for s in range(last_seq.get(session, -1) + 1, e["seq"] + 1))
            last_seq[session] = max(last_seq.get(session, -1), e["seq"])
    return covered


def check(frames: list[Captured], records: list[dict], *, window_s: float, outages: list[tuple[int, int]],
          start_ns: int, end_ns: int, grabber_kills: dict[int, list[int]] | None = None) -> dict:
    """The soak's verdict on the whole run (keys in the module doc and docs/benchmarks.md).
    ``grabber_kills``: camera -> times its grabber was killed; an uncovered frame captured within a
    second before one is counted in ``uncovered_at_grabber_kill`` too (it died in the grabber)."""
    entries = [r for r in records if r.get("kind") == "entry"]
    frames_by_code = {(f.camera, f.part_code): f for f in frames}
    own: Counter[tuple[int, int]] = Counter()
    unmatched_ok = 0
    for e in entries:
        key = (e["camera"], e["part_code"])
        if not e["flags"] & mm.FLAG_PART_ID_CRC32 and key in frames_by_code:
            own[key] += 1
        elif e["decision"] == OK:
            unmatched_ok += 1
    covered_gap = gap_covered(entries, frames_by_code)
    stops = stop_intervals(records, outages, start_ns, end_ns)
    last_entry_seq: dict[tuple[int, int], int] = {}
    for e in entries:
        f = frames_by_code.get((e["camera"], e["part_code"]))
        if f is not None:
            key = (f.camera, f.session)
            last_entry_seq[key] = max(last_entry_seq.get(key, -1), f.seq)
    counts: Counter[str] = Counter()
    window_ns = int(window_s * 1e9)
    for f in frames:
        if own[(f.camera, f.part_code)]:
            counts["verdicts_at_plc"] += 1
            counts["duplicate_outcomes"] += own[(f.camera, f.part_code)] > 1
        elif (f.camera, f.session, f.seq) in covered_gap:
            counts["covered_by_gap_fault"] += 1
        elif _stopped_during(stops, f.capture_ns, f.capture_ns + window_ns):
            counts["covered_by_line_stop"] += 1
        else:
            counts["uncovered"] += 1
            counts["silent_passes"] += last_entry_seq.get((f.camera, f.session), -1) < f.seq
            kills = (grabber_kills or {}).get(f.camera, [])
            counts["uncovered_at_grabber_kill"] += any(0 <= t - f.capture_ns <= 1_000_000_000 for t in kills)
    decisions = Counter({v: k for k, v in mm.DECISION_CODES.items()}.get(e["decision"], "?") for e in entries)
    return {
        "frames_captured": len(frames),
        "verdicts_at_plc": counts["verdicts_at_plc"],
        "covered_by_fault": counts["covered_by_gap_fault"] + counts["covered_by_line_stop"],
        "covered_by_gap_fault": counts["covered_by_gap_fault"],
        "covered_by_line_stop": counts["covered_by_line_stop"],
        "uncovered": counts["uncovered"],
        "uncovered_at_grabber_kill": counts["uncovered_at_grabber_kill"],
        "silent_passes": counts["silent_passes"] + unmatched_ok,
        "unmatched_ok_entries": unmatched_ok,
        "duplicate_outcomes": counts["duplicate_outcomes"],
        "entries_at_plc": len(entries),
        "entries_by_decision": dict(decisions),
        "entries_by_reason": dict(Counter(e["reason"] for e in entries)),
        "line_stopped_s": round(sum(min(b, end_ns) - max(a, start_ns) for a, b in stops if b > start_ns) / 1e9, 1),
    }
