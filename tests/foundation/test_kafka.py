"""Messages cross OS processes through the real broker; committed offsets survive a restart."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

PEER = Path(__file__).with_name("kafka_peer.py")


def peer(env: dict[str, str], *args: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, str(PEER), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_consumer_group_reads_each_message_once_across_restarts(env):
    topic, group = f"peer-{uuid.uuid4().hex[:8]}", "peer-group"
    peer(env, "produce", topic, "0", "10")
    first = peer(env, "consume", topic, group, "10")
    assert sorted(first) == sorted(f"message-{n}" for n in range(10))

    peer(env, "produce", topic, "10", "5")
    restarted = peer(env, "consume", topic, group, "5")
    assert sorted(restarted) == sorted(f"message-{n}" for n in range(10, 15))
