"""Eight associations at once, fifty instances each: every one acknowledged, stored and recorded."""

from __future__ import annotations

import threading

from pydicom.uid import generate_uid
from sqlalchemy import func, select

from db.models import Instance, Study
from dicom.scu import send_datasets
from tests.factories import radiograph
from tests.integration.listener_harness import AE_TITLE, running_listener

ASSOCIATIONS, PER_ASSOCIATION = 8, 50


def test_eight_concurrent_associations_of_fifty(tmp_path, database_url):
    # Five studies shared by all associations: they race to create the same study rows.
    studies = [generate_uid() for _ in range(5)]
    batches = [[radiograph(study_uid=studies[(a + i) % 5], size=32, seed=a * 1000 + i) for i in range(PER_ASSOCIATION)]
               for a in range(ASSOCIATIONS)]
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    with running_listener(tmp_path, database_url=database_url) as harness:
        def push(index: int) -> None:
            try:
                results[index] = send_datasets("127.0.0.1", harness.port, AE_TITLE, f"SCU{index}", batches[index])
            except BaseException as exc:  # reported below, with the others' results
                errors.append(exc)

        threads = [threading.Thread(target=push, args=(a,)) for a in range(ASSOCIATIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        acknowledged = [s for a in range(ASSOCIATIONS) for s in results[a]]
        assert acknowledged == [0] * ASSOCIATIONS * PER_ASSOCIATION
        assert len(harness.files()) == ASSOCIATIONS * PER_ASSOCIATION
        assert harness.partial_files() == []
        with harness.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Instance)) == ASSOCIATIONS * PER_ASSOCIATION
            counts = dict(session.execute(select(Study.study_instance_uid, Study.instance_count)).all())
        assert counts == {uid: ASSOCIATIONS * PER_ASSOCIATION // 5 for uid in studies}
