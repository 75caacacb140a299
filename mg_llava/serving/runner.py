"""Run a :class:`~.app.ModelServer`'s app with uvicorn: in the foreground (``tools/serve.py``) or in a thread of this
process (tests and ``tools/bench_serve.py``, which load the model once)."""
import socket
import threading
import time

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerThread:
    """``app`` served by uvicorn on ``host:port`` (a free port when 0) in a daemon thread; ``url`` is its base URL
    (``/v1`` is the OpenAI client's ``base_url``). Use as a context manager, or call :meth:`stop`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 start_timeout_s: float = 60.0):
        port = port or free_port(host)
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, name="mg-llava-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


__all__ = ["ServerThread", "free_port"]
