"""What a worker process is told: the broker, the database, the models and the task limits.

``radtriage`` builds these from its settings; nothing in ``worker`` reads settings itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scoring.backends import EmbedderConfig


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where Celery messages go.

    Parameters
    ----------
    url : str or None
        Redis URL; None: the embedded, server-less broker in ``folder``.
    folder : Path
        Folder of the embedded broker (absolute).
    key_prefix : str
        Prefix of every Redis key (several deployments on one Redis).
    """

    url: str | None
    folder: Path
    key_prefix: str

    @property
    def embedded(self) -> bool:
        return not self.url


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What the tasks and the backfill need, made once per process.

    Parameters
    ----------
    database_url : str
        SQLAlchemy URL of the worklist database.
    data_dir : Path
        Absolute folder of the stored instances (rows hold paths relative to it).
    broker : BrokerConfig
    embedder : scoring.backends.EmbedderConfig
        The image embedder and where its weights and trained heads are.
    policy_file : Path or None
        Urgency policy TOML; None: the policy shipped with radtriage.
    medgemma_model : str
        MedGemma folder or Hugging Face id.
    medgemma_max_new_tokens : int
    draft_batch : int
        Studies drafted in one generation, most urgent first.
    export_drafts : bool
        Whether each draft is queued for export to PACS as DICOM SR.
    task_max_retries : int
        Retries of a task failing transiently; a study is claimed at most this + 1 times.
    task_time_limit_seconds : float
    accepted_sop_classes : frozenset of str
        SOP classes the listener accepts; the backfill skips the others as it would.
    hide_non_chest : bool
        Keep studies that hold no chest radiograph off the worklist (they are listed, with
        the reason, otherwise).
    """

    database_url: str
    data_dir: Path
    broker: BrokerConfig
    embedder: EmbedderConfig
    policy_file: Path | None
    medgemma_model: str
    medgemma_max_new_tokens: int
    draft_batch: int
    export_drafts: bool
    task_max_retries: int
    task_time_limit_seconds: float
    accepted_sop_classes: frozenset[str]
    hide_non_chest: bool = False
