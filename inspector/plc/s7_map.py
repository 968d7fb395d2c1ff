"""The S7 layout: the Modbus register map (:mod:`inspector.plc.modbus_map`) laid out in one data
block of a Siemens S7 PLC. The one place that defines it; ``docs/plc.md`` ("Siemens S7") is its
human-readable version.

The gateway's rules do not change with the protocol: the same registers and coils, the same ring
handshake (entry first, then the header whose write count commits it), the same counters, pulses
and line stop. Only the addressing does:

* **coil** ``c`` (0 .. 31) is the byte ``DBB c`` of the data block; its value is bit 0
  (``DBX c.0``), the other 7 bits are always 0. One byte per coil, so that the PLC writing
  ``fault_reset`` (coil 3) and the gateway writing the status coils never share a byte (no
  read-modify-write race);
* **holding register** ``N`` is the word ``DBW (32 + 2 N)``, big-endian (S7's own byte order), so a
  32-bit value (two registers, high word first) is a big-endian ``UDINT`` at ``DBD (32 + 2 N)``.

Data block size: ``db_size(cameras)`` bytes = 32 + 2 x (100 + 400 x cameras): 1032 bytes for one
camera, 13032 for the 16 of the full map. The DB must allow PUT/GET access and have non-optimised
("standard") block access, so that these offsets are the PLC's.
"""

from __future__ import annotations

import struct

from inspector.plc import modbus_map as mm

COIL_AREA_OFFSET = 0                       # coil c -> DBB c (bit 0)
REGISTER_AREA_OFFSET = mm.COIL_COUNT       # register N -> DBW (32 + 2 N)
DEFAULT_DB = 100
DEFAULT_PORT = 102                         # ISO-on-TCP
DB_SIZE = REGISTER_AREA_OFFSET + 2 * mm.HOLDING_REGISTER_COUNT   # every camera block: 13032 bytes


def db_size(camera_count: int) -> int:
    """Bytes of a data block holding the map for ``camera_count`` cameras (1 .. MAX_CAMERAS)."""
    if not 1 <= camera_count <= mm.MAX_CAMERAS:
        raise ValueError(f"camera_count must be 1..{mm.MAX_CAMERAS}, got {camera_count}")
    return REGISTER_AREA_OFFSET + 2 * (mm.CAMERA_AREA_BASE + camera_count * mm.CAMERA_BLOCK_SIZE)


def register_offset(address: int) -> int:
    """Byte offset in the DB of holding register ``address`` (0 .. HOLDING_REGISTER_COUNT - 1)."""
    if not 0 <= address < mm.HOLDING_REGISTER_COUNT:
        raise ValueError(f"register {address} outside 0..{mm.HOLDING_REGISTER_COUNT - 1}")
    return REGISTER_AREA_OFFSET + 2 * address


def coil_offset(coil: int) -> int:
    """Byte offset in the DB of coil ``coil`` (0 .. COIL_COUNT - 1)."""
    if not 0 <= coil < mm.COIL_COUNT:
        raise ValueError(f"coil {coil} outside 0..{mm.COIL_COUNT - 1}")
    return COIL_AREA_OFFSET + coil


def registers_to_bytes(values: list[int]) -> bytes:
    """Unsigned 16-bit registers -> big-endian words (2 bytes each)."""
    return struct.pack(f">{len(values)}H", *(v & mm.U16_MAX for v in values))


def bytes_to_registers(data: bytes | bytearray) -> list[int]:
    """Big-endian words -> registers; ValueError for an odd length."""
    if len(data) % 2:
        raise ValueError(f"{len(data)} bytes is not a whole number of 16-bit words")
    return list(struct.unpack(f">{len(data) // 2}H", bytes(data)))


def coils_to_bytes(values: list[bool]) -> bytes:
    """Coil values -> one byte each (1 / 0)."""
    return bytes(1 if value else 0 for value in values)


def bytes_to_coils(data: bytes | bytearray) -> list[bool]:
    """One byte per coil -> its bit 0."""
    return [bool(byte & 1) for byte in data]


def registers_in(db: bytes | bytearray, address: int, count: int) -> list[int]:
    """``count`` registers from ``address`` read out of a whole data block's bytes ``db``."""
    start = register_offset(address)
    if start + 2 * count > len(db):
        raise ValueError(f"registers {address}..{address + count - 1} lie beyond a {len(db)}-byte data block")
    return bytes_to_registers(db[start:start + 2 * count])
