"""Calibration: thresholds from good parts, before a model goes on the line.

Statistics (``thresholds``: tail fits, cross-validated false-reject rate, separation, pixel
threshold and minimum defect area) and ``inspector calibrate`` (``calibrate``), which writes the
profile that ``inspector.judge.profile`` reads. Uses scipy and matplotlib.

May import: ``inspector.core``, ``inspector.model.data``, ``inspector.engine`` and
``inspector.judge``. Nothing on the line imports this package.
"""
