"""The writer's seam to a PLC: a register device (holding registers + coils, as in the register
map of :mod:`inspector.plc.modbus_map`), whatever protocol carries them.

:class:`inspector.plc.writer.PlcWriter` keeps every rule of the gateway (ring handshake, counters,
reject pulses, line stop, reconnect with backoff, state rewrite, backlog) and does its I/O through
one :class:`RegisterDevice`:

* :class:`ModbusDevice` - Modbus TCP (pymodbus): registers and coils are the PLC's own;
* :class:`inspector.plc.s7_device.S7Device` - Siemens S7 (python-snap7): the same registers and
  coils laid out in one data block (:mod:`inspector.plc.s7_map`).

Failure behaviour (every device): a request the PLC refuses raises :class:`PlcWriteError`; a
broken connection raises ``OSError`` (or a subclass); ``connect`` returns False or raises. The
writer treats all of them alike: close, reconnect with backoff, rewrite the whole state.
"""

from __future__ import annotations

from typing import Protocol

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException


class PlcWriteError(Exception):
    """The PLC refused a request (a Modbus exception such as ILLEGAL_ADDRESS, an S7 error code)."""


class RegisterDevice(Protocol):
    """Holding registers (unsigned 16-bit) and coils of one PLC, addressed as in modbus_map."""

    timeout_s: float
    errors: tuple[type[BaseException], ...]   # what a failed request may raise (all mean: reconnect)

    def connect(self) -> bool: ...
    def close(self) -> None: ...
    def write_registers(self, address: int, values: list[int], what: str) -> None: ...
    def write_coils(self, address: int, values: list[bool], what: str) -> None: ...
    def read_registers(self, address: int, count: int, what: str) -> list[int]: ...
    def read_coils(self, address: int, count: int, what: str) -> list[bool]: ...


class ModbusDevice:
    """Modbus TCP (FC1/3/15/16) through pymodbus' synchronous client, ``device_id`` as unit id."""

    errors = (ModbusException, OSError, PlcWriteError)

    def __init__(self, host: str, port: int, *, device_id: int = 1, timeout_s: float = 1.0) -> None:
        self.device_id, self.timeout_s = device_id, timeout_s
        self.client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)

    def connect(self) -> bool:
        return bool(self.client.connect())

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def _check(response, what: str):
        if response is None or response.isError():
            raise PlcWriteError(f"PLC refused {what}: {response}")
        return response

    def write_registers(self, address: int, values: list[int], what: str) -> None:
        self._check(self.client.write_registers(address, values, device_id=self.device_id), what)

    def write_coils(self, address: int, values: list[bool], what: str) -> None:
        self._check(self.client.write_coils(address, values, device_id=self.device_id), what)

    def read_registers(self, address: int, count: int, what: str) -> list[int]:
        response = self.client.read_holding_registers(address, count=count, device_id=self.device_id)
        return list(self._check(response, what).registers)

    def read_coils(self, address: int, count: int, what: str) -> list[bool]:
        response = self.client.read_coils(address, count=count, device_id=self.device_id)
        return list(self._check(response, what).bits[:count])
