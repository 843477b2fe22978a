"""Features parity with timm: ``forward_features`` and every ``forward_intermediates`` stage map of
the golden models (tools/make_golden.py: timm's maps of the fixture's first image, NHWC) within
1e-4; the index rules (None, last n, negative, a sequence) and ``norm`` against the model itself;
a bad index is a ConfigError naming the range."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swinjax.errors import ConfigError, UserError
from swinjax.models.swin import stage_indices
from swinjax.weights.convert import params_from_timm
from tests.test_convert import CASES, GOLDEN, load_case, state_dict


def golden_features(case: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{case}_features.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("case", CASES)
def test_stage_maps_and_features_match_timm(case: str) -> None:
    model, arrays, x_NHWC, _ = load_case(case)
    params = params_from_timm(state_dict(arrays, "timm"), model=model)
    expected = golden_features(case)

    def run(params, x):
        return model.apply({"params": params}, x, method="forward_intermediates", norm=True)

    features, maps = jax.jit(run)(params, jnp.asarray(x_NHWC[:1]))
    stages = sorted(k for k in expected if k.startswith("stage"))
    assert len(maps) == len(stages) == len(model.depths)
    for got, key in zip(maps, stages, strict=True):
        assert got.shape == expected[key].shape, key
        np.testing.assert_allclose(np.asarray(got), expected[key], atol=1e-4, rtol=0, err_msg=key)
    np.testing.assert_allclose(np.asarray(features), expected["features_NHWC"], atol=1e-4, rtol=0)
    # With norm=True the last map is the normalised one: forward_features' output.
    np.testing.assert_array_equal(expected[stages[-1]], expected["features_NHWC"])
    assert np.abs(expected["stage0_NHWC"]).max() > 0.1  # not trivially near zero


def test_indices_and_norm_follow_timms_rules() -> None:
    """swin32 (3 stages): every selection is the matching subset of the full list; norm=False
    leaves the last map unnormalised (timm's map, stored too), forward_features as before."""
    model, arrays, x_NHWC, logits = load_case("swin32")
    params = params_from_timm(state_dict(arrays, "timm"), model=model)
    expected = golden_features("swin32")

    def run(params, x):
        variables = {"params": params}
        apply = lambda method, *args, **kw: model.apply(variables, *args, method=method, **kw)
        inter = lambda indices, norm=False: apply(
            "forward_intermediates", x, indices=indices, norm=norm, intermediates_only=True
        )
        features = apply("forward_features", x)
        return {
            "all": inter(None),
            "last2": inter(2),
            "neg": inter((-1, 0)),
            "one": inter((1,), norm=True),
            "features": features,
            "pooled": apply("forward_head", features, pre_logits=True),
            "logits": model.apply(variables, x),
        }

    x = jnp.asarray(x_NHWC[:1])
    out = jax.jit(run)(params, x)
    full = [np.asarray(m) for m in out["all"]]
    np.testing.assert_allclose(full[-1], expected["last_no_norm_NHWC"], atol=1e-4, rtol=0)
    assert not np.allclose(full[-1], expected["stage2_NHWC"], atol=1e-2)  # norm=False differs
    for key, taken in (("last2", (1, 2)), ("neg", (0, 2)), ("one", (1,))):
        got = [np.asarray(m) for m in out[key]]
        assert len(got) == len(taken), key
        for g, i in zip(got, taken, strict=True):
            np.testing.assert_array_equal(g, full[i])  # norm only touches the last stage
    np.testing.assert_allclose(out["features"], expected["features_NHWC"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        out["pooled"], np.mean(expected["features_NHWC"], axis=(1, 2)), atol=1e-4, rtol=0
    )
    np.testing.assert_allclose(out["logits"], logits[:1], atol=1e-4, rtol=0)


def test_stage_indices_rules() -> None:
    assert stage_indices(4, None) == (0, 1, 2, 3)
    assert stage_indices(4, 1) == (3,)
    assert stage_indices(4, 4) == (0, 1, 2, 3)
    assert stage_indices(4, (-1, 0, 0)) == (0, 3)
    assert stage_indices(4, [2, -3]) == (1, 2)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (0, r"indices=0: take the last n stages with 1 <= n <= 3"),
        (4, r"indices=4: take the last n stages with 1 <= n <= 3"),
        ((3,), r"stage index 3 is out of range for a model with 3 stages"),
        ((0, -4), r"stage index -4 is out of range for a model with 3 stages"),
    ],
)
def test_bad_index_is_a_config_error(indices, message: str) -> None:
    model, _, x_NHWC, _ = load_case("swin32")
    with pytest.raises(ConfigError, match=message) as info:
        # Raised while tracing, before any parameter is created or computed.
        jax.eval_shape(
            lambda x: model.init(
                jax.random.key(0), x, method="forward_intermediates", indices=indices
            ),
            jax.ShapeDtypeStruct(x_NHWC[:1].shape, jnp.float32),
        )
    assert isinstance(info.value, UserError)
