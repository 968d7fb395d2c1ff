"""Evaluation: how good and how fast a model is, off the line.

Metrics (``metrics``: image/pixel AUROC, AU-PRO, numpy), ``inspector eval`` (``evaluate``),
``inspector score`` (``score``) and ``inspector bench`` (``bench``).

May import: ``inspector.core``, ``inspector.model`` and ``inspector.engine``.
"""
