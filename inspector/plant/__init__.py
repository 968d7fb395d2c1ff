"""Plant: a box's results for the rest of the factory, and lines larger than one box.

``mqtt_gateway`` (``inspector mqtt``: verdicts, per-camera counts and health to an MQTT broker,
through ``feed`` -> ``line_state`` -> ``offline_buffer`` -> ``mqtt_publisher``; ``broker``: URLs,
TLS, logins; ``messages``: topics and JSON payloads), ``opcua_server`` (``inspector opcua``: the same
state as OPC UA nodes) and ``fleet`` (``inspector fleet``: every box and camera of a line, read from
the broker). docs/plant.md.

May import: paho-mqtt, asyncua, ``inspector.core``, ``inspector.judge`` (reasons, profile) and
``inspector.line`` (wire, transport, sequence, config, readiness). Never torch, torchvision,
``inspector.model`` or ``inspector.calibration`` (``tests/test_architecture.py``).
"""
