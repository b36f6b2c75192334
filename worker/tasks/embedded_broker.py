"""The embedded, server-less broker: kombu's file transport with atomic publishing.

kombu's file transport creates a message file under its final name and then writes it, so
a worker polling the folder can take an empty or half-written file: the message is lost
and the worker stops on a JSON error. Here a message is written beside the queue folder,
flushed, and renamed into it, so a reader only ever sees whole messages.
"""

from __future__ import annotations

import os
import tempfile
import uuid

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps
from kombu.utils.objects import cached_property

SCHEME = "radtriage-files"


class Channel(filesystem.Channel):
    @cached_property
    def staging_folder(self) -> str:
        folder = os.path.join(os.path.dirname(os.path.abspath(self.data_folder_out)), "staging")
        os.makedirs(folder, exist_ok=True)
        return folder

    def _put(self, queue, payload, **kwargs):
        # The name keeps kombu's ordering prefix (milliseconds) and queue suffix.
        name = "{}_{}.{}.msg".format(int(round(filesystem.monotonic() * 1000)), uuid.uuid4(), queue)
        fd, staged = tempfile.mkstemp(dir=self.staging_folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(staged, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            try:
                os.unlink(staged)
            except OSError:
                pass
            raise ChannelError(f"cannot add a message to {self.data_folder_out!r}") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def register() -> None:
    """Make ``radtriage-files://`` a broker URL kombu understands (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
