"""What a worker process reports about itself beyond its tasks: which models it has loaded."""

from __future__ import annotations

from collections.abc import Callable

from radtriage import metrics
from worker.tasks import WorkerContext

# The model label of each embedder setting, and of the draft model.
EMBEDDER_MODELS = {"cxr_foundation": "cxr-foundation", "medsiglip": "medsiglip"}
DRAFT_MODEL = "medgemma"
# Outcomes after which the task has asked for its model (loaded once per process), so
# reading it again costs nothing.
_TRIAGE_LOADED = ("triaged", "failed")
_DRAFT_LOADED = ("drafted", "failed")
Record = Callable[[str, float], None]


class ModelGauges:
    """``radtriage_model_loaded{model}`` for the models this worker's queues use: 0 until a
    task has loaded one, then 1 while it is usable (0 when its weights are missing or broken)."""

    def __init__(self, context: WorkerContext, *, queues: list[str], embedder: str) -> None:
        self._context = context
        self._embedder = EMBEDDER_MODELS.get(embedder, embedder) if "triage" in queues else None
        self._draft = DRAFT_MODEL if "draft" in queues else None
        for model in filter(None, (self._embedder, self._draft)):
            metrics.MODEL_LOADED.labels(model=model).set(0)

    def after_triage(self, record: Record) -> Record:
        """``record`` (a triage task's outcome and seconds), then the embedder's gauge."""
        return self._after(record, self._embedder, _TRIAGE_LOADED, self._context.triager)

    def after_draft(self, record: Record) -> Record:
        """``record`` (a draft batch's outcome and seconds), then the draft model's gauge."""
        return self._after(record, self._draft, _DRAFT_LOADED, self._context.drafter)

    def _after(self, record: Record, model: str | None, loaded_after: tuple[str, ...],
               loaded: Callable[[], tuple]) -> Record:
        def observe(outcome: str, seconds: float) -> None:
            record(outcome, seconds)
            if model and outcome in loaded_after:
                self._set(model, loaded())

        return observe

    @staticmethod
    def _set(model: str, loaded: tuple) -> None:
        usable, _reason = loaded
        metrics.MODEL_LOADED.labels(model=model).set(1 if usable is not None else 0)
