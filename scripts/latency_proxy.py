#!/usr/bin/env python3
"""A TCP proxy on loopback that delays every byte by a fixed time in each direction (a far-away bucket).

    python scripts/latency_proxy.py TARGET_PORT DELAY_MS      # prints the port it listens on, runs until killed

Each direction's data is held for the delay and then sent on, in order; nothing limits bandwidth,
so what it adds is round trips: a new connection waits two delays (the handshake), and a request
and its answer each wait DELAY_MS more (TLS's extra round trips are not modelled). It listens on
127.0.0.1 only and forwards to 127.0.0.1:TARGET_PORT. Used by scripts/bench_far.py, in-process.
"""

from __future__ import annotations

import asyncio
import sys
import threading


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def pull() -> None:
        try:
            while data := await reader.read(1 << 16):
                queue.put_nowait((loop.time() + delay, data))
        finally:
            queue.put_nowait((loop.time() + delay, b""))

    async def push() -> None:
        while True:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not data:  # the sender is done: pass its half-close on, the other direction goes on
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(pull(), push(), return_exceptions=True)


class LatencyProxy:
    """Listens on 127.0.0.1 (``port`` once started) and forwards to ``127.0.0.1:target_port`` after ``delay_ms``."""

    def __init__(self, target_port: int, delay_ms: float) -> None:
        self.target_port, self.delay = target_port, delay_ms / 1000
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer = None
        try:
            await asyncio.sleep(2 * self.delay)  # a new connection costs a round trip (TCP's handshake) first
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(_pipe(reader, up_writer, self.delay), _pipe(up_reader, writer, self.delay))
        except (OSError, asyncio.CancelledError):  # the server went away, or the proxy is stopping
            pass
        finally:
            for end in (writer, up_writer):
                if end is not None:
                    end.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "LatencyProxy":
        self._thread.start()
        self._ready.wait(10)
        return self

    async def _close(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


if __name__ == "__main__":
    proxy = LatencyProxy(int(sys.argv[1]), float(sys.argv[2])).start()
    print(proxy.port, flush=True)
    threading.Event().wait()
