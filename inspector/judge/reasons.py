"""The one table of decisions and reason codes (docs/protocol.md, "Reason codes").

Every verdict has a ``decision`` (:data:`DECISIONS`) and, unless it is OK, a ``reason``. Each
reason the daemon emits is a row of :data:`REASONS`: its decision (everything that is not a
judgement of the part is a FAULT, which the PLC treats as a reject) and its number in the PLC's
register map. The wire accepts any other lower-case snake_case code too (a new code needs no
schema bump; consumers let the decision alone drive the PLC), and the register map writes such a
code as :data:`REASON_OTHER`.

Pure data, no imports: :mod:`inspector.judge.verdict`, :mod:`inspector.line.wire` and
:mod:`inspector.plc.modbus_map` read it.
"""

from __future__ import annotations

from typing import NamedTuple

OK, REJECT, FAULT = "OK", "REJECT", "FAULT"
DECISIONS = (OK, REJECT, FAULT)
DECISION_CODES: dict[str, int] = {OK: 1, REJECT: 2, FAULT: 3}   # register map; 0 = no verdict yet
DECISION_NONE = 0


class Reason(NamedTuple):
    decision: str   # REJECT or FAULT
    plc_code: int   # holding-register value (1..254)


REASONS: dict[str, Reason] = {
    "score_above_threshold": Reason(REJECT, 1),  # image score >= the camera's image threshold
    "defect_area": Reason(REJECT, 2),            # a defect region >= min_defect_area pixels
    "deadline_missed": Reason(FAULT, 3),         # no verdict could be made before deadline_ns
    "decode_error": Reason(FAULT, 4),            # malformed frame message (wire.WireError)
    "engine_error": Reason(FAULT, 5),            # the engine failed, or returned a non-finite score / map
    "sequence_gap": Reason(FAULT, 6),            # this camera's frame with this seq never arrived
    "no_calibration": Reason(FAULT, 7),          # no usable calibration profile for this camera
    "overload_dropped": Reason(FAULT, 8),        # dropped by the overload policy
    "shutdown": Reason(FAULT, 9),                # the daemon stopped before judging the frame
    "sequence_replayed": Reason(FAULT, 10),      # seq did not advance its grabber session (repeated, backwards, replaced session)
    "unknown_camera": Reason(FAULT, 11),         # a camera id the box config does not declare: refused, never judged
}

REASON_CODES: tuple[str, ...] = tuple(REASONS)                     # the codes in use, in table order
REASON_DECISIONS: dict[str, str] = {code: r.decision for code, r in REASONS.items()}
REASON_NONE = 0       # OK verdicts carry no reason
REASON_OTHER = 255    # a reason string not in REASONS
PLC_REASON_CODES: dict[str, int] = {"": REASON_NONE, **{code: r.plc_code for code, r in REASONS.items()}}
