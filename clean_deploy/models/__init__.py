"""Detectors assembled from registered parts (see models/registry.py and models/heads).

Importing any module of this package registers the dense heads' config classes, so a stored
``DetectorConfig`` whose ``dense_head.type`` names any of them parses wherever it is read."""
from clean_deploy.models import heads as _heads  # noqa: F401  (registers the head configs)
