"""The plain pynetdicom path (``plain_pynetdicom``): stock server and sockets, nothing of ``dicom.netseam``."""

from __future__ import annotations

import pydicom
import pytest
from pynetdicom import evt
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from dicom.errors import AssociationFailed
from dicom.scu import echo, send_datasets
from tests.factories import radiograph
from tests.integration.listener_harness import AE_TITLE, running_listener


def test_an_image_is_stored_with_pynetdicoms_own_server_and_sockets(tmp_path):
    classes = []
    with running_listener(tmp_path, plain_pynetdicom=True) as harness:
        server = harness.listener._server
        assert type(server) is ThreadedAssociationServer
        server.bind(evt.EVT_ACCEPTED,
                    lambda event: classes.append((type(event.assoc.dul), type(event.assoc.dul.socket))))
        image = radiograph(size=256)
        assert send_datasets("127.0.0.1", harness.port, AE_TITLE, "TESTSCU", [image]) == [0x0000]
        assert harness.rows() == 1 and harness.stores == [("stored", 0x0000)]
        (stored,) = harness.files()
        assert pydicom.dcmread(stored).PixelData == image.PixelData
    assert classes == [(DULServiceProvider, AssociationSocket)], "the fast path's classes were used"


def test_the_access_policy_still_applies(tmp_path):
    with running_listener(tmp_path, plain_pynetdicom=True) as harness:
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE) == 0
        with pytest.raises(AssociationFailed, match="called AE title not recognised"):
            echo("127.0.0.1", harness.port, called_ae="SOMEONE-ELSE", timeout=5)
        assert harness.refusals == ["called_ae"]
