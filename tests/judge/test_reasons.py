"""The one table of decisions and reason codes, and the three modules that read it."""

from __future__ import annotations

import pytest

from inspector.judge import reasons, verdict
from inspector.line import wire
from inspector.plc import modbus_map as mm

pytestmark = pytest.mark.unit


def test_plc_codes_are_distinct_and_fit_a_register_value_below_other() -> None:
    codes = [r.plc_code for r in reasons.REASONS.values()]
    assert len(set(codes)) == len(codes)
    assert all(reasons.REASON_NONE < c < reasons.REASON_OTHER for c in codes)


def test_every_reader_sees_the_same_table() -> None:
    assert wire.REASON_CODES == tuple(reasons.REASONS) == tuple(verdict.REASON_DECISIONS)
    assert wire.DECISIONS == tuple(mm.DECISION_CODES) == reasons.DECISIONS
    for code, row in reasons.REASONS.items():
        assert verdict.decision_for(code) == row.decision
        assert mm.reason_code(code) == (row.plc_code, False)
    assert mm.reason_code("") == (mm.REASON_NONE, False)
    assert mm.reason_code("a_new_code") == (mm.REASON_OTHER, True)


def test_every_daemon_reason_is_a_valid_wire_verdict() -> None:
    for code, row in reasons.REASONS.items():
        v = wire.Verdict("cam", 1, "p", 1, row.decision, code, None, None, 2)
        assert wire.decode_message(wire.encode_verdict(v)).reason == code
