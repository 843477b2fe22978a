"""``python -m swinjax.export``: a saved workdir as timm's layout, StableHLO and a TensorFlow
SavedModel, each loaded back and giving the model's logits; bad requests refused before any work.

The workdir is written here the way training writes one (config.json, classes.json, an orbax
checkpoint of a train state), with random parameters and an EMA that differs from them.
"""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax import config as config_lib
from swinjax import export as export_program
from swinjax.errors import ConfigError
from swinjax.serve import export as export_lib
from swinjax.serve import export_timm
from swinjax.training import checkpoint, inference, workdir
from swinjax.training.state import create_train_state
from swinjax.weights import params_from_timm
from tests.conftest import VERSIONS, make_tiny_config
from tests.test_convert import GOLDEN, load_case, state_dict
from tests.test_v2_parity import load_case as load_v2_case

CLASSES = tuple(f"class_{k}" for k in range(10))
STEP = 7


def write_workdir(root: Path, **overrides) -> Path:
    """A workdir of the demo's tiny model (or ``model=...``) as training leaves it: one
    checkpoint at STEP, random parameters, their EMA another tree."""
    config = make_tiny_config(**{"normalize": "imagenet", "ema_decay": 0.9, **overrides})
    size = config_lib.input_size(config)
    stand_in = types.SimpleNamespace(image_shape=(*size, 3), num_classes=len(CLASSES))
    model = config_lib.build_model(config, stand_in)
    state = create_train_state(config, model, steps_per_epoch=1)
    ema = jax.tree.map(lambda p: p * 0.5 + 0.01, state.params)
    state = state.replace(step=jnp.asarray(STEP, jnp.int32), ema_params=ema)
    root.mkdir(parents=True)
    workdir.save_config(root, config)
    workdir.save_class_names(root, CLASSES)
    ckpt = checkpoint.Checkpointer(root)
    ckpt.save(STEP, state, meta={"epoch": 1})
    ckpt.close()
    return root


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda v: f"v{v}")
def tiny_workdir(tmp_path_factory, request) -> Path:
    """The workdir of tiny_test as Swin (V1) and as Swin V2: every test on it runs for both."""
    root = tmp_path_factory.mktemp("export") / "run"
    return write_workdir(root, version=request.param)


@pytest.fixture(scope="module")
def restored(tiny_workdir) -> inference.Restored:
    return inference.restore_params(tiny_workdir)


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (batch, 16, 16, 3)).astype(np.uint8)


def expected_logits(restored: inference.Restored, x: np.ndarray) -> np.ndarray:
    """The logits evaluation computes: uint8 -> [0, 1] -> the run's mean/std -> the model."""
    x = (x / np.float32(255) - np.float32(restored.mean)) / np.float32(restored.std)
    fn = jax.jit(lambda p, v: restored.model.apply({"params": p}, v))
    return np.asarray(fn(restored.params, jnp.asarray(x, jnp.float32)))


def test_restore_reads_model_classes_and_ema_without_the_dataset(tiny_workdir, restored) -> None:
    assert restored.step == STEP and restored.class_names == CLASSES
    saved = json.loads((tiny_workdir / "config.json").read_text())["model_kwargs"]["version"]
    assert restored.model.version == (saved or 1)  # the family comes back from the saved config
    assert restored.image_size == (16, 16) and restored.model.num_classes == 10
    assert restored.mean == pytest.approx((0.485, 0.456, 0.406))
    ema = inference.restore_params(tiny_workdir / "checkpoints" / str(STEP), ema=True)
    assert ema.ema and not restored.ema
    head, ema_head = restored.params["head"]["fc"]["bias"], ema.params["head"]["fc"]["bias"]
    np.testing.assert_allclose(np.asarray(ema_head), np.asarray(head) * 0.5 + 0.01, rtol=1e-6)


def test_restore_reads_a_workdir_of_an_older_release() -> None:
    """The demo run kept in tests/fixtures (no classes.json then): label numbers as names."""
    old = inference.restore_params(Path(__file__).parent / "fixtures" / "workdir_52f3f97")
    assert old.step == 32 and old.class_names == tuple(f"class_{k}" for k in range(10))
    assert old.image_size == (16, 16) and old.mean == () and old.config.model == "tiny_test"


def test_stablehlo_round_trip_at_two_batch_sizes(restored, tmp_path) -> None:
    """Exported for the CPU and CUDA at once (one file serves both); called here on the CPU."""
    record = export_lib.export_model(
        restored, "stablehlo", tmp_path / "hlo", platforms=("cpu", "cuda")
    )
    assert record["files"] == ["model.stablehlo", "model.json"] and record["step"] == STEP
    exported = jax.export.deserialize((tmp_path / "hlo" / "model.stablehlo").read_bytes())
    spec = json.loads((tmp_path / "hlo" / "model.json").read_text())
    assert spec["input"] == {"shape": ["b", 16, 16, 3], "dtype": "uint8", "layout": "NHWC"}
    assert spec["class_names"] == list(CLASSES) and spec["platforms"] == ["cpu", "cuda"]
    for batch in (1, 3):
        x = images(batch, seed=batch)
        out = exported.call(jnp.asarray(x))
        np.testing.assert_allclose(out["logits"], expected_logits(restored, x), atol=1e-5)
        np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("case", ["swin32", "swinv2_32"])
def test_timm_export_holds_timms_state_dict_and_config(tmp_path, case) -> None:
    """A golden fixture (a random timm model, Swin or Swin V2): loaded into swinjax and exported,
    every tensor equals timm's own state dict entry, and config.json names its architecture."""
    v2 = case.startswith("swinv2")
    if v2:
        model, meta, arrays = load_v2_case(case)
    else:
        model, arrays, _, _ = load_case(case)
        meta = json.loads((GOLDEN / f"{case}.json").read_text())
    timm_sd = state_dict(arrays, "timm")
    config = make_tiny_config(model="swin_cifar_t", eval_crop_fraction=1.0, normalize="imagenet")
    restored = inference.Restored(
        config=config,
        model=model,
        params=params_from_timm(timm_sd, model=model),
        class_names=tuple(str(k) for k in range(10)),
        step=0,
        ema=False,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    export_lib.export_model(restored, "timm", tmp_path / "timm")
    from safetensors.numpy import load_file

    exported = load_file(str(tmp_path / "timm" / export_timm.WEIGHTS_FILE))
    wanted = {k: v for k, v in timm_sd.items() if not k.endswith(("_index", "attn_mask"))}
    assert sorted(exported) == sorted(wanted)
    for k, v in wanted.items():
        np.testing.assert_array_equal(exported[k], v, err_msg=k)
    cfg = json.loads((tmp_path / "timm" / export_timm.CONFIG_FILE).read_text())
    architecture = "swinv2_tiny_window8_256" if v2 else "swin_tiny_patch4_window7_224"
    assert cfg["architecture"] == architecture and cfg["num_classes"] == 10
    numbers = ("img_size", "patch_size", "window_size", "embed_dim", "depths", "num_heads")
    expected = {k: meta[k] for k in (*numbers, "mlp_ratio")} | {"qkv_bias": True, "in_chans": 3}
    if v2:
        expected["pretrained_window_sizes"] = meta["pretrained_window_sizes"]
    assert cfg["model_args"] == expected
    num_features = meta["embed_dim"] * 2 ** (len(meta["depths"]) - 1)
    assert cfg["num_features"] == num_features and cfg["label_names"] == list(restored.class_names)
    pretrained = cfg["pretrained_cfg"]
    assert pretrained["input_size"] == [3, 32, 32] and pretrained["crop_pct"] == 1.0
    assert pretrained["mean"] == [0.485, 0.456, 0.406] and pretrained["crop_mode"] == "center"


def test_timm_names_the_preset_architectures() -> None:
    from swinjax.models import create_model

    name, args = export_timm.timm_architecture(create_model("swin_b", img_size=384, window_size=12))
    assert name == "swin_base_patch4_window7_224"
    assert (args["img_size"], args["window_size"], args["embed_dim"]) == (384, 12, 128)
    assert export_timm.timm_refusal(create_model("swin_t")) is None
    why = export_timm.timm_refusal(create_model("keras_example"))
    assert "ape=True" in why and "patch_norm=False" in why and "final_norm=False" in why
    assert "stem='conv'" in export_timm.timm_refusal(create_model("tiny_test", stem="conv"))


def test_timm_names_swin_v2_architectures() -> None:
    from swinjax.models import create_model

    model = create_model("swinv2_base_window12to16_192to256")
    name, args = export_timm.timm_architecture(model)
    assert name == "swinv2_base_window8_256"  # timm's V2 class; the numbers from model_args
    assert (args["img_size"], args["window_size"]) == (256, 16)
    assert args["pretrained_window_sizes"] == [12, 12, 12, 6]
    name, args = export_timm.timm_architecture(create_model("swinv2_cifar_t"))
    assert name == "swinv2_tiny_window8_256" and args["pretrained_window_sizes"] == [0, 0, 0]
    assert (
        "pretrained_window_sizes"
        not in export_timm.timm_architecture(model.clone(version=1, pretrained_window_sizes=()))[1]
    )
    assert "ape=True" in export_timm.timm_refusal(create_model("swinv2_cifar_t", ape=True))


def test_program_exports_and_refuses_bad_requests(tiny_workdir, tmp_path, capsys) -> None:
    """Bad requests exit 2 with one line, before any work; a good one prints its record."""
    out = tmp_path / "out"
    argv = ["swinjax.export", "--ckpt", str(tiny_workdir), "--out", str(out)]
    assert export_program.main([*argv, "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    missing = ["swinjax.export", "--ckpt", str(tmp_path / "nope"), "--out", str(out)]
    assert export_program.main([*missing, "--format", "timm"]) == 2
    assert "error:" in capsys.readouterr().err and not out.exists()
    assert export_program.main([*argv, "--format", "timm", "--platforms", "cuda"]) == 2
    assert "stablehlo only" in capsys.readouterr().err
    assert export_program.main([*argv, "--format", "stablehlo", "--platforms", "gpu"]) == 2
    assert "unknown --platforms ['gpu']" in capsys.readouterr().err
    assert export_program.main([*argv, "--format", "timm", "--best"]) == 2  # no metrics saved
    assert "validation metrics" in capsys.readouterr().err and not out.exists()
    assert export_program.main([*argv, "--format", "timm", "--ema"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["format"] == "timm" and record["ema"] and record["step"] == STEP
    assert export_program.main([*argv, "--format", "timm"]) == 2  # out is not empty now
    assert "--overwrite" in capsys.readouterr().err
    assert export_program.main([*argv, "--format", "timm", "--overwrite"]) == 0


def test_timm_refusal_comes_before_an_old_export_is_replaced(restored, tmp_path) -> None:
    conv = dataclasses.replace(restored, model=restored.model.clone(stem="conv"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ConfigError, match="stem='conv'"):
        export_lib.export_model(conv, "timm", out, overwrite=True)
    assert (out / "keep.txt").is_file()


@pytest.mark.slow
def test_savedmodel_round_trip_through_tensorflow(restored, tmp_path) -> None:
    import tensorflow as tf

    export_lib.export_model(restored, "savedmodel", tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    x = images(3, seed=5)
    want = expected_logits(restored, x)
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    np.testing.assert_allclose(out["logits"].numpy(), want, atol=1e-4)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
    as_float = loaded.signatures["serving_float"](images=tf.constant(x, tf.float32) / 255.0)
    np.testing.assert_allclose(as_float["logits"].numpy(), want, atol=1e-4)
    one = loaded.signatures["serving_default"](images=tf.constant(x[:1]))
    np.testing.assert_allclose(one["logits"].numpy(), want[:1], atol=1e-4)


@pytest.mark.slow
def test_onnx_round_trip_through_onnxruntime(restored, tmp_path) -> None:
    """Needs the export extra (jax2onnx, onnxruntime); skipped where it is not installed."""
    pytest.importorskip("jax2onnx")
    ort = pytest.importorskip("onnxruntime")
    export_lib.export_model(restored, "onnx", tmp_path / "onnx")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    for batch in (1, 3):
        x = images(batch, seed=batch)
        logits, probabilities = session.run(None, {"images": x})
        np.testing.assert_allclose(logits, expected_logits(restored, x), atol=1e-4)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_onnx_without_its_extra_names_the_install(tmp_path, monkeypatch, capsys) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # as if not installed
    argv = ["swinjax.export", "--ckpt", str(tmp_path), "--out", str(tmp_path / "o")]
    assert export_program.main([*argv, "--format", "onnx"]) == 2
    assert "pip install 'swinjax[export]'" in capsys.readouterr().err
