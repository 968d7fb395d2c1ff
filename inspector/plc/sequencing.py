"""What the gateway writes into a camera's ring for one verdict: pure logic, no I/O.

The gateway checks every verdict against what the PLC already holds for that camera: the camera
header's ``last_seq`` and ``last_session`` (low 32 bits; :mod:`inspector.plc.modbus_map`). The
header is read back from the PLC at the gateway's first connection, so the rules hold across
gateway and daemon restarts alike (docs/plc.md, "Sequence rules"):

* nothing written yet for the camera: the verdict as it is;
* same session, next seq: the verdict;
* same session, seqs skipped: a FAULT ``sequence_gap`` entry for each skipped seq (at most
  :data:`GAP_ITEMISED`; a longer gap is one entry at ``seq - 1`` that stands for every seq since
  the previous entry), then the verdict. These seqs' verdicts never reached the gateway (lost in
  a daemon that was killed, or while the gateway was down); they count in ``lost_count``;
* same session, the same or a lower seq, or a session the camera left before: the verdict is
  written as FAULT ``sequence_replayed`` (a copy or an injection: never dropped as a duplicate,
  never a pass);
* another session: a grabber restart; the verdict, and the old session is remembered as left.

Everything is compared in 32 bits (what the registers hold): a forward step is one of less than
2**31.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from inspector.line.wire import Verdict
from inspector.plc import modbus_map as mm

GAP_ITEMISED = 8          # a gap of more seqs than this is written as one summarising entry
REPLAYED = "sequence_replayed"
GAP = "sequence_gap"
HALF_RANGE = 1 << 31


@dataclass(frozen=True)
class PendingVerdict:
    """A verdict translated to register values, waiting to be written.

    ``entry`` has tag 0; the writer sets the tag when it knows the write count. ``session``:
    the low 32 bits of the verdict's grabber session. ``pulse``: pulse the reject coil when
    written (False for verdicts that waited out a PLC outage: a late pulse could reject the wrong
    part; the ring entry still carries the result).
    """

    camera: int
    entry: mm.RingEntry
    decision: str
    capture_ns: int
    session: int = 0
    pulse: bool = True


@dataclass(frozen=True)
class Planned:
    """One entry to write: ``own`` (the verdict's own entry) or a gap FAULT the gateway adds;
    ``lost``: seqs it accounts for in ``lost_count``; ``replayed``: written as FAULT
    ``sequence_replayed`` (latches the line stop)."""

    entry: mm.RingEntry
    decision: str
    own: bool
    lost: int = 0
    replayed: bool = False


def ring_entry_for(verdict: Verdict) -> mm.RingEntry:
    """Verdict -> ring entry register values (tag 0), per the encodings in modbus_map."""
    code, is_crc = mm.part_code(verdict.part_id)
    score, score_clamped = mm.milli_u16(verdict.score)
    threshold, threshold_clamped = mm.milli_u16(verdict.threshold)
    reason, reason_unknown = mm.reason_code(verdict.reason)
    flags = (
        (mm.FLAG_PART_ID_CRC32 if is_crc else 0)
        | (mm.FLAG_SCORE_CLAMPED if score_clamped else 0)
        | (mm.FLAG_THRESHOLD_CLAMPED if threshold_clamped else 0)
        | (mm.FLAG_REASON_UNKNOWN if reason_unknown else 0)
    )
    return mm.RingEntry(
        seq=verdict.seq & mm.U32_MAX,
        part_code=code,
        decision=mm.decision_code(verdict.decision),
        reason=reason,
        score_milli=score,
        threshold_milli=threshold,
        capture_ms=(verdict.capture_ns // 1_000_000) & mm.U32_MAX,
        flags=flags,
        tag=0,
    )


def pending_for(camera: int, verdict: Verdict) -> PendingVerdict:
    """The writer's work item for ``verdict`` of camera block ``camera``."""
    return PendingVerdict(camera, ring_entry_for(verdict), verdict.decision, verdict.capture_ns,
                          verdict.session & mm.U32_MAX)


def has_history(header: mm.CameraHeader) -> bool:
    """True when the PLC holds verdicts of this camera (the counters are not all zero)."""
    return (header.ok_count + header.reject_count + header.fault_count) > 0


def plan_entries(header: mm.CameraHeader, item: PendingVerdict, left_sessions: frozenset[int] | set[int]) -> list[Planned]:
    """The entries to write for ``item`` after ``header`` (the camera's state in the PLC), in
    order; the last one is the verdict's own. ``left_sessions``: sessions (low 32 bits) this
    camera had before its current one. See the module doc for the rules."""
    own = Planned(item.entry, item.decision, own=True)
    if not has_history(header):
        return [own]
    if item.session != header.last_session:
        return [_replayed(item)] if item.session in left_sessions else [own]
    step = (item.entry.seq - header.last_seq) & mm.U32_MAX
    if step == 0 or step >= HALF_RANGE:
        return [_replayed(item)]
    missing = step - 1
    if missing == 0:
        return [own]
    if missing <= GAP_ITEMISED:
        gaps = [_gap(item, (header.last_seq + k) & mm.U32_MAX, 1) for k in range(1, step)]
    else:
        gaps = [_gap(item, (item.entry.seq - 1) & mm.U32_MAX, missing)]
    return [*gaps, own]


def _replayed(item: PendingVerdict) -> Planned:
    code, _ = mm.reason_code(REPLAYED)
    entry = replace(item.entry, decision=mm.DECISION_CODES["FAULT"], reason=code,
                    flags=item.entry.flags & ~mm.FLAG_REASON_UNKNOWN)
    return Planned(entry, "FAULT", own=True, replayed=True)


def _gap(item: PendingVerdict, seq: int, lost: int) -> Planned:
    code, is_crc = mm.part_code("")
    entry = mm.RingEntry(seq=seq, part_code=code, decision=mm.DECISION_CODES["FAULT"], reason=mm.reason_code(GAP)[0],
                         score_milli=mm.MILLI_NONE, threshold_milli=mm.MILLI_NONE, capture_ms=item.entry.capture_ms,
                         flags=mm.FLAG_PART_ID_CRC32 if is_crc else 0, tag=0)
    return Planned(entry, "FAULT", own=False, lost=lost)
