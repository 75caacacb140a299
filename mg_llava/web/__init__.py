"""The gradio web demo (tools/web_demo.py): :class:`WebDemo` chats about an uploaded image or video."""
from .demo import WebDemo

__all__ = ["WebDemo"]
