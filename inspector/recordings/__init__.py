"""Recordings: what the line saw, stored and played back.

The MCAP format (``recording``), ``inspector record`` (``record``), ``inspector replay``
(``replay``) and ``inspector validate`` (``validate``: a labelled recording through a real daemon
process, with an A/B comparison of two configurations; ``validation_setup``, ``validation_run``,
``validation_metrics``, ``validation_report``).

May import: ``inspector.line`` (wire, config), ``inspector.judge``, ``inspector.evaluation.metrics``,
``inspector.model.data`` and ``inspector.core``.
"""
