"""Run a private ``redis-server`` as a child process (used when OPTOUT_REDIS_URL is unset).

The embedded server persists with AOF (``appendfsync everysec``) in its directory and listens on
a unix socket there (or on 127.0.0.1 TCP, for tests).  It is started in a new session so the
terminal's Ctrl-C (SIGINT to the foreground process group) does not kill it before the gateway
has drained; the gateway stops it explicitly on exit.

If the gateway itself is SIGKILLed the child keeps running: nothing portable can prevent that.
It is harmless: the next ``start_embedded`` on the same data dir finds the server answering on
the socket and reuses it instead of starting a second writer on the same AOF.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedRedisError", "RedisServerProcess", "start_embedded"]

NOT_FOUND_MESSAGE = (
    "redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install "
    "redis-server; macOS: brew install redis) or set OPTOUT_REDIS_URL to an existing Redis."
)

# sun_path is 108 bytes on Linux and 104 on the BSDs/macOS, including the terminating NUL.
MAX_UNIX_SOCKET_PATH_BYTES = 107 if sys.platform.startswith("linux") else 103

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
PID_NAME = "redis.pid"
LOCK_NAME = "start.lock"

_POLL_INTERVAL_S = 0.02
_LOADING_LOG_EVERY_S = 5.0

PingResult = Literal["ready", "loading", "unreachable", "no-reply", "error"]
Address = str | tuple[str, int]


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started, found or stopped (message says why)."""


def _ping(address: Address, timeout_s: float) -> PingResult:
    """PING over a raw socket. ``unreachable``: nothing listening; ``no-reply``: hung."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(address)
        except OSError:
            return "unreachable"
        try:
            sock.sendall(b"PING\r\n")
            data = sock.recv(256)
        except TimeoutError:
            return "no-reply"
        except OSError:
            return "unreachable"
    if data.startswith(b"+PONG"):
        return "ready"
    if data.startswith(b"-LOADING"):
        return "loading"
    if not data:
        return "unreachable"
    return "error"


def _check_socket_path(path: Path) -> None:
    size = len(os.fsencode(path))
    if size > MAX_UNIX_SOCKET_PATH_BYTES:
        raise EmbeddedRedisError(
            f"The embedded Redis unix socket path {str(path)!r} is {size} bytes long; the "
            f"operating system allows at most {MAX_UNIX_SOCKET_PATH_BYTES}. Set OPTOUT_DATA_DIR "
            "to a shorter path (or set OPTOUT_REDIS_URL to an existing Redis)."
        )


def _resolve_executable(executable: str | None) -> str:
    if executable is not None:
        return executable
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedRedisError(NOT_FOUND_MESSAGE)
    return found


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(logfile: Path, lines: int = 20) -> str:
    try:
        text = logfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no redis log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(redis log is empty)"


class RedisServerProcess:
    """A redis-server child process with AOF persistence in `directory`."""

    def __init__(
        self,
        directory: Path,
        *,
        unix_socket: Path | None = None,
        port: int = 0,
        executable: str | None = None,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.unix_socket = None if unix_socket is None else Path(unix_socket).resolve()
        if self.unix_socket is not None:
            _check_socket_path(self.unix_socket)
        elif port == 0:
            # TCP only: fix the port now so restart() keeps the same URL.
            port = _free_tcp_port()
        self.port = port
        self.executable = _resolve_executable(executable)
        self.extra_config: dict[str, str] = dict(extra_config or {})
        self.logfile = self.directory / LOG_NAME
        self.pidfile = self.directory / PID_NAME
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- addressing ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> Address:
        if self.unix_socket is not None:
            return str(self.unix_socket)
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int | None:
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def command_line(self) -> list[str]:
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
            # The suppression store keeps ~150 entries per hash bucket at 10M entries and
            # relies on the buckets staying listpack-encoded.
            "--hash-max-listpack-entries", "256",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.unix_socket is not None:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        for key, value in self.extra_config.items():
            args += [f"--{key.removeprefix('--')}", value]
        return args

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float = 10.0) -> None:
        """Spawn redis-server and wait until it answers PING.

        ``timeout_s`` bounds the wait for the server to start answering; time spent answering
        ``-LOADING`` (replaying a large AOF) is not counted, since killing it then would only
        restart the replay.
        """
        if self.running:
            raise EmbeddedRedisError(f"redis-server (pid {self.pid}) is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as console:
            try:
                self._proc = subprocess.Popen(
                    self.command_line(),
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=console,
                    start_new_session=True,  # not killed by the terminal's Ctrl-C SIGINT
                )
            except OSError as exc:
                raise EmbeddedRedisError(
                    f"could not run redis-server {self.executable!r}: {exc}. {NOT_FOUND_MESSAGE}"
                ) from exc
        self._paused = False
        logger.info("started redis-server pid %d on %s", self._proc.pid, self.url)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self._terminate(timeout_s=2.0)
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        next_log = time.monotonic() + _LOADING_LOG_EVERY_S
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with status {code} during startup. Its log "
                    f"({self.logfile}) ends with:\n{_log_tail(self.logfile)}"
                )
            state = _ping(self.address, timeout_s=1.0)
            if state == "ready":
                return
            now = time.monotonic()
            if state == "loading":
                deadline = now + timeout_s
                if now >= next_log:
                    logger.info("redis-server pid %d is still loading its AOF", self._proc.pid)
                    next_log = now + _LOADING_LOG_EVERY_S
            elif now >= deadline:
                raise EmbeddedRedisError(
                    f"redis-server (pid {self._proc.pid}) did not answer PING on {self.url} "
                    f"within {timeout_s:g}s. Its log ({self.logfile}) ends with:\n"
                    f"{_log_tail(self.logfile)}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down gracefully (SIGTERM: AOF flushed and kept); SIGKILL after ``timeout_s``."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            logger.info("stopping redis-server pid %d", self._proc.pid)
        self._terminate(timeout_s)

    def _terminate(self, timeout_s: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "redis-server pid %d did not exit %gs after SIGTERM; sending SIGKILL "
                    "(writes from the last second may be lost)",
                    proc.pid,
                    timeout_s,
                )
                proc.kill()
                proc.wait()
        self._paused = False
        if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            logger.warning(
                "redis-server pid %d exited with status %s; log tail:\n%s",
                proc.pid,
                proc.returncode,
                _log_tail(self.logfile),
            )

    def kill(self) -> None:
        """SIGKILL the server and reap it (simulates a crash; AOF is not rewritten)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        logger.info("killing redis-server pid %d", proc.pid)
        proc.kill()
        proc.wait()
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP the server (simulates a hung Redis: connects succeed, nothing answers)."""
        proc = self._require_running("pause")
        proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        proc = self._require_running("resume")
        proc.send_signal(signal.SIGCONT)
        self._paused = False

    def restart(self, timeout_s: float = 10.0) -> None:
        """Start again on the same socket/port and directory (data is reloaded from the AOF)."""
        self.stop(timeout_s)
        self.start(timeout_s)

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise EmbeddedRedisError(f"cannot {action} redis-server: it is not running")
        return proc

    def __enter__(self) -> RedisServerProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RedisServerProcess(url={self.url!r}, pid={self.pid})"


@contextlib.contextmanager
def _start_lock(directory: Path) -> Iterator[None]:
    """Serialize check-then-start between processes sharing a data dir."""
    with open(directory / LOCK_NAME, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _live_pid_from_pidfile(pidfile: Path) -> int | None:
    """The pid in a leftover pidfile if that process still looks like a redis-server."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            if b"redis-server" not in cmdline.read_bytes():
                return None  # pid reused by something else (e.g. after a reboot)
        except OSError:
            return None
    return pid


def _await_existing(address: str, url: str, timeout_s: float) -> bool:
    """True if a server answers on ``address`` (waiting out AOF loading), False if none."""
    state = _ping(address, timeout_s=timeout_s)
    while state == "loading":
        time.sleep(0.1)
        state = _ping(address, timeout_s=timeout_s)
    if state == "ready":
        return True
    if state == "unreachable":
        return False
    problem = (
        f"did not answer PING within {timeout_s:g}s"
        if state == "no-reply"
        else "gave an unexpected reply to PING"
    )
    raise EmbeddedRedisError(
        f"A process is listening on the embedded Redis socket {url} but {problem}; it may be "
        "hung or stopped. Resume or stop it (its pid is in the redis.pid file next to the "
        "socket), or set OPTOUT_REDIS_URL to another Redis."
    )


def start_embedded(
    data_dir: Path, *, executable: str | None = None
) -> tuple[str, RedisServerProcess | None]:
    """Used by `optout-gateway serve` and CLI commands when OPTOUT_REDIS_URL is unset.

    Socket at <data_dir>/redis/redis.sock, AOF + pidfile + log under <data_dir>/redis/.
    If a redis-server is already answering PING on that socket (a second `serve` or a CLI
    command on the same data dir), reuse it and return (url, None): the caller does not own it.
    Otherwise start one and return (url, proc): the caller stops it on exit. Remove a stale
    socket file.  A server orphaned by a SIGKILLed gateway is reused the same way.
    """
    directory = Path(data_dir).resolve() / "redis"
    sock_path = directory / SOCKET_NAME
    _check_socket_path(sock_path)
    url = f"unix://{sock_path}"
    directory.mkdir(parents=True, exist_ok=True)
    with _start_lock(directory):
        if sock_path.exists():
            if _await_existing(str(sock_path), url, timeout_s=2.0):
                logger.info("reusing the redis-server already answering on %s", url)
                return url, None
            logger.info("removing stale redis socket %s", sock_path)
            with contextlib.suppress(FileNotFoundError):
                sock_path.unlink()
        orphan = _live_pid_from_pidfile(directory / PID_NAME)
        if orphan is not None:
            raise EmbeddedRedisError(
                f"redis-server pid {orphan} (from {directory / PID_NAME}) is still running on "
                f"this data dir but not answering on {url}. Stop it before starting the gateway "
                "so two servers do not write the same AOF."
            )
        proc = RedisServerProcess(directory, unix_socket=sock_path, executable=executable)
        proc.start()
        return url, proc
