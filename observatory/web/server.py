"""The service in a background thread (uvicorn), for the demo's main thread and for tests on loopback."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from observatory.errors import ConfigError
from observatory.web.limits import ConnectionGuard, server_options


class ServerThread:
    def __init__(self, application: Any, host: str = "127.0.0.1", port: int = 0,
                 guard: ConnectionGuard | None = None) -> None:
        self.guard = guard or ConnectionGuard()
        self.server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="warning",
                                                    lifespan="on", **server_options(self.guard)))
        self.thread = threading.Thread(target=self.server.run, name="observatory-http", daemon=True)
        self.port = port

    def start(self, timeout: float = 20.0) -> int:
        """Starts serving; returns the bound port (useful with port 0)."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the web service did not start (is the port already in use?)")
            time.sleep(0.05)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self.port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
