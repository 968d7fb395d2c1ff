"""Core: the building blocks every part of the line shares, with no knowledge of the line or of training.

Pre-processing (``preprocess``: any uint8 image -> model input), the anomaly-map head (``map_head``:
per-scale cosine maps -> full map and image score, numpy), image file reading (``images``), file
hashes (``hashing``) and loopback ports (``ports``).

May import: numpy, OpenCV and the standard library; nothing else of ``inspector``. Never torch,
torchvision, ``inspector.model`` or ``inspector.calibration`` (``tests/test_architecture.py``).
"""
