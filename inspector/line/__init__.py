"""Line: frames in, verdicts out, in real time.

Camera sources and the grabber process (``sources``, ``grabber``), the ZeroMQ wire protocol
(``wire`` + ``wire_fields``, docs/protocol.md) and the one socket policy (``transport``), sequence
tracking (``sequence``), the box config (``config``), the daemon (``serve`` the command, ``daemon``
the serving loop, with ``batching``, ``jobs``, ``profiles``, ``publisher``, ``counts``, ``metrics``,
``logs``, ``watchdog`` and ``health``), and the processes of a line (``processes``, ``supervisor``
for ``inspector line``, ``systemd`` for its units, ``harness`` for everything that starts a line).

May import: ``inspector.core``, ``inspector.judge`` and ``inspector.engine`` (whose torch backend
is imported only when a config asks for it). Never torch, torchvision, ``inspector.model`` or
``inspector.calibration`` (``tests/test_architecture.py``).
"""
