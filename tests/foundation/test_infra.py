"""The infrastructure provider names what is missing instead of hanging."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from callback_dev import infra
from callback_dev.infra import InfraError, Infrastructure, LocalKafka

from tests.support import isolated_env


def test_missing_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALLBACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InfraError, match="`java` not found"):
        LocalKafka(tmp_path / "kafka").start(timeout=5)


def test_missing_maven_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = next(
        Path(p) / "java" for p in os.environ["PATH"].split(":") if (Path(p) / "java").exists()
    )
    (bin_dir / "java").symlink_to(java)
    monkeypatch.setenv("CALLBACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(InfraError, match="`mvn` not found"):
        LocalKafka(tmp_path / "kafka").start(timeout=5)


def test_environment_source_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("MONGODB_URL", "mongodb://mongo.example:27017")
    provided = infra.provide(tmp_path)
    assert provided.source == "environment"
    assert provided.env() == {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092",
        "MONGODB_URL": "mongodb://mongo.example:27017",
    }


# --- the local stack's CLI: restart, status, down ------------------------------------------------


def _sleeper() -> int:
    """A process in its own session, like the ones `up` starts."""
    return infra._spawn([sys.executable, "-c", "import time; time.sleep(60)"], Path(os.devnull)).pid


def _exited() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_status_and_down_tell_dead_and_recycled_pids(tmp_path: Path) -> None:
    live, dead, foreign = _sleeper(), _exited(), _sleeper()
    state = {
        "source": "environment",
        "env": {},
        "processes": {"scheduler": live, "exporter": dead, "routing-sim": foreign},
        # a start time that is not foreign's: its pid was recycled by another process
        "started": {"routing-sim": 1},
        "urls": {name: f"http://127.0.0.1:{infra.free_port()}" for name in infra.SERVICES},
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    try:
        rows = {row.name: row for row in infra.status(tmp_path)}
        assert rows["scheduler"].alive and rows["scheduler"].pid == live
        assert not rows["scheduler"].answers and not rows["scheduler"].ok
        assert not rows["exporter"].alive and "DEAD" in rows["exporter"].describe()
        if Path("/proc").is_dir():
            assert not rows["routing-sim"].alive
        with pytest.raises(SystemExit):
            infra.main(["--run-dir", str(tmp_path), "status"])

        stopped = infra.down(tmp_path)
        assert stopped[0] == "scheduler" and "exporter" not in stopped
        assert not infra._alive(live)
        if Path("/proc").is_dir():
            assert infra._alive(foreign), "down killed a process it did not start"
        assert not (tmp_path / "state.json").exists()
        assert infra.down(tmp_path) == []
    finally:
        infra._stop_process(foreign)


def test_restart_needs_a_known_service_and_a_running_stack(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="unknown 'nginx'"):
        infra.restart(tmp_path, "nginx")
    with pytest.raises(InfraError, match="nothing is up"):
        infra.restart(tmp_path, "exporter")
    (tmp_path / "state.json").write_text(json.dumps({"source": "environment", "processes": {}}))
    with pytest.raises(InfraError, match="kafka was not started by `callback-infra up`"):
        infra.restart(tmp_path, "kafka")


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_restart_one_service_of_the_local_stack(
    infra_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`up` with every service on free ports (Kafka and MongoDB: the session's), restart one while
    the others keep running, then `down` leaves no recorded process alive."""
    for key, value in infra_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("JWT_SECRET", raising=False)
    run_dir = tmp_path / "run"
    state_file = run_dir / "state.json"
    ports = {name: infra.free_port() for name in infra.SERVICES}
    pids: set[int] = set()
    try:
        state = infra.up(run_dir, with_services=True, ports=ports, timeout=60)
        before = dict(state["processes"])
        pids |= set(before.values())
        assert set(before) == set(infra.SERVICES)  # the environment gave Kafka and MongoDB
        secret = infra._read_env_file(run_dir)["JWT_SECRET"]
        assert secret not in state_file.read_text()
        assert (run_dir / "env").stat().st_mode & 0o077 == 0

        # a setting changed in the shell after `up` does not reach the restarted service
        monkeypatch.setenv("MONGODB_DATABASE", "not_the_one_up_saw")
        state = infra.restart(run_dir, "exporter", timeout=60)
        new = state["processes"]["exporter"]
        pids.add(new)
        assert new != before["exporter"]
        assert not infra._alive(before["exporter"]) and infra._alive(new)
        assert json.loads(state_file.read_text())["processes"]["exporter"] == new
        assert infra._ready(f"http://127.0.0.1:{ports['exporter']}/readyz")
        for name in set(infra.SERVICES) - {"exporter"}:
            assert state["processes"][name] == before[name], name
            assert infra._alive(before[name]), name
            assert infra._ready(f"http://127.0.0.1:{ports[name]}/readyz"), name
        log = (run_dir / "logs" / "exporter.log").read_text()
        assert log.count("service starting") == 2, "the restart appends to the same log"
        if Path("/proc").is_dir():
            environ = _environ(new)
            assert environ["HTTP_PORT"] == str(ports["exporter"])
            assert environ["MONGODB_DATABASE"] == infra_env["MONGODB_DATABASE"]
            assert environ["LOG_FORMAT"] == "json"
            assert "JWT_SECRET" not in environ

        # the CLI: the admin API gets its secret again, and it is printed nowhere
        capsys.readouterr()
        infra.main(["--run-dir", str(run_dir), "restart", "admin-api"])
        admin = json.loads(state_file.read_text())["processes"]["admin-api"]
        pids.add(admin)
        assert admin != before["admin-api"]
        if Path("/proc").is_dir():
            assert _environ(admin)["JWT_SECRET"] == secret
        infra.main(["--run-dir", str(run_dir), "status"])  # exits 0: all running and ready
        out = capsys.readouterr().out
        assert secret not in out
        assert f"admin-api restarted: pid {admin}" in out
        for name in infra.SERVICES:
            assert f"http://127.0.0.1:{ports[name]} ready" in out, out
    finally:
        stopped = infra.down(run_dir)
    assert sorted(stopped) == sorted(infra.SERVICES)
    assert not [pid for pid in pids if infra._alive(pid)]
    assert not state_file.exists()


@pytest.fixture
def infra_env(infra: Infrastructure) -> dict[str, str]:
    """The session's Kafka and MongoDB, with this test's own database and topics."""
    return isolated_env(infra)
