"""Property-based tests (hypothesis) of the parts that meet hostile or disordered input: the wire's
decoders (with the hostile messages of tools/fuzz_wire.py), the sequence rules of the daemon and
the gateway, the in-order release of verdicts and the byte-bounded queue. tools/fuzz_wire.py runs
the same hostile messages against a real daemon for long runs."""

from __future__ import annotations

import random
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import REPO
from inspector.line import wire
from inspector.line.batching import MicroBatcher
from inspector.line.ordering import InOrder
from inspector.line.sequence import SequenceTracker
from inspector.plc import modbus_map as mm
from inspector.plc.sequencing import GAP_ITEMISED, PendingVerdict, plan_entries

sys.path.insert(0, str(REPO / "tools"))
from fuzz_wire import MAX_PIXELS, hostile_message  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def ieee_subnormals():
    """Hypothesis draws subnormal floats and refuses to run when the CPU flushes them to zero. The
    in-process training, bench and torch-engine tests turn flush-to-zero on for the whole process
    (``torch.set_flush_denormal(True)``, a CPU flag), so it is turned off here when torch is loaded;
    these tests never import torch themselves."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)
    yield
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_wire_errors(call) -> None:
    try:
        call()
    except wire.WireError as exc:
        assert exc.reason in wire.WIRE_ERROR_REASONS


@FAST
@given(st.randoms(use_true_random=False))
def test_hostile_frames_fail_only_with_wire_errors_and_never_decode_past_the_budget(rng: random.Random):
    name, parts = hostile_message(rng)

    def open_and_decode():
        frame = wire.open_frame(parts, max_pixels=MAX_PIXELS)
        height, width, _ = frame.header.shape
        assert height * width <= MAX_PIXELS
        assert frame.decode().shape == tuple(frame.header.shape)

    _only_wire_errors(open_and_decode)


@FAST
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_arbitrary_parts_fail_only_with_wire_errors(parts):
    _only_wire_errors(lambda: wire.decode_frame(parts))
    _only_wire_errors(lambda: wire.decode_message(parts))
    _only_wire_errors(lambda: wire.decode_tap(parts))


text = st.text(min_size=1, max_size=20).filter(str.isprintable)
u63 = st.integers(0, 2**63 - 1)


@FAST
@given(text, u63, u63, st.text(max_size=10).filter(str.isprintable), u63, u63,
       st.sampled_from(sorted(wire.PIXEL_FORMATS)), st.integers(1, 40), st.integers(1, 40))
def test_every_valid_header_round_trips(camera, seq, session, part, capture, deadline, pixel_format, h, w):
    header = wire.FrameHeader(camera, seq, part, capture, deadline, (h, w, wire.PIXEL_FORMATS[pixel_format]),
                              pixel_format=pixel_format, session=session)
    assert wire.decode_header(wire.encode_header(header)) == header


observations = st.lists(st.tuples(st.integers(1, 3), st.integers(0, 40), st.floats(0, 0.1)), max_size=60)


@FAST
@given(observations, st.sampled_from([None, 10.0, 100.0]))
def test_sequence_rules_never_let_a_seq_pass_twice_in_a_session(steps, fps):
    tracker, seen, now = SequenceTracker(max_itemised=8), set(), 0.0
    for session, seq, dt in steps:
        now += dt
        event = tracker.observe("cam", session, seq, now=now, fps=fps)
        if (session, seq) in seen and not event.new_session:
            assert event.replayed                                      # a seq a session already had
        if event.replayed:
            continue
        seen.add((session, seq))
        assert event.missing == (0 if event.previous is None else seq - event.previous - 1)
        assert len(event.fault_seqs) <= 8 and all(event.previous < s < seq for s in event.fault_seqs)
        assert event.fault_seqs in ((), tuple(range(seq - event.missing, seq)), (seq - 1,))


@FAST
@given(st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_verdicts_leave_in_seq_order_whatever_order_they_are_made_in(frames, rng):
    """As in the daemon: frames arrive with rising seqs (gaps between them answered at once); some
    are queued (expected), some answered at once; the queued ones are answered in any order."""
    order: InOrder[int] = InOrder()
    released, queued, seq = [], [], 0
    for step, goes_to_engine in frames:
        for missing in range(seq, seq + step - 1):                     # a gap: FAULTs now
            released += order.release("k", missing, missing, expected=False)
        seq += step - 1
        if goes_to_engine:
            order.expect("k", seq)
            queued.append(seq)
        else:
            released += order.release("k", seq, seq, expected=False)
        seq += 1
    rng.shuffle(queued)
    for s in queued:
        released += order.release("k", s, s, expected=True)
    assert released == sorted(released) == list(range(seq)) and order.held() == 0


@FAST
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 3), st.integers(0, 3),
       st.sampled_from(["OK", "REJECT", "FAULT"]))
def test_the_gateway_plan_always_ends_with_the_verdicts_own_entry_and_counts_every_lost_seq(last, seq, s1, s2, decision):
    header = mm.CameraHeader(write_count=7, ok_count=7, last_seq=last, last_session=s1)
    entry = mm.RingEntry(seq, 1, mm.DECISION_CODES[decision], 0, 0, 0, 0, 0, 0)
    plan = plan_entries(header, PendingVerdict(0, entry, decision, 0, s2), set())
    assert plan[-1].own and all(not p.own for p in plan[:-1]) and len(plan) <= GAP_ITEMISED + 1
    step = (seq - last) % 2**32
    if s1 == s2 and 0 < step < 2**31:
        assert sum(p.lost for p in plan) == step - 1 and plan[-1].decision == decision
        itemised = [(last + k) % 2**32 for k in range(1, step)] if step <= GAP_ITEMISED + 1 else None
        assert [p.entry.seq for p in plan[:-1]] in (itemised, [(seq - 1) % 2**32])
    elif s1 == s2:
        assert plan == [plan[-1]] and plan[-1].replayed and plan[-1].decision == "FAULT"     # never a pass
    else:
        assert plan == [plan[-1]] and not plan[-1].replayed


@FAST
@given(st.lists(st.tuples(st.integers(0, 500), st.booleans()), max_size=60), st.sampled_from(["reject_oldest", "reject_newest"]))
def test_the_byte_bounded_queue_drops_each_item_once_and_never_holds_too_much(adds, policy):
    batcher = MicroBatcher(4, 0.0, 5, policy, max_bytes=1000)
    outcome: Counter[int] = Counter()
    for item, (nbytes, take) in enumerate(adds):
        for dropped in batcher.add(item, 0.0, nbytes=nbytes):
            outcome[dropped] += 1
        assert len(batcher) <= 5 and 0 <= batcher.queued_bytes <= 1000
        assert batcher.queued_bytes == sum(adds[i][0] for i in batcher.items())
        if take:
            outcome.update(batcher.take_batch(0.0)[0])
    outcome.update(batcher.drain_all())
    assert batcher.queued_bytes == 0 and outcome == Counter(range(len(adds)))
