"""A simulated PLC: a pymodbus Modbus TCP server with the gateway's register map.

``inspector plc-sim --port P [--host 127.0.0.1] [--log FILE]`` runs it in the foreground until
SIGINT/SIGTERM. In-process users (the gateway's ``--plc sim``, tests) call
``start_sim_in_thread(host, port, log_path=None) -> SimHandle``.

PLC program: every 20 ms the simulator runs the reference PLC routine of docs/plc.md on its own
memory (:class:`inspector.plc.plc_program.PlcProgram`: gateway heartbeat watch, line stop, ring
reading, no verdict = reject) and logs what it decided.

Memory: ``modbus_map.HOLDING_REGISTER_COUNT`` holding registers and ``modbus_map.COIL_COUNT``
coils (coil addresses are bit addresses), all 0 at start, every one writable; one discrete input
and one input register exist only because pymodbus needs non-empty blocks. Any device id is
answered (pymodbus device id 0 = "all devices"). Addresses outside the map get the Modbus
exception ILLEGAL_ADDRESS.

Write log (``--log FILE`` / ``log_path``): one JSON object per line, appended and flushed per
write, for every write request the server accepts, decoded with ``modbus_map``:
``{"t_ns", "kind": "entry", "camera", "slot", <RingEntry fields>}``,
``{"t_ns", "kind": "header", "camera", <CameraHeader fields>}``,
``{"t_ns", "kind": "global", <GlobalBlock fields>}``,
``{"t_ns", "kind": "coil", "address", "name", "value"}`` (one line per coil written),
``{"t_ns", "kind": "registers", "address", "values"}`` (any other register write), and what
the PLC program decided (``kind`` ``plc`` and ``parts``, :mod:`inspector.plc.plc_program`).
Lines are logged when the request reaches the datastore, before the response is sent, so a
client that got its answer will find its write in the log. ``SimHandle.writes`` keeps the same
records in memory when ``keep_writes=True``.

Uses the pymodbus 3.x ``SimDevice``/``SimData`` datastore (the ``ModbusSequentialDataBlock`` /
``ModbusServerContext`` classes are deprecated and go away in pymodbus 4). Never imports torch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from inspector.plc import modbus_map as mm
from inspector.plc.plc_program import PlcProgram

log = logging.getLogger(__name__)

_READ_COILS, _READ_HOLDING = 1, 3
_WRITE_COIL, _WRITE_REGISTER, _WRITE_COILS, _WRITE_REGISTERS = 5, 6, 15, 16
_REGISTER_WRITES = (_WRITE_REGISTER, _WRITE_REGISTERS, 23)
_COIL_WRITES = (_WRITE_COIL, _WRITE_COILS)
SCAN_S = 0.02  # the PLC program's scan period


def build_device(action=None) -> SimDevice:
    """A SimDevice (id 0: answers every device id) with separate coil/register blocks."""
    coils = [SimData(0, count=mm.COIL_COUNT, values=False, datatype=DataType.BITS)]
    discrete = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
    holding = [SimData(0, count=mm.HOLDING_REGISTER_COUNT, values=0, datatype=DataType.REGISTERS)]
    inputs = [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
    return SimDevice(id=0, simdata=(coils, discrete, holding, inputs), action=action)


def describe_write(function_code: int, address: int, values: list) -> list[dict[str, Any]]:
    """Decode one write request into log records (see the module docstring); [] for reads."""
    now = time.time_ns()
    if function_code in _COIL_WRITES:
        return [
            {"t_ns": now, "kind": "coil", "address": address + i, "name": mm.describe_coil(address + i), "value": bool(v)}
            for i, v in enumerate(values)
        ]
    if function_code not in _REGISTER_WRITES:
        return []
    registers = [int(v) for v in values]
    where = mm.locate_registers(address, len(registers))
    if where is None:
        return [{"t_ns": now, "kind": "registers", "address": address, "values": registers}]
    kind, camera, slot = where
    if kind == "entry":
        return [{"t_ns": now, "kind": "entry", "camera": camera, "slot": slot, **asdict(mm.RingEntry.from_registers(registers))}]
    if kind == "header":
        return [{"t_ns": now, "kind": "header", "camera": camera, **asdict(mm.CameraHeader.from_registers(registers))}]
    return [{"t_ns": now, "kind": "global", **asdict(mm.GlobalBlock.from_registers(registers))}]


class _WriteRecorder:
    """pymodbus SimDevice action: logs accepted writes; never changes or refuses them."""

    def __init__(self, log_file: IO[str] | None, keep: bool) -> None:
        self.log_file = log_file
        self.keep = keep
        self.writes: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    async def record(self, function_code, _start, address, _count, _registers, values):
        if not values:
            return None
        try:
            records = describe_write(function_code, address, list(values))
        except Exception:  # a write the map cannot decode is still accepted and logged raw
            log.exception("cannot decode write fc=%s address=%s", function_code, address)
            records = [{"t_ns": time.time_ns(), "kind": "registers", "address": address, "values": [int(v) for v in values]}]
        self.add(records)
        return None

    def add(self, records: list[dict[str, Any]]) -> None:
        """Append records to the log (and the in-memory list)."""
        if not records:
            return
        with self.lock:
            if self.keep:
                self.writes.extend(records)
            if self.log_file is not None:
                for record in records:
                    self.log_file.write(json.dumps(record) + "\n")
                self.log_file.flush()


async def run_program(server: ModbusTcpServer, recorder: _WriteRecorder, program: PlcProgram,
                      scan_s: float = SCAN_S) -> None:
    """The PLC program (:mod:`inspector.plc.plc_program`) every ``scan_s``, on the datastore; its
    decisions go to the log with ``t_ns``. Runs until cancelled."""
    context = server.context

    async def holding(address: int, count: int) -> list[int]:
        return [int(v) for v in await context.async_getValues(0, _READ_HOLDING, address, count)]

    while True:
        await asyncio.sleep(scan_s)
        try:
            block = mm.GlobalBlock.from_registers(await holding(0, mm.GLOBAL_BLOCK_SIZE))
            line_stop = bool((await context.async_getValues(0, _READ_COILS, mm.COIL_LINE_STOP, 1))[0])
            count = min(block.camera_count, mm.MAX_CAMERAS)
            headers = [mm.CameraHeader.from_registers(await holding(mm.camera_base(i), mm.CAMERA_HEADER_SIZE))
                       for i in range(count)]
            rings = [await holding(mm.entry_address(i, 0), mm.RING_SIZE * mm.ENTRY_SIZE) for i in range(count)]
        except Exception:  # never let the scan loop die; a real PLC keeps scanning too
            log.exception("PLC program could not read its memory")
            continue

        def entry(camera: int, slot: int) -> mm.RingEntry:
            return mm.RingEntry.from_registers(rings[camera][slot * mm.ENTRY_SIZE:(slot + 1) * mm.ENTRY_SIZE])

        now_ns = time.time_ns()
        records = program.scan(time.monotonic(), block, line_stop, headers.__getitem__, entry)
        recorder.add([{"t_ns": now_ns, **record} for record in records])


class SimHandle:
    """A running simulated PLC in a background thread (own asyncio loop).

    ``host``/``port``: where it listens (the real port when 0 was asked for). ``read_holding``,
    ``read_coils``, ``write_coils`` and ``write_registers`` go straight to the datastore (no
    Modbus round trip, and not logged); they raise TimeoutError if the loop does not answer in
    ``timeout`` s and ValueError for addresses outside the map. ``stop()`` closes the listener
    and every connection; it is idempotent.
    """

    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop, server: ModbusTcpServer,
                 thread: threading.Thread, recorder: _WriteRecorder, log_file: IO[str] | None) -> None:
        self.host, self.port = host, port
        self._loop, self._server, self._thread = loop, server, thread
        self._recorder, self._log_file = recorder, log_file
        self._stopped = False
        self.program: PlcProgram | None = None     # the PLC routine it runs (docs/plc.md)
        self._program_task: asyncio.Future | None = None

    @property
    def writes(self) -> list[dict[str, Any]]:
        """Copy of the write records so far (empty unless keep_writes=True)."""
        with self._recorder.lock:
            return list(self._recorder.writes)

    def _call(self, coroutine, timeout: float):
        if self._stopped:
            coroutine.close()
            raise RuntimeError("simulated PLC is stopped")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        result = future.result(timeout)
        if not isinstance(result, list):
            raise ValueError(f"simulated PLC refused the access: {result!r}")
        return result

    def read_holding(self, address: int, count: int, timeout: float = 2.0) -> list[int]:
        return [int(v) for v in self._call(self._server.context.async_getValues(0, _READ_HOLDING, address, count), timeout)]

    def read_coils(self, address: int, count: int, timeout: float = 2.0) -> list[bool]:
        return [bool(v) for v in self._call(self._server.context.async_getValues(0, _READ_COILS, address, count), timeout)]

    def write_coils(self, address: int, values: list[bool], timeout: float = 2.0) -> None:
        result = asyncio.run_coroutine_threadsafe(
            self._server.context.async_setValues(0, _WRITE_COILS, address, list(values)), self._loop).result(timeout)
        if result:
            raise ValueError(f"simulated PLC refused the write: {result!r}")

    def write_registers(self, address: int, values: list[int], timeout: float = 2.0) -> None:
        result = asyncio.run_coroutine_threadsafe(
            self._server.context.async_setValues(0, _WRITE_REGISTERS, address, list(values)), self._loop).result(timeout)
        if result:
            raise ValueError(f"simulated PLC refused the write: {result!r}")

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._program_task is not None:
            self._loop.call_soon_threadsafe(self._program_task.cancel)
        try:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(timeout)
        except Exception:  # the loop may already be gone; the thread join below still bounds us
            log.debug("simulated PLC shutdown", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if self._log_file is not None:
            with self._recorder.lock:
                self._log_file.close()

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def start_sim_in_thread(host: str = "127.0.0.1", port: int = 0, log_path: str | Path | None = None,
                        keep_writes: bool = False, timeout: float = 5.0) -> SimHandle:
    """Start a simulated PLC listening on host:port (0 = a free port) in a daemon thread.

    Raises OSError if it cannot listen (e.g. port in use), TimeoutError if it does not come up
    within ``timeout`` s. The log file, if any, is opened in append mode.
    """
    log_file = open(log_path, "a", encoding="utf-8") if log_path is not None else None
    recorder = _WriteRecorder(log_file, keep_writes)
    program = PlcProgram()
    ready: dict[str, Any] = {}
    started = threading.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        server = ModbusTcpServer(build_device(recorder.record), address=(host, port))
        if not await server.listen():
            raise OSError(f"simulated PLC cannot listen on {host}:{port}")
        ready["server"] = server
        ready["port"] = server.transport.sockets[0].getsockname()[1]
        ready["task"] = asyncio.ensure_future(run_program(server, recorder, program))

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the caller below
            ready["error"] = exc
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name=f"plc-sim:{port}", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise TimeoutError(f"simulated PLC did not start within {timeout} s")
    if "error" in ready:
        if log_file is not None:
            log_file.close()
        error = ready["error"]
        raise error if isinstance(error, OSError) else OSError(f"simulated PLC failed to start: {error}")
    handle = SimHandle(host, ready["port"], loop, ready["server"], thread, recorder, log_file)
    handle.program, handle._program_task = program, ready["task"]
    return handle


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--log", type=Path, default=None, help="append every write as a JSON line to FILE")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; prints 'listening on HOST:PORT' once up."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    handle = start_sim_in_thread(args.host, args.port, args.log)
    print(f"plc-sim listening on {handle.host}:{handle.port}", flush=True)
    log.info("simulated PLC listening on %s:%d (log: %s)", handle.host, handle.port, args.log)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        handle.stop()
    return 0
