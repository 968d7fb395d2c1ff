"""Judge: score + thresholds -> verdict, the step the daemon runs for every frame.

Decision rules (``verdict``: OK / REJECT / FAULT with a reason), the region rule's pixel count
(``regions``) and calibration profiles (``profile``: load, check against the running engine).

May import: numpy, OpenCV and ``inspector.core``. Never torch, torchvision, ``inspector.model`` or
``inspector.calibration`` (``tests/test_architecture.py``): the daemon imports this package.
"""
