"""Model: learning what good parts look like (the training side, with torch).

MVTec AD-layout data sets (``data``; the folders are found by ``inspector.core.dataset_layout``),
synthetic sample sets (``synthetic``, with ``synthetic_products`` and ``synthetic_defects``), the frozen ImageNet
teachers (``teachers``), the Reverse Distillation network (``network``: OCBE + student decoder +
cosine maps), training (``train``) and checkpoints that carry their config and identity
(``checkpoint``).

May import: torch, torchvision and ``inspector.core``. Nothing on the line (``inspector.line``,
``inspector.plc``, ``inspector.judge``) imports this package; the line reaches a trained model only
through an exported engine (``inspector.engine``).
"""
