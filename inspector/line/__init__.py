"""Line: frames in, verdicts out, in real time.

Camera sources and the grabber process (``sources``, ``grabber``), the ZeroMQ wire protocol
(``wire``, docs/protocol.md) and the daemon (``daemon``, with its configuration ``config``,
micro-batching ``batching`` and HTTP health endpoints ``health``).

May import: ``inspector.core``, ``inspector.judge`` and ``inspector.engine`` (whose torch backend
is imported only when a config asks for it). Never torch, torchvision, ``inspector.model`` or
``inspector.calibration`` (``tests/test_architecture.py``).
"""
