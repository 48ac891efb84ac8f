"""Real Kafka and MongoDB for tests and local runs, from the first source that works.

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URL`` in the environment: a user's own cluster.
2. A Docker engine that answers: testcontainers (Kafka and MongoDB images).
3. Local processes on this machine: Apache Kafka (KRaft, single node, jars from Maven Central,
   cached) and SecantusDB's ``secantusd-py`` (a MongoDB-protocol server; its TTL monitor replaced
   by an incremental one, see :mod:`callback_dev.secantusd_launcher`).

The pytest fixtures and the ``callback-infra`` CLI (``make up``/``down``/``restart``/``status``) use
:func:`provide`; they never care which source they got.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

KAFKA_VERSION = "4.1.2"
KAFKA_POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>callback.platform</groupId>
  <artifactId>local-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.25.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>2.25.3</version>
    </dependency>
  </dependencies>
</project>
"""
LOG4J2_PROPERTIES = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""
KAFKA_START_TIMEOUT = 120.0
MONGO_START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class InfraError(RuntimeError):
    """Real infrastructure could not be provided; the message says what is missing."""


def cache_dir() -> Path:
    root = os.environ.get("CALLBACK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "callback-platform"
    )
    return Path(root)


_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    """Where the kernel starts choosing source ports for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A port that the kernel chose (bind to 0) lies in the ephemeral range, where
    any process's next outgoing connection may take it as its source port before
    the service that was meant to listen on it starts: a rare "address already
    in use" at start-up. Ports below that range are only ever taken by listeners.
    """
    top = max(_ephemeral_start(), 20000)
    for _ in range(200):
        port = random.randrange(15000, top)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise InfraError("no free port found below the ephemeral range")


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InfraError(f"`{tool}` not found on PATH: it is needed to {why}")
    return path


def _wait(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InfraError(f"{what} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        if check():
            return
        time.sleep(0.2)
    raise InfraError(f"{what} not ready after {timeout:.0f}s; see {log}:\n{_tail(log)}")


def _tail(log: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _process_state(proc: subprocess.Popen[bytes] | None, log: Path) -> str:
    """How a local server process is doing, for a test's failure message: running, or its exit
    code (negative: the signal that ended it) and the end of its log."""
    if proc is None:
        return "not started"
    code = proc.poll()
    if code is None:
        return f"running (pid {proc.pid})"
    return f"exited with {code}; the end of {log}:\n{_tail(log)}"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _stop_process(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                waited, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                waited = 0
                if not _alive(pid):
                    return
            if waited == pid:
                return
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] not in ("Z", "X")  # a zombie has exited


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """The process's state letter and start time (clock ticks since boot) from ``/proc``.

    ``None`` where there is no ``/proc`` (macOS) or the process is gone.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()  # the name in (...) may hold spaces
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


# --- Kafka ------------------------------------------------------------------------------------


def kafka_libs() -> Path:
    """The broker's jars, fetched once from Maven Central with ``mvn`` and cached."""
    key = hashlib.sha256(KAFKA_POM.encode()).hexdigest()[:12]
    home = cache_dir() / f"kafka-{KAFKA_VERSION}-{key}"
    libs = home / "libs"
    if (home / "complete").exists():
        return libs
    java_missing = shutil.which("java") is None
    if java_missing:
        raise InfraError("`java` not found on PATH: a JDK 17+ is needed to run the local Kafka")
    mvn = _require("mvn", "fetch the Kafka broker jars from Maven Central")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(KAFKA_POM)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        raise InfraError(f"mvn could not fetch the Kafka jars:\n{result.stdout}{result.stderr}")
    (home / "complete").touch()
    return libs


@dataclass(frozen=True)
class KafkaSaslSsl:
    """Makes :class:`LocalKafka`'s client listener SASL_SSL instead of PLAINTEXT (tests of
    secure connections; off by default).

    TLS with ``keystore_pem`` (the broker's PKCS#8 private key, unencrypted, followed by its
    certificate chain, PEM; its certificate must name 127.0.0.1), clients authenticate with
    SCRAM-SHA-512 or PLAIN as one of ``users`` (name -> password, letters and digits: the
    SCRAM credentials are written when the storage is formatted). ``ca_file`` is the CA that
    signed the broker's certificate (the readiness check trusts it). The controller listener
    stays PLAINTEXT on loopback."""

    keystore_pem: Path
    ca_file: Path
    users: Mapping[str, str]


@dataclass
class LocalKafka:
    """A single-node KRaft broker (broker + controller) on free loopback ports."""

    work_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = None
    #: a SASL_SSL client listener instead of PLAINTEXT (see :class:`KafkaSaslSsl`)
    sasl_ssl: KafkaSaslSsl | None = None

    def _broker_password(self) -> str:
        """The broker's own SCRAM password (inter-broker listener), kept with its data."""
        path = self.work_dir / "broker-password"
        if not path.exists():
            path.write_text(uuid.uuid4().hex)
            path.chmod(0o600)
        return path.read_text().strip()

    def _listener_lines(self) -> list[str]:
        if self.sasl_ssl is None:
            return [
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        tls, secret = self.sasl_ssl, self._broker_password()
        plain_users = "".join(
            f' user_{name}="{password}"'
            for name, password in {**tls.users, "broker": secret}.items()
        )
        return [
            f"listeners=SASL_SSL://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{secret}";',
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="broker" password="{secret}"{plain_users};',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls.keystore_pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca_file}",
            "ssl.client.auth=none",
        ]

    def _scram_arguments(self) -> list[str]:
        if self.sasl_ssl is None:
            return []
        users = {**self.sasl_ssl.users, "broker": self._broker_password()}
        return [
            f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
            for name, password in users.items()
        ]

    def client_options(self) -> dict[str, Any]:
        """aiokafka security options of a client of this broker (its own SCRAM user)."""
        if self.sasl_ssl is None:
            return {}
        from aiokafka.helpers import create_ssl_context

        return {
            "security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=self.sasl_ssl.ca_file),
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "broker",
            "sasl_plain_password": self._broker_password(),
        }

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.work_dir / "kafka.log"

    def _configure(self, libs: Path) -> Path:
        data = self.work_dir / "data"
        props = self.work_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    *self._listener_lines(),
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                ]
            )
            + "\n"
        )
        (self.work_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            result = subprocess.run(
                [
                    *self._java(libs, "kafka.tools.StorageTool"),
                    "format",
                    "--standalone",
                    # one argument: an id may start with "-", which would read as an option
                    f"--cluster-id={cluster_id}",
                    *self._scram_arguments(),
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                raise InfraError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")
        return props

    def _java(self, libs: Path, main_class: str) -> list[str]:
        java = _require("java", "run the local Kafka broker (a JDK 17+)")
        return [
            java,
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main_class,
        ]

    def start(self, timeout: float = KAFKA_START_TIMEOUT) -> None:
        """Start (or restart, keeping its data) the broker and wait until it serves metadata."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        libs = kafka_libs()
        props = self._configure(libs)
        self._proc = _spawn([*self._java(libs, "kafka.Kafka"), str(props)], self.log)
        self.pid = self._proc.pid
        _wait(
            lambda: (
                _port_open(self.port)
                and _kafka_answers(self.bootstrap_servers, self.client_options())
            ),
            timeout,
            "Kafka",
            self._proc,
            self.log,
        )

    def stop(self) -> None:
        if self.pid is not None:
            _stop_process(self.pid)
            self.pid = self._proc = None

    def state(self) -> str:
        return _process_state(self._proc, self.log)


def _kafka_answers(bootstrap_servers: str, options: Mapping[str, Any] | None = None) -> bool:
    async def check() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=3000, **(options or {})
        )
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    return asyncio.run(check())


# --- MongoDB (SecantusDB) ----------------------------------------------------------------------


def secantusd() -> list[str]:
    """The command that runs SecantusDB's server (``secantusd-py``) with its TTL monitor replaced
    by an incremental one (:mod:`callback_dev.secantusd_launcher`): in this interpreter, which
    must have SecantusDB installed (the project's venv: ``uv sync``)."""
    if importlib.util.find_spec("secantus") is None:
        raise InfraError(
            "SecantusDB is not installed in this environment (PyPI: SecantusDB; `uv sync` "
            "installs it): it is needed to run the local MongoDB-protocol server"
        )
    return [sys.executable, "-m", "callback_dev.secantusd_launcher"]


@dataclass
class LocalMongo:
    """SecantusDB's standalone server on a free loopback port, storing under ``work_dir``."""

    work_dir: Path
    port: int = field(default_factory=free_port)
    pid: int | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.work_dir / "mongodb.log"

    def start(self, timeout: float = MONGO_START_TIMEOUT) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            *secantusd(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--storage-path",
            str(self.work_dir / "data"),
            "--log-level",
            "WARNING",
            # No replica set, so no oplog and no retryable writes: the platform uses neither
            # change streams nor transactions (docs/design.md); the two cost a third of the
            # server's CPU per write, and the oplog's prune stalled the server for minutes
            # (README, "Development").
            "--standalone",
        ]
        self._proc = _spawn(cmd, self.log)
        self.pid = self._proc.pid
        _wait(
            lambda: _port_open(self.port) and _mongo_answers(self.url),
            timeout,
            "SecantusDB",
            self._proc,
            self.log,
        )

    def stop(self) -> None:
        if self.pid is not None:
            _stop_process(self.pid)
            self.pid = self._proc = None

    def state(self) -> str:
        return _process_state(self._proc, self.log)


def _mongo_answers(url: str) -> bool:
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=1000)
    try:
        client.admin.command("ping")
        return True
    except Exception:
        return False
    finally:
        client.close()


# --- the three sources -------------------------------------------------------------------------


@dataclass
class Infrastructure:
    kafka_bootstrap_servers: str
    mongodb_url: str
    source: str
    kafka: LocalKafka | None = None
    mongo: LocalMongo | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "MONGODB_URL": self.mongodb_url,
        }

    def close(self) -> None:
        self._stack.close()


def docker_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return (
            subprocess.run(
                [docker, "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_testcontainers(infra: Infrastructure, need_kafka: bool, need_mongo: bool) -> None:
    if need_kafka:
        from testcontainers.community.kafka import KafkaContainer

        kafka = infra._stack.enter_context(
            KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft()
        )
        infra.kafka_bootstrap_servers = kafka.get_bootstrap_server()
    if need_mongo:
        from testcontainers.community.mongodb import MongoDbContainer

        mongo = infra._stack.enter_context(MongoDbContainer("mongo:8.0"))
        infra.mongodb_url = mongo.get_connection_url()


def _from_local_processes(
    infra: Infrastructure, work_dir: Path, need_kafka: bool, need_mongo: bool, keep_running: bool
) -> None:
    if need_mongo:
        infra.mongo = LocalMongo(work_dir / "mongodb")
        infra.mongo.start()
        if not keep_running:
            infra._stack.callback(infra.mongo.stop)
        infra.mongodb_url = infra.mongo.url
    if need_kafka:
        infra.kafka = LocalKafka(work_dir / "kafka")
        infra.kafka.start()
        if not keep_running:
            infra._stack.callback(infra.kafka.stop)
        infra.kafka_bootstrap_servers = infra.kafka.bootstrap_servers


def provide(work_dir: Path, *, keep_running: bool = False, use_env: bool = True) -> Infrastructure:
    """Kafka + MongoDB from the first source that works (see the module docstring).

    ``keep_running`` leaves local processes up after :meth:`Infrastructure.close` (``make up``).
    """
    kafka_url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "") if use_env else ""
    mongo_url = os.environ.get("MONGODB_URL", "") if use_env else ""
    infra = Infrastructure(kafka_url, mongo_url, source="environment")
    need_kafka, need_mongo = not kafka_url, not mongo_url
    if not (need_kafka or need_mongo):
        return infra
    try:
        if docker_available():
            infra.source = "testcontainers"
            _from_testcontainers(infra, need_kafka, need_mongo)
        else:
            infra.source = "local processes"
            _from_local_processes(infra, work_dir, need_kafka, need_mongo, keep_running)
    except BaseException:
        infra.close()
        raise
    return infra


@contextlib.contextmanager
def provided(work_dir: Path | None = None) -> Iterator[Infrastructure]:
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="callback-")))
        infra = provide(work_dir)
        stack.callback(infra.close)
        yield infra


# --- the CLI behind `make up` / `make down` / `make restart` / `make status` --------------------
#
# ``<run dir>/state.json`` records what ``up`` started and how to start it again:
#   source, env          where Kafka and MongoDB come from, and their connection variables
#   processes            name -> pid of every process started (kafka, mongodb, the services)
#   started              name -> that pid's start time (/proc), which tells a recycled pid apart
#   launch               service -> cmd, port, url, log, env (what it adds to the environment)
#                        and secrets (names of variables whose values are in ``<run dir>/env``)
#   infra                kafka / mongodb (local processes only) -> work_dir and ports
#   urls                 service -> url
# No secret value goes into state.json or to stdout; ``<run dir>/env`` (mode 0600) holds them.

SERVICES = ["scheduler", "state-tracker", "routing-sim", "exporter", "admin-api"]
INFRA_PROCESSES = ["kafka", "mongodb"]
SERVICE_READY_TIMEOUT = 90.0


def _state_file(run_dir: Path) -> Path:
    return run_dir / "state.json"


def _env_file(run_dir: Path) -> Path:
    return run_dir / "env"


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = _state_file(run_dir)
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise InfraError(f"nothing is up (no {path}); run `make up` first") from None
    except ValueError as exc:
        raise InfraError(f"{path} is unreadable ({exc}); stop its processes by hand") from None
    return state


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Replace state.json at once: a concurrent `status` never reads half a file."""
    path = _state_file(run_dir)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(state, indent=2))
    os.replace(partial, path)


def _write_env_file(run_dir: Path, exports: Mapping[str, str]) -> None:
    path = _env_file(run_dir)
    with open(path, "w", opener=lambda p, flags: os.open(p, flags, 0o600)) as out:
        out.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items()))
    path.chmod(0o600)


def _read_env_file(run_dir: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in _env_file(run_dir).read_text().splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export" and "=" in words[1]:
                key, _, value = words[1].partition("=")
                values[key] = value
    return values


def service_ports() -> dict[str, int]:
    """Each service's port: the default HTTP_PORT of its settings class (``admin-api`` ->
    ``AdminApiSettings``)."""
    from callback_dev.services import SETTINGS_CLASSES

    ports: dict[str, int] = {}
    for name in SERVICES:
        ports[name] = SETTINGS_CLASSES[name].model_fields["http_port"].default
    return ports


def _setting_names() -> tuple[set[str], set[str]]:
    """Every environment variable a service reads (its settings), and which of them are secrets."""
    from callback_shared.settings import PlatformSettings
    from pydantic import SecretStr

    from callback_dev.services import SETTINGS_CLASSES

    names: set[str] = set()
    secrets: set[str] = set()
    classes: list[type[PlatformSettings]] = [PlatformSettings, *SETTINGS_CLASSES.values()]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field_name, info in cls.model_fields.items():
            name = (prefix + field_name).upper()
            names.add(name)
            if SecretStr in (info.annotation, *get_args(info.annotation)):
                secrets.add(name)
    return names, secrets


def _record_pid(state: dict[str, Any], name: str, pid: int) -> None:
    state["processes"][name] = pid
    stat = _proc_stat(pid)
    started = state.setdefault("started", {})
    if stat is None:
        started.pop(name, None)
    else:
        started[name] = stat[1]


def _running(state: Mapping[str, Any], name: str) -> int | None:
    """The recorded pid of ``name`` if that very process still runs (not a recycled pid)."""
    pid: int | None = state.get("processes", {}).get(name)
    if pid is None or not _alive(pid):
        return None
    recorded = state.get("started", {}).get(name)
    stat = _proc_stat(pid)
    if recorded is not None and stat is not None and stat[1] != recorded:
        return None
    return pid


def _ready(url: str) -> bool:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``url`` answers 200 within ``timeout``; gives up at once if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ready(url):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def _launch(run_dir: Path, launch: Mapping[str, Any]) -> subprocess.Popen[bytes]:
    """Start a service as ``up`` recorded it: same command, environment, port and log (appended).

    The environment is this process's minus every service setting, plus the recorded settings
    and the secrets (from ``<run dir>/env``): a setting in the caller's shell that ``up`` did
    not see does not leak into a restarted service.
    """
    settings, _ = _setting_names()
    secrets = _read_env_file(run_dir)
    missing = [name for name in launch["secrets"] if name not in secrets]
    if missing:
        raise InfraError(f"{_env_file(run_dir)} lacks {', '.join(missing)}; run `make down`")
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env.update(launch["env"])
    env.update({name: secrets[name] for name in launch["secrets"]})
    return _spawn(list(launch["cmd"]), Path(launch["log"]), env)


def _await_ready(
    name: str, launch: Mapping[str, Any], proc: subprocess.Popen[bytes], timeout: float
) -> None:
    if not _wait_http(f"{launch['url']}/readyz", timeout, proc):
        how = "exited" if proc.poll() is not None else "did not turn ready"
        raise InfraError(f"{name} {how}; see {launch['log']}")


def up(
    run_dir: Path,
    with_services: bool,
    ports: Mapping[str, int] | None = None,
    timeout: float = SERVICE_READY_TIMEOUT,
) -> dict[str, Any]:
    """Start Kafka + MongoDB (unless given) and, ``with_services``, the five services.

    ``ports`` overrides :func:`service_ports` (tests run a second stack on free ports).
    """
    if _state_file(run_dir).exists():
        raise InfraError(f"already up ({_state_file(run_dir)}); run `make down` first")
    run_dir.mkdir(parents=True, exist_ok=True)
    settings, secret_settings = _setting_names()
    # development only: the admin API's HS256 secret (mint tokens with callback-admin-token)
    jwt_secret = os.environ.get("JWT_SECRET") or base64.urlsafe_b64encode(os.urandom(32)).decode()
    infra = provide(run_dir / "infra", keep_running=True)
    if infra.source == "testcontainers":
        raise InfraError("a Docker engine answers: use `docker compose up` to run the system")
    state: dict[str, Any] = {
        "source": infra.source,
        "env": infra.env(),
        "processes": {},
        "started": {},
        "launch": {},
        "infra": {},
        "urls": {},
    }
    if infra.kafka is not None and infra.kafka.pid is not None:
        _record_pid(state, "kafka", infra.kafka.pid)
        state["infra"]["kafka"] = {
            "work_dir": str(infra.kafka.work_dir.resolve()),
            "port": infra.kafka.port,
            "controller_port": infra.kafka.controller_port,
        }
    if infra.mongo is not None and infra.mongo.pid is not None:
        _record_pid(state, "mongodb", infra.mongo.pid)
        state["infra"]["mongodb"] = {
            "work_dir": str(infra.mongo.work_dir.resolve()),
            "port": infra.mongo.port,
        }
    _write_state(run_dir, state)
    # secrets: every service gets those set in this environment (as it inherits it), the admin
    # API its JWT secret; their values stay in <run dir>/env, state.json names them
    shared_secrets = sorted(k for k in os.environ if k in secret_settings)
    secrets = {k: os.environ[k] for k in shared_secrets}
    _write_env_file(run_dir, {**infra.env(), **secrets, "JWT_SECRET": jwt_secret})
    if with_services:
        ports = {**service_ports(), **(ports or {})}
        inherited = {
            k: v for k, v in os.environ.items() if k in settings and k not in secret_settings
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in SERVICES:
            url = f"http://127.0.0.1:{ports[name]}"
            launch = {
                "cmd": [str(Path(sys.executable).parent / f"callback-{name}")],
                "port": ports[name],
                "url": url,
                "log": str((run_dir / "logs" / f"{name}.log").resolve()),
                "env": {
                    **inherited,
                    **infra.env(),
                    "HTTP_PORT": str(ports[name]),
                    "LOG_FORMAT": "json",
                },
                "secrets": sorted({*shared_secrets, "JWT_SECRET"})
                if name == "admin-api"
                else shared_secrets,
            }
            state["launch"][name] = launch
            state["urls"][name] = url
            procs[name] = _launch(run_dir, launch)
            _record_pid(state, name, procs[name].pid)
            _write_state(run_dir, state)
        for name in SERVICES:
            _await_ready(name, state["launch"][name], procs[name], timeout)
    return state


def restart(run_dir: Path, name: str, timeout: float = SERVICE_READY_TIMEOUT) -> dict[str, Any]:
    """Stop the process of ``name`` (a service, ``kafka`` or ``mongodb``) and start it as ``up``
    did, then wait until it is ready; state.json gets the new pid before the wait."""
    if name not in (*SERVICES, *INFRA_PROCESSES):
        raise InfraError(f"unknown {name!r}: one of {', '.join([*SERVICES, *INFRA_PROCESSES])}")
    state = _read_state(run_dir)
    group = "launch" if name in SERVICES else "infra"
    record: dict[str, Any] | None = state.get(group, {}).get(name)
    if record is None:
        raise InfraError(
            f"{name} was not started by `callback-infra up` here (infrastructure from "
            f"{state.get('source')}; an older state.json records no launch): `make down`, "
            "then `make up`"
        )
    pid = _running(state, name)
    if pid is not None:
        _stop_process(pid)
        if _alive(pid):
            raise InfraError(f"{name} (pid {pid}) did not stop")
    for port in (record["port"], record.get("controller_port")):
        if port is not None and _port_open(port):
            raise InfraError(
                f"port {port} of {name} is taken by a process callback-infra did not start "
                "(one relaunched by hand?): stop it, then restart again"
            )
    if name in SERVICES:
        proc = _launch(run_dir, record)
        _record_pid(state, name, proc.pid)
        _write_state(run_dir, state)
        _await_ready(name, record, proc, timeout)
        return state
    part: LocalKafka | LocalMongo
    if name == "kafka":
        part = LocalKafka(Path(record["work_dir"]), record["port"], record["controller_port"])
    else:
        part = LocalMongo(Path(record["work_dir"]), record["port"])
    try:
        part.start()  # keeps its data dir and port
    finally:
        if part.pid is not None:
            _record_pid(state, name, part.pid)
            _write_state(run_dir, state)
    return state


@dataclass
class ProcessStatus:
    name: str
    pid: int | None
    alive: bool
    where: str  # a service's url, kafka's or mongodb's host:port
    answers: bool  # a service's /readyz answers 200; kafka's or mongodb's port accepts connections

    @property
    def ok(self) -> bool:
        return self.alive and self.answers

    def describe(self) -> str:
        alive = "running" if self.alive else "DEAD"
        if self.where.startswith("http"):
            answers = "ready" if self.answers else "not ready"
        else:
            answers = "open" if self.answers else "closed"
        line = f"{self.name:14} pid {self.pid!s:8} {alive:8} {self.where} {answers}"
        if self.answers and not self.alive:
            line += " (by a process callback-infra did not start)"
        return line


def _order(names: Iterable[str]) -> list[str]:
    """Services first (they flush to Kafka/MongoDB on SIGTERM), then the infrastructure."""
    names = list(names)
    first = [n for n in reversed(SERVICES) if n in names]
    last = [n for n in INFRA_PROCESSES if n in names]
    return first + [n for n in names if n not in first and n not in last] + last


def status(run_dir: Path) -> list[ProcessStatus]:
    """Every recorded process: its pid, whether it runs, whether it answers."""
    if not _state_file(run_dir).exists():
        return []
    state = _read_state(run_dir)
    rows = []
    for name in reversed(_order(state["processes"])):
        pid = state["processes"][name]
        if name in state.get("launch", {}):
            where = state["launch"][name]["url"]
            answers = _ready(f"{where}/readyz")
        elif name in state.get("infra", {}):
            port = state["infra"][name]["port"]
            where, answers = f"127.0.0.1:{port}", _port_open(port)
        elif name in state.get("urls", {}):  # recorded by an older callback-infra
            where = state["urls"][name]
            answers = _ready(f"{where}/readyz")
        else:
            where, answers = "?", True
        rows.append(ProcessStatus(name, pid, _running(state, name) is not None, where, answers))
    return rows


def _recorded_ports(run_dir: Path) -> dict[str, int]:
    with contextlib.suppress(InfraError):
        state = _read_state(run_dir)
        return {
            name: record["port"]
            for group in ("launch", "infra")
            for name, record in state.get(group, {}).items()
        }
    return {}


def down(run_dir: Path) -> list[str]:
    """Stop every recorded process that still runs (dead pids are skipped), forget the state."""
    state_file = _state_file(run_dir)
    if not state_file.exists():
        return []
    state = _read_state(run_dir)
    stopped = []
    for name in _order(state["processes"]):
        pid = _running(state, name)
        if pid is not None:
            _stop_process(pid)
            stopped.append(name)
    state_file.unlink()
    return stopped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="callback-infra", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path(".run"))
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start Kafka + MongoDB (and with --services, all services)")
    start.add_argument("--services", action="store_true")
    sub.add_parser("down", help="stop everything `up` and `restart` started")
    again = sub.add_parser("restart", help="stop one process of the stack, start it as `up` did")
    again.add_argument("service", choices=[*SERVICES, *INFRA_PROCESSES])
    sub.add_parser("status", help="each recorded process: pid, running, ready")
    sub.add_parser("fetch", help="download and cache the local Kafka jars")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(f"Kafka {KAFKA_VERSION} jars in {kafka_libs()}")
        elif args.command == "up":
            state = up(args.run_dir, args.services)
            print(f"infrastructure from {state['source']}:")
            for key, value in state["env"].items():
                print(f"  {key}={value}")
            for name, url in state.get("urls", {}).items():
                print(f"  {name:14} {url}")
            print(f"logs in {args.run_dir}/; `make down` stops it all")
        elif args.command == "restart":
            state = restart(args.run_dir, args.service)
            print(f"{args.service} restarted: pid {state['processes'][args.service]}")
        elif args.command == "status":
            rows = status(args.run_dir)
            if not rows:
                print(f"nothing is up (no {_state_file(args.run_dir)})")
            for row in rows:
                print(row.describe())
            if not all(row.ok for row in rows):
                raise SystemExit(1)
        else:
            ports = _recorded_ports(args.run_dir)
            stopped = down(args.run_dir)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
            for name, port in ports.items():
                if _port_open(port):
                    print(
                        f"callback-infra: port {port} ({name}) still answers: a process "
                        "callback-infra did not start (relaunched by hand?); stop it yourself",
                        file=sys.stderr,
                    )
    except InfraError as exc:
        print(f"callback-infra: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
