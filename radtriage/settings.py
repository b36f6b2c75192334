"""Every setting a user can tune: environment (``RADTRIAGE_*``) over an optional TOML file."""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from common import ACCEPTED_SOP_CLASSES, Waits
from radtriage.destinations import Destination, unique_names

if TYPE_CHECKING:
    from scoring.backends import EmbedderConfig

CONFIG_ENV = "RADTRIAGE_CONFIG"
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII minus backslash


class Settings(BaseSettings):
    """The daemon's settings; field ``x`` is read from ``RADTRIAGE_X``.

    Precedence: environment variables, then the TOML file named by ``RADTRIAGE_CONFIG``
    (or ``--config``), then the defaults below.
    """

    model_config = SettingsConfigDict(env_prefix="RADTRIAGE_", extra="forbid", frozen=True)

    # DICOM listener
    ae_title: str = Field("RADTRIAGE", description="Called AE title the listener answers to")
    dicom_host: str = Field("127.0.0.1", description="Address the DICOM listener binds")
    dicom_port: int = Field(11112, ge=1, le=65535, description="DICOM listener port")
    stable_seconds: float = Field(5.0, gt=0, description="Quiet time after the last image before a study is complete")
    completion_grace_seconds: float = Field(0.5, ge=0, description="A study with a frontal view whose expected instances arrived (NumberOfStudyRelatedInstances, else frontal + lateral) completes this long after its last image")
    dicom_allowed_aes: str = Field("", description="Calling AE titles allowed to associate, comma-separated, each TITLE or TITLE@HOST (address, network such as 10.0.0.0/24, or name); empty: any caller")
    dicom_allow_any: bool = Field(False, description="Let a listener on a non-loopback address start without an allow-list (any sender on the network may store)")
    dicom_accepted_sop_classes: str = Field(
        ",".join(ACCEPTED_SOP_CLASSES),
        description="Storage SOP class UIDs the listener accepts, comma-separated (default: CR, DX for presentation and for processing, Secondary Capture); others are refused at negotiation",
    )
    dicom_listener_processes: int = Field(0, ge=0, le=64, description="Listener processes sharing the DICOM port (each serves whole associations); 1: one process, threads only; 0: one per CPU core, at most 8")
    dicom_plain_pynetdicom: bool = Field(False, description="Serve DICOM with pynetdicom's own server and sockets, in one process: no receive fast path, no listener processes (a fallback should a pynetdicom upgrade break them)")
    dicom_max_associations: int = Field(16, ge=1, description="Concurrent DICOM associations; more are rejected as a transient local limit")
    dicom_max_associations_per_host: int = Field(0, ge=0, description="Connections one calling host may hold open at once; more are closed as they arrive, so one host cannot take every slot (0: half of dicom_max_associations)")
    dicom_acse_timeout: float = Field(30.0, gt=0, description="Seconds to wait for an association request or release")
    dicom_dimse_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a DIMSE message (e.g. the rest of a C-STORE)")
    dicom_network_timeout: float = Field(60.0, gt=0, description="Seconds an association may stay silent before it is aborted")
    dicom_tls_cert: Path | None = Field(None, description="PEM certificate of the listener; with dicom_tls_key, the listener speaks TLS only")
    dicom_tls_key: Path | None = Field(None, description="PEM private key of dicom_tls_cert")
    dicom_tls_ca: Path | None = Field(None, description="PEM CA bundle that client certificates are checked against")
    dicom_tls_require_client_cert: bool = Field(False, description="Refuse TLS clients without a certificate signed by dicom_tls_ca")

    # storage and database
    data_dir: Path = Field(Path("radtriage-data"), description="Folder for received images, the embedded queue and the SQLite database")
    database_url: str | None = Field(None, description="SQLAlchemy URL of the worklist database (default: SQLite in the data folder)")
    retention_days: int = Field(0, ge=0, description="Purge stored images, embeddings, sent outbox rows, events and sent deliveries older than this many days, daily (studies and the audit trail stay; preview with `radtriage purge --dry-run`); 0 keeps everything")

    # queue
    broker_url: str | None = Field(None, description="Celery broker URL, e.g. redis://host:6379/0 (default: embedded, no server)")
    broker_key_prefix: str = Field("", description="Prefix for every Redis key the queue uses (several deployments on one Redis)")
    run_worker: bool = Field(True, description="Let `serve` start and supervise a triage worker process")
    outbox_poll_seconds: float = Field(0.2, gt=0, description="How often queued work is handed to the broker")
    sweep_interval_seconds: float = Field(5.0, gt=0, description="How often the reconciliation sweep looks for stuck studies and lost messages")
    running_timeout_seconds: float = Field(900.0, gt=0, description="A triage or draft running longer than this is presumed hung and queued again")
    worker_lost_seconds: float = Field(20.0, gt=1, description="A worker silent this long (it beats every few seconds) is presumed dead; what it was running is queued again, so a worker that died re-drives its study within about 25 s")
    queued_timeout_seconds: float = Field(600.0, gt=0, description="A study queued this long with no message waiting is queued again")
    queued_idle_seconds: float = Field(10.0, gt=0, description="A study queued this long while the broker holds no message for its queue is queued again (its message was lost)")
    task_max_retries: int = Field(5, ge=0, description="Retries (with exponential backoff) of a task failing transiently")
    task_time_limit_seconds: float = Field(600.0, gt=0, description="A task running longer is stopped (its worker process is restarted) and the study queued again")

    # drafts (MedGemma) and their export to PACS
    medgemma_model: str = Field("google/medgemma-1.5-4b-it", description="MedGemma folder or Hugging Face id (offline: a local folder or the HF cache)")
    medgemma_max_new_tokens: int = Field(300, ge=1, description="Longest draft, in generated tokens")
    draft_batch: int = Field(4, ge=1, description="Studies a draft worker generates in one batch, most urgent first")
    sr_destination: str | None = Field(None, description="HOST:PORT of the PACS that receives draft reports as DICOM SR: a DICOM SR destination named pacs-sr (unset: none; see destinations)")
    sr_destination_ae_title: str = Field("PACS", description="Called AE title of the SR destination")
    sr_retry_max_seconds: float = Field(600.0, gt=0, description="Longest wait between attempts to send an SR to sr_destination (from 5 s, doubled per attempt; retried without limit)")

    # deliveries to the site's systems (radtriage.destinations; docs/integration.md)
    destinations: list[Destination] = Field([], description="Where priority changes, escalations, results and drafts are delivered: a TOML array of tables [[destinations]] (kind hl7v2, fhir, webhook or dicom-sr; see docs/integration.md), or JSON in the environment")
    delivery_backlog_alert_minutes: float = Field(15.0, gt=0, description="A destination whose oldest undelivered change is older than this fires the RadtriageDeliveryBacklog alert (exported as radtriage_delivery_backlog_limit_seconds)")

    # worklist
    # Chosen with `radtriage simulate` (README, Reading-room simulation): in a day room of
    # 220-300 chest X-rays, 2-3 readers, 3.5-5 min a read, triage alone lets the longest ROUTINE
    # wait grow to 140-230 min (FIFO: 26-35); escalating after 60 min caps it at 67-80 min,
    # escalates 0.7-2% of studies, shows none as STAT by escalation and leaves the critical wait as
    # it was. The STAT step only matters for studies stuck for hours: 240 keeps STAT meaning
    # "clinically STAT" (the old 120 + 60 gave the same shares in the day but capped less). With
    # arrivals around the clock and readers only by day, any wall-clock wait shorter than a night
    # escalates the night's studies (simulated, share of the list shown STAT by escalation in
    # working hours: 72% with a STAT step of 60, 62% at 120, 44% at 240, 2% at 720); such sites
    # should raise the STAT step to about 720 or unset it.
    escalate_routine_after_minutes: float | None = Field(60.0, gt=0, description="A ROUTINE study waiting this long is shown as URGENT (unset: never); chosen by simulation to cap routine waits without turning the list STAT")
    escalate_urgent_after_minutes: float | None = Field(240.0, gt=0, description="An URGENT study (or an escalated one) waiting this much longer is shown as STAT (unset: never); long, so STAT stays for studies stuck for hours")
    stat_read_limit_minutes: float = Field(30.0, gt=0, description="A STAT study unread for longer than this fires the RadtriageStatStudyUnread alert (exported as radtriage_read_limit_seconds)")
    claim_idle_minutes: float = Field(30.0, gt=0, description="A reader's claim on a study nobody acted on for this long is released")
    escalation_poll_seconds: float = Field(15.0, gt=0, description="How often waiting-time escalation and idle-claim expiry run")
    worklist_non_chest: Literal["list", "hide"] = Field("list", description="Studies holding no chest radiograph (hip, dental, a dog's thorax...): list them with the reason \"not a chest radiograph (body part ..., view ...)\", or hide them from the worklist (still found with include_read; a later image brings them back)")
    viewer_url_template: str | None = Field(None, description="Link from each study to the site's viewer, e.g. https://pacs/viewer?StudyInstanceUIDs={study_instance_uid}; placeholders {study_instance_uid} and {accession_number} (unset: no link)")

    # HTTP API
    http_host: str = Field("127.0.0.1", description="Address of the HTTP API and /metrics")
    http_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API and /metrics")
    http_token: SecretStr | None = Field(None, description="Legacy shared bearer token, worth an admin (prefer named users: `radtriage users add`); while no user or OIDC is set up, /metrics stays open")
    http_allow_any: bool = Field(False, description="Let the HTTP API on a non-loopback address start without users, OIDC or a token (it shows patient data)")
    metrics_token: SecretStr | None = Field(None, description="Bearer token that Prometheus may scrape /metrics with (a signed-in user may too); once set, /metrics requires one or the other")
    oidc_issuer: str | None = Field(None, description="Single sign-on: OIDC issuer URL (https; its /.well-known/openid-configuration names the JWKS); with oidc_audience, bearer JWTs it signed are accepted")
    oidc_audience: str | None = Field(None, description="The audience (aud) a JWT must carry to be accepted (the client id registered for radtriage)")
    oidc_user_claim: str = Field("preferred_username", description="JWT claim holding the user name recorded in claims and the audit trail")
    oidc_role_claim: str = Field("roles", description="JWT claim holding the user's roles (a list or a string; dotted for nested claims, e.g. realm_access.roles)")
    oidc_admin_role: str = Field("radtriage-admin", description="Role value in oidc_role_claim that makes a user an admin")
    oidc_reader_role: str = Field("radtriage-reader", description="Role value in oidc_role_claim that makes a user a reader")

    # models
    cxr_foundation_dir: Path = Field(Path("models/cxr-foundation"), description="Folder holding elixr-c-v2-pooled/ and pax-elixr-b-text/")
    cxr_vocab_path: Path | None = Field(None, description="BERT uncased vocab.txt (default: vocab.txt in the CXR Foundation folder)")
    policy_file: Path | None = Field(None, description="Urgency policy TOML (default: the policy shipped with radtriage)")
    embedder: str = Field("cxr_foundation", pattern="^(cxr_foundation|medsiglip)$", description="Image embedder for triage: cxr_foundation or medsiglip")
    medsiglip_model: str = Field("google/medsiglip-448", description="MedSigLIP folder or Hugging Face id (used when embedder = medsiglip; HF_HUB_OFFLINE honoured)")
    heads_dir: Path | None = Field(None, description="Folder of trained finding heads, <heads_dir>/<embedder>/<finding>.json (default: heads/ in the CXR Foundation folder)")

    log_level: str = Field("INFO", description="Python log level")
    log_format: str = Field("text", pattern="^(text|json)$", description="Log lines as text, or as JSON objects (one per line, with the internal study_id where a line is about a study) for a log collector")

    @field_validator("ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        value = value.strip()
        if not _AE_TITLE.match(value):
            raise ValueError("an AE title is 1-16 printable ASCII characters without a backslash")
        return value

    @field_validator("sr_destination", "broker_url", "database_url", "escalate_routine_after_minutes", "http_token",
                     "escalate_urgent_after_minutes", "metrics_token", "oidc_issuer", "oidc_audience", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        # Compose files pass unset variables as "": treat them as not configured.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("dicom_allowed_aes", "dicom_accepted_sop_classes", mode="before")
    @classmethod
    def _list_as_text(cls, value):
        # A TOML file may give a list; the environment gives comma-separated text.
        return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value

    @field_validator("dicom_accepted_sop_classes")
    @classmethod
    def _valid_sop_classes(cls, value: str) -> str:
        uids = [v.strip() for v in value.split(",") if v.strip()]
        if not uids or not all(re.fullmatch(r"[0-9]+(\.[0-9]+)*", u) and len(u) <= 64 for u in uids):
            raise ValueError("dicom_accepted_sop_classes must be comma-separated SOP class UIDs")
        return ",".join(uids)

    @field_validator("dicom_tls_cert", "dicom_tls_key", "dicom_tls_ca", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("sr_destination")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("must be HOST:PORT, e.g. pacs.hospital.local:104")
        return value

    @field_validator("destinations")
    @classmethod
    def _unique_destinations(cls, value: list) -> list:
        return unique_names(value)

    @model_validator(mode="after")
    def _oidc_complete(self):
        if bool(self.oidc_issuer) != bool(self.oidc_audience):
            raise ValueError("single sign-on needs both oidc_issuer and oidc_audience")
        return self

    @field_validator("viewer_url_template")
    @classmethod
    def _viewer_link(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("viewer_url_template must be an http(s) URL")
        unknown = set(re.findall(r"\{([^{}]*)\}", value)) - {"study_instance_uid", "accession_number"}
        if unknown:
            raise ValueError(f"viewer_url_template knows only {{study_instance_uid}} and {{accession_number}}, "
                             f"not {', '.join(sorted(unknown))}")
        return value

    @field_validator("log_level")
    @classmethod
    def _valid_log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must still win over it.
        return (env_settings, init_settings)

    # derived values
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'radtriage.sqlite3').resolve()}"

    @property
    def waits(self) -> Waits:
        """The maximum waits of the reading order (``common.reading_order``)."""

        def minutes(value: float | None):
            return None if value is None else dt.timedelta(minutes=value)

        return Waits(minutes(self.escalate_routine_after_minutes), minutes(self.escalate_urgent_after_minutes))

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def vocab_path(self) -> Path:
        return self.cxr_vocab_path or self.cxr_foundation_dir / "vocab.txt"

    def public_view(self) -> dict[str, Any]:
        """The effective settings with credentials in URLs masked, for display."""
        shown = self.model_dump(mode="json")
        for key in ("http_token", "metrics_token"):
            shown[key] = "***" if getattr(self, key) else None
        for key in ("database_url", "broker_url"):
            shown[key] = mask_url(shown[key])
        shown["database_url (effective)"] = mask_url(self.effective_database_url)
        return shown


def embedder_config(settings: Settings) -> EmbedderConfig:
    """The triage embedder's config for ``scoring`` (which knows nothing of :class:`Settings`)."""
    from scoring.backends import EmbedderConfig  # lazy: reading settings loads no scoring code

    return EmbedderConfig(
        embedder=settings.embedder,
        cxr_foundation_dir=settings.cxr_foundation_dir,
        vocab_path=settings.vocab_path,
        medsiglip_model=settings.medsiglip_model,
        heads_dir=settings.heads_dir,
    )


def settings_markdown() -> str:
    """The settings as the README's Markdown table (the README is checked against it)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        lines.append(f"| `RADTRIAGE_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)


def mask_url(url: str | None) -> str | None:
    """Hide the password of a URL such as ``postgresql://user:secret@host/db``."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_settings(config_file: Path | str | None = None) -> Settings:
    """Build the settings from the environment and an optional TOML file.

    A ``RADTRIAGE_*`` variable that names no setting is warned about (with the setting it
    was probably meant for): a typo in the environment would otherwise go unnoticed, while
    the same typo in the file is refused.

    Raises
    ------
    FileNotFoundError
        The named TOML file does not exist.
    SettingsError
        The TOML file is malformed, or a value is invalid: the message names each variable
        (``RADTRIAGE_DICOM_PORT``) or file key at fault, never its value.
    """
    path = config_file or os.environ.get(CONFIG_ENV)
    values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            try:
                values = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"settings file {path}: {exc}") from exc
        values = values.get("radtriage", values)
    for name, meant in unknown_variables(os.environ):
        logging.getLogger(__name__).warning(
            "environment variable %s names no setting and is ignored%s", name,
            f"; did you mean {meant}?" if meant else " (`radtriage config --markdown` lists them)")
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, path)) from exc


class SettingsError(ValueError):
    """Settings that cannot be used; the message says which variable or file key, and why."""


# RADTRIAGE_* variables that are read but are not settings: the settings file, and the test and
# benchmark harnesses' own.
_NOT_SETTINGS = frozenset({CONFIG_ENV})
_NOT_SETTINGS_PREFIXES = ("RADTRIAGE_TEST_", "RADTRIAGE_BENCH_")


def env_name(field: str) -> str:
    """The environment variable of a setting: ``dicom_port`` → ``RADTRIAGE_DICOM_PORT``."""
    return f"RADTRIAGE_{field.upper()}"


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``RADTRIAGE_*`` variables that name no setting, each with the closest known name (or None)."""
    known = {env_name(field) for field in Settings.model_fields}
    unknown = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings reads the environment case-insensitively
        if (not upper.startswith("RADTRIAGE_") or upper in known or upper in _NOT_SETTINGS
                or upper.startswith(_NOT_SETTINGS_PREFIXES)):
            continue
        close = difflib.get_close_matches(upper, sorted(known | _NOT_SETTINGS), n=1, cutoff=0.75)
        unknown.append((name, close[0] if close else None))
    return unknown


def _explain(exc: ValidationError, path: Path | str | None) -> str:
    """One line per error, naming the variable when the value came from the environment.

    The input value is never repeated (it may be a token or a password).
    """
    lines = []
    known = {env_name(field) for field in Settings.model_fields}
    set_in_env = {name.upper() for name in os.environ if name.upper().startswith("RADTRIAGE_")}
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        where = ".".join(str(part) for part in error["loc"][1:])
        if not field:
            name = "settings"
        elif env_name(field) in set_in_env:
            name = env_name(field)
        elif env_name(field) in known:
            name = f"{field} (in {path})" if path else env_name(field)
        else:  # a key of the file that names no setting
            close = difflib.get_close_matches(field, list(Settings.model_fields), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"{field} (in {path}): unknown setting{hint}")
            continue
        lines.append(f"{name}{'.' + where if where else ''}: {error['msg']}")
    return "; ".join(lines)
