"""The reference checkpoints hdetr ships: small detectors trained on the synthetic benchmark.

``hdetr.load_reference(name)`` returns the model in eval mode (float32) with
``experiment_config`` (its ExperimentConfig), ``class_names`` (label -> name),
``reference_name`` and ``trained`` (steps, the training command, final metrics) attached;
``hdetr.list_references()`` lists the names. The files live in ``hdetr/references/files``
with ``manifest.json`` (sha256 of each file, the training commands); a file whose checksum
differs from the manifest's is refused. ``python -m hdetr.references.build RUNS_DIR`` makes
them from the runs of ``scripts/train_references.sh`` (see ``hdetr.references.build``).
"""
from hdetr.references.store import (FILES_DIR, MANIFEST, REBUILD_HINT, list_references, load_reference,
                                    read_manifest)

__all__ = ["FILES_DIR", "MANIFEST", "REBUILD_HINT", "list_references", "load_reference", "read_manifest"]
