"""A RIS stand-in from a library we did not write: python-hl7's asyncio MLLP server on a loopback
port, in a thread of its own (optionally over TLS). It keeps every message it receives and answers each with the next
acknowledgement code of a script (then AA)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterable
from typing import Self

import hl7
import hl7.mllp
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from worker.deliveries.hl7 import validate


class MllpReceiver:
    """``answers``: the acknowledgement codes of the first messages, e.g. ``["AE", "AE"]``; None
    in the script: hold that message unanswered until :meth:`release`."""

    def __init__(self, answers: Iterable[str | None] = (), *, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[str] = []
        self.acked: list[str] = []  # control ids answered AA, in order
        self.answers = list(answers)
        self._release = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mllp-receiver", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(port, tls), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _start(self, port: int, tls: ssl.SSLContext | None):
        return await hl7.mllp.start_hl7_server(self._client, "127.0.0.1", port, ssl=tls)

    async def _client(self, reader, writer) -> None:
        try:
            while True:
                message = await reader.readmessage()
                self.received.append(str(message))
                code = self.answers.pop(0) if self.answers else "AA"
                if code is None:
                    await asyncio.get_running_loop().run_in_executor(None, self._release.wait)
                    continue  # the sender is gone by now: nothing to answer
                if code == "AA":
                    self.acked.append(str(message.segment("MSH")[10]))
                writer.writemessage(message.create_ack(code))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def release(self) -> None:
        self._release.set()

    def messages(self, kind: str | None = None) -> list[str]:
        """The messages received, of one type (``"OMI"``, ``"ORU"`` …) if given."""
        return [m for m in self.received if kind is None or hl7.parse(m)["MSH.F9.R1.C1"] == kind]

    def close(self) -> None:
        self._release.set()
        # The server belongs to the receiver's loop: it is closed there, never from this thread.
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def validated(er7: str):
    """The message parsed by hl7apy and validated against its HL7 v2.5.1 structure (raises if not)."""
    message = parse_message(er7.replace("\n", "\r"), validation_level=VALIDATION_LEVEL.STRICT)
    assert message.msh.msh_12.value == "2.5.1"
    validate(message)  # hl7apy's validation, less its false error on ORM^O01's choice group
    return message


def field(er7: str, segment: str, number: int, *, index: int = 0) -> str:
    """One field of the ``index``-th ``segment`` (python-hl7's reading), unescaped."""
    parsed = hl7.parse(er7)
    return parsed.unescape(str(parsed.segments(segment)[index][number]))
