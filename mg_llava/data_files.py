"""Reading our input files so that a damaged one names itself.

Every file the project reads (annotation JSON/JSONL, box files, benchmark TSV/JSONL, box-generation run files, an
export's ``mg_llava.json`` and safetensors files, checkpoints) is read inside :func:`named_file_errors`: whatever a
parser raises for a truncated, non-UTF-8, non-JSON or otherwise damaged file becomes a :class:`DataFileError`
whose one-line message gives the file, what it is and what is wrong; the parser's exception is chained. A missing
file stays a ``FileNotFoundError`` naming the path.
"""
import csv
import functools
import json
import pickle
import struct
import zipfile
import zlib
from contextlib import contextmanager
from typing import Any

# What parsers raise for damaged content: decoding, JSON, csv, pickles, binary layouts, compressed streams, zip
# archives, and the KeyError/TypeError/IndexError of a structure that is not the expected one.
PARSE_ERRORS = (UnicodeError, json.JSONDecodeError, csv.Error, pickle.UnpicklingError, struct.error, zlib.error,
                zipfile.BadZipFile, EOFError, KeyError, TypeError, IndexError, ValueError, OSError)


class DataFileError(ValueError):
    """A file that exists but cannot be read as what it should be; the message names it."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path

    def __reduce__(self):
        return type(self), (str(self), self.path)


class CorruptCheckpointError(DataFileError):
    """A checkpoint file that is truncated or damaged (not one the safe loader refuses for what it names)."""


@contextmanager
def named_file_errors(path: str, what: str, error=DataFileError):
    """Turn a parser's exception inside the block into ``error`` naming ``what`` and ``path``.

    Our own exception types (``BadSampleError``, ``DataFileError``, ...: they name their file and sample) and a
    missing file pass unchanged; a plain ``ValueError`` of ours that already names the file keeps its words.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except PARSE_ERRORS as err:
        if type(err).__module__.startswith("mg_llava."):
            raise
        detail = str(err).splitlines()[0] if str(err) else ""
        if path and path in detail:  # our own ValueError already naming the file: keep its words
            raise error(detail, path) from err
        raise error(f"{what} {path}: {type(err).__name__}: {detail}"[:500], path) from err


def read_json(path: str, what: str) -> Any:
    """The JSON value in ``path`` (UTF-8), or a one-line :class:`DataFileError` naming the file."""
    with named_file_errors(path, what):
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def reads_file(what: str):
    """Decorator: the function's first argument is a file path; its parse errors become :class:`DataFileError`."""

    def wrap(function):
        @functools.wraps(function)
        def call(path, *args, **kwargs):
            with named_file_errors(str(path), what):
                return function(path, *args, **kwargs)

        return call

    return wrap
