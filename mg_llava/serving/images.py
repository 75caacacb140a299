"""An ``image_url`` of a request -> what the preprocessor decodes (encoded bytes or a local path).

Data URLs (``data:image/png;base64,...``) are decoded here; the pixels are decoded later by the project's one image
decoder (:func:`mg_llava.image_io.open_image`, with its decompression-bomb limit). Local paths (``file://`` URLs or
plain absolute paths) are read only inside the folders the server was started with (``--allow-local-images``);
remote URLs are never fetched (the server would otherwise request any address a client names).
"""
import base64
import binascii
import os
import os.path as osp
from typing import Sequence, Tuple, Union
from urllib.parse import unquote, urlparse

from .protocol import APIError, bad_request


def resolve_image_url(url: str, local_folders: Sequence[str] = ()) -> Tuple[Union[bytes, str], str]:
    """``(bytes or path, name)``: the image source and a short name for messages and box-file lookups."""
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise bad_request("image_url: a data URL must look like data:image/<type>;base64,<data>", "messages",
                              "invalid_image_url")
        try:
            encoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise bad_request(f"image_url: the data URL is not valid base64 ({err})", "messages",
                              "invalid_image_url") from err
        if not encoded:
            raise bad_request("image_url: the data URL holds no bytes", "messages", "invalid_image_url")
        return encoded, f"<data URL, {len(encoded)} bytes>"
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        raise bad_request("image_url: remote URLs are not fetched; send the image as a data URL", "messages",
                          "invalid_image_url")
    if parsed.scheme == "file":
        path = unquote(parsed.path)
    elif parsed.scheme == "" and osp.isabs(url):
        path = url
    else:
        raise bad_request(f"image_url: unsupported URL scheme {parsed.scheme!r} (a data URL, or a local path when "
                          f"the server allows them)", "messages", "invalid_image_url")
    if not local_folders:
        raise APIError(403, "image_url: local image paths are off on this server (start it with "
                            "--allow-local-images FOLDER); send a data URL", "permission_error", "messages",
                       "local_images_disabled")
    real = osp.realpath(path)
    if not any(osp.commonpath([real, osp.realpath(folder)]) == osp.realpath(folder) for folder in local_folders):
        raise APIError(403, f"image_url: {path} is outside the folders this server reads images from",
                       "permission_error", "messages", "local_image_outside_allowed_folders")
    if not osp.isfile(real) or not os.access(real, os.R_OK):
        raise bad_request(f"image_url: no readable file {path}", "messages", "image_not_found")
    return real, osp.basename(real)


__all__ = ["resolve_image_url"]
