"""``radtriage echo`` and ``radtriage send``: test a DICOM route without installing DCMTK."""

from __future__ import annotations

from pathlib import Path

import click

_tls_options = [
    click.option("--tls", is_flag=True, help="Use TLS (with --tls-ca, or the system trust store)."),
    click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="PEM CA bundle to check the peer's certificate against (implies --tls)."),
    click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="PEM client certificate, for peers that require one (implies --tls)."),
    click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="PEM private key of --tls-cert."),
]
_ae_options = [
    click.option("--aec", "called_ae", default="RADTRIAGE", show_default=True, help="Called AE title (the peer's)."),
    click.option("--aet", "calling_ae", default="RADTRIAGE-SCU", show_default=True, help="Calling AE title (ours)."),
    click.option("--timeout", default=30.0, show_default=True, help="Seconds for each network wait."),
]


def _options(options):
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _tls_context(tls: bool, ca: Path | None, cert: Path | None, key: Path | None):
    if not (tls or ca or cert):
        return None
    from dicom.access import client_tls_context
    from dicom.errors import AccessConfigError

    try:
        return client_tls_context(ca=ca, cert=cert, key=key)
    except AccessConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _describe(code: int) -> str:
    """The status with its name and meaning, e.g. ``0xA900 Failure: Data Set Does Not Match SOP Class``."""
    from pynetdicom.status import GENERAL_STATUS, STORAGE_SERVICE_CLASS_STATUS, code_to_category

    category, meaning = STORAGE_SERVICE_CLASS_STATUS.get(code) or GENERAL_STATUS.get(code) or (
        code_to_category(code), "")
    return f"0x{code:04X} {category}" + (f": {meaning}" if meaning and meaning != category else "")


def _stored(code: int) -> bool:
    from pynetdicom.status import code_to_category

    return code_to_category(code) in ("Success", "Warning")


@click.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@_options(_ae_options + _tls_options)
def echo(host: str, port: int, called_ae: str, calling_ae: str, timeout: float,
         tls: bool, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Send a C-ECHO to HOST PORT; exit 0 when it answers Success."""
    from dicom.errors import AssociationFailed
    from dicom.scu import echo as send_echo

    try:
        code = send_echo(host, port, called_ae=called_ae, calling_ae=calling_ae, timeout=timeout,
                         tls=_tls_context(tls, tls_ca, tls_cert, tls_key))
    except AssociationFailed as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"C-ECHO {called_ae}@{host}:{port}: {_describe(code)}")
    if code != 0:
        raise SystemExit(1)


def _host_port(_ctx, _param, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:11112")
    return host.strip("[]"), int(port)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--to", "destination", required=True, callback=_host_port, help="HOST:PORT of the peer.")
@click.option("--keep-going", is_flag=True,
              help="Send every file radtriage would accept and report the others; without it, a file it would "
                   "refuse stops the command before anything is sent.")
@_options(_ae_options + _tls_options)
def send(paths: tuple[Path, ...], destination: tuple[str, int], keep_going: bool, called_ae: str, calling_ae: str,
         timeout: float, tls: bool, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> None:
    """C-STORE DICOM files (folders are searched) to --to HOST:PORT, each in its own transfer syntax.

    Each file is first checked with the rule radtriage's listener and backfill apply
    (``dicom.acceptance``): one they would refuse is not sent, with the status and reason
    the listener would answer. Prints one line per file with the status, its name and
    meaning, then a summary; exits 0 only when every file was stored.
    """
    from dicom.errors import AssociationFailed
    from dicom.scu import send_datasets

    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()})
    if not files:
        raise click.ClickException("no files to send")
    checked = [(path, _checked(path)) for path in files]
    refused = {path: outcome for path, outcome in checked if isinstance(outcome, tuple)}
    if refused and not keep_going:
        for path, (code, reason) in refused.items():
            click.echo(f"{path}: not sent: {_describe(code)} ({reason})")
        raise click.ClickException(f"nothing sent: {len(refused)} of {len(files)} file(s) would be refused "
                                   "(--keep-going sends the others)")
    to_send = [(path, outcome) for path, outcome in checked if path not in refused]
    host, port = destination
    statuses: list[int] = []
    failure = None
    if to_send:
        try:
            statuses = send_datasets(host, port, called_ae, calling_ae, [item for _path, item in to_send],
                                     _tls_context(tls, tls_ca, tls_cert, tls_key), timeout=timeout)
        except AssociationFailed as exc:
            statuses, failure = exc.statuses, exc
    answered = {path: code for (path, _item), code in zip(to_send, statuses)}
    for path in files:  # in file order
        if path in refused:
            code, reason = refused[path]
            click.echo(f"{path}: not sent: {_describe(code)} ({reason})")
        elif path in answered:
            click.echo(f"{path}: {_describe(answered[path])}")
        else:
            click.echo(f"{path}: not sent: the association failed")
    _summary(len(files), statuses, len(refused))
    if failure is not None:
        raise click.ClickException(str(failure))
    all_stored = not refused and len(statuses) == len(to_send) and all(map(_stored, statuses))
    if not all_stored:
        raise SystemExit(1)


def _checked(path: Path):
    """What to send for ``path`` (the path, or its dataset when its file meta names another SOP
    class than the dataset's), or (status, reason) when the listener would refuse it."""
    from dicom import status
    from dicom.acceptance import identify, read_file
    from dicom.errors import InvalidDataset

    try:
        part = read_file(path)
        header = identify(part.dataset, part.transfer_syntax)
    except InvalidDataset as exc:
        return status.status_for(exc), status.describe(exc)
    except OSError as exc:
        return status.CANNOT_UNDERSTAND, f"cannot read the file: {status.describe(exc)}"
    if part.dataset.file_meta.get("MediaStorageSOPClassUID") != header.sop_class_uid:
        # Sent as the image's own class, as dcmsend does (a stale file meta names another).
        part.dataset.file_meta.MediaStorageSOPClassUID = header.sop_class_uid
        return part.dataset
    return path


def _summary(files: int, statuses: list[int], refused: int) -> None:
    import collections

    stored = sum(1 for code in statuses if _stored(code))
    click.echo(f"{stored} of {files} stored" + (f"; {refused} not sent (radtriage would refuse them)" if refused else ""))
    for code, count in sorted(collections.Counter(c for c in statuses if c != 0).items()):
        click.echo(f"  {count} × {_describe(code)}")
