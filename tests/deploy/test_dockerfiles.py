"""services/*/Dockerfile: hadolint (pinned, from PyPI), the rules the issue sets (multi-stage,
pinned base, non-root, exec form, healthcheck, nothing but the venv in the final image), and the
build stage replayed without Docker: its COPY steps (through .dockerignore) and its uv steps,
then the installed entry point run with the source tree gone."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, SERVICES, Tools, console_script, settings_class

HADOLINT_CONFIG = REPO / "deploy" / "tools" / "hadolint.yaml"
#: admin-api's Node stage building the admin console, and what the final stage takes of it
CONSOLE_STAGE = "console"
CONSOLE_COPY = f"--from={CONSOLE_STAGE} /console/dist /app/console"
PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$")


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    def expanded(self, instruction: str) -> list[str]:
        """The instruction's arguments with ``$VAR``/``${VAR}`` replaced by the stage's ENV."""
        env = self.env()
        return [
            re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], m[0]), args)
            for args in self.all(instruction)
        ]


def parse(dockerfile: Path) -> list[Stage]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line ends the file"
    stages: list[Stage] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def dockerfile(service: str) -> Path:
    return REPO / "services" / service / "Dockerfile"


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails on shell form)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


# --- hadolint ---------------------------------------------------------------------------------


def test_hadolint_passes_every_dockerfile(tools: Tools):
    files = [dockerfile(s) for s in SERVICES]
    tools.run(tools.hadolint, "--config", HADOLINT_CONFIG, "--no-color", *files)


def test_hadolint_catches_what_it_should(tools: Tools, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\nCMD python -m app\n")
    run = tools.run(tools.hadolint, "--config", HADOLINT_CONFIG, "--no-color", bad, check=False)
    assert run.returncode != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= set(re.findall(r"DL\d{4}", run.stdout))


# --- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_from_one_pinned_slim_base(service):
    stages = parse(dockerfile(service))
    assert len(stages) >= 2, "multi-stage: a build stage and a slim final stage"
    for stage in stages:
        assert PINNED_IMAGE.match(stage.image), f"base image not pinned: {stage.image}"
    final = stages[-1]
    assert "slim" in final.image
    # the venv's interpreter links to the build stage's python: the same base image (the
    # admin console's static files come from a Node stage of their own)
    assert {s.image for s in stages if s.name != CONSOLE_STAGE} == {final.image}


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_the_service_as_non_root_in_exec_form(service):
    final = parse(dockerfile(service))[-1]
    user = final.all("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    assert [exec_form(a) for a in final.all("ENTRYPOINT")] == [[console_script(service)]]
    for args in final.all("CMD"):
        exec_form(args)
    assert final.all("STOPSIGNAL") in ([], ["SIGTERM"])


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_port_and_host(service):
    final = parse(dockerfile(service))[-1]
    port = settings_class(service).model_fields["http_port"].default
    (healthcheck,) = final.all("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "HTTP_PORT" in argv[2]
    env = final.env()
    assert env["HTTP_HOST"] == "0.0.0.0"
    assert env["HTTP_PORT"] == str(port)
    assert final.expanded("EXPOSE") == [str(port)]


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_holds_the_venv_and_no_build_tools(service):
    stages = parse(dockerfile(service))
    build, final = stages[0], stages[-1]
    assert build.name, "the build stage is named"
    copies = final.all("COPY")
    console = [CONSOLE_COPY] if service == "admin-api" else []
    assert copies == [f"--from={build.name} /app/.venv /app/.venv", *console]
    assert final.env()["PATH"].startswith("/app/.venv/bin:")
    for command in final.all("RUN"):
        assert not re.search(r"\b(uv|apt-get|apk|gcc)\b|pip install", command), command
        assert "pip uninstall" in command  # the base image's pip goes too
    assert any("uv sync --frozen" in run for run in build.all("RUN")), "dependencies from uv.lock"


def test_admin_api_image_serves_the_console_built_from_its_lockfile():
    stages = parse(dockerfile("admin-api"))
    (console,) = [s for s in stages if s.name == CONSOLE_STAGE]
    assert re.match(r"^node:20\.\d+\.\d+-bookworm-slim$", console.image), console.image
    assert stages[0].name != CONSOLE_STAGE, "the Python build stage comes first"
    copies = " ".join(console.all("COPY"))
    assert "services/admin-console/package-lock.json" in copies
    runs = console.all("RUN")
    assert any(r.startswith("npm ci") for r in runs) and "npm run build" in runs
    assert not any(re.search(r"npm (install|i)\b", r) for r in runs), "only npm ci: the lockfile"
    final = stages[-1]
    assert CONSOLE_COPY in final.all("COPY")
    assert final.env()["ADMIN_CONSOLE_DIR"] == "/app/console"


# --- the build stage, replayed ----------------------------------------------------------------


def dockerignore() -> list[tuple[str, bool]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((line.removeprefix("!"), line.startswith("!")))
    return patterns


def ignored(relative: str, patterns: list[tuple[str, bool]]) -> bool:
    """.dockerignore semantics: the last pattern matching the path or a parent decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern, negated in patterns:
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            result = not negated
    return result


def copy_into(source: str, destination: Path, patterns: list[tuple[str, bool]]) -> None:
    src = REPO / source
    assert src.exists(), source
    files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
    sent = [f for f in files if not ignored(f.relative_to(REPO).as_posix(), patterns)]
    assert sent, f"COPY {source}: .dockerignore leaves nothing of it in the build context"
    for file in sent:
        target = destination / (file.name if src.is_file() else file.relative_to(src))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)


@pytest.mark.parametrize("service", SERVICES)
def test_build_stage_replayed_without_docker(service, tmp_path):
    build = parse(dockerfile(service))[0]
    patterns = dockerignore()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(build.env(), UV_COMPILE_BYTECODE="0", UV_LINK_MODE="hardlink")  # speed only
    workdir: Path | None = None
    uv: list[str] = []
    for instruction, args in build.instructions:
        if instruction == "WORKDIR":
            workdir = tmp_path / args.lstrip("/")
            workdir.mkdir(parents=True)
        elif instruction == "COPY":
            *sources, target = args.split()
            assert workdir is not None and not target.startswith("/")
            for source in sources:
                copy_into(source, workdir / target, patterns)
        elif instruction == "RUN":
            command = [w for w in shlex.split(args) if not w.startswith("--mount=")]
            if command[:2] == ["pip", "install"]:
                pinned = re.fullmatch(
                    r"pip install --no-cache-dir uv==(\d+\.\d+\.\d+)", " ".join(command)
                )
                assert pinned, f"RUN {args}: uv, pinned, and nothing else"
                # the same uv release, from PyPI through uv's tool cache
                uv = ["uv", "tool", "run", "--from", f"uv=={pinned[1]}", "uv"]
                continue
            assert command[0] == "uv" and uv, f"no replay for RUN {args}"
            run = subprocess.run(
                uv + command[1:], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
            )
            assert run.returncode == 0, f"{args}\n{run.stderr}"
        else:
            assert instruction == "ENV", f"no replay for {instruction}"
    assert workdir is not None
    venv = workdir / ".venv"
    # the final image holds the venv only: the entry point must run with the sources gone
    for copied in list(workdir.iterdir()):
        if copied != venv:
            shutil.rmtree(copied) if copied.is_dir() else copied.unlink()
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "MONGODB_URL": "mongodb://db:27017"}
    for script in (console_script(service), "callback-bootstrap"):
        run = subprocess.run(
            [str(venv / "bin" / script)], env=clean, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 2, run.stderr
        assert (
            run.stderr.strip() == "invalid configuration: KAFKA_BOOTSTRAP_SERVERS: Field required"
        )
    site = next((venv / "lib").glob("python3.*/site-packages"))
    editable = [
        p.name for p in site.glob("*.pth") if "_editable" in p.name or "__editable__" in p.name
    ]
    assert not editable, f"the project is installed editable: {editable}"
    for dev_only in ("pytest", "ruff", "mypy", "callback_dev", "secantus", "testcontainers"):
        assert not (site / dev_only).exists(), f"{dev_only} in the image"
