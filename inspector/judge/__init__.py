"""Judge: score + thresholds -> verdict, the step the daemon runs for every frame.

The one table of decisions and reason codes (``reasons``), decision rules (``verdict``: OK /
REJECT / FAULT with a reason), the region rule's pixel count (``regions``) and calibration
profiles (``profile``: made by ``new_profile``, written by ``save_profile``, loaded and checked
against the running engine and the camera's ROI).

May import: numpy, OpenCV and ``inspector.core``. Never torch, torchvision, ``inspector.model`` or
``inspector.calibration`` (``tests/test_architecture.py``): the daemon imports this package.
"""
