"""Pretrained Swin weights, from a file or the Hugging Face Hub, loaded into a swinjax model of any
size (timm's, the official microsoft/Swin-Transformer's or Hugging Face transformers'
checkpoints; see :mod:`swinjax.weights.convert`).

    model = create_model("swin_t", img_size=256, window_size=8, num_classes=100)
    params, report = load_pretrained("hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k", model,
                                     init_params=variables["params"])
    print(format_report(report))    # what was loaded, resized, left out; "head re-initialised"

Sources: ``.safetensors``, ``.npz`` (name -> array, e.g. ``np.savez(path, **state_dict)``),
PyTorch ``.pth`` / ``.pt`` / ``.bin`` (needs torch: ``pip install 'swinjax[torch]'``; read with
``weights_only=True``), and ``hf-hub:<repo>`` (such as ``hf-hub:timm/<model>.<tag>``; needs
``pip install 'swinjax[hub]'``): the hub's cache first, then a download, after a probe of the
hub's host so that a machine without network fails in seconds with the fix.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from swinjax.errors import ConfigError, DownloadError, MissingDependencyError, MissingFileError
from swinjax.network import unreachable_hosts
from swinjax.weights.convert import LoadReport, convert_checkpoint, unwrap_state_dict

HF_HUB = "hf-hub:"
# The weights in a hub repo (timm's or transformers'), in order; a repo's config.json is not read.
HF_FILES = ("model.safetensors", "pytorch_model.bin")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
SUFFIXES = (".safetensors", ".npz", *TORCH_SUFFIXES)


def load_state_dict(source: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint file or ``hf-hub:<repo>`` as name -> numpy array (unwrapped
    from ``"model"`` / ``"state_dict"`` where a training checkpoint nests them)."""
    if isinstance(source, str) and source.startswith(HF_HUB):
        return load_state_dict(_hub_file(source[len(HF_HUB) :]))
    path = Path(source).expanduser()
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"{str(source)!r}: unknown checkpoint format; use one of {SUFFIXES}")
    if not path.is_file():
        raise MissingFileError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return load_file(str(path))
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return _arrays({k: npz[k] for k in npz.files})
    return _arrays(_torch_load(path))


def _arrays(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a checkpoint's tensors' mapping (optimizer state, epochs and the like left
    out)."""
    return {k: v for k, v in unwrap_state_dict(tree).items() if isinstance(v, np.ndarray)}


def _torch_load(path: Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            f"reading the PyTorch checkpoint {path} needs torch: pip install 'swinjax[torch]' "
            "(or convert it to .safetensors or .npz where torch is installed)"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors: objects that weights_only refuses to unpickle
        raise ConfigError(
            f"{path}: torch.load(weights_only=True) cannot read it ({e}). If you trust the file, "
            "load it with torch.load(weights_only=False) and pass its state dict"
        ) from e

    def numpy(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {k: numpy(v) for k, v in x.items()}
        if isinstance(x, torch.Tensor):
            return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
        return x

    return numpy(obj)


def _hub_file(repo: str) -> str:
    """A local copy of ``repo``'s weights: from the hub's cache, else downloaded."""
    repo = repo.strip("/")
    try:
        import huggingface_hub as hub
    except ImportError:
        hub = None
    for name in HF_FILES if hub else ():
        try:
            return hub.hf_hub_download(repo, name, local_files_only=True)
        except Exception:  # not cached (the hub's error classes vary between versions)
            continue
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    fix = (
        f"Fix: download {endpoint}/{repo}/resolve/main/{HF_FILES[0]} where there is network, "
        "copy it here and pass its path instead of 'hf-hub:...'"
    )
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise DownloadError(
            f"{HF_HUB}{repo} is not in the hub cache and HF_HUB_OFFLINE is set. {fix}"
        )
    unreachable = unreachable_hosts([endpoint])
    if unreachable:
        raise DownloadError(
            f"{HF_HUB}{repo} is not in the hub cache and the hub cannot be reached "
            f"({'; '.join(unreachable)}). {fix}"
        )
    if hub is None:
        raise MissingDependencyError(
            f"downloading {HF_HUB}{repo} needs huggingface_hub: pip install 'swinjax[hub]'. "
            + fix.replace("Fix: ", "Or ")
        )
    return _download(hub, repo, fix)


def _download(hub: Any, repo: str, fix: str) -> str:
    errors = []
    for name in HF_FILES:
        try:
            return hub.hf_hub_download(repo, name)
        except Exception as e:  # a missing file in the repo, or the network failing midway
            errors.append(f"{name}: {e}")
    raise DownloadError(f"downloading {HF_HUB}{repo} failed ({'; '.join(errors)}). {fix}")


def load_pretrained(
    source: str | os.PathLike | Mapping[str, Any],
    model: Any,
    *,
    reset_head: bool = False,
    skip: Sequence[str] = (),
    init_params: Any = None,
) -> tuple[dict, LoadReport]:
    """``(params, report)``: a checkpoint (a path, ``hf-hub:<repo>`` or a state dict) adapted to
    ``model`` (:func:`swinjax.weights.convert.convert_checkpoint`). A classifier of another shape
    (or every classifier, with ``reset_head``) is left out and reported (``report.head_reset``);
    ``skip`` leaves out more (timm key prefixes, e.g. ``("absolute_pos_embed",)``). The params left
    out are taken from ``init_params`` (the model's freshly initialised params) where given, else
    absent. Any other mismatch raises :class:`swinjax.weights.convert.CheckpointMismatchError`."""
    sd = source if isinstance(source, Mapping) else load_state_dict(source)
    head = "reset" if reset_head else "auto"
    params, report = convert_checkpoint(sd, model, skip=skip, head=head)
    report.source = "a state dict" if isinstance(source, Mapping) else str(source)
    if init_params is not None:
        params = merge_params(init_params, params)
    return params, report


def merge_params(init_params: Any, loaded: Mapping) -> dict:
    """``init_params`` with every leaf that ``loaded`` has replaced by the loaded array."""
    flat = traverse_util.flatten_dict(dict(init_params))
    new = traverse_util.flatten_dict(dict(loaded))
    unknown = sorted("/".join(k) for k in new.keys() - flat.keys())
    if unknown:
        raise ValueError(f"loaded params not in init_params: {unknown}")
    return traverse_util.unflatten_dict({**flat, **new})


def format_report(report: LoadReport) -> str:
    """The lines a training run prints at start about the weights it loaded."""
    source = f" from {report.source}" if report.source else ""
    lines = [
        f"pretrained weights{source} ({report.layout} layout): {len(report.loaded)} tensors "
        f"loaded as they are, {len(report.resized)} resized, {len(report.missing)} initialised"
    ]
    group = lambda r: (
        re.sub(r"blocks\.\d+\.", "blocks.*.", r.key),
        r.from_shape,
        r.to_shape,
        r.how,
    )
    for (key, old, new, how), rs in itertools.groupby(report.resized, key=group):
        count = len(list(rs))
        times = f" (x{count})" if count > 1 else ""
        lines.append(f"  resized {key}{times}: {old} -> {new} ({how})")
    if report.head_reset:
        lines.append("  " + _head_line(*report.head_reset))
    is_head = lambda k: report.head_reset is not None and k.startswith("head.")
    unused = [k for k in report.unused if not is_head(k)]
    missing = [k for k in report.missing if not is_head(k)]
    if unused:
        lines.append(f"  unused checkpoint tensors: {', '.join(unused)}")
    if missing:
        lines.append(f"  initialised (not in the checkpoint): {', '.join(missing)}")
    if report.buffers:
        lines.append(f"  dropped {len(report.buffers)} derived buffers (recomputed from shapes)")
    if report.coordinates:
        lines.append(f"  recomputed: {report.coordinates}")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def _head_line(old: int | None, new: int) -> str:
    if new == 0:
        return f"checkpoint head ({old} classes) dropped: the model has no classifier"
    if old is None:
        return f"head initialised (the checkpoint has none; {new} classes)"
    return f"head re-initialised ({old} -> {new} classes)"
