"""The embedded redis-server child process (gateway/embedded_redis.py)."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions
from redis_proc import (
    EmbeddedRedisError,
    RedisServerProcess,
    free_port,
    start_embedded,
    tcp_redis,
)

from gateway.embedded_redis import NOT_FOUND_MESSAGE


@pytest.fixture
def owned() -> Iterator[list[RedisServerProcess]]:
    procs: list[RedisServerProcess] = []
    yield procs
    for proc in procs:
        proc.stop(timeout_s=5.0)


def client(url: str, **kwargs: float) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **kwargs)


def test_start_embedded_starts_and_aof_survives_stop_start(
    tmp_path: Path, owned: list[RedisServerProcess]
) -> None:
    # No OPTOUT_REDIS_URL: serve starts its own redis on a unix socket; data survives stop+start.
    url, proc = start_embedded(tmp_path)
    assert proc is not None
    owned.append(proc)
    sock = tmp_path.resolve() / "redis" / "redis.sock"
    assert url == f"unix://{sock}" == proc.url
    assert stat.S_IMODE(sock.stat().st_mode) == 0o700
    with client(url) as r:
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert r.config_get("save") == {"save": ""}
        assert r.config_get("port") == {"port": "0"}
        assert r.config_get("hash-max-listpack-entries") == {"hash-max-listpack-entries": "256"}
        r.set("optout:k", "v1")
        r.hset("bucket", mapping={f"f{i}": "1" for i in range(200)})
        assert r.object("encoding", "bucket") == "listpack"
    pid = proc.pid
    proc.stop()
    assert proc.pid is None and not sock.exists()
    proc.start()
    assert proc.pid is not None and proc.pid != pid
    with client(url) as r:
        assert r.get("optout:k") == "v1"
        assert r.hlen("bucket") == 200


def test_writes_survive_kill_and_restart(tmp_path: Path, owned: list[RedisServerProcess]) -> None:
    # Redis crashes (SIGKILL) after the everysec fsync: restart on the same URL reloads the AOF.
    proc = tcp_redis(tmp_path)
    owned.append(proc)
    proc.start()
    url = proc.url
    assert url == f"redis://127.0.0.1:{proc.port}/0"
    with client(url) as r:
        r.set("fsynced", "1")
        time.sleep(1.5)
        r.set("just-written", "2")  # written to the AOF fd before the reply: survives SIGKILL
    proc.kill()
    assert proc.pid is None
    proc.restart()
    assert proc.url == url
    with client(url) as r:
        assert r.mget("fsynced", "just-written") == ["1", "2"]


def test_second_start_embedded_reuses_running_server(
    tmp_path: Path, owned: list[RedisServerProcess]
) -> None:
    # A second `serve` / CLI command on the same data dir reuses the server and does not own it.
    url, proc = start_embedded(tmp_path)
    assert proc is not None
    owned.append(proc)
    with client(url) as r:
        r.set("shared", "yes")
    url2, proc2 = start_embedded(tmp_path)
    assert (url2, proc2) == (url, None)
    with client(url2) as r:
        assert r.get("shared") == "yes"


def test_start_embedded_replaces_stale_socket_after_crash(
    tmp_path: Path, owned: list[RedisServerProcess]
) -> None:
    # Redis was SIGKILLed (socket file and pidfile left behind): a new server starts with the data.
    url, proc = start_embedded(tmp_path)
    assert proc is not None
    owned.append(proc)
    with client(url) as r:
        r.set("before-crash", "1")
    proc.kill()
    assert (tmp_path / "redis" / "redis.sock").exists()
    url2, proc2 = start_embedded(tmp_path)
    assert proc2 is not None
    owned.append(proc2)
    assert url2 == url
    with client(url2) as r:
        assert r.get("before-crash") == "1"


def test_missing_redis_server_gives_actionable_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-server is not installed and OPTOUT_REDIS_URL is unset: say how to fix it.
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(EmbeddedRedisError) as excinfo:
        start_embedded(tmp_path / "data")
    assert str(excinfo.value) == NOT_FOUND_MESSAGE
    assert "OPTOUT_REDIS_URL" in str(excinfo.value)
    with pytest.raises(EmbeddedRedisError, match="could not run redis-server"):
        start_embedded(tmp_path / "data2", executable=str(tmp_path / "no-such-redis-server"))


def test_failed_start_reports_redis_log_tail(tmp_path: Path) -> None:
    # redis-server refuses its configuration: the error carries the log tail, no child is left.
    proc = RedisServerProcess(tmp_path, port=free_port(), extra_config={"no-such-directive": "1"})
    with pytest.raises(EmbeddedRedisError, match="(?s)exited with status.*no-such-directive"):
        proc.start()
    assert proc.pid is None


def test_pause_times_out_clients_and_resume_recovers(
    tmp_path: Path, owned: list[RedisServerProcess]
) -> None:
    # Redis hangs (SIGSTOP): a client with socket_timeout=0.2 times out; after SIGCONT it recovers.
    proc = tcp_redis(tmp_path)
    owned.append(proc)
    proc.start()
    with client(proc.url, socket_timeout=0.2) as r:
        r.set("k", "v")
        proc.pause()
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            r.get("k")
        assert time.monotonic() - started < 2.0
        proc.resume()
        assert r.get("k") == "v"


def test_start_embedded_refuses_hung_server_on_socket(
    tmp_path: Path, owned: list[RedisServerProcess]
) -> None:
    # The data dir's redis is hung: a second start_embedded fails clearly, starts no rival.
    url, proc = start_embedded(tmp_path)
    assert proc is not None
    owned.append(proc)
    proc.pause()
    with pytest.raises(EmbeddedRedisError, match="did not answer PING"):
        start_embedded(tmp_path)
    proc.resume()
    assert start_embedded(tmp_path) == (url, None)


def test_stop_of_paused_server_still_shuts_down(tmp_path: Path) -> None:
    # The gateway exits while Redis is SIGSTOPped: stop() continues and terminates it.
    proc = tcp_redis(tmp_path)
    proc.start()
    proc.pause()
    proc.stop(timeout_s=5.0)
    assert proc.pid is None


def test_too_long_socket_path_is_rejected(tmp_path: Path) -> None:
    # OPTOUT_DATA_DIR so deep the unix socket path exceeds the OS limit: name it, suggest a fix.
    data_dir = tmp_path / ("d" * 120)
    with pytest.raises(EmbeddedRedisError, match="OPTOUT_DATA_DIR") as excinfo:
        start_embedded(data_dir)
    assert str(data_dir / "redis" / "redis.sock") in str(excinfo.value)
    assert not data_dir.exists()
    with pytest.raises(EmbeddedRedisError, match="shorter path"):
        RedisServerProcess(tmp_path, unix_socket=data_dir / "redis.sock")
