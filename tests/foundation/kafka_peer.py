"""A separate OS process that publishes to or consumes from the real broker (see test_kafka)."""

import asyncio
import sys

from callback_shared.kafka import make_broker
from callback_shared.settings import PlatformSettings
from faststream import AckPolicy


async def produce(settings: PlatformSettings, topic: str, first: int, count: int) -> None:
    broker = make_broker(settings, client_id="peer-producer")
    async with broker:
        await broker.connect()
        for n in range(first, first + count):
            await broker.publish(f"message-{n}", topic, key=str(n).encode())


async def consume(settings: PlatformSettings, topic: str, group: str, count: int) -> None:
    """Print each message once it is processed (and committed); exit after ``count`` more
    seconds of quiet once ``count`` messages arrived, so any re-read would be seen."""
    broker = make_broker(settings, client_id="peer-consumer")
    received: list[str] = []
    done = asyncio.Event()

    @broker.subscriber(
        topic, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK
    )
    async def handle(body: str) -> None:
        received.append(body)
        print(body, flush=True)
        if len(received) >= count:
            done.set()

    async with broker:
        await broker.start()
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.sleep(3)


def main() -> None:
    settings = PlatformSettings()
    command, topic, *rest = sys.argv[1:]
    if command == "produce":
        asyncio.run(produce(settings, topic, int(rest[0]), int(rest[1])))
    else:
        asyncio.run(consume(settings, topic, rest[0], int(rest[1])))


if __name__ == "__main__":
    main()
