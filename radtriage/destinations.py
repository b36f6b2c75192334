"""The ``destinations`` setting: where priorities, escalations, results and drafts are delivered.

Each destination is one table of the TOML file's ``[[destinations]]`` array, told apart by
``kind`` (``hl7v2``, ``fhir``, ``webhook``, ``dicom-sr``); the environment may give the whole
list as JSON in ``RADTRIAGE_DESTINATIONS``. ``radtriage.wiring`` turns each into its sender's
config dataclass. See docs/integration.md for every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from common import Priority
from common.delivery import Content, DestinationKind

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # safe in logs, metric labels and URLs


class RetryPolicy(BaseModel):
    """How a destination's failed deliveries are retried before they become dead letters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_first_seconds: float = Field(5.0, gt=0, description="First wait after a failed attempt; doubled per attempt")
    backoff_max_seconds: float = Field(600.0, gt=0, description="Longest wait between attempts")
    max_attempts: int | None = Field(None, ge=1, description="Attempts before a dead letter (unset: no limit)")
    max_age_hours: float | None = Field(72.0, gt=0, description="A delivery still failing this long after the change is a dead letter (unset: no limit)")

    @model_validator(mode="after")
    def _cap_above_first(self):
        if self.backoff_max_seconds < self.backoff_first_seconds:
            raise ValueError("backoff_max_seconds must be at least backoff_first_seconds")
        return self


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, description="Unique name: shown in logs, metrics and the admin page")
    receives: list[Content] = Field(description="What it gets: priority, escalation, result, draft")
    priority_map: dict[Priority, str] = Field({}, description="Our priority (ROUTINE, URGENT, STAT) → the site's code")
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: float = Field(10.0, gt=0, description="Seconds to connect and to wait for the answer")

    @field_validator("receives")
    @classmethod
    def _some(cls, value: list[Content]) -> list[Content]:
        if not value:
            raise ValueError("a destination must receive something (priority, escalation, result, draft)")
        return list(dict.fromkeys(value))

    @property
    def codes(self) -> dict[str, str]:
        return {priority.value: code for priority, code in self.priority_map.items()}


class _Tls(BaseModel):
    tls: bool = Field(False, description="Connect with TLS")
    tls_ca: Path | None = Field(None, description="PEM CAs the peer's certificate must chain to (default: the system's)")
    tls_cert: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    tls_key: Path | None = Field(None, description="PEM key of tls_cert")

    @model_validator(mode="after")
    def _pair(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("a client certificate needs both tls_cert and tls_key")
        return self


class Hl7Destination(_Destination, _Tls):
    """A RIS (or any HL7 v2.5.1 receiver) over MLLP."""

    kind: Literal[DestinationKind.HL7V2]
    host: str
    port: int = Field(ge=1, le=65535)
    message_type: Literal["OMI^O23", "ORM^O01"] = Field("OMI^O23", description="Procedure update: OMI^O23, or ORM^O01 for older systems")
    sending_application: str = "RADTRIAGE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: Literal["P", "T", "D"] = Field("P", description="MSH-11: P production, T training, D debugging")


class FhirDestination(_Destination):
    """A FHIR R4 server (RIS, EHR)."""

    kind: Literal[DestinationKind.FHIR]
    url: str = Field(description="The server's base URL, e.g. https://ris.example/fhir")
    mode: Literal["service-request", "task"] = "service-request"
    bearer_token: SecretStr | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    accession_system: str | None = None
    patient_id_system: str | None = None


class WebhookDestination(_Destination):
    """A signed JSON POST to the site's own glue."""

    kind: Literal[DestinationKind.WEBHOOK]
    url: str
    secret: SecretStr
    headers: dict[str, SecretStr] = Field({}, description="Extra headers (e.g. a gateway API key), kept secret")
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class DicomSrDestination(_Destination, _Tls):
    """A PACS that stores the draft as an UNVERIFIED DICOM SR (C-STORE)."""

    kind: Literal[DestinationKind.DICOM_SR]
    host: str
    port: int = Field(ge=1, le=65535)
    ae_title: str = Field("PACS", description="Called AE title of the PACS")
    receives: list[Content] = [Content.DRAFT]

    @field_validator("receives")
    @classmethod
    def _drafts_only(cls, value: list[Content]) -> list[Content]:
        if set(value) != {Content.DRAFT}:
            raise ValueError("a dicom-sr destination receives drafts only")
        return value


Destination = Annotated[Hl7Destination | FhirDestination | WebhookDestination | DicomSrDestination,
                        Field(discriminator="kind")]


def unique_names(destinations: list) -> list:
    """Raises ``ValueError`` when two destinations share a name."""
    names = [d.name for d in destinations]
    if len(names) != len(set(names)):
        raise ValueError("destination names must be unique")
    return destinations
