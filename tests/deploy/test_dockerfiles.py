"""The one Dockerfile, built per service (its SERVICE build argument and its target): hadolint
(pinned, from PyPI), the rules the issue sets (multi-stage, pinned base, non-root, exec form,
healthcheck, nothing but the venv in the final image, no stage a service does not need), and the
build stage replayed without Docker: its COPY steps (through .dockerignore) and its uv steps, then
the image's entry point run with the source tree gone."""

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
from callback_shared import healthcheck

from tests.deploy.conftest import (
    DOCKERFILE,
    REPO,
    SERVICES,
    Tools,
    console_script,
    settings_class,
)

HADOLINT_CONFIG = REPO / "deploy" / "tools" / "hadolint.yaml"
#: admin-api's Node stage building the admin console, and what admin-api's image takes of it
CONSOLE_STAGE = "console"
CONSOLE_COPY = f"--from={CONSOLE_STAGE} /console/dist /app/console"
PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*|@sha256:[0-9a-f]{64})$")
#: the instructions whose arguments Docker itself expands ($VAR, ${VAR}, ${VAR:?message}); RUN's
#: are expanded by the shell, with the build arguments in its environment. Never ENTRYPOINT, CMD
#: or HEALTHCHECK: their exec form is taken literally.
EXPANDED = {
    "ADD",
    "COPY",
    "ENV",
    "EXPOSE",
    "LABEL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
    "RUN",
}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\?([^}]*))?\}|(\w+))")


def image_target(service: str) -> str:
    """The stage a service's image is: admin-api's adds the admin console."""
    return "admin-api" if service == "admin-api" else "service"


def expand(text: str, variables: dict[str, str]) -> str:
    """``text`` with the known variables replaced; ``${VAR:?message}`` fails on an unset one."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        if name in variables:
            return variables[name]
        assert match[2] is None, f"${{{name}}} is not set: {match[2]}"
        return match[0]

    return VARIABLE.sub(value, text)


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

    def with_build_args(self, build_args: dict[str, str]) -> Stage:
        """The stage as Docker builds it with ``build_args``: each ARG declared in the stage
        gets its value from there on, in the instructions Docker (or RUN's shell) expands."""
        declared: dict[str, str] = {}
        instructions = []
        for instruction, args in self.instructions:
            if instruction == "ARG":
                name, _, default = args.partition("=")
                if name in build_args or default:
                    declared[name] = build_args.get(name, default)
            elif instruction in EXPANDED:
                args = expand(args, declared)
            else:
                assert "$" not in args, f"{instruction} {args}: taken literally, never expanded"
            instructions.append((instruction, args))
        return Stage(self.image, self.name, instructions)


def parse(dockerfile: Path = DOCKERFILE) -> list[Stage]:
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


@dataclass
class Image:
    """One service's image: the stages its target needs, with its build arguments applied."""

    stages: dict[str, Stage]
    #: the target's stage with the stages it is FROM folded in: the image's configuration
    final: Stage

    @property
    def build(self) -> Stage:
        return self.stages["build"]


def image(service: str) -> Image:
    stages = {
        s.name: s.with_build_args({"SERVICE": service}) for s in parse() if s.name is not None
    }
    needed: dict[str, Stage] = {}
    todo = [image_target(service)]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        assert name in stages, f"no stage {name}"
        stage = needed[name] = stages[name]
        if stage.image in stages:
            todo.append(stage.image)
        for args in stage.all("COPY") + stage.all("RUN"):
            todo.extend(re.findall(r"--from=([\w.-]+)", args))
    # the final image: its base stages' instructions, then its own
    chain = [needed[image_target(service)]]
    while chain[0].image in stages:
        chain.insert(0, needed[chain[0].image])
    final = Stage(
        chain[0].image,
        image_target(service),
        [instruction for stage in chain for instruction in stage.instructions],
    )
    return Image(needed, final)


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (fails on shell form)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def entry_point_link(build: Stage) -> tuple[str, str]:
    """The build stage's ``ln -s <script> /app/.venv/bin/<name>``: (name, script)."""
    links = [shlex.split(r) for r in build.all("RUN") if r.startswith("ln ")]
    assert len(links) == 1, links
    (ln, option, script, link) = links[0]
    assert (ln, option) == ("ln", "-s") and link.startswith("/app/.venv/bin/"), links[0]
    return link.removeprefix("/app/.venv/bin/"), script


# --- hadolint ---------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile(tools: Tools) -> None:
    tools.run(tools.hadolint, "--config", HADOLINT_CONFIG, "--no-color", DOCKERFILE)


def test_hadolint_catches_what_it_should(tools: Tools, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install uv\nCMD python -m app\n")
    run = tools.run(tools.hadolint, "--config", HADOLINT_CONFIG, "--no-color", bad, check=False)
    assert run.returncode != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3025"} <= set(re.findall(r"DL\d{4}", run.stdout))


# --- the rules --------------------------------------------------------------------------------


def test_one_dockerfile_no_other() -> None:
    assert DOCKERFILE.is_file()
    assert not sorted(REPO.glob("services/*/Dockerfile")), "one template, no per-service copy"


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_from_one_pinned_slim_base(service: str) -> None:
    built = image(service)
    assert len(built.stages) >= 2, "multi-stage: a build stage and a slim final stage"
    bases = {name: s.image for name, s in built.stages.items() if s.image not in built.stages}
    for base in bases.values():
        assert PINNED_IMAGE.match(base), f"base image not pinned: {base}"
    final = built.final
    assert "slim" in final.image
    # the venv's interpreter links to the build stage's python: the same base image (the
    # admin console's static files come from a Node stage of their own)
    assert {b for name, b in bases.items() if name != CONSOLE_STAGE} == {final.image}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_builds_only_the_stages_it_needs(service: str) -> None:
    built = image(service)
    # BuildKit builds the target's stages only: the Node stage for admin-api alone
    assert (CONSOLE_STAGE in built.stages) == (service == "admin-api")
    # the last stage (a build without --target) is the plain service
    assert parse()[-1].name == "service"


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_the_service_as_non_root_in_exec_form(service: str) -> None:
    built = image(service)
    final = built.final
    user = final.all("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {user}: a numeric non-root uid"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # an exec form ENTRYPOINT cannot read SERVICE: one name, linked to the service's script
    (entrypoint,) = [exec_form(a) for a in final.all("ENTRYPOINT")]
    assert [entry_point_link(built.build)] == [(entrypoint[0], console_script(service))]
    assert len(entrypoint) == 1
    for args in final.all("CMD"):
        exec_form(args)
    assert final.all("STOPSIGNAL") in ([], ["SIGTERM"])
    labels = shlex.split(" ".join(final.all("LABEL")))
    assert f"org.opencontainers.image.title={console_script(service)}" in labels


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_port_and_host(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    final = image(service).final
    port = settings_class(service).model_fields["http_port"].default
    (check,) = final.all("HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert re.search(r"--interval=\d+s", options) and re.search(r"--timeout=\d+s", options)
    timeout = int(re.search(r"--timeout=(\d+)s", options)[1])  # type: ignore[index]
    assert healthcheck.TIMEOUT_SECONDS < timeout
    assert exec_form(command) == ["python", "-m", "callback_shared.healthcheck"]
    env = final.env()
    assert env["HTTP_HOST"] == "0.0.0.0"
    # the image names its service; the port is the service's settings' default, written nowhere
    # in the image (no HTTP_PORT, no EXPOSE)
    assert "HTTP_PORT" not in env and not final.all("EXPOSE")
    monkeypatch.delenv("HTTP_PORT", raising=False)
    service_settings = healthcheck.settings_class(env[healthcheck.SERVICE_VARIABLE])
    assert service_settings is settings_class(service)
    assert healthcheck.http_port(service_settings) == port


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_holds_the_venv_and_no_build_tools(service: str) -> None:
    built = image(service)
    build, final = built.build, built.final
    copies = final.all("COPY")
    console = [CONSOLE_COPY] if service == "admin-api" else []
    assert copies == ["--from=build /app/.venv /app/.venv", *console]
    assert final.env()["PATH"].startswith("/app/.venv/bin:")
    assert ("ADMIN_CONSOLE_DIR" in final.env()) == (service == "admin-api")
    for command in final.all("RUN"):
        assert not re.search(r"\b(uv|apt-get|apk|gcc)\b|pip install", command), command
        assert "pip uninstall" in command  # the base image's pip goes too
    syncs = [r for r in build.all("RUN") if "uv sync" in r]
    assert syncs and all("uv sync --frozen --no-dev" in r for r in syncs), "from uv.lock"
    assert all(f'--package "callback-{service}"' in r for r in syncs), "this service only"


def test_admin_api_image_serves_the_console_built_from_its_lockfile() -> None:
    built = image("admin-api")
    console = built.stages[CONSOLE_STAGE]
    assert re.match(r"^node:20\.\d+\.\d+-bookworm-slim$", console.image), console.image
    assert parse()[0].name == "build", "the Python build stage comes first"
    copies = " ".join(console.all("COPY"))
    assert "services/admin-console/package-lock.json" in copies
    runs = console.all("RUN")
    assert any(r.startswith("npm ci") for r in runs) and "npm run build" in runs
    assert not any(re.search(r"npm (install|i)\b", r) for r in runs), "only npm ci: the lockfile"
    final = built.final
    assert CONSOLE_COPY in final.all("COPY")
    assert final.env()["ADMIN_CONSOLE_DIR"] == "/app/console"


def test_a_build_without_service_fails_early() -> None:
    (build,) = [s for s in parse() if s.name == "build"]
    with pytest.raises(AssertionError, match="SERVICE"):
        build.with_build_args({})


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


@pytest.mark.process
@pytest.mark.parametrize("service", SERVICES)
def test_build_stage_replayed_without_docker(service: str, tmp_path: Path) -> None:
    built = image(service)
    build = built.build
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
            if command[0] == "ln":
                link, script = entry_point_link(build)
                assert workdir is not None
                (workdir / ".venv" / "bin" / link).symlink_to(script)
                continue
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
            assert instruction in {"ARG", "ENV"}, f"no replay for {instruction}"
    assert workdir is not None
    venv = workdir / ".venv"
    # the final image holds the venv only: the entry point must run with the sources gone
    for copied in list(workdir.iterdir()):
        if copied != venv:
            shutil.rmtree(copied) if copied.is_dir() else copied.unlink()
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "MONGODB_URL": "mongodb://db:27017"}
    (entrypoint,) = [exec_form(a)[0] for a in built.final.all("ENTRYPOINT")]
    assert (venv / "bin" / entrypoint).resolve() == (venv / "bin" / console_script(service))
    for script in (entrypoint, "callback-bootstrap"):
        run = subprocess.run(
            [str(venv / "bin" / script)], env=clean, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 2, run.stderr
        assert (
            run.stderr.strip() == "invalid configuration: KAFKA_BOOTSTRAP_SERVERS: Field required"
        )
    # the health check, in the image's environment: the service's port from its settings
    image_env = {k: v for k, v in built.final.env().items() if k != "PATH"}
    run = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from callback_shared.healthcheck import *; import os; "
            "print(http_port(settings_class(os.environ[SERVICE_VARIABLE])))",
        ],
        env={**clean, **image_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == settings_class(service).model_fields["http_port"].default
    site = next((venv / "lib").glob("python3.*/site-packages"))
    editable = [
        p.name for p in site.glob("*.pth") if "_editable" in p.name or "__editable__" in p.name
    ]
    assert not editable, f"the project is installed editable: {editable}"
    for dev_only in ("pytest", "ruff", "mypy", "callback_dev", "secantus", "testcontainers"):
        assert not (site / dev_only).exists(), f"{dev_only} in the image"
