"""Tasks: the phases a user runs, built from data and model.

Training (``train``), validation during training and threshold choice (``validation``), test and
score (``evaluate``, ``metrics``, ``viz``), prediction on videos, folders, cameras and streams
(``predict``), the classical baselines (``baselines``), serving export (``export``) and the
embedded demo (``demo``). The top of the import graph: nothing in ``data`` or ``model`` imports it.
"""
