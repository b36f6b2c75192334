"""Recording received instances: the row that lets the listener answer Success."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common import DraftStatus, EventStage, Priority, StudyStatus, StudyViews, View, views_complete
from db.models import Event, Instance, Study, utcnow
from db.non_chest import show_again


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InstanceHeader:
    """What an instance's header says that the database records; checked before it is stored."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    ordered_priority: Priority
    accession_number: str | None = None
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    view: View | None = None  # the projection class the header names (a "frontal"/"lateral" string is coerced)
    expected_instances: int | None = None  # (0020,1208) Number of Study Related Instances

    def __post_init__(self) -> None:
        # Coerced once here, so a bad value fails where the instance is described, not at commit.
        object.__setattr__(self, "view", View(self.view) if self.view else None)

    def stored_as(self, *, path: str, content_hash: str, size_bytes: int, dataset_hash: str | None = None,
                  image_hash: str | None = None) -> NewInstance:
        """This instance once its bytes are stored: what ``record_instance`` commits."""
        header = {field.name: getattr(self, field.name) for field in dataclasses.fields(InstanceHeader)}
        return NewInstance(**header, path=path, content_hash=content_hash, size_bytes=size_bytes,
                           dataset_hash=dataset_hash, image_hash=image_hash)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NewInstance(InstanceHeader):
    """A stored instance, as the listener records it: its header and where its bytes are."""

    path: str  # relative to the data folder
    content_hash: str  # "algorithm:hex", as dicom.storage names the file
    size_bytes: int
    dataset_hash: str | None = None  # the dataset without its file meta (dicom.identity)
    image_hash: str | None = None  # header and decoded pixels, when it had to be computed


@dataclasses.dataclass(frozen=True, slots=True)
class StoredCopy:
    """A copy of a SOP instance already held, with what tells whether a new one is the same."""

    id: int
    study_id: int
    path: str  # relative to the data folder
    dataset_hash: str | None  # None: stored before migration 0009
    image_hash: str | None  # None: not computed yet


def stored_copies(session: Session, sop_instance_uid: str) -> list[StoredCopy]:
    """Every row held for ``sop_instance_uid``, oldest first (usually none)."""
    rows = session.execute(
        select(Instance.id, Instance.study_id, Instance.path, Instance.dataset_hash, Instance.image_hash)
        .where(Instance.sop_instance_uid == sop_instance_uid).order_by(Instance.id)
    ).all()
    return [StoredCopy(*row) for row in rows]


def remember_hashes(session: Session, instance_id: int, *, dataset_hash: str | None = None,
                    image_hash: str | None = None) -> None:
    """Keep hashes computed from an older row's file, so they are computed once; commits."""
    values = {k: v for k, v in (("dataset_hash", dataset_hash), ("image_hash", image_hash)) if v is not None}
    if values:
        session.execute(update(Instance).where(Instance.id == instance_id).values(**values))
        session.commit()


class IngestOutcome(enum.Enum):
    STORED = "stored"  # a new instance of a study still receiving
    DUPLICATE = "duplicate"  # same instance, same dataset (or same image in another encoding): nothing new
    REOPENED = "reopened"  # arrived after completion: the study is triaged again


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    outcome: IngestOutcome
    study_id: int


# hash_as(algorithm) -> the new instance's bytes hashed as "algorithm:hex"
HashAs = Callable[[str], str]


def record_instance(session: Session, *, new: NewInstance, now: dt.datetime | None = None,
                    hash_as: HashAs | None = None) -> Recorded:
    """Commit ``new`` and the state of its study; returns what it changed and the study's id.

    ``hash_as`` lets an instance stored before the current hash algorithm be recognised
    when the same bytes arrive again. Two associations may create the same study at once;
    the loser of that race retries.
    """
    for attempt in (1, 2):
        try:
            outcome, study = _record(session, new, now or utcnow(), hash_as)
            session.commit()  # one flush: a new study's row and its instance's go together
            return Recorded(outcome, study if isinstance(study, int) else study.id)
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _record(session: Session, new: NewInstance, now: dt.datetime,
            hash_as: HashAs | None) -> tuple[IngestOutcome, Study | int]:
    earlier = session.execute(
        select(Instance.study_id, Instance.content_hash, Instance.dataset_hash)
        .where(Instance.sop_instance_uid == new.sop_instance_uid)
    ).all()
    duplicate = _same_bytes(new, earlier, hash_as)
    if duplicate is not None:
        return IngestOutcome.DUPLICATE, duplicate

    study = session.scalar(
        select(Study).where(Study.study_instance_uid == new.study_instance_uid).with_for_update()
    )
    outcome = IngestOutcome.STORED
    if study is None:
        study = Study(
            study_instance_uid=new.study_instance_uid,
            accession_number=new.accession_number,
            ordered_priority=new.ordered_priority.value,
            status=StudyStatus.RECEIVING,
            state_changed_at=now,
            reasons=[],
            revision=1,
            received_at=now,
            last_instance_at=now,
        )
        study.set_priority(new.ordered_priority)
        session.add(study)
    else:
        study.last_instance_at = now
        ordered = Priority.most_urgent(study.ordered_priority, new.ordered_priority)
        study.ordered_priority = ordered.value
        study.set_priority(Priority.most_urgent(study.priority, ordered))
        if study.accession_number is None:
            study.accession_number = new.accession_number
        if study.status != StudyStatus.RECEIVING:
            study.revision += 1
            study.attempts = 0
            study.move_to(StudyStatus.RECEIVING, now)
            study.completed_at = None
            if study.draft_status in (DraftStatus.QUEUED, DraftStatus.DRAFTING):
                # The draft belongs to the revision being replaced: the new one queues its own.
                study.move_draft_to(None, now)
            show_again(study)
            session.add(Event(study_id=study.id, stage=EventStage.REOPENED, detail=f"revision {study.revision}"))
            outcome = IngestOutcome.REOPENED

    _count_views(study, new, seen=any(row.study_id == study.id for row in earlier))
    session.add(
        Instance(
            study=study,
            series_instance_uid=new.series_instance_uid,
            sop_instance_uid=new.sop_instance_uid,
            sop_class_uid=new.sop_class_uid,
            transfer_syntax_uid=new.transfer_syntax_uid,
            modality=new.modality,
            body_part=new.body_part,
            view_position=new.view_position,
            view=new.view,
            expected_instances=new.expected_instances,
            path=new.path,
            content_hash=new.content_hash,
            size_bytes=new.size_bytes,
            dataset_hash=new.dataset_hash,
            image_hash=new.image_hash,
            received_at=now,
        )
    )
    return outcome, study


def _same_bytes(new: NewInstance, earlier: list, hash_as: HashAs | None) -> int | None:
    """The study of an earlier row of this instance with exactly these bytes, or this dataset, if any.

    (``dicom.intake`` has already compared the image with every copy held; this catches a
    copy that another association committed meanwhile.)
    """
    by_algorithm: dict[str, str] = {}
    for study_id, stored_hash, dataset_hash in earlier:
        if new.dataset_hash is not None and dataset_hash == new.dataset_hash:
            return study_id
        algorithm = stored_hash.partition(":")[0]
        if algorithm not in by_algorithm:
            same_algorithm = algorithm == new.content_hash.partition(":")[0]
            if not same_algorithm and hash_as is None:
                continue
            by_algorithm[algorithm] = new.content_hash if same_algorithm else hash_as(algorithm)
        if by_algorithm[algorithm] == stored_hash:
            return study_id
    return None


def _count_views(study: Study, new: NewInstance, *, seen: bool) -> None:
    """Keep the study's view state, and so whether its views are complete, in step with its instances."""
    views = StudyViews(
        instance_count=study.instance_count or 0, has_frontal=bool(study.has_frontal),
        has_lateral=bool(study.has_lateral), expected=study.expected_instances,
    ).add(new.view, new.expected_instances, new_instance=not seen)
    study.instance_count, study.has_frontal, study.has_lateral = views.instance_count, views.has_frontal, views.has_lateral
    study.expected_instances = views.expected
    study.views_complete = views_complete(views)
