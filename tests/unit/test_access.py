"""The listener's access policy: called/calling AE titles, hosts, exposure, TLS configuration."""

from __future__ import annotations

import pytest

from dicom.access import (
    AccessPolicy,
    AllowedPeer,
    Refusal,
    check_exposure,
    is_loopback,
    parse_allowed,
    server_tls_context,
)
from dicom.errors import AccessConfigError


def test_parse_allowed_titles_hosts_and_networks():
    assert parse_allowed(" PACS@10.0.0.5, ORTHANC ,, CT@10.1.0.0/16") == (
        AllowedPeer("PACS", "10.0.0.5"), AllowedPeer("ORTHANC"), AllowedPeer("CT", "10.1.0.0/16"),
    )
    assert parse_allowed(["A", "B@h"]) == (AllowedPeer("A"), AllowedPeer("B", "h"))
    assert parse_allowed("") == ()


def test_parse_allowed_refuses_bad_titles():
    with pytest.raises(AccessConfigError):
        parse_allowed("WAY-TOO-LONG-AE-TITLE")
    with pytest.raises(AccessConfigError):
        parse_allowed("BACK\\SLASH")


def test_called_ae_must_match():
    policy = AccessPolicy("RADTRIAGE")
    assert policy.refusal(called_ae="RADTRIAGE ", calling_ae="ANY", address="10.0.0.9") is None
    assert policy.refusal(called_ae="OTHER", calling_ae="ANY", address="127.0.0.1") == Refusal.CALLED_AE


def test_calling_ae_and_host_allow_list():
    policy = AccessPolicy("RADTRIAGE", parse_allowed("PACS@10.0.0.5,PACS@10.0.1.0/24,ORTHANC"))
    check = lambda calling, address: policy.refusal(called_ae="RADTRIAGE", calling_ae=calling, address=address)  # noqa: E731
    assert check("PACS", "10.0.0.5") is None
    assert check("PACS", "10.0.1.77") is None
    assert check("PACS", "10.0.2.1") == Refusal.HOST
    assert check("ORTHANC", "192.168.1.1") is None
    assert check("STRANGER", "10.0.0.5") == Refusal.CALLING_AE


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


def test_exposure_without_allow_list_refuses_to_start():
    open_policy = AccessPolicy("RADTRIAGE")
    check_exposure("127.0.0.1", open_policy, allow_any=False)
    with pytest.raises(AccessConfigError, match="RADTRIAGE_DICOM_ALLOW_ANY"):
        check_exposure("0.0.0.0", open_policy, allow_any=False)
    check_exposure("0.0.0.0", open_policy, allow_any=True)
    check_exposure("0.0.0.0", AccessPolicy("RADTRIAGE", parse_allowed("PACS")), allow_any=False)


def test_tls_needs_readable_files_and_a_ca_for_client_certificates(tmp_path):
    with pytest.raises(AccessConfigError, match="CA"):
        server_tls_context(cert=tmp_path / "c.pem", key=tmp_path / "k.pem", require_client_cert=True)
    with pytest.raises(AccessConfigError, match="TLS files"):
        server_tls_context(cert=tmp_path / "missing.pem", key=tmp_path / "missing.key")
