"""Reading our input files so that a damaged one names itself.

Every file the project reads (annotation JSON/JSONL, box files, benchmark TSV/JSONL, box-generation run files, an
export's ``mg_llava.json`` and safetensors files, checkpoints) is read inside :func:`named_file_errors`: whatever a
parser raises for a truncated, non-UTF-8, non-JSON or otherwise damaged file becomes a :class:`DataFileError`
whose one-line message gives the file, what it is and what is wrong; the parser's exception is chained. A missing
file stays a ``FileNotFoundError`` naming the path.

Record files (a JSON list, JSONL, an MMBench-style TSV: annotations, box files, benchmarks, video QA) are read by
:func:`read_records` alone, which locates every record (``line N`` / ``item N``); each reader then checks its own
fields and applies its own bad-sample policy.
"""
import csv
import functools
import json
import os.path as osp
import pickle
import struct
import sys
import zipfile
import zlib
from contextlib import contextmanager
from typing import Any, List, NamedTuple, Optional, Tuple

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
    """The JSON value in ``path`` (UTF-8), or a one-line :class:`DataFileError` naming the file (and, for invalid
    JSON, the line and column)."""
    with named_file_errors(path, what):
        with open(path, encoding="utf-8") as f:
            try:
                return json.load(f)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{what} {path} is not valid JSON ({err})", path) from err


class Record(NamedTuple):
    """One record of a record file (a named tuple: a 665k-sample file makes 665k of them).

    ``number``: the 1-based line of a JSONL or TSV row (a TSV's header is line 1) or the 0-based position of a JSON
    list item; ``where``: ``"line N"`` or ``"item N"``; ``value``: the parsed record (a ``{column: cell}`` dict for
    a TSV row), None for a JSONL line that does not parse; ``error``: why that line does not parse, else None.
    """

    number: int
    where: str
    value: Any
    error: Optional[str] = None


RECORD_FORMATS = (".json", ".jsonl", ".tsv")


def record_format(path: str) -> str:
    """The record format of ``path`` by its extension (lower case): one of :data:`RECORD_FORMATS`, or '' if none."""
    ext = osp.splitext(path)[1].lower()
    return ext if ext in RECORD_FORMATS else ""


def read_json_list(path: str, what: str) -> list:
    """The JSON list in ``path`` (:func:`read_json`); another top-level value is a :class:`DataFileError`."""
    data = read_json(path, what)
    if not isinstance(data, list):
        raise DataFileError(f"{what} {path} must hold a JSON list, got {type(data).__name__}", path)
    return data


def read_tsv(path: str, what: str) -> Tuple[List[str], List[Record]]:
    """``(header, rows)`` of a tab-separated file with a header line; a row with more cells than the header keeps
    them under the key None, a row with fewer has None cells (``csv.DictReader``'s convention)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images are long fields
    with named_file_errors(path, what):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            rows = [Record(line, f"line {line}", row) for line, row in enumerate(reader, start=2)]
            return list(reader.fieldnames or []), rows


def _jsonl_records(path: str) -> List[Record]:
    records = []
    with open(path, "rb") as f:  # decoded per line: one line of bad bytes is one bad record
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # a blank line holds no record
            try:
                records.append(Record(number, f"line {number}", json.loads(line.decode("utf-8"))))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                records.append(Record(number, f"line {number}", None, str(err)))
    return records


def read_records(path: str, what: str, fmt: Optional[str] = None) -> List[Record]:
    """The records of a ``.json`` (a list), ``.jsonl`` or ``.tsv`` file, in file order; ``fmt`` (one of
    :data:`RECORD_FORMATS`) is the format when the caller knows it, else the extension says.

    A JSON file that does not parse is a :class:`DataFileError` (nothing in it can be located); a JSONL line that
    does not parse is a record with ``error`` set (the caller's bad-sample policy decides; its ``where`` locates it).
    Blank JSONL lines hold no record. Another extension is a :class:`DataFileError`.
    """
    fmt = fmt or record_format(path)
    if fmt == ".json":
        return [Record(i, f"item {i}", value) for i, value in enumerate(read_json_list(path, what))]
    if fmt == ".tsv":
        return read_tsv(path, what)[1]
    if fmt != ".jsonl":
        raise DataFileError(f"{what} {path}: unknown record format (expected one of {', '.join(RECORD_FORMATS)})",
                            path)
    with named_file_errors(path, what):
        return _jsonl_records(path)


def reads_file(what: str):
    """Decorator: the function's first argument is a file path; its parse errors become :class:`DataFileError`."""

    def wrap(function):
        @functools.wraps(function)
        def call(path, *args, **kwargs):
            with named_file_errors(str(path), what):
                return function(path, *args, **kwargs)

        return call

    return wrap
