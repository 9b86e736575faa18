"""The local write-ahead journal of opt-out and opt-in events.

An opt-out is acknowledged only once it is durable here, so it survives a Redis
outage, a Redis restart that lost its last writes, and a crash of this process.
The service replays the journal at start-up and after Redis reconnects; applying
an event is idempotent (last writer wins by ``at_ms``), so replaying twice is
harmless.

Layout::

    <directory>/<instance>.lock                 flock'd for the life of the process
    <directory>/<instance>/seg-000000000001.jsonl

Each line is ``<crc32 of the json bytes, 8 hex digits> <compact json>\\n``. A line
without its newline or whose crc does not match is torn (a crash mid-write): it
was never acknowledged, so it is skipped on replay.

The instance lock is what tells a live journal from an orphan: a worker that
crashed (or stopped without pruning) leaves its lock file unheld, and the next
journal to open adopts its segments, so no acknowledged opt-out is stranded
under a process id that will never come back.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suppression.errors import JournalFailed
from suppression.models import OptEvent

logger = logging.getLogger(__name__)

FsyncFn = Callable[[int], None]

_LOCK_SUFFIX = ".lock"
_INSTANCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_SEGMENT_RE = re.compile(r"seg-(\d+)\.jsonl")
# An adopter holds an orphan's lock only for a few renames and fsyncs; a journal
# restarting under that very name waits this long for it before giving up.
_LOCK_WAIT_S = 2.0
_LOCK_POLL_S = 0.02
_DIR_MODE = 0o700  # identifiers are personal data
_FILE_MODE = 0o600


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    # Only what pruning needs stays in memory; the events themselves are re-read.
    unapplied: set[str] = field(default_factory=set)
    newest_ms: int = 0
    size: int = 0
    created_s: float = 0.0


def _valid_instance(name: str) -> bool:
    # A name ending in ".lock" would collide with another instance's lock file.
    return _INSTANCE_RE.fullmatch(name) is not None and not name.endswith(_LOCK_SUFFIX)


def _default_instance() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _segment_name(seq: int) -> str:
    return f"seg-{seq:012d}.jsonl"


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            match = _SEGMENT_RE.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.append((int(match.group(1)), Path(entry.path)))
    found.sort()
    return found


def _encode(events: Sequence[OptEvent]) -> bytes:
    lines: list[bytes] = []
    for event in events:
        payload = json.dumps(
            event.to_json(), separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        lines.append(b"%08x %s\n" % (zlib.crc32(payload), payload))
    return b"".join(lines)


def _decode_line(line: bytes) -> OptEvent:
    if len(line) < 10 or line[8:9] != b" ":
        raise ValueError("malformed line")
    payload = line[9:]
    if int(line[:8], 16) != zlib.crc32(payload):
        raise ValueError("crc mismatch")
    data = json.loads(payload)
    if not isinstance(data, dict):
        raise ValueError("not a json object")
    return OptEvent.from_json(data)


def _read_segment(path: Path, *, warn: bool) -> list[OptEvent]:
    """Every intact event of one segment, in file order."""
    level = logging.WARNING if warn else logging.DEBUG
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    events: list[OptEvent] = []
    for lineno, line in enumerate(lines, 1):
        try:
            events.append(_decode_line(line))
        except (ValueError, KeyError, TypeError) as exc:
            logger.log(level, "journal %s line %d is corrupt (%s); skipped", path, lineno, exc)
    if tail:
        logger.log(
            level,
            "journal %s ends with a torn line of %d bytes (a crash mid-write); skipped, "
            "it was never acknowledged",
            path,
            len(tail),
        )
    return events


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write to the journal")
        view = view[written:]


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # An adopter unlinks the lock file of an instance it has emptied; if that
        # happened between our open and our flock, we hold a lock nobody else
        # can see. Treat it as not acquired.
        try:
            on_disk = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            return None
        held = os.fstat(fd)
        if (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
            os.close(fd)
            return None
        return fd
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise


class Journal:
    """An fsync'd, segmented, append-only log of opt events for one process.

    Synchronous on purpose: ``append`` is the durability point of an opt-out and
    is called with a whole group-committed batch (one write, one fsync). It may
    run in a worker thread (it blocks on fsync) while the event loop calls
    ``mark_applied``, ``prune`` or ``retained_events``: the segment bookkeeping is
    guarded by a lock that is never held across a write or an fsync. Appends
    themselves must be serialised by the caller (one group committer).
    """

    def __init__(
        self,
        directory: Path,
        *,
        retention_s: float = 600.0,
        segment_max_bytes: int = 8 << 20,
        fsync: FsyncFn = os.fsync,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
    ) -> None:
        if retention_s <= 0:
            raise ValueError("retention_s must be positive")
        if segment_max_bytes <= 0:
            raise ValueError("segment_max_bytes must be positive")
        name = _default_instance() if instance is None else instance
        if not _valid_instance(name):
            raise ValueError(f"invalid journal instance name {name!r}")
        self._base = Path(directory)
        self._instance = name
        self._dir = self._base / name
        self._lock_path = self._base / f"{name}{_LOCK_SUFFIX}"
        self._retention_s = retention_s
        self._segment_max_bytes = segment_max_bytes
        self._fsync = fsync
        self._clock = clock
        self._state = "new"  # -> "open" -> "closed"
        self._failed = False
        self._lock_fd: int | None = None
        self._segments: list[_Segment] = []  # closed segments, oldest first
        self._current: _Segment | None = None
        self._current_fd: int | None = None
        self._next_seq = 1
        self._mutex = threading.Lock()  # guards the segment bookkeeping only

    @property
    def instance(self) -> str:
        return self._instance

    @property
    def directory(self) -> Path:
        """This instance's segment directory."""
        return self._dir

    @property
    def failed(self) -> bool:
        return self._failed

    # -- start-up ---------------------------------------------------------

    def open(self) -> list[OptEvent]:
        """Lock this instance, adopt orphaned journals, return every retained event.

        Events come oldest first (by ``at_ms``, then file order) for replay; they
        count as unapplied until ``mark_applied``. Raises ``JournalFailed`` when
        the disk cannot be used or this instance name is held by a live process.
        """
        if self._state != "new":
            raise RuntimeError("Journal.open() may be called only once")
        self._state = "closed"  # until everything below succeeded
        try:
            self._ensure_dir(self._base)
            self._lock_fd = self._lock_own()
            if not self._dir.is_dir():
                os.mkdir(self._dir, _DIR_MODE)
                self._fsync_dir(self._base)
            own = _list_segments(self._dir)
            if own:
                self._next_seq = own[-1][0] + 1
            self._adopt_orphans()
            events = self._load()
        except OSError as exc:
            self._failed = True
            self._release()
            logger.error("journal %s could not be opened: %s", self._dir, exc)
            raise JournalFailed() from exc
        except BaseException:
            self._release()
            raise
        self._state = "open"
        return events

    def _ensure_dir(self, path: Path) -> None:
        missing: list[Path] = []
        probe = path
        while not probe.is_dir() and probe.parent != probe:
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):
            try:
                os.mkdir(directory, _DIR_MODE)
            except FileExistsError:
                continue  # a sibling process made it (and made it durable)
            self._fsync_dir(directory.parent)

    def _lock_own(self) -> int:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            fd = _try_lock(self._lock_path)
            if fd is not None:
                return fd
            if time.monotonic() >= deadline:
                raise JournalFailed(
                    f"The opt-out journal of instance {self._instance!r} in {self._base} is "
                    "locked by another live process; give each process its own instance name."
                )
            time.sleep(_LOCK_POLL_S)

    def _adopt_orphans(self) -> None:
        names: set[str] = set()
        with os.scandir(self._base) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    name = entry.name
                elif entry.name.endswith(_LOCK_SUFFIX) and entry.is_file(follow_symlinks=False):
                    name = entry.name[: -len(_LOCK_SUFFIX)]
                else:
                    continue
                if name != self._instance and _valid_instance(name):
                    names.add(name)
        for name in sorted(names):
            self._adopt(name)

    def _adopt(self, name: str) -> None:
        lock_path = self._base / f"{name}{_LOCK_SUFFIX}"
        fd = _try_lock(lock_path)
        if fd is None:
            logger.debug("journal instance %s is live; not adopted", name)
            return
        try:
            source = self._base / name
            moved = 0
            if source.is_dir():
                for _, path in _list_segments(source):
                    # We hold our own lock: nobody else names files in our directory.
                    os.rename(path, self._dir / _segment_name(self._next_seq))
                    self._next_seq += 1
                    moved += 1
                if moved:
                    # Destination first: after a crash a segment is in one place or
                    # the other, never in neither.
                    self._fsync_dir(self._dir)
                    self._fsync_dir(source)
                try:
                    os.rmdir(source)
                except OSError as exc:
                    # Keep the lock file so a later start-up looks again.
                    logger.warning("journal: left orphan directory %s in place: %s", source, exc)
                    return
            os.unlink(lock_path)
            self._fsync_dir(self._base)
            if moved:
                logger.info(
                    "journal: adopted %d segment(s) of instance %s, whose process is gone",
                    moved,
                    name,
                )
        finally:
            os.close(fd)

    def _load(self) -> list[OptEvent]:
        events: list[OptEvent] = []
        for seq, path in _list_segments(self._dir):
            seg_events = _read_segment(path, warn=True)
            self._segments.append(
                _Segment(
                    seq=seq,
                    path=path,
                    unapplied={e.id for e in seg_events},
                    newest_ms=max((e.at_ms for e in seg_events), default=0),
                    size=path.stat().st_size,
                )
            )
            self._next_seq = max(self._next_seq, seq + 1)
            events.extend(seg_events)
        events.sort(key=lambda e: e.at_ms)  # stable: file order breaks ties
        return events

    # -- the write path ---------------------------------------------------

    def append(self, events: Sequence[OptEvent]) -> None:
        """Make ``events`` durable: one write and one fsync for the whole batch.

        Returns only once the data (and, for a new segment, its directory entry)
        is on disk. Any OSError fails the journal for good: a failed fsync is
        never retried, because the kernel may have dropped the dirty pages and
        cleared the error ("fsyncgate"); the process must restart and replay.
        """
        if self._failed:
            raise JournalFailed()
        if self._state != "open":
            raise RuntimeError("the journal is not open")
        if not events:
            return
        data = _encode(events)
        now = self._clock()
        try:
            with self._mutex:
                segment = self._current
                if segment is not None and (
                    segment.size >= self._segment_max_bytes
                    or now - segment.created_s >= self._retention_s / 2
                ):
                    self._rotate()
                    segment = None
                created = segment is None
                if segment is None:
                    segment = self._create_segment(now)
                fd = self._current_fd
            assert fd is not None
            _write_all(fd, data)
            self._fsync(fd)
            if created:
                self._fsync_dir(self._dir)
        except OSError as exc:
            with self._mutex:
                self._fail(exc)
            raise JournalFailed() from exc
        with self._mutex:
            segment.size += len(data)
            segment.unapplied.update(e.id for e in events)
            # The append time counts too: retention is about how long Redis may take
            # to persist what it was given, whatever time the event itself carries.
            segment.newest_ms = max(
                segment.newest_ms, int(now * 1000), *(e.at_ms for e in events)
            )

    def _create_segment(self, now: float) -> _Segment:
        path = self._dir / _segment_name(self._next_seq)
        fd = os.open(
            path,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC,
            _FILE_MODE,
        )
        segment = _Segment(seq=self._next_seq, path=path, created_s=now)
        self._next_seq += 1
        self._current, self._current_fd = segment, fd
        return segment

    def _rotate(self) -> None:
        if self._current is None:
            return
        self._segments.append(self._current)
        fd, self._current, self._current_fd = self._current_fd, None, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:  # already fsync'd: nothing is lost
                logger.warning("journal: closing %s failed: %s", self._dir, exc)

    def _fail(self, exc: OSError) -> None:
        self._failed = True
        logger.critical(
            "journal %s failed (%s): every further opt-out is refused until restart", self._dir, exc
        )
        self._rotate()

    def _fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    # -- bookkeeping ------------------------------------------------------

    def mark_applied(self, event_ids: Iterable[str]) -> None:
        """Record that these events reached the store (in memory only)."""
        ids = set(event_ids)
        if not ids:
            return
        with self._mutex:
            for segment in self._all_segments():
                if segment.unapplied:
                    segment.unapplied.difference_update(ids)

    def prune(self) -> int:
        """Delete closed segments that are fully applied and older than retention.

        Returns how many were deleted. The current segment is never deleted.
        Does nothing once the journal has failed: the disk is left as it is for
        the replay after the restart.
        """
        if self._state != "open" or self._failed:
            return 0
        cutoff_ms = (self._clock() - self._retention_s) * 1000
        with self._mutex:
            doomed = [s for s in self._segments if not s.unapplied and s.newest_ms < cutoff_ms]
        deleted: set[int] = set()
        for segment in doomed:
            try:
                os.unlink(segment.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("journal: could not delete %s: %s", segment.path, exc)
                continue
            deleted.add(segment.seq)
        # No directory fsync: a deletion lost in a crash only replays applied
        # (idempotent) events again.
        with self._mutex:
            self._segments = [s for s in self._segments if s.seq not in deleted]
        if deleted:
            logger.debug("journal %s: pruned %d segment(s)", self._dir, len(deleted))
        return len(deleted)

    def retained_events(self) -> list[OptEvent]:
        """Every event in the retained segments, oldest first, re-read from disk."""
        if self._state != "open":
            raise RuntimeError("the journal is not open")
        with self._mutex:
            retained = self._all_segments()
        events: list[OptEvent] = []
        try:
            for segment in retained:
                try:
                    events.extend(_read_segment(segment.path, warn=False))
                except FileNotFoundError:
                    continue  # pruned meanwhile: it held only applied events
        except OSError as exc:
            logger.error("journal %s could not be read: %s", self._dir, exc)
            raise JournalFailed() from exc
        events.sort(key=lambda e: e.at_ms)
        return events

    def _all_segments(self) -> list[_Segment]:
        if self._current is None:
            return list(self._segments)
        return [*self._segments, self._current]

    # -- shutdown ---------------------------------------------------------

    def close(self) -> None:
        """Close the current segment and release the instance lock. Idempotent."""
        with self._mutex:
            self._rotate()
        self._release()
        self._state = "closed"

    def _release(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # releases the flock
