"""MedGemma 1.5's thinking trace (``<unused94>`` … ``<unused95>``) never becomes findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoring.medgemma import MedGemmaDrafter
from tests.fixtures_models import medgemma_thinking_dir  # noqa: F401  (fixture)
from tests.standins_medgemma import THINKING_ANSWER


def pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (200, 160 + 20 * i), dtype=np.uint8)) for i in range(n)]


def test_the_trace_is_dropped_and_the_answer_kept(medgemma_thinking_dir: Path) -> None:
    drafter = MedGemmaDrafter.load(medgemma_thinking_dir, device="cpu", max_new_tokens=24)

    drafts = drafter.draft_batch(pictures(2), views=["PA", None])

    for draft in drafts:
        assert draft.failure is None
        assert draft.findings == "Lungs are clear."
        assert draft.raw_text == "FINDINGS: Lungs are clear."
        assert "thinking" not in draft.raw_text and "unused" not in draft.raw_text
        assert draft.new_tokens == len(THINKING_ANSWER)  # the trace cost tokens all the same


def test_a_trace_that_never_closes_fails_the_draft(medgemma_thinking_dir: Path) -> None:
    drafter = MedGemmaDrafter.load(medgemma_thinking_dir, device="cpu", max_new_tokens=4)

    (draft,) = drafter.draft_batch(pictures(1))

    assert draft.failure == "thinking trace did not close within 4 new tokens"
    assert (draft.findings, draft.impression, draft.raw_text) == ("", "", "")


def test_the_worker_records_an_unclosed_trace_as_a_failed_draft(
    medgemma_thinking_dir: Path, sqlite_sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from common import DraftStatus, EventStage
    from db.models import Event, Study
    from radtriage.settings import Settings
    from radtriage.wiring import worker_config
    from tests.integration.test_claims_and_drafts import queued_study, triage_with_draft
    from worker.tasks import WorkerContext, drafting

    study_id = queued_study(sqlite_sessions)
    triage_with_draft(sqlite_sessions, study_id, 1)
    drafter = MedGemmaDrafter.load(medgemma_thinking_dir, device="cpu", max_new_tokens=4)
    ctx = WorkerContext(worker_config(Settings(data_dir=tmp_path,
                                              database_url=f"sqlite:///{tmp_path / 'radtriage.sqlite3'}")))
    monkeypatch.setattr(ctx, "drafter", lambda: (drafter, None))
    monkeypatch.setattr(drafting, "_frontal_image", lambda _ctx, job: (pictures(1)[0], "PA"))

    drafting.run_draft_batch(ctx)

    with sqlite_sessions() as session:
        study = session.get(Study, study_id)
        assert study.draft_status == DraftStatus.FAILED
        details = [e.detail for e in session.query(Event).filter_by(study_id=study_id, stage=EventStage.DRAFT_FAILED)]
    assert details == ["thinking trace did not close within 4 new tokens"]
