"""The Modbus register map between the gateway and the PLC: the one place that defines it.

Everything here is plain arithmetic on register numbers (no I/O); ``docs/plc.md`` is the
human-readable version of this module and must change with it.

Conventions
-----------
* Addresses are **0-based protocol addresses** (the number on the wire). A PLC tool that shows
  "4xxxx" holding registers or "0xxxx" coils numbers from 1: holding register 0 here is 40001
  there, coil 0 is 00001.
* Registers are unsigned 16-bit. A 32-bit value occupies two consecutive registers, **big-endian
  word order: high word first** (at the lower address), each word big-endian as Modbus defines.
* Every value the gateway writes is absolute (never "add one"), so repeating a write after a lost
  response is harmless (idempotent); the gateway relies on that when it reconnects.

Layout (holding registers)
--------------------------
* ``0 .. GLOBAL_BLOCK_SIZE-1``: the global block (``GlobalBlock``), written as one request.
* camera ``i`` (0-based index in the gateway's ``--cameras`` list) owns
  ``camera_base(i) = CAMERA_AREA_BASE + i * CAMERA_BLOCK_SIZE``:
    - ``+0 .. +CAMERA_HEADER_SIZE-1``: the camera header (``CameraHeader``: write count,
      last decision, counters), written as one request;
    - ``+RING_OFFSET``: the ring of ``RING_SIZE`` entries of ``ENTRY_SIZE`` registers each
      (``RingEntry``); verdict number ``n`` (0-based, per camera) lives in slot ``n % RING_SIZE``.

Handshake: the gateway writes the ring entry (one request), waits for the PLC's answer, then
writes the camera header whose ``write_count`` (free-running, mod 65536) now includes it. A PLC
that reads ``write_count`` first and then only the entries below it never sees a half-written
entry. Each entry also carries ``tag`` = the ``write_count`` value that committed it, so a PLC can
detect an entry overwritten while it was reading (overrun: ``write_count - read_index > RING_SIZE``).

Coils: ``COIL_DAEMON_ALIVE``, ``COIL_LINE_STOP``, ``COIL_DAEMON_READY`` (written by the gateway),
``COIL_FAULT_RESET`` (written by the PLC, cleared by the gateway), and one reject-pulse coil per
camera at ``reject_coil(i)``.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields

from inspector.judge import reasons

MAP_VERSION = 2  # 2: camera header + last_session; fault bit 5 (replayed seq); bit 3 (unknown camera) retired
MAX_CAMERAS = 16
RING_SIZE = 32  # a power of two dividing 65536, so slot = write_count % RING_SIZE survives wrap
ENTRY_SIZE = 12  # registers per ring entry
CAMERA_HEADER_SIZE = 14  # registers written in one request (see CameraHeader)
RING_OFFSET = 16  # ring start inside a camera block (header + 4 reserved registers)
CAMERA_AREA_BASE = 100
CAMERA_BLOCK_SIZE = RING_OFFSET + RING_SIZE * ENTRY_SIZE  # 400
HOLDING_REGISTER_COUNT = CAMERA_AREA_BASE + MAX_CAMERAS * CAMERA_BLOCK_SIZE  # 6500
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
WRITE_COUNT_MODULUS = 1 << 16

# ---- coils -----------------------------------------------------------------------------------
COIL_DAEMON_ALIVE = 0  # 1 while daemon heartbeats arrive within --heartbeat-timeout
COIL_LINE_STOP = 1  # 1 = inspector fault: treat every part as rejected / stop the line
COIL_DAEMON_READY = 2  # 1 while the daemon's last heartbeat said ready
COIL_FAULT_RESET = 3  # the PLC writes 1 to acknowledge latched faults; the gateway writes 0 back
GATEWAY_STATUS_COILS = 3  # coils 0..2 are written together, in one request
REJECT_COIL_BASE = 16
COIL_COUNT = REJECT_COIL_BASE + MAX_CAMERAS  # 32

# ---- fault causes (bits of GlobalBlock.fault_causes); LINE_STOP = any bit set ------------------
FAULT_HEARTBEAT_LOST = 1 << 0  # level: no daemon heartbeat for > timeout (also: none seen yet)
FAULT_DAEMON_NOT_READY = 1 << 1  # level: the daemon's heartbeat says ready=False
FAULT_BACKLOG_OVERFLOW = 1 << 2  # latched: verdicts dropped while the PLC was unreachable
FAULT_UNKNOWN_CAMERA = 1 << 3  # map 1 only (a verdict from a camera not in --cameras); no longer set
FAULT_GATEWAY_STOPPED = 1 << 4  # written last by a gateway that stops cleanly
FAULT_SEQUENCE_REPLAYED = 1 << 5  # latched: a verdict whose seq did not advance its grabber session
LATCHED_FAULTS = FAULT_BACKLOG_OVERFLOW | FAULT_SEQUENCE_REPLAYED

# ---- decision and reason codes ---------------------------------------------------------------
# the numbers are columns of the one table, inspector.judge.reasons
DECISION_CODES = reasons.DECISION_CODES
DECISION_NONE = reasons.DECISION_NONE
REASON_NONE = reasons.REASON_NONE
REASON_OTHER = reasons.REASON_OTHER
REASON_CODES: dict[str, int] = reasons.PLC_REASON_CODES

# ---- RingEntry.flags bits ----------------------------------------------------------------------
FLAG_PART_ID_CRC32 = 1 << 0  # part_code is CRC-32 of the part id's UTF-8 (not a number)
FLAG_SCORE_CLAMPED = 1 << 1  # score_milli saturated (score < 0 or score * 1000 > 65534)
FLAG_THRESHOLD_CLAMPED = 1 << 2
FLAG_REASON_UNKNOWN = 1 << 3  # reason string not in REASON_CODES (reason = REASON_OTHER)

MILLI_NONE = U16_MAX  # score_milli / threshold_milli when the verdict has no score
MILLI_MAX = U16_MAX - 1


# ---- addresses ---------------------------------------------------------------------------------
def check_camera_index(index: int) -> int:
    """Return ``index`` if 0 <= index < MAX_CAMERAS, else raise ValueError."""
    if not 0 <= index < MAX_CAMERAS:
        raise ValueError(f"camera index {index} outside 0..{MAX_CAMERAS - 1}")
    return index


def camera_base(index: int) -> int:
    """First holding register of camera block ``index`` (its header)."""
    return CAMERA_AREA_BASE + check_camera_index(index) * CAMERA_BLOCK_SIZE


def ring_slot(write_index: int) -> int:
    """Ring slot of the verdict with 0-based per-camera number ``write_index`` (any int >= 0)."""
    return write_index % RING_SIZE


def entry_address(index: int, slot: int) -> int:
    """First holding register of ring entry ``slot`` (0..RING_SIZE-1) of camera ``index``."""
    if not 0 <= slot < RING_SIZE:
        raise ValueError(f"ring slot {slot} outside 0..{RING_SIZE - 1}")
    return camera_base(index) + RING_OFFSET + slot * ENTRY_SIZE


def reject_coil(index: int) -> int:
    """Reject-pulse coil of camera ``index``."""
    return REJECT_COIL_BASE + check_camera_index(index)


# ---- value encodings ---------------------------------------------------------------------------
def u32_words(value: int) -> list[int]:
    """0 <= value <= U32_MAX -> [high word, low word]. Larger ints keep their low 32 bits."""
    value &= U32_MAX
    return [value >> 16, value & U16_MAX]


def words_u32(high: int, low: int) -> int:
    """[high word, low word] -> int (inverse of ``u32_words``)."""
    return ((high & U16_MAX) << 16) | (low & U16_MAX)


def part_code(part_id: str) -> tuple[int, bool]:
    """Part id string -> (32-bit code, is_crc32).

    A part id of 1..10 ASCII digits whose value fits in 32 bits is sent as that number;
    anything else (including "" and "007x") as ``zlib.crc32(part_id.encode("utf-8"))``, with
    ``FLAG_PART_ID_CRC32`` set in the entry so the PLC can tell the two apart.
    """
    if 0 < len(part_id) <= 10 and part_id.isascii() and part_id.isdigit():
        number = int(part_id)
        if number <= U32_MAX:
            return number, False
    return zlib.crc32(part_id.encode("utf-8")) & U32_MAX, True


def milli_u16(value: float | None) -> tuple[int, bool]:
    """Score or threshold -> (round(value * 1000) saturated to 0..MILLI_MAX, clamped?).

    None (no score) -> (MILLI_NONE, False). Non-finite values saturate (NaN to MILLI_MAX).
    """
    if value is None:
        return MILLI_NONE, False
    if math.isnan(value):
        return MILLI_MAX, True
    scaled = value * 1000.0
    if scaled < 0:
        return 0, True
    if scaled > MILLI_MAX:
        return MILLI_MAX, True
    return int(round(scaled)), False


def decision_code(decision: str) -> int:
    """"OK"/"REJECT"/"FAULT" -> 1/2/3; anything else -> FAULT (fail closed)."""
    return DECISION_CODES.get(decision, DECISION_CODES["FAULT"])


def reason_code(reason: str) -> tuple[int, bool]:
    """Reason string -> (code, unknown?); unknown strings -> (REASON_OTHER, True)."""
    code = REASON_CODES.get(reason)
    return (REASON_OTHER, True) if code is None else (code, False)


# ---- register blocks ---------------------------------------------------------------------------
def _words(values: list[tuple[int, int]]) -> list[int]:
    """[(value, width in registers 1|2)] -> registers, 32-bit values high word first."""
    registers: list[int] = []
    for value, width in values:
        registers.extend(u32_words(value) if width == 2 else [value & U16_MAX])
    return registers


def _unwords(registers: list[int], widths: list[int]) -> list[int]:
    values, position = [], 0
    for width in widths:
        if width == 2:
            values.append(words_u32(registers[position], registers[position + 1]))
        else:
            values.append(registers[position] & U16_MAX)
        position += width
    return values


class _Block:
    """Mixin: a frozen dataclass whose fields map, in order, onto registers of WIDTHS."""

    WIDTHS: tuple[int, ...] = ()
    SIZE = 0  # registers produced by to_registers (padding included)

    def to_registers(self) -> list[int]:
        values = [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]
        registers = _words(list(zip(values, self.WIDTHS)))
        return registers + [0] * (self.SIZE - len(registers))

    @classmethod
    def from_registers(cls, registers: list[int]):
        """Inverse of ``to_registers``; ValueError if fewer than SIZE registers are given."""
        if len(registers) < cls.SIZE:
            raise ValueError(f"{cls.__name__} needs {cls.SIZE} registers, got {len(registers)}")
        return cls(*_unwords(list(registers), list(cls.WIDTHS)))


@dataclass(frozen=True)
class RingEntry(_Block):
    """One verdict in a camera's ring (ENTRY_SIZE registers, offsets relative to the entry).

    +0..1 seq (low 32 bits of the camera frame sequence number), +2..3 part_code (see
    ``part_code``), +4 decision (0 none, 1 OK, 2 REJECT, 3 FAULT), +5 reason (REASON_CODES),
    +6 score_milli, +7 threshold_milli (value x 1000, saturated to 0..65534, 65535 = none),
    +8..9 capture_ms (low 32 bits of capture time in ms since the Unix epoch), +10 flags
    (FLAG_* bits), +11 tag (the camera write_count that commits this entry).
    """

    seq: int
    part_code: int
    decision: int
    reason: int
    score_milli: int
    threshold_milli: int
    capture_ms: int
    flags: int
    tag: int

    WIDTHS = (2, 2, 1, 1, 1, 1, 2, 1, 1)
    SIZE = ENTRY_SIZE


@dataclass(frozen=True)
class CameraHeader(_Block):
    """Head of a camera block (CAMERA_HEADER_SIZE registers at camera_base(i)).

    +0 write_count (verdicts written for this camera, mod 65536; the PLC keeps its own read
    index), +1 last_decision, +2..3 ok_count, +4..5 reject_count, +6..7 fault_count,
    +8..9 lost_count (sequence numbers of this camera whose verdict never reached the gateway: it
    wrote a ``sequence_gap`` FAULT for them), +10..11 last_seq, +12..13 last_session (low 32 bits
    of the grabber session of ``last_seq``; with it a restarted gateway tells a gap or a replay
    from a grabber restart).
    """

    write_count: int = 0
    last_decision: int = DECISION_NONE
    ok_count: int = 0
    reject_count: int = 0
    fault_count: int = 0
    lost_count: int = 0
    last_seq: int = 0
    last_session: int = 0

    WIDTHS = (1, 1, 2, 2, 2, 2, 2, 2)
    SIZE = CAMERA_HEADER_SIZE


@dataclass(frozen=True)
class GlobalBlock(_Block):
    """Global holding registers 0..GLOBAL_BLOCK_SIZE-1 (one request).

    +0 map_version, +1 camera_count, +2 ring_size, +3 entry_size, +4 camera_area_base,
    +5 camera_block_size (the six describe the layout, so a PLC can check it), +6 gateway
    heartbeat (+1 every 500 ms, wraps at 65536), +7 fault_causes (FAULT_* bits), +8..9 verdicts
    written, +10..11 lost verdicts (all cameras), +12..13 unknown-camera verdicts, +14..15
    backlog-dropped verdicts, +16..17 malformed messages, +18..19 PLC reconnects, +20..21 last
    daemon heartbeat counter.
    """

    map_version: int = MAP_VERSION
    camera_count: int = 0
    ring_size: int = RING_SIZE
    entry_size: int = ENTRY_SIZE
    camera_area_base: int = CAMERA_AREA_BASE
    camera_block_size: int = CAMERA_BLOCK_SIZE
    gateway_heartbeat: int = 0
    fault_causes: int = 0
    verdicts_written: int = 0
    lost_verdicts: int = 0
    unknown_camera_verdicts: int = 0
    backlog_dropped: int = 0
    malformed_messages: int = 0
    plc_reconnects: int = 0
    daemon_heartbeat_counter: int = 0

    WIDTHS = (1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2)
    SIZE = 22


GLOBAL_BLOCK_SIZE = GlobalBlock.SIZE
HR_GATEWAY_HEARTBEAT = 6
HR_FAULT_CAUSES = 7

assert GLOBAL_BLOCK_SIZE <= CAMERA_AREA_BASE
assert CAMERA_HEADER_SIZE <= RING_OFFSET
assert WRITE_COUNT_MODULUS % RING_SIZE == 0


# ---- decoding a write (used by the simulator's log and by tests) -------------------------------
def locate_registers(address: int, count: int) -> tuple[str, int, int] | None:
    """Classify a holding-register write the gateway makes.

    Returns ("global", -1, -1), ("header", camera, -1) or ("entry", camera, slot) when
    (address, count) is exactly one of those blocks, else None.
    """
    if address == 0 and count == GLOBAL_BLOCK_SIZE:
        return ("global", -1, -1)
    offset = address - CAMERA_AREA_BASE
    if offset < 0 or offset >= MAX_CAMERAS * CAMERA_BLOCK_SIZE:
        return None
    camera, within = divmod(offset, CAMERA_BLOCK_SIZE)
    if within == 0 and count == CAMERA_HEADER_SIZE:
        return ("header", camera, -1)
    ring_offset = within - RING_OFFSET
    if ring_offset >= 0 and ring_offset % ENTRY_SIZE == 0 and count == ENTRY_SIZE:
        return ("entry", camera, ring_offset // ENTRY_SIZE)
    return None


def describe_coil(address: int) -> str:
    """Name of a coil address, e.g. "line_stop" or "reject:2"; "coil:N" for unmapped ones."""
    names = {
        COIL_DAEMON_ALIVE: "daemon_alive",
        COIL_LINE_STOP: "line_stop",
        COIL_DAEMON_READY: "daemon_ready",
        COIL_FAULT_RESET: "fault_reset",
    }
    if address in names:
        return names[address]
    if REJECT_COIL_BASE <= address < COIL_COUNT:
        return f"reject:{address - REJECT_COIL_BASE}"
    return f"coil:{address}"
