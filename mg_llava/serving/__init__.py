"""An OpenAI-compatible HTTP API for a loaded MG-LLaVA (``tools/serve.py``).

- :mod:`.protocol`: the chat-completions request and response formats, OpenAI's error body.
- :mod:`.images`: an ``image_url`` (data URL, or a local path where allowed) -> bytes or a path.
- :mod:`.batcher`: dynamic batching over the project's batched generation, with bounded admission.
- :mod:`.streaming`: each step's tokens -> text pieces that add up to the answer.
- :mod:`.app`: the FastAPI app. :mod:`.runner`: uvicorn in a thread. :mod:`.loadtest`: a load test client.
"""
from .app import ModelServer, ServerSettings
from .batcher import Batcher, QueueFull
from .protocol import APIError
from .runner import ServerThread, free_port

__all__ = ["APIError", "Batcher", "ModelServer", "QueueFull", "ServerSettings", "ServerThread", "free_port"]
