"""PLC: verdicts to the machine that ejects parts.

The Modbus register map (``modbus_map``, docs/plc.md), the gateway from the daemon's verdicts to a
PLC over Modbus TCP (``gateway``: the receive loop; ``writer``: all Modbus I/O; ``metrics``), a
reader of a PLC's registers (``client``) and a simulated PLC (``plc_sim``).

May import: pymodbus, ``inspector.core``, ``inspector.judge.reasons`` and ``inspector.line`` (wire,
transport, sequence, config). Never
torch, torchvision, ``inspector.model`` or ``inspector.calibration``
(``tests/test_architecture.py``).
"""
