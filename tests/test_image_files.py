"""Finding image files and telling readable images from files that only look like ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swinjax.data import image_files
from swinjax.errors import MissingFileError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(root / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 16, 3), np.uint8)).save(root / "sub" / "b.PNG")
    encoded = (root / "a.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(encoded[: len(encoded) // 2])
    (root / "notes.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    (root / "readme.txt").write_text("left out: no image suffix")
    return root


def test_find_images_folders_recursively_files_and_globs(folder):
    names = [p[len(str(folder)) + 1 :] for p in image_files.find_images([folder])]
    assert names == ["a.jpg", "cut.jpg", "empty.png", "notes.jpg", "sub/b.PNG"]
    # A file named on its own is taken whatever its suffix; each file once; globs recurse.
    got = image_files.find_images([folder / "readme.txt", folder / "a.jpg", f"{folder}/**/*.PNG"])
    assert got == [str(folder / "readme.txt"), str(folder / "a.jpg"), str(folder / "sub/b.PNG")]
    with pytest.raises(MissingFileError, match="nothing.jpg"):
        image_files.find_images([folder / "nothing.jpg"])


def test_check_images_names_each_bad_file_and_why(folder):
    done = []
    bad = image_files.check_images(image_files.find_images([folder]), on_done=done.append)
    assert sum(done) == 5
    reasons = {b.path[len(str(folder)) + 1 :]: b.reason for b in bad}
    assert set(reasons) == {"cut.jpg", "notes.jpg", "empty.png"}
    assert reasons["empty.png"] == "empty file"
    assert "Unknown image file format" in reasons["notes.jpg"]
    assert "function_node" not in reasons["cut.jpg"] and "JPEG" in reasons["cut.jpg"]
