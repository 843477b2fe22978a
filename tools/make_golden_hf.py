"""Writes the Hugging Face transformers parity fixtures under tests/golden/ (run by `make golden`;
needs torch + transformers).

Small random-weight ``transformers.SwinForImageClassification`` models (weights re-drawn at O(1)
scale as in tools/make_golden.py): ``hf_swin32`` has three stages, so that two patch mergings sit
at the end of a stage (transformers' and the official layout) rather than at the start of the next
(timm's); ``hf_swin32_ape`` patch 4, two stages and an absolute position embedding. For each:

- ``<name>.safetensors``: the file ``save_pretrained`` writes (the names of the checkpoints on
  the hub: ``attention.self.query``, ``intermediate.dense``, ...), checked to load back into
  transformers with the same logits;
- ``<name>.npz``: the NHWC input, the logits, the pooled output of ``SwinModel`` loaded from the
  same file (no classifier), and ``names``: (saved name, the name in transformers' own
  ``state_dict()``, which this version renames: ``attention.q_proj``, ``mlp.fc1``, ...), matched
  by tensor;
- ``<name>.json``: the transformers config and the versions.

    .venv-timm/bin/python tools/make_golden_hf.py --out tests/golden
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from make_golden import randomize_  # tools/ is on sys.path when this file is run
from safetensors.numpy import load_file
from transformers import SwinConfig, SwinForImageClassification, SwinModel

CONFIGS = {
    "hf_swin32": dict(
        image_size=32,
        patch_size=2,
        num_channels=3,
        embed_dim=8,
        depths=[2, 2, 2],
        num_heads=[1, 2, 2],
        window_size=4,
        mlp_ratio=2.0,
        num_labels=10,
        drop_path_rate=0.0,
    ),
    # Patch 4, two stages, an absolute position embedding (use_absolute_embeddings).
    "hf_swin32_ape": dict(
        image_size=32,
        patch_size=4,
        num_channels=3,
        embed_dim=8,
        depths=[2, 2],
        num_heads=[1, 2],
        window_size=4,
        mlp_ratio=2.0,
        num_labels=5,
        drop_path_rate=0.0,
        use_absolute_embeddings=True,
    ),
}
BATCH = 2


def tensor_names(saved: dict[str, np.ndarray], model: torch.nn.Module) -> list[list[str]]:
    """(saved name, state_dict name) pairs, matched by value (random weights are all distinct)."""
    live = {k: v.numpy() for k, v in model.state_dict().items()}
    pairs = []
    for name, value in saved.items():
        same = [k for k, v in live.items() if v.shape == value.shape and np.array_equal(v, value)]
        assert len(same) == 1, (name, same)
        pairs.append([name, same[0]])
    assert sorted(k for _, k in pairs) == sorted(live), "a state_dict tensor was not saved"
    return pairs


def write_case(out: Path, name: str, config: dict, seed: int) -> None:
    """One fixture: ``<name>.safetensors``, ``<name>.npz``, ``<name>.json``."""
    torch.manual_seed(0)
    model = SwinForImageClassification(SwinConfig(**config)).eval()
    gen = torch.Generator().manual_seed(seed)
    randomize_(model, gen)
    pos = model.swin.embeddings.position_embeddings
    if pos is not None:  # at O(1) too (randomize_ scales a 3-d tensor by its fan-in)
        with torch.no_grad():
            pos.copy_(torch.randn(pos.shape, generator=gen))
    size = config["image_size"]
    x_NCHW = torch.rand((BATCH, 3, size, size), generator=gen) * 2 - 1
    with torch.no_grad():
        logits = model(pixel_values=x_NCHW).logits.numpy()

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        file = Path(tmp) / "model.safetensors"
        (out / f"{name}.safetensors").write_bytes(file.read_bytes())
        saved = load_file(str(file))
        with torch.no_grad():
            again = SwinForImageClassification.from_pretrained(tmp).eval()
            np.testing.assert_array_equal(again(pixel_values=x_NCHW).logits.numpy(), logits)
            backbone = SwinModel.from_pretrained(tmp).eval()
            pooled = backbone(pixel_values=x_NCHW).pooler_output.numpy()
        # SwinModel's own file: the classification file's names without "swin." or classifier.
        with tempfile.TemporaryDirectory() as tmp2:
            backbone.save_pretrained(tmp2)
            own = set(load_file(str(Path(tmp2) / "model.safetensors")))
        assert own == {k.removeprefix("swin.") for k in saved if not k.startswith("classifier")}

    arrays = {
        "input_NHWC": x_NCHW.permute(0, 2, 3, 1).contiguous().numpy(),
        "logits": logits,
        "pooled": pooled,
        "names": np.array(tensor_names(saved, model)),
    }
    np.savez_compressed(out / f"{name}.npz", **arrays)
    meta = dict(
        config,
        batch=BATCH,
        hidden_act=model.config.hidden_act,
        layer_norm_eps=model.config.layer_norm_eps,
        use_absolute_embeddings=model.config.use_absolute_embeddings,
        transformers_version=transformers.__version__,
        torch_version=torch.__version__,
    )
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: {len(saved)} tensors, |logits| max {np.abs(logits).max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="tests/golden")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, config) in enumerate(CONFIGS.items()):
        write_case(out, name, config, seed=4000 + i)


if __name__ == "__main__":
    main()
