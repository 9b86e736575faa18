"""``optout-gateway suppressions import|export`` (streaming CSV / JSONL).

Import prints a summary (``--json``: one object) and exits 0 even when some rows
were invalid, since the valid ones were imported and a second run skips them.
It exits 2 when the file cannot be read, 1 when the store is unavailable (the
rows imported so far are kept and reported). Export writes to stdout unless
``--output`` is given and reports the count on stderr. Export asks the sharing guard
first (``--recipient``/``--purpose``, default: the tenant itself, for compliance) and
audits its decision; a prohibited export writes nothing and exits 3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import io
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from suppression.bulk import (
    IMPORT_REASONS,
    Format,
    ImportReport,
    export_rows,
    format_for_path,
    import_rows,
    iter_rows,
    open_input,
)
from suppression.datasets import DatasetStore, authorize_export
from suppression.errors import InvalidRequest, SharingProhibited, StoreUnavailable
from suppression.models import Channel, Reason
from suppression.sharing import Dataset, Purpose, Recipient, RecipientType, SharingRequest

from .settings import Settings

EXIT_USAGE = 2
EXIT_PROHIBITED = 3  # the sharing guard refused the export (suppression.sharing)
SHOWN_ERRORS = 20
MAX_BATCH = 10_000
PROGRESS_INTERVAL_S = 0.2
BULK_REDIS_TIMEOUT_MS = 5_000
# The store reads 512 buckets per round trip and a page that ends inside them is
# re-read from there by the next one: big pages keep that re-reading small.
EXPORT_PAGE = 50_000


class Progress:
    """A one-line progress display on a stream (redrawn in place on a terminal).

    Redraws at most every ``interval_s``; ``size`` (bytes) and ``position``
    give a percentage when the input is a regular file.
    """

    def __init__(self, stream: TextIO, *, size: int | None = None,
                 position: Callable[[], int] | None = None,
                 interval_s: float = PROGRESS_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.size = size
        self.position = position
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.last = float("-inf")
        self.tty = stream.isatty()
        self.drawn = False

    def update(self, report: ImportReport, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < self.interval_s:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        line = (f"{report.rows:,} rows  {report.rows / elapsed:,.0f} rows/s  "
                f"added {report.added:,}  duplicate {report.duplicate:,}  "
                f"invalid {report.invalid:,}")
        pct = self._percent()
        if pct is not None:
            line = f"{pct:5.1f}%  {line}"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.drawn = True

    def _percent(self) -> float | None:
        if not self.size or self.position is None:
            return None
        try:
            return min(100.0, 100.0 * self.position() / self.size)
        except (OSError, ValueError):
            return None

    def finish(self, report: ImportReport) -> None:
        self.update(report, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def bulk_settings(settings: Settings) -> Settings:
    """Settings for a bulk transfer: a longer Redis time budget.

    The serving default (250 ms) is a fail-closed budget for sends; a bulk
    import or export on a busy store would only abort on it and lose its place.
    """
    if settings.redis_timeout_ms >= BULK_REDIS_TIMEOUT_MS:
        return settings
    return settings.model_copy(update={"redis_timeout_ms": BULK_REDIS_TIMEOUT_MS})


# -- import -----------------------------------------------------------------------


def _input_format(args: argparse.Namespace) -> Format:
    if args.format:
        fmt: Format = args.format
        return fmt
    if args.file == "-":
        return "csv"
    found = format_for_path(args.file)
    if found is None:
        raise _Usage(f"cannot tell the format of '{args.file}' from its extension; "
                     "pass --format csv or --format jsonl")
    return found


class _Usage(Exception):
    """Bad input the user must fix: reported on stderr, exit status 2."""


@contextlib.contextmanager
def _open_source(name: str) -> Iterator[IO[str]]:
    if name == "-":
        wrapper = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig",
                                   errors="surrogateescape", newline="")
        try:
            yield wrapper
        finally:
            wrapper.detach()  # leave sys.stdin open
        return
    try:
        stream = open_input(name)
    except FileNotFoundError:
        raise _Usage(f"cannot read '{name}': no such file") from None
    except IsADirectoryError:
        raise _Usage(f"cannot read '{name}': it is a directory") from None
    except OSError as exc:
        raise _Usage(f"cannot read '{name}': {exc.strerror or exc}") from None
    with stream:
        yield stream


def _progress_for(args: argparse.Namespace, stream: IO[str]) -> Progress | None:
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    if not show:
        return None
    size: int | None = None
    position: Callable[[], int] | None = None
    raw = getattr(stream, "buffer", None)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        info = os.fstat(stream.fileno())
        if raw is not None and info.st_size > 0 and os.path.isfile(args.file):
            size, position = info.st_size, raw.tell
    return Progress(sys.stderr, size=size, position=position)


def _print_summary(name: str, tenant: str, channel: Channel, report: ImportReport,
                   out: TextIO) -> None:
    print(f"imported {name} into {tenant}/{channel.value}: added {report.added:,}, "
          f"duplicate {report.duplicate:,}, invalid {report.invalid:,}", file=out)
    for line, message in report.errors[:SHOWN_ERRORS]:
        print(f"  line {line}: {message}", file=out)
    hidden = report.invalid - min(len(report.errors), SHOWN_ERRORS)
    if hidden > 0:
        print(f"  ... and {hidden:,} more invalid row(s) (--json lists the first "
              f"{len(report.errors):,})", file=out)
    if report.invalid:
        print("invalid rows were skipped; fix them and import the file again "
              "(rows already imported count as duplicates)", file=out)


async def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from .cli import _region, _tenant, components

    tenant = _tenant(settings, args.tenant)
    channel = Channel(args.channel)
    name = "stdin" if args.file == "-" else args.file
    try:
        fmt = _input_format(args)
        if not 1 <= args.batch_size <= MAX_BATCH:
            raise _Usage(f"--batch-size must be between 1 and {MAX_BATCH:,}")
        with _open_source(args.file) as stream:
            progress = _progress_for(args, stream)
            report = ImportReport()
            async with components(bulk_settings(settings)) as c:
                try:
                    report = await import_rows(
                        c.service, tenant, channel, iter_rows(stream, fmt),
                        default_region=_region(settings, tenant), reason=Reason(args.reason),
                        batch_size=args.batch_size, detail={"actor": "cli"},
                        on_progress=progress.update if progress is not None else None,
                        report=report)
                except (StoreUnavailable, OSError, asyncio.CancelledError) as exc:
                    # Say how far it got: what was added stays added (and journalled).
                    if progress is not None:
                        progress.finish(report)
                    _print_summary(name, tenant, channel, report, sys.stderr)
                    if not isinstance(exc, OSError):
                        raise
                    print(f"error: reading '{name}' failed: {exc}", file=sys.stderr)
                    return EXIT_USAGE
            if progress is not None:
                progress.finish(report)
    except _Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        _print_summary(name, tenant, channel, report, sys.stdout)
    return 0


# -- export -----------------------------------------------------------------------


@contextlib.contextmanager
def _open_output(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file written beside its destination and renamed into place on
    success, so a failed export never leaves a truncated file under that name."""
    if path is None or path == "-":
        yield sys.stdout
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        raise _Usage(f"cannot write '{path}': {exc.strerror or exc}") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise _Usage(f"cannot write '{path}': {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _recipient(text: str) -> Recipient:
    """``TYPE[:NAME]``, e.g. ``first_party`` or ``processor:Acme ESP``."""
    kind, sep, name = text.partition(":")
    try:
        rtype = RecipientType(kind.strip())
    except ValueError:
        allowed = ", ".join(t.value for t in RecipientType)
        raise _Usage(f"--recipient '{kind}' is not a recipient type ({allowed}); "
                     "write TYPE or TYPE:NAME") from None
    try:
        return Recipient(rtype, name if sep else None)
    except InvalidRequest as exc:
        raise _Usage(f"--recipient: {exc.message}") from None


def _cli_actor() -> dict[str, str]:
    """Who ran the export, as far as the machine can tell (for the audit trail)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        user = str(os.getuid())
    return {"actor": "cli", "os_user": user, "host": socket.gethostname()}


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from .cli import _tenant, components

    tenant = _tenant(settings, args.tenant)
    channel = Channel(args.channel)
    fmt: Format = args.format or (format_for_path(args.output) if args.output else None) \
        or "csv"
    dataset = Dataset.SMS_SUPPRESSIONS if channel is Channel.SMS else Dataset.EMAIL_SUPPRESSIONS
    try:
        ask = SharingRequest((dataset,), _recipient(args.recipient), Purpose(args.purpose))
        async with components(bulk_settings(settings)) as c:
            config = settings.tenant(tenant)
            assert config is not None  # _tenant checked it
            try:
                await authorize_export(DatasetStore(c.store), config, ask, fmt=fmt,
                                       actor=_cli_actor(), via="cli", count=False)
            except SharingProhibited as exc:
                print(f"error: export refused: {exc.message}", file=sys.stderr)
                return EXIT_PROHIBITED
            with _open_output(args.output) as out:
                count = await export_rows(c.store, tenant, channel, out, fmt,
                                          page_size=EXPORT_PAGE)
                out.flush()
    except _Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`export | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # disk full, I/O error
        print(f"error: writing the export failed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    where = args.output if args.output and args.output != "-" else "stdout"
    if args.json:
        print(json.dumps({"exported": count, "tenant": tenant, "channel": channel.value,
                          "format": fmt, "output": where}), file=sys.stderr)
    else:
        print(f"exported {count:,} {channel.value} suppression(s) of {tenant} to {where}",
              file=sys.stderr)
    return 0


# -- parser -----------------------------------------------------------------------


def add_transfer_commands(sub: Any, common: Callable[[argparse.ArgumentParser],
                                                      argparse.ArgumentParser]) -> None:
    imp = common(sub.add_parser(
        "import", help="suppress every identifier of a CSV or JSON-lines file",
        description="Suppress every identifier in FILE (CSV or JSON lines; '-' = stdin). "
        "CSV: a header naming an identifier/phone/phone_number/number/email/address column "
        "(and optionally reason), or no header and the identifier in the first column. "
        "JSON lines: {\"identifier\": ..., \"reason\": ...} per line. Idempotent: "
        "importing a file twice adds nothing the second time."))
    imp.add_argument("file", metavar="FILE", help="the file to import, or - for stdin")
    imp.add_argument("--format", choices=["csv", "jsonl"],
                     help="default: from the extension (.csv, .txt or none: csv; "
                     ".jsonl, .ndjson: jsonl); csv for stdin")
    imp.add_argument("--reason", default=Reason.IMPORT.value,
                     choices=sorted(r.value for r in IMPORT_REASONS),
                     help="reason for rows without one (default: import)")
    imp.add_argument("--batch-size", type=int, default=1000,
                     help="rows per store round trip and journal fsync (default 1000)")
    imp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress on stderr (default: when stderr is a terminal)")
    imp.set_defaults(func=cmd_import)

    exp = common(sub.add_parser(
        "export", help="write every active suppression as CSV or JSON lines",
        description="Write every active suppression of the tenant and channel. CSV columns: "
        "channel,identifier,scope,reason,source,created_at; JSON lines: one object per "
        "suppression. The count goes to stderr. The tenant's sharing rules decide first "
        "whether the recipient may have the list for the purpose; the decision is audited "
        "(GET /v1/audit/exports) and a refusal exits 3."))
    exp.add_argument("--output", "-o", metavar="FILE", help="default: stdout")
    exp.add_argument("--format", choices=["csv", "jsonl"],
                     help="default: from the --output extension, else csv")
    exp.add_argument("--recipient", metavar="TYPE[:NAME]", default=RecipientType.FIRST_PARTY.value,
                     help="who receives the file: first_party (default), processor:NAME, "
                     "affiliate[:NAME] or third_party[:NAME]")
    exp.add_argument("--purpose", default=Purpose.COMPLIANCE.value,
                     choices=[p.value for p in Purpose],
                     help="what the recipient will use it for (default: compliance)")
    exp.set_defaults(func=cmd_export)
