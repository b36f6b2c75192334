"""Each package's public names are pinned: a name added to or dropped from an ``__all__`` is a
decision for the whole project (other layers, benchmarks and users import them), so it shows here."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "common": [
        "ACCEPTED_SOP_CLASSES", "Backoff", "CompletedBy", "CompletionRule", "Cutoffs", "DISCLAIMER", "DraftStatus",
        "Effective", "EventStage", "ExportStatus", "Priority", "Queue", "RADIOGRAPH_SOP_CLASSES", "SECONDARY_CAPTURE",
        "StudyStatus", "StudyViews", "TASK_BACKOFF", "View", "Waits", "effective_priority", "reading_key",
        "views_complete",
    ],
    "db": ["make_engine", "make_session_factory", "migrate", "ping"],
    "dicom": [
        "acceptance", "access", "errors", "identity", "intake", "listener", "netseam", "order", "pixels", "render", "scu",
        "selection", "sr", "status", "storage", "views",
    ],
    "dicom.netseam": [
        "BulkReadServer", "HandedOverServer", "KNOWN_GOOD_PYNETDICOM", "ListenerPool", "serve_handed_over",
        "serve_in_background", "serve_member",
    ],
    "worker": ["backfill", "deliveries", "heartbeat", "loops", "tasks"],
    "worker.deliveries": ["Notice", "Outcome", "Sender"],
    "worker.tasks": [
        "BrokerConfig", "WEIGHTS_HINT", "WorkerConfig", "WorkerContext", "create_app", "medgemma_missing", "register",
        "where",
    ],
    "worker.loops": ["Assembler", "BrokerWatch", "EscalationLoop", "EscalationRound", "OutboxRelay", "Sweep", "SweepConfig"],
    "worker.backfill": ["Summary", "embed_files", "run"],
    "scoring": [
        "Assessment", "CxrFoundation", "FindingScores", "HeadSet", "ImageEmbedding", "ModelUnavailable", "Policy",
        "PolicyError", "ScoringError", "TrainedHead", "Triager", "assess", "load_heads", "load_policy",
        "missing_parts",
    ],
    "radtriage": ["__version__"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names_are_pinned_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        # A submodule listed by name is importable as such; anything else is an attribute.
        assert hasattr(module, name) or importlib.import_module(f"{package}.{name}")


def test_every_package_declares_its_public_names() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    packages = {
        ".".join(init.parent.relative_to(root).parts)
        for top in ("common", "db", "dicom", "worker", "scoring", "radtriage")
        for init in (root / top).rglob("__init__.py")
        if "migrations" not in init.parts
    }
    assert packages == set(PUBLIC), "a new package needs its __all__ pinned here"
