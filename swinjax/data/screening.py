"""Image files that cannot be decoded, found before the first step (``config.bad_images``).

An image folder's split is screened when it is opened (:func:`screen`): every file of the split
is decoded once (:func:`swinjax.data.image_files.check_images`), before any batch is read or any
program compiled. ``skip`` (the default) leaves the unreadable files out of the split and says how
many (a warning; training lists them in ``WORKDIR/bad_images.txt``); ``fail`` raises
:class:`BadImageError` naming the first few and the count (programs: exit status 2).

Screening is a pure function of the files: the same files give the same bad ones, in the order
of the split's file list, so a resumed run leaves out what the first run did and its epochs are
the same. Results are cached in the process per file list (the validation split opened again by
a sweep or an evaluation is not decoded again; :func:`clear_cache` forgets them).

A file that goes bad after screening (rewritten or deleted while a run streams) is met by the
streaming pipeline; :func:`decode_failure` names it, so that the run stops with a
:class:`BadImageError` rather than a TensorFlow traceback.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from swinjax.data.image_files import BadImage, check_images
from swinjax.errors import BadImageError, ConfigError

SKIP, FAIL = "skip", "fail"
POLICIES = (SKIP, FAIL)
SHOWN = 3  # files a message names
_CACHE_SIZE = 8
_BAR_FROM = 2000  # files: screening this many or more shows a progress bar (on a terminal)

log = logging.getLogger(__name__)
_cache: collections.OrderedDict[tuple[str, ...], tuple[BadImage, ...]] = collections.OrderedDict()


def check_policy(policy: str) -> None:
    """ConfigError unless ``policy`` is one of :data:`POLICIES`."""
    if policy not in POLICIES:
        raise ConfigError(
            f"config.bad_images={policy!r}: use 'skip' (leave unreadable image files out, "
            "listed in WORKDIR/bad_images.txt) or 'fail' (stop, naming them)"
        )


def clear_cache() -> None:
    """Forgets every screening result of this process."""
    _cache.clear()


def screen(paths: Sequence[str], *, policy: str, name: str) -> tuple[BadImage, ...]:
    """The files among ``paths`` (the files of split ``name``) that are not readable images, in
    the order of ``paths``. ``policy`` ``"fail"``: :class:`BadImageError` if there is any;
    ``"skip"``: a warning with their count, the caller leaves them out."""
    check_policy(policy)
    key = tuple(str(p) for p in paths)
    if key not in _cache:
        _cache[key] = _check(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    bad = _cache[key]
    if bad and policy == FAIL:
        raise BadImageError(
            f"{describe(bad, name, total=len(key))}. Fix: delete or replace them, or set "
            "--config.bad_images=skip to train without them (listed in WORKDIR/bad_images.txt)"
        )
    if bad:
        log.warning("%s; left out (config.bad_images='skip')", describe(bad, name, len(key)))
    return bad


def _check(paths: tuple[str, ...]) -> tuple[BadImage, ...]:
    from tqdm import tqdm

    with tqdm(
        total=len(paths),
        desc="checking image files",
        unit="file",
        disable=True if len(paths) < _BAR_FROM else None,  # None: on a terminal only
    ) as bar:
        return tuple(check_images(paths, on_done=bar.update))


def describe(bad: Sequence[BadImage], name: str, total: int | None = None) -> str:
    """One line: how many files of ``name`` are unreadable, the first :data:`SHOWN` of them
    with their reasons."""
    shown = "; ".join(f"{b.path} ({b.reason})" for b in bad[:SHOWN])
    more = f"; and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    of = f" of its {total}" if total is not None else ""
    return f"{name}: {len(bad)}{of} image files cannot be decoded: {shown}{more}"


def decode_failure(paths: Sequence[str], name: str) -> BadImageError | None:
    """Where streaming ``paths`` (the files of the batch that failed) stopped with a decoding
    error: a :class:`BadImageError` naming the files that are unreadable now; None where all
    of them read (the error was something else)."""
    bad = check_images(paths)
    if not bad:
        return None
    return BadImageError(
        f"{describe(bad, name)}, met while reading the split (they changed after it was "
        "opened and screened). Fix: run the same command again with config.bad_images='skip' "
        "(the default), leaving the files where they are: it screens the split again and leaves "
        "them out (training resumes from its last checkpoint)"
    )


def left_out(splits: Iterable[Any]) -> list[BadImage]:
    """The unreadable files left out of ``splits`` (streamed image folders' ``left_out``; other
    splits have none), once each, by path: what ``WORKDIR/bad_images.txt`` lists."""
    return sorted({b for split in splits for b in getattr(split, "left_out", ())}, key=_path)


def _path(bad: BadImage) -> str:
    return bad.path
