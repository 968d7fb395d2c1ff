"""The PLC as its programmer reads it: a Modbus TCP client on the register map
(:mod:`inspector.plc.modbus_map`). For the line harness and the benchmarks (the gateway writes with
its own :class:`inspector.plc.writer.PlcWriter`)."""

from __future__ import annotations

from pymodbus.client import ModbusTcpClient

from inspector.plc import modbus_map as mm


class PlcClientError(RuntimeError):
    """A read or write the PLC refused."""


class PlcClient:
    """Coils and camera headers of the PLC at ``host:port`` (device id 1)."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, device_id: int = 1) -> None:
        self.client = ModbusTcpClient(host, port=port, timeout=2, retries=1)
        self.device_id = device_id

    def coil(self, address: int) -> bool:
        response = self.client.read_coils(address, count=1, device_id=self.device_id)
        if response.isError():
            raise PlcClientError(f"PLC coil read failed: {response}")
        return bool(response.bits[0])

    def write_coil(self, address: int, value: bool) -> None:
        if self.client.write_coil(address, value, device_id=self.device_id).isError():
            raise PlcClientError("PLC coil write failed")

    def header(self, camera: int) -> mm.CameraHeader:
        response = self.client.read_holding_registers(mm.camera_base(camera), count=mm.CAMERA_HEADER_SIZE,
                                                      device_id=self.device_id)
        if response.isError():
            raise PlcClientError(f"PLC register read failed: {response}")
        return mm.CameraHeader.from_registers(list(response.registers))

    def global_block(self) -> mm.GlobalBlock:
        response = self.client.read_holding_registers(0, count=mm.GLOBAL_BLOCK_SIZE, device_id=self.device_id)
        if response.isError():
            raise PlcClientError(f"PLC register read failed: {response}")
        return mm.GlobalBlock.from_registers(list(response.registers))

    def coils(self, address: int, count: int) -> list[bool]:
        response = self.client.read_coils(address, count=count, device_id=self.device_id)
        if response.isError():
            raise PlcClientError(f"PLC coil read failed: {response}")
        return [bool(b) for b in response.bits[:count]]

    def verdict_total(self, cameras: int) -> int:
        """OK + REJECT + FAULT counters summed over camera blocks 0..cameras-1."""
        headers = [self.header(i) for i in range(cameras)]
        return sum(h.ok_count + h.reject_count + h.fault_count for h in headers)

    def close(self) -> None:
        self.client.close()
