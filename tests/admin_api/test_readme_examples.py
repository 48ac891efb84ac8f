"""The README's curl examples, run as written against a real admin-api process.

Every ```` ```sh ```` block of README.md that calls ``curl`` is run by bash, with two substitutions
a test needs: the address ``http://127.0.0.1:8080`` becomes the test's admin-api, and ``uv run
<command>`` runs the workspace's installed ``<command>`` (the block's working directory is not the
repository). ``source .run/env`` reads a ``.run/env`` the test writes with the admin-api's
``JWT_SECRET``, as ``make up`` writes it. Each ``curl`` of a block must be followed by a comment
``# → <status> <abridged body>``: the answer must have that status and match the body, where
``"…"`` stands for any value and ``, …`` for more fields or items (a list's pattern items must
each match some item of the answer).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from callback_shared.mongo import make_mongo_client
from callback_shared.settings import PlatformSettings

from tests.admin_api.support import SECRET
from tests.support import BIN, start_service

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "http://127.0.0.1:8080"
SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
EXPECTED = re.compile(r"^# → (\d{3}) (.+)$", re.MULTILINE)
ANY = "…"
#: Runs before a block: stop at the first failure; each curl writes its status and body to files.
PRELUDE = """set -euo pipefail
__calls=0
curl() {
  __calls=$((__calls + 1))
  command curl --show-error --output "$ANSWERS/$__calls.body" --write-out '%{http_code}' "$@" \
    > "$ANSWERS/$__calls.status"
}
"""


def curl_blocks(readme: str) -> list[str]:
    return [block for block in SHELL_BLOCK.findall(readme) if re.search(r"^curl ", block, re.M)]


def pattern(abridged: str) -> Any:
    """The abridged body as JSON: ``, …`` (more fields or items) dropped, ``"…"`` kept."""
    return json.loads(re.sub(rf",\s*{ANY}", "", abridged))


def matches(expected: Any, actual: Any) -> bool:
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and all(
            any(matches(item, candidate) for candidate in actual) for item in expected
        )
    return type(expected) is type(actual) and bool(expected == actual)


def runnable(block: str, address: str) -> str:
    assert README_ADDRESS in block, f"a curl example without {README_ADDRESS}:\n{block}"
    block = block.replace(README_ADDRESS, address)
    return re.sub(r"\buv run ", "", block)


def test_pattern_reading() -> None:
    assert pattern('{"a": "…", "b": [{"c": 1, …}], …}') == {"a": ANY, "b": [{"c": 1}]}
    assert matches({"a": ANY, "b": [{"c": 1}]}, {"a": None, "b": [{"c": 2}, {"c": 1, "d": 0}]})
    assert not matches({"b": [{"c": 1}]}, {"b": []})
    assert not matches({"a": False}, {"a": 0})


def test_readme_has_curl_examples_with_expected_answers() -> None:
    blocks = curl_blocks(README.read_text())
    assert blocks, "README.md has no sh block calling curl"
    for block in blocks:
        calls = re.findall(r"^curl ", block, re.MULTILINE)
        assert len(EXPECTED.findall(block)) == len(calls), f"a curl without '# → ':\n{block}"


@pytest.mark.e2e
async def test_readme_curl_examples_answer_as_shown(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "JWT_SECRET": SECRET}
    values: dict[str, Any] = {k.lower(): v for k, v in env.items()}
    settings = PlatformSettings(**values)
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "env").write_text(f"export JWT_SECRET={shlex.quote(SECRET)}\n")
    blocks = curl_blocks(README.read_text())
    process = start_service("admin-api", env, tmp_path)
    try:
        process.wait_ready()
        for number, block in enumerate(blocks):
            answers = tmp_path / f"answers-{number}"
            answers.mkdir()
            ran = await asyncio.to_thread(
                subprocess.run,
                ["bash", "-c", PRELUDE + runnable(block, process.url)],
                cwd=tmp_path,
                env={
                    **os.environ,
                    "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "ANSWERS": str(answers),
                },
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert ran.returncode == 0, f"{block}\nexit {ran.returncode}:\n{ran.stderr}"
            expected = EXPECTED.findall(block)
            for call, (status, abridged) in enumerate(expected, start=1):
                got = (answers / f"{call}.status").read_text()
                body = (answers / f"{call}.body").read_text()
                shown = f"curl #{call} of:\n{block}\nanswered {got}: {body}"
                assert got == status, shown
                assert matches(pattern(abridged), json.loads(body)), shown
    finally:
        code = process.terminate()
        client = make_mongo_client(settings)
        await client.drop_database(settings.mongodb_database)
        await client.close()
    assert code == 0, process.output()
