"""Settings: environment over TOML, validation, secrets masked, README in step."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from radtriage.settings import Settings, load_settings, mask_url, settings_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_environment_wins_over_toml(tmp_path, monkeypatch):
    config = tmp_path / "radtriage.toml"
    config.write_text('dicom_port = 4242\nae_title = "FROMFILE"\nstable_seconds = 2.5\n')
    monkeypatch.setenv("RADTRIAGE_AE_TITLE", "FROMENV")
    settings = load_settings(config)
    assert (settings.dicom_port, settings.ae_title, settings.stable_seconds) == (4242, "FROMENV", 2.5)


def test_config_file_named_by_environment(tmp_path, monkeypatch):
    config = tmp_path / "radtriage.toml"
    config.write_text("[radtriage]\nhttp_port = 9090\n")
    monkeypatch.setenv("RADTRIAGE_CONFIG", str(config))
    assert load_settings().http_port == 9090


@pytest.mark.parametrize("title", ["", "A" * 17, "BAD\\AE"])
def test_invalid_ae_title_is_refused(title):
    with pytest.raises(ValidationError):
        Settings(ae_title=title)


def test_unknown_key_in_file_is_refused(tmp_path):
    config = tmp_path / "radtriage.toml"
    config.write_text("dicom_prot = 1\n")
    with pytest.raises(ValidationError, match="dicom_prot"):
        load_settings(config)


def test_malformed_file_names_the_file(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text("dicom_port = \n")
    with pytest.raises(ValueError, match="broken.toml"):
        load_settings(config)


def test_empty_variables_mean_unset(monkeypatch):
    monkeypatch.setenv("RADTRIAGE_SR_DESTINATION", "")
    monkeypatch.setenv("RADTRIAGE_BROKER_URL", " ")
    settings = load_settings()
    assert settings.sr_destination is None and settings.embedded_broker


def test_defaults_are_the_embedded_single_machine():
    settings = Settings()
    assert settings.embedded_broker
    assert settings.effective_database_url.startswith("sqlite:///")
    assert (settings.dicom_port, settings.ae_title, settings.http_port) == (11112, "RADTRIAGE", 8080)


def test_passwords_are_masked_for_display():
    settings = Settings(database_url="postgresql+psycopg://triage:s3cret@db:5432/radtriage",
                        broker_url="redis://:hunter2@redis:6379/0")
    shown = str(settings.public_view())
    assert "s3cret" not in shown and "hunter2" not in shown
    assert mask_url("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_readme_lists_every_setting_with_its_default():
    text = README.read_text()
    table = text.split("<!-- settings:begin -->")[1].split("<!-- settings:end -->")[0].strip()
    assert table == settings_markdown(), "README settings table is stale: paste `radtriage config --markdown`"


@pytest.mark.parametrize("value", ["pacs", "pacs:", ":104", "pacs:99999", "pacs:abc"])
def test_sr_destination_must_be_host_and_port(value):
    with pytest.raises(ValidationError, match="HOST:PORT"):
        Settings(sr_destination=value)
