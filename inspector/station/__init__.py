"""The operator's station: what people beside the line use.

archive (the reject archive on disk: entry folders + SQLite index, crash-safe, quota and retention),
entry (verdict + frame + map -> the entry's files), joiner (pairing verdicts with tap frames and
maps; which OK frames are sampled), archiver (``inspector archive``: the archive's process),
feedback (false rejects marked by operators, as good parts for calibrate and train).

Runs on the line box: never imports torch, ``inspector.model`` or ``inspector.calibration``.
"""
