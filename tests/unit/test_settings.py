"""Settings: environment over TOML, validation, secrets masked, README in step."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from radtriage.settings import Settings, SettingsError, load_settings, mask_url, settings_markdown

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
    with pytest.raises(ValueError, match="dicom_prot .*unknown setting; did you mean dicom_port"):
        load_settings(config)


def test_unknown_variable_is_warned_about_with_the_setting_it_was_meant_for(monkeypatch, caplog):
    monkeypatch.setenv("RADTRIAGE_DICOM_PROT", "4242")
    monkeypatch.setenv("RADTRIAGE_COMPLETELY_MADE_UP", "1")
    monkeypatch.setenv("RADTRIAGE_TEST_SOMETHING", "harness")  # the test harness's own: not a setting, not a typo
    with caplog.at_level(logging.WARNING, logger="radtriage.settings"):
        settings = load_settings()
    assert settings.dicom_port == 11112, "ignored, as before"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("RADTRIAGE_DICOM_PROT" in w and "did you mean RADTRIAGE_DICOM_PORT?" in w for w in warnings)
    assert any("RADTRIAGE_COMPLETELY_MADE_UP" in w and "did you mean" not in w for w in warnings)
    assert not any("RADTRIAGE_TEST_SOMETHING" in w for w in warnings)


def test_an_invalid_variable_is_named_as_the_variable_without_its_value(monkeypatch, tmp_path):
    monkeypatch.setenv("RADTRIAGE_DICOM_PORT", "70000")
    monkeypatch.setenv("RADTRIAGE_HTTP_PORT", "secret-ish")
    config = tmp_path / "site.toml"
    config.write_text("stable_seconds = -1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert "RADTRIAGE_DICOM_PORT: Input should be less than or equal to 65535" in message
    assert "RADTRIAGE_HTTP_PORT: Input should be a valid integer" in message
    assert f"stable_seconds (in {config}): Input should be greater than 0" in message
    assert "dicom_port:" not in message and "secret-ish" not in message and "70000" not in message


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
