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
    from pynetdicom.status import code_to_category

    return f"0x{code:04X} {code_to_category(code)}"


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
@_options(_ae_options + _tls_options)
def send(paths: tuple[Path, ...], destination: tuple[str, int], called_ae: str, calling_ae: str, timeout: float,
         tls: bool, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> None:
    """C-STORE DICOM files (folders are searched) to --to HOST:PORT, each in its own transfer syntax.

    Prints one line per file with the status the peer answered; exits 1 if any was not Success.
    """
    from dicom.errors import AssociationFailed, InvalidDataset
    from dicom.scu import send_datasets

    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()})
    if not files:
        raise click.ClickException("no files to send")
    host, port = destination
    try:
        statuses = send_datasets(host, port, called_ae, calling_ae, files,
                                 _tls_context(tls, tls_ca, tls_cert, tls_key), timeout=timeout)
    except InvalidDataset as exc:
        raise click.ClickException(f"nothing sent: {exc}") from exc
    except AssociationFailed as exc:
        for path, code in zip(files, exc.statuses):
            click.echo(f"{path}: {_describe(code)}")
        raise click.ClickException(str(exc)) from exc
    for path, code in zip(files, statuses):
        click.echo(f"{path}: {_describe(code)}")
    from pynetdicom.status import code_to_category

    failed = sum(1 for code in statuses if code_to_category(code) not in ("Success", "Warning"))
    click.echo(f"{len(files) - failed} of {len(files)} stored")
    if failed:
        raise SystemExit(1)
