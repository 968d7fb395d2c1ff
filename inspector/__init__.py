"""inspector: factory-line visual inspection with Reverse Distillation.

Data flows frame -> grabber -> wire -> daemon -> engine -> anomaly map -> score -> threshold
-> verdict -> gateway -> PLC; one module per step.
"""

__version__ = "0.1.0"
