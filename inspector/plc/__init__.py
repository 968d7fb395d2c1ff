"""PLC: verdicts to the machine that ejects parts.

The Modbus register map (``modbus_map``, docs/plc.md), the gateway from the daemon's verdicts to a
PLC over Modbus TCP (``gateway``) and a simulated PLC (``plc_sim``).

May import: pymodbus, ``inspector.core`` and ``inspector.line.wire`` (the verdict messages). Never
torch, torchvision, ``inspector.model`` or ``inspector.calibration``
(``tests/test_architecture.py``).
"""
