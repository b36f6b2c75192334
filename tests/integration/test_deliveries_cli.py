"""``radtriage deliveries test NAME`` sends a test message and shows the peer's answer."""

from __future__ import annotations

import json

from click.testing import CliRunner

from radtriage.cli import main
from tests.integration.mllp_receiver import MllpReceiver, field, validated


def _run(monkeypatch, port: int, *args: str):
    destination = {"name": "ris", "kind": "hl7v2", "host": "127.0.0.1", "port": port,
                   "receives": ["priority", "result"], "timeout_seconds": 5}
    monkeypatch.setenv("RADTRIAGE_DESTINATIONS", json.dumps([destination]))
    return CliRunner().invoke(main, ["deliveries", "test", *args])


def test_the_peer_answer_is_shown_and_decides_the_exit_status(monkeypatch) -> None:
    with MllpReceiver(["AA", "AE"]) as ris:
        delivered = _run(monkeypatch, ris.port, "ris")
        refused = _run(monkeypatch, ris.port, "ris", "--content", "result")
        received = list(ris.received)
    assert delivered.exit_code == 0 and "ris: delivered (OMI^O23: AA)" in delivered.output
    assert "MSA|AA|" + field(received[0], "MSH", 10) in delivered.output  # the peer's own ACK
    assert refused.exit_code == 1 and "ris: retry (ORU^R01: AE)" in refused.output
    for message in received:  # a real, valid message about a made-up study
        validated(message)
        assert field(message, "PID", 5) == "RADTRIAGE^TEST"


def test_an_unknown_destination_names_the_configured_ones(monkeypatch) -> None:
    result = _run(monkeypatch, 1, "pacs")
    assert result.exit_code == 1 and "no destination 'pacs'; configured: ris" in result.output
