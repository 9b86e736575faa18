"""The opt-out write-ahead journal: durability, torn lines, fail-closed, pruning, adoption."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from suppression import journal as journal_mod
from suppression.errors import JournalFailed
from suppression.journal import Journal
from suppression.models import Channel, OptEvent, Reason, Source

T0 = 1_700_000_000.0  # the injected clock's start, in seconds


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingFsync:
    """Delegates to os.fsync, counting calls; raises EIO from call number ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise OSError(errno.EIO, "injected fsync failure")
        os.fsync(fd)


def ev(i: int, at_ms: int | None = None, action: str = "opt_out") -> OptEvent:
    return OptEvent(
        action="opt_out" if action == "opt_out" else "opt_in",
        tenant="acme",
        channel=Channel.SMS,
        identifier=f"+1415555{i:04d}",
        reason=Reason.STOP_KEYWORD,
        source=Source.SMS,
        at_ms=int(T0 * 1000) + i if at_ms is None else at_ms,
        id=f"{i:032x}",
        detail={"msg": f"SM{i}"},
    )


def segments(journal: Journal) -> list[Path]:
    return sorted(journal.directory.glob("seg-*.jsonl"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def opened(tmp_path: Path, clock: FakeClock) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal", clock=clock, instance="a")
    assert j.open() == []
    yield j
    j.close()


# Scenario: events appended in batches come back from a reopen oldest first, ties in file order.
def test_append_and_reopen_returns_events_in_order(tmp_path: Path, clock: FakeClock) -> None:
    j = Journal(tmp_path / "j", clock=clock, instance="a")
    j.open()
    first = [ev(1, at_ms=500), ev(2, at_ms=500)]
    second = [ev(3, at_ms=100), ev(4, at_ms=900, action="opt_in")]
    j.append(first)
    j.append(second)
    j.close()

    again = Journal(tmp_path / "j", clock=clock, instance="a")
    assert again.open() == [second[0], first[0], first[1], second[1]]
    again.close()


# Scenario: a line is "<crc32 hex> <compact json>\n" with the crc of the json bytes.
def test_line_format(opened: Journal) -> None:
    opened.append([ev(1)])
    (line,) = segments(opened)[0].read_bytes().splitlines(keepends=True)
    crc, payload = line[:8], line[9:-1]
    assert line.endswith(b"\n") and line[8:9] == b" "
    assert int(crc, 16) == zlib.crc32(payload)
    assert payload == json.dumps(ev(1).to_json(), separators=(",", ":")).encode()
    assert OptEvent.from_json(json.loads(payload)) == ev(1)


# Scenario: a crash mid-write left a line without its newline: it is skipped with a warning.
def test_torn_tail_line_skipped(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "j", clock=clock, instance="a")
    j.open()
    j.append([ev(1), ev(2)])
    j.close()
    seg = segments(j)[0]
    whole_line = seg.read_bytes().splitlines(keepends=True)[0]
    with open(seg, "ab") as f:
        f.write(whole_line[:-1])  # even an intact-looking line needs its newline

    again = Journal(tmp_path / "j", clock=clock, instance="a")
    with caplog.at_level(logging.WARNING, logger="suppression.journal"):
        assert again.open() == [ev(1), ev(2)]
    assert "torn" in caplog.text
    again.close()


# Scenario: a line whose crc does not match its json is skipped; its neighbours survive.
def test_corrupt_crc_line_skipped(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "j", clock=clock, instance="a")
    j.open()
    j.append([ev(1), ev(2), ev(3)])
    j.close()
    seg = segments(j)[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"+14155550002", b"+14155550009")
    seg.write_bytes(b"".join([*lines, b"not a journal line\n"]))

    again = Journal(tmp_path / "j", clock=clock, instance="a")
    with caplog.at_level(logging.WARNING, logger="suppression.journal"):
        assert again.open() == [ev(1), ev(3)]
    assert "crc mismatch" in caplog.text
    again.close()


# Scenario: fsync fails (EIO): JournalFailed; every later append fails at once, touching no disk.
def test_failed_fsync_fails_forever(tmp_path: Path, clock: FakeClock) -> None:
    fsync = CountingFsync()
    j = Journal(tmp_path / "j", clock=clock, fsync=fsync, instance="a")
    j.open()
    j.append([ev(1)])
    fsync.fail_at = fsync.calls + 1
    with pytest.raises(JournalFailed):
        j.append([ev(2)])
    assert j.failed
    calls, size = fsync.calls, segments(j)[0].stat().st_size

    fsync.fail_at = None  # the disk "recovered": still no retry
    for i in range(3, 6):
        with pytest.raises(JournalFailed):
            j.append([ev(i)])
    assert fsync.calls == calls  # never fsync'd again
    assert segments(j)[0].stat().st_size == size  # nothing written after the failure
    assert j.prune() == 0
    j.close()

    # Nothing after the failure reached the disk, so nothing after it can be replayed.
    again = Journal(tmp_path / "j", clock=clock, instance="a")
    replayed = again.open()
    assert {e.id for e in replayed} <= {ev(1).id, ev(2).id}
    assert ev(1) in replayed
    again.close()


# Scenario: the write itself fails (ENOSPC): JournalFailed, then later appends fail without I/O.
def test_write_failure_fails_forever(
    opened: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened.append([ev(1)])
    size = segments(opened)[0].stat().st_size
    writes: list[int] = []

    def broken_write(fd: int, data: bytes | memoryview) -> int:
        writes.append(fd)
        raise OSError(errno.ENOSPC, "injected: no space left")

    with monkeypatch.context() as m:
        m.setattr(os, "write", broken_write)
        with pytest.raises(JournalFailed):
            opened.append([ev(2)])
        assert opened.failed and len(writes) == 1
        with pytest.raises(JournalFailed):
            opened.append([ev(3)])
        assert len(writes) == 1
    with pytest.raises(JournalFailed):
        opened.append([ev(4)])
    assert segments(opened)[0].stat().st_size == size


# Scenario: a batch of 1,000 events is made durable with one write and one fsync.
def test_batch_is_one_write_and_one_fsync(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsync = CountingFsync()
    j = Journal(tmp_path / "j", clock=clock, fsync=fsync, instance="a")
    j.open()
    j.append([ev(0)])  # the segment (and its directory fsync) already exist
    writes = 0
    real_write = os.write

    def counting_write(fd: int, data: bytes | memoryview) -> int:
        nonlocal writes
        writes += 1
        return real_write(fd, data)

    before = fsync.calls
    batch = [ev(i) for i in range(1, 1001)]
    with monkeypatch.context() as m:
        m.setattr(os, "write", counting_write)
        j.append(batch)
    assert (writes, fsync.calls - before) == (1, 1)
    assert j.retained_events() == [ev(0), *batch]
    j.close()


# Scenario: creating a segment fsyncs the file and its directory; later appends fsync the file only.
def test_directory_fsync_on_segment_creation(tmp_path: Path, clock: FakeClock) -> None:
    fsync = CountingFsync()
    j = Journal(tmp_path / "j", clock=clock, fsync=fsync, instance="a", segment_max_bytes=1)
    j.open()
    assert fsync.calls >= 2  # the new directories reached their parents durably
    fsync.calls = 0
    j.append([ev(1)])
    assert fsync.calls == 2  # file + directory
    j.append([ev(2)])  # segment_max_bytes=1: rotates, so a new file again
    assert fsync.calls == 4
    j.close()

    k = Journal(tmp_path / "k", clock=clock, fsync=fsync, instance="a")
    k.open()
    fsync.calls = 0
    k.append([ev(1)])
    k.append([ev(2)])
    k.append([ev(3)])
    assert fsync.calls == 2 + 1 + 1
    k.close()


# Scenario: the journal rotates when a segment is too big or older than retention/2.
def test_rotation_by_size_and_age(tmp_path: Path, clock: FakeClock) -> None:
    line_len = len(journal_mod._encode([ev(1)]))
    j = Journal(
        tmp_path / "j", clock=clock, instance="a", retention_s=600, segment_max_bytes=2 * line_len
    )
    j.open()
    j.append([ev(1)])
    j.append([ev(2)])  # 2 lines: now full
    assert len(segments(j)) == 1
    j.append([ev(3)])
    assert len(segments(j)) == 2
    clock.now += 299
    j.append([ev(4)])
    assert len(segments(j)) == 2
    clock.now += 1  # the current segment is now retention/2 old
    j.append([ev(5)])
    assert len(segments(j)) == 3
    assert [len(p.read_bytes().splitlines()) for p in segments(j)] == [2, 2, 1]
    j.close()

    again = Journal(tmp_path / "j", clock=clock, instance="a")
    assert again.open() == [ev(i) for i in range(1, 6)]
    again.close()


# Scenario: prune deletes only closed segments that are applied and older than retention.
def test_prune_deletes_only_applied_old_closed_segments(tmp_path: Path, clock: FakeClock) -> None:
    j = Journal(tmp_path / "j", clock=clock, instance="a", retention_s=600)
    j.open()

    def now_ms() -> int:
        return int(clock.now * 1000)

    j.append([ev(1, at_ms=now_ms())])  # segment 1
    clock.now += 300
    j.append([ev(2, at_ms=now_ms())])  # segment 2
    clock.now += 300
    j.append([ev(3, at_ms=now_ms())])  # segment 3, current
    first, second, third = segments(j)

    j.mark_applied([ev(1).id, ev(3).id])
    assert j.prune() == 0  # segment 1 is applied but only 600 s old: not older than retention
    clock.now += 1
    assert j.prune() == 1
    assert segments(j) == [second, third]  # segment 2 is unapplied

    clock.now += 10_000
    assert j.prune() == 0  # still unapplied; the current one is never deleted
    j.mark_applied(iter([ev(2).id]))
    assert j.prune() == 1
    assert segments(j) == [third]
    assert j.retained_events() == [ev(3, at_ms=int((T0 + 600) * 1000))]
    j.close()


# Scenario: events replayed by open() stay unapplied (unprunable) until mark_applied.
def test_replayed_events_unapplied_until_marked(tmp_path: Path, clock: FakeClock) -> None:
    j = Journal(tmp_path / "j", clock=clock, instance="a")
    j.open()
    j.append([ev(1), ev(2)])
    j.close()

    clock.now += 10_000
    again = Journal(tmp_path / "j", clock=clock, instance="a")
    replayed = again.open()
    assert again.prune() == 0
    again.mark_applied([replayed[0].id])
    assert again.prune() == 0
    again.mark_applied([replayed[1].id])
    assert again.prune() == 1
    assert again.retained_events() == []
    again.append([ev(3)])  # a fresh segment after the replayed ones
    assert [p.name for p in segments(again)] == ["seg-000000000002.jsonl"]
    again.close()


# Scenario: a crashed (unlocked) instance's journal is adopted, moved, and later pruned normally.
def test_orphan_journal_is_adopted(tmp_path: Path, clock: FakeClock) -> None:
    base = tmp_path / "j"
    a = Journal(base, clock=clock, instance="a", segment_max_bytes=1)
    a.open()
    a.append([ev(1)])
    a.append([ev(2)])
    a.close()  # no prune: a's opt-outs are still waiting for the store

    b = Journal(base, clock=clock, instance="b")
    assert b.open() == [ev(1), ev(2)]
    assert not (base / "a").exists() and not (base / "a.lock").exists()
    assert len(segments(b)) == 2

    clock.now += 10_000
    b.mark_applied([ev(1).id, ev(2).id])
    assert b.prune() == 2
    b.close()


# Scenario: a journal whose lock is held (a live process) is not adopted.
def test_live_instance_is_not_adopted(tmp_path: Path, clock: FakeClock) -> None:
    base = tmp_path / "j"
    a = Journal(base, clock=clock, instance="a")
    a.open()
    a.append([ev(1)])

    b = Journal(base, clock=clock, instance="b")
    assert b.open() == []
    assert len(segments(a)) == 1

    # Confirm with a raw flock from yet another open file description.
    fd = os.open(base / "a.lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)

    a.append([ev(2)])  # a keeps working undisturbed
    a.close()
    b.close()
    c = Journal(base, clock=clock, instance="c")
    assert c.open() == [ev(1), ev(2)]  # both a and b are orphans now; b's journal was empty
    assert sorted(p.name for p in base.iterdir()) == ["c", "c.lock"]
    c.close()


# Scenario: two live journals cannot share one instance name.
def test_same_instance_twice_is_refused(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "_LOCK_WAIT_S", 0.05)
    a = Journal(tmp_path / "j", clock=clock, instance="a")
    a.open()
    with pytest.raises(JournalFailed, match="locked by another live process"):
        Journal(tmp_path / "j", clock=clock, instance="a").open()
    a.close()
    again = Journal(tmp_path / "j", clock=clock, instance="a")
    again.open()
    again.close()


# Scenario: the default instance name is host-pid; path-like names are rejected.
def test_instance_names(tmp_path: Path) -> None:
    assert Journal(tmp_path).instance.endswith(f"-{os.getpid()}")
    for bad in ("", "../x", "a/b", ".hidden", "x.lock"):
        with pytest.raises(ValueError):
            Journal(tmp_path, instance=bad)


# Scenario: open() creates missing parent directories; append before open is a programming error.
def test_open_creates_directories(tmp_path: Path, clock: FakeClock) -> None:
    j = Journal(tmp_path / "x" / "y" / "journal", clock=clock, instance="a")
    with pytest.raises(RuntimeError):
        j.append([ev(1)])
    assert j.open() == []
    assert (tmp_path / "x" / "y" / "journal" / "a").is_dir()
    assert (tmp_path / "x" / "y" / "journal" / "a.lock").is_file()
    j.close()
    j.close()  # idempotent
