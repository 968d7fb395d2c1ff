"""Siemens S7 for the gateway: the register device of :mod:`inspector.plc.device` over S7
communication (python-snap7 3.x, pure Python), writing the register map into one data block laid
out by :mod:`inspector.plc.s7_map`; and a simulated S7 PLC (snap7's own server) for tests, the
demo and benchmarks.

``--plc s7://HOST[:PORT][?db=N&rack=R&slot=S]`` (port 102, DB 100, rack 0, slot 1 by default: an
S7-1200/1500; an S7-300 is rack 0 slot 2), ``s7sim`` (a simulated PLC on a free port of 127.0.0.1)
or ``s7sim://HOST:PORT[?db=N]``. Every rule of the gateway (ring handshake, pulses, line stop,
reconnect, state rewrite, backlog) is the Modbus gateway's: :class:`inspector.plc.writer.PlcWriter`
runs unchanged on an :class:`S7Device`.

Failure behaviour: a refused request (DB missing or too small, access denied) raises
:class:`inspector.plc.device.PlcWriteError`; a broken connection raises ``S7Error`` / ``OSError``;
the writer reconnects with backoff either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from snap7.client import Client
from snap7.error import S7Error

from inspector.core.ports import free_port
from inspector.plc import s7_map
from inspector.plc.device import PlcWriteError

log = logging.getLogger(__name__)

S7_KINDS = ("s7", "s7sim")


@dataclass(frozen=True)
class S7Target:
    """Where the S7 PLC is: kind "s7" (a real one) or "s7sim" (start a simulated one here; port 0
    = any free port), its data block, rack and slot."""

    kind: str
    host: str
    port: int
    db: int = s7_map.DEFAULT_DB
    rack: int = 0
    slot: int = 1


def parse_s7_target(text: str) -> S7Target:
    """``s7://HOST[:PORT][?db=N&rack=R&slot=S]``, ``s7sim`` or ``s7sim://HOST:PORT[?db=N]``.
    Raises ValueError naming the accepted forms."""
    if text == "s7sim":
        return S7Target("s7sim", "127.0.0.1", 0)
    parts = urlsplit(text)
    forms = "expected s7://HOST[:PORT][?db=N&rack=R&slot=S], s7sim or s7sim://HOST:PORT[?db=N]"
    if parts.scheme not in S7_KINDS or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"--plc {text!r}: {forms}")
    try:
        port = parts.port
        query = {key: values[-1] for key, values in parse_qs(parts.query, strict_parsing=bool(parts.query)).items()}
        options = {key: int(query.pop(key, default)) for key, default in
                   (("db", s7_map.DEFAULT_DB), ("rack", 0), ("slot", 1))}
    except ValueError as exc:
        raise ValueError(f"--plc {text!r}: {exc}; {forms}") from None
    if query:
        raise ValueError(f"--plc {text!r}: unknown option(s) {sorted(query)}; {forms}")
    if not 1 <= options["db"] <= 65535 or not 0 <= options["rack"] <= 7 or not 0 <= options["slot"] <= 31:
        raise ValueError(f"--plc {text!r}: db 1..65535, rack 0..7, slot 0..31")
    default_port = s7_map.DEFAULT_PORT if parts.scheme == "s7" else 0
    return S7Target(parts.scheme, parts.hostname, default_port if port is None else port, **options)


class S7Device:
    """The register map in data block ``db`` of the S7 PLC at ``host:port`` (rack, slot)."""

    errors = (S7Error, OSError, PlcWriteError)

    def __init__(self, host: str, port: int, *, db: int = s7_map.DEFAULT_DB, rack: int = 0, slot: int = 1,
                 timeout_s: float = 1.0) -> None:
        self.host, self.port, self.db, self.rack, self.slot = host, port, db, rack, slot
        self.timeout_s = timeout_s
        self.client = Client()

    def connect(self) -> bool:
        self.client.connect(self.host, self.rack, self.slot, self.port)
        if self.client.connection is not None:   # request timeout (the connect itself has snap7's 5 s)
            self.client.connection.timeout = self.timeout_s
            if self.client.connection.socket is not None:
                self.client.connection.socket.settimeout(self.timeout_s)
        return bool(self.client.get_connected())

    def close(self) -> None:
        try:
            self.client.disconnect()
        except (S7Error, OSError):
            pass

    def _write(self, offset: int, data: bytes, what: str) -> None:
        try:
            self.client.db_write(self.db, offset, bytearray(data))
        except S7Error as exc:
            if not self.client.get_connected():
                raise
            raise PlcWriteError(f"PLC refused {what} (DB{self.db} at byte {offset}, {len(data)} bytes): {exc}") from None

    def _read(self, offset: int, size: int, what: str) -> bytearray:
        try:
            data = self.client.db_read(self.db, offset, size)
        except S7Error as exc:
            if not self.client.get_connected():
                raise
            raise PlcWriteError(f"PLC refused {what} (DB{self.db} at byte {offset}, {size} bytes): {exc}") from None
        if len(data) != size:
            raise PlcWriteError(f"PLC answered {what} with {len(data)} of {size} bytes")
        return data

    def write_registers(self, address: int, values: list[int], what: str) -> None:
        self._write(s7_map.register_offset(address), s7_map.registers_to_bytes(values), what)

    def write_coils(self, address: int, values: list[bool], what: str) -> None:
        self._write(s7_map.coil_offset(address), s7_map.coils_to_bytes(values), what)

    def read_registers(self, address: int, count: int, what: str) -> list[int]:
        return s7_map.bytes_to_registers(self._read(s7_map.register_offset(address), 2 * count, what))

    def read_coils(self, address: int, count: int, what: str) -> list[bool]:
        return s7_map.bytes_to_coils(self._read(s7_map.coil_offset(address), count, what))


# ------------------------------------------------------------------------------------------------
# A simulated S7 PLC: snap7's own server with one data block
# ------------------------------------------------------------------------------------------------


class S7Sim:
    """snap7's server on ``host:port`` (0 = a free port) with data block ``db`` of ``size`` bytes
    (the whole map by default), all zero. ``.data`` is the data block itself (a bytearray the
    server reads and writes); ``.port`` the port it listens on."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, db: int = s7_map.DEFAULT_DB,
                 size: int = s7_map.DB_SIZE) -> None:
        from snap7.server import Server
        from snap7.type import SrvArea

        self.host, self.db = host, db
        self.port = port or free_port(host)
        self.data = bytearray(size)
        self.server = Server(log=False)
        self.server.register_area(SrvArea.DB, db, self.data)
        self.server.start_to(host, self.port)

    def read(self, offset: int, size: int) -> bytes:
        """A copy of ``size`` bytes of the data block from ``offset``."""
        return bytes(self.data[offset:offset + size])

    def stop(self) -> None:
        self.server.stop()


def open_s7(target: S7Target, *, timeout_s: float) -> tuple[S7Device, S7Sim | None]:
    """The device for ``target`` and, for ``s7sim``, the simulated PLC started for it (stop it
    when done). Raises ValueError when the simulated PLC cannot listen."""
    logging.getLogger("snap7").setLevel(logging.WARNING)   # its INFO lines are per (re)connect; we log trouble ourselves
    sim = None
    host, port = target.host, target.port
    if target.kind == "s7sim":
        try:
            sim = S7Sim(target.host, target.port, db=target.db)
        except (S7Error, OSError) as exc:
            raise ValueError(f"simulated S7 PLC on {target.host}:{target.port}: {exc}") from None
        port = sim.port
        log.info("simulated S7 PLC on %s:%d (DB%d, %d bytes)", host, port, target.db, len(sim.data))
    return S7Device(host, port, db=target.db, rack=target.rack, slot=target.slot, timeout_s=timeout_s), sim
