"""Tag vocabularies: the shipped ones (``coco80``, ``lvis``) or a user's file or list."""
import hashlib
import os.path as osp
from typing import Sequence, Union

VOCAB_DIR = osp.join(osp.dirname(osp.abspath(__file__)), "vocab")
SHIPPED_VOCABULARIES = {"coco80": "coco80.txt", "lvis": "lvis_v1.txt"}


class EmptyVocabularyError(ValueError):
    """A tagger was given no tags at all (an empty list or a file with no names)."""


def vocabulary_fingerprint(names: Sequence[str]) -> str:
    """Short hash of a vocabulary (order included), so a run's record says which tags it used."""
    return hashlib.sha1("\n".join(names).encode("utf-8")).hexdigest()[:12]


def read_vocabulary_file(path: str) -> list:
    """One tag per line; blank lines and lines starting with ``#`` are ignored; duplicates keep their first place."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f]
    return list(dict.fromkeys(n for n in names if n and not n.startswith("#")))


def load_vocabulary(vocabulary: Union[str, Sequence[str]]) -> list:
    """Resolve ``vocabulary`` to a list of unique tags.

    Accepts a shipped name (``'coco80'``, ``'lvis'``), a path to a text file (one tag per line) or a list of tags.
    Raises :class:`EmptyVocabularyError` when nothing is left, naming where the tags came from.
    """
    if isinstance(vocabulary, str):
        source = vocabulary
        if vocabulary in SHIPPED_VOCABULARIES:
            path = osp.join(VOCAB_DIR, SHIPPED_VOCABULARIES[vocabulary])
        elif osp.isfile(vocabulary):
            path = vocabulary
        else:
            raise FileNotFoundError(
                f"vocabulary {vocabulary!r} is neither a shipped name ({sorted(SHIPPED_VOCABULARIES)}) nor a file"
            )
        names = read_vocabulary_file(path)
    else:
        source = "the given list"
        names = list(dict.fromkeys(str(n).strip() for n in vocabulary if str(n).strip()))
    if not names:
        raise EmptyVocabularyError(f"the tag vocabulary from {source} is empty: a tagger needs at least one tag")
    return names
