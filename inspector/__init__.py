"""inspector: factory-line visual inspection with Reverse Distillation.

Data flows frame -> grabber -> wire -> daemon -> engine -> anomaly map -> score -> threshold
-> verdict -> gateway -> PLC. Subpackages: core, line, judge and plc (the line side, without
torch), engine (a model as an engine), and model, calibration, evaluation and recordings (the
work before and around the line); docs/architecture.md says where each step lives and what each
subpackage may import.
"""

__version__ = "0.1.0"
