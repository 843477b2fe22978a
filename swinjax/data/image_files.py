"""Image files as users have them: finding them (files, folders, globs) and telling a readable
image from a file that only looks like one, by the decoder the pipelines use (TensorFlow's).

    paths = find_images(["photos/", "extra/*.png", "one.jpg"])   # sorted, recursive
    bad = check_images(paths)                                     # [BadImage(path, reason)]

A file is readable when ``tf.io.decode_image`` decodes it whole (JPEG, PNG, GIF's first frame,
BMP): a truncated JPEG or PNG, a text or HTML file named ``.jpg``, an empty file or a HEIC photo
renamed ``.jpg`` are not, and their reason is the decoder's first line. Reading is done by a
thread pool (TensorFlow's decoders release the GIL).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from swinjax.errors import MissingFileError

# What a folder is searched for (case-insensitive); a file named on its own is taken as it is.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


@dataclasses.dataclass(frozen=True)
class BadImage:
    """A file that is not a readable image, and why (the decoder's message, one line)."""

    path: str
    reason: str


def find_images(patterns: Sequence[str | os.PathLike]) -> list[str]:
    """The image files that ``patterns`` name, in order of the patterns, each folder's files
    sorted: a file is taken whatever its suffix; a folder gives every file under it (recursively)
    with an image suffix; anything else is a glob (``**`` recursive). Each file once.
    :class:`MissingFileError` naming a pattern that matches nothing."""
    found: dict[str, None] = {}
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if _is_image_name(p))
        else:
            matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise MissingFileError(
                    f"{str(pattern)!r} is not a file, a folder or a glob that matches files; "
                    "give image files, folders of images or patterns such as 'photos/*.jpg'"
                )
        found.update((str(p), None) for p in matches)
    return list(found)


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def image_problem(path: str | os.PathLike) -> str | None:
    """None if ``path`` decodes as an image, else why not (one line)."""
    import tensorflow as tf

    try:
        encoded = Path(path).read_bytes()
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    if not encoded:
        return "empty file"
    try:
        tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return _first_line(e.message)
    return None


def _first_line(message: str) -> str:
    line = next((s.strip() for s in message.splitlines() if s.strip()), "cannot be decoded")
    line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)  # TensorFlow's op prefix
    return line.split(" [Op:")[0]


def check_images(
    paths: Iterable[str | os.PathLike],
    *,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[BadImage]:
    """The files among ``paths`` that are not readable images, in the order of ``paths``.
    ``on_done(n)`` is called as files are checked (n of them since the last call), for a
    progress bar."""
    paths = [str(p) for p in paths]
    workers = workers or min(32, 2 * (os.cpu_count() or 1))
    bad = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for path, problem in zip(paths, pool.map(image_problem, paths), strict=True):
            if problem is not None:
                bad.append(BadImage(path=path, reason=problem))
            if on_done is not None:
                on_done(1)
    return bad
