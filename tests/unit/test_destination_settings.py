"""Destinations as settings: each kind read from the TOML file and turned into its sender's config."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from common import Priority
from common.delivery import Content
from radtriage.settings import Settings, load_settings
from radtriage.wiring import IMPLICIT_SR, destinations, dispatch_config, routes, sender_config
from worker.deliveries.dicom_sr import DicomSrConfig
from worker.deliveries.fhir import FhirConfig
from worker.deliveries.hl7 import Hl7Config
from worker.deliveries.webhook import WebhookConfig

TOML = """
[[destinations]]
name = "ris"
kind = "hl7v2"
host = "ris.local"
port = 2575
message_type = "ORM^O01"
receives = ["priority", "escalation", "result", "draft"]
priority_map = { STAT = "1", URGENT = "2", ROUTINE = "3" }
retry = { backoff_first_seconds = 2, backoff_max_seconds = 30, max_attempts = 8, max_age_hours = 12 }

[[destinations]]
name = "ehr"
kind = "fhir"
url = "https://ehr.local/fhir"
mode = "task"
bearer_token = "s3cret-token"
receives = ["priority", "result"]
priority_map = { STAT = "stat", URGENT = "asap" }

[[destinations]]
name = "glue"
kind = "webhook"
url = "https://glue.local/hook"
secret = "hmac-key"
headers = { X-Api-Key = "gateway-key" }
receives = ["draft"]

[[destinations]]
name = "pacs"
kind = "dicom-sr"
host = "pacs.local"
port = 104
ae_title = "ARCHIVE"
"""


@pytest.fixture
def settings(tmp_path) -> Settings:
    path = tmp_path / "radtriage.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + TOML)
    return load_settings(path)


def test_each_kind_becomes_its_senders_config(settings) -> None:
    found = {d.name: d for d in destinations(settings)}
    hl7, fhir, webhook, sr = (sender_config(settings, found[n]) for n in ("ris", "ehr", "glue", "pacs"))
    assert isinstance(hl7, Hl7Config) and (hl7.host, hl7.port, hl7.message_type) == ("ris.local", 2575, "ORM^O01")
    assert dict(hl7.priority_map) == {"STAT": "1", "URGENT": "2", "ROUTINE": "3"}
    assert isinstance(fhir, FhirConfig) and (fhir.mode, fhir.bearer_token) == ("task", "s3cret-token")
    assert fhir.code(Priority.URGENT) == "asap" and fhir.code(Priority.ROUTINE) == "routine"
    assert isinstance(webhook, WebhookConfig) and dict(webhook.headers) == {"X-Api-Key": "gateway-key"}
    assert isinstance(sr, DicomSrConfig) and (sr.called_ae, sr.calling_ae) == ("ARCHIVE", settings.ae_title)

    retry = dispatch_config(settings, found["ris"])
    assert [retry.backoff.seconds(n) for n in range(6)] == [2, 4, 8, 16, 30, 30]
    assert (retry.max_attempts, retry.max_age.total_seconds()) == (8, 12 * 3600)
    assert {r.name: r.receives for r in routes(settings)}["pacs"] == {Content.DRAFT}


def test_secrets_are_masked_in_the_shown_settings(settings) -> None:
    shown = json.dumps(settings.public_view())
    assert "s3cret-token" not in shown and "hmac-key" not in shown and "gateway-key" not in shown


def test_sr_destination_is_one_implicit_dicom_sr_destination(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, sr_destination="pacs.local:104", sr_destination_ae_title="ARCH")
    [implicit] = destinations(settings)
    assert (implicit.name, implicit.receives) == (IMPLICIT_SR, [Content.DRAFT])
    assert (sender_config(settings, implicit).host, sender_config(settings, implicit).called_ae) == ("pacs.local", "ARCH")


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "a", "kind": "dicom-sr", "host": "h", "port": 104, "receives": ["result"]}, "drafts only"),
    ({"name": "a", "kind": "hl7v2", "host": "h", "port": 1, "receives": ["result"], "message_type": "ADT^A08"},
     "message_type"),
    ({"name": "a", "kind": "hl7v2", "host": "h", "port": 1, "receives": []}, "must receive something"),
    ({"name": "a b", "kind": "webhook", "url": "https://x", "secret": "k", "receives": ["draft"]}, "name"),
    ({"name": "a", "kind": "smtp", "receives": ["draft"]}, "kind"),
])
def test_a_wrong_destination_is_refused_at_start(tmp_path, entry, message) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, destinations=[entry])


def test_destination_names_are_unique(tmp_path) -> None:
    entry = {"name": "ris", "kind": "hl7v2", "host": "h", "port": 1, "receives": ["result"]}
    with pytest.raises(ValidationError, match="unique"):
        Settings(data_dir=tmp_path, destinations=[entry, entry])
