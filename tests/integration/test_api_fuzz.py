"""schemathesis over the published OpenAPI schema, in process, signed in as a user: whatever the
parameters, no route answers 500 (a bad one gets a 4xx with a message)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from common import Priority
from db.models import utcnow
from radtriage import health, metrics
from radtriage.api import create_api
from tests.api_support import add_study, user

EXAMPLES = 30  # per operation: the whole run stays well under a minute


@pytest.fixture
def api_schema(sqlite_sessions, tmp_path):
    for n, priority in enumerate(Priority, start=1):
        add_study(sqlite_sessions, n, priority, received=utcnow(), ai=priority, urgency=10.0 * n, data_dir=tmp_path,
                  findings={"effusion": 0.1 * n})
    app = create_api(sessions=sqlite_sessions, health=lambda: health.report({}), metrics=metrics.render,
                     data_dir=tmp_path, viewer_url_template="https://pacs/v?uid={study_instance_uid}")
    # The event stream never ends by design; tests/integration/test_api_events.py covers it.
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/events")


def test_no_input_makes_the_api_answer_500(api_schema, sqlite_sessions):
    headers = user(sqlite_sessions, "fuzzer", "admin")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9

    calls: dict[str, int] = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_500(case):
            response = case.call(headers=headers)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            assert response.status_code < 500, \
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            if response.status_code >= 400 and "json" in str(response.headers.get("content-type")):
                assert response.json().get("detail"), "an error says what went wrong"

        no_500()
    # Every route was really tried (one without parameters has a single case).
    assert len(calls) == len(operations) and sum(calls.values()) >= 150, calls
