"""The evaluation report (``python -m swinjax.eval --report DIR``): its numbers against
scikit-learn and by hand, its figures on synthetic arrays, and the program on a tiny trained
workdir (confusion matrix against the top-1 eval reports)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from swinjax import eval as eval_cli
from swinjax.serve.report import figures, metrics, writer
from swinjax.training import evaluation, plots, trainer
from swinjax.training.setup import setup_run
from tests.conftest import make_tiny_config

FILES = ("report.json", "index.html", *writer.FIGURES.values())


def _toy(num_examples: int = 400, num_classes: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits_EK = rng.normal(size=(num_examples, num_classes)) * 2
    labels_E = rng.integers(0, num_classes, num_examples)
    logits_EK[np.arange(num_examples), labels_E] += 1.5  # better than chance
    probs_EK = np.exp(logits_EK) / np.exp(logits_EK).sum(-1, keepdims=True)
    return probs_EK.astype(np.float32), labels_E


def test_per_class_numbers_equal_sklearn() -> None:
    probs_EK, labels_E = _toy()
    names = [f"c{k}" for k in range(7)]
    numbers = metrics.report_numbers(probs_EK, labels_E, names)
    predicted_E = probs_EK.argmax(-1)
    p, r, f1, support = sk_metrics.precision_recall_fscore_support(labels_E, predicted_E)
    got = numbers["per_class"]
    np.testing.assert_allclose([c["precision"] for c in got], p)
    np.testing.assert_allclose([c["recall"] for c in got], r)
    np.testing.assert_allclose([c["f1"] for c in got], f1)
    assert [c["support"] for c in got] == support.tolist()
    confusion_KK = np.asarray(numbers["confusion"])
    assert confusion_KK.sum() == len(labels_E)
    assert np.trace(confusion_KK) == (predicted_E == labels_E).sum()
    assert numbers["top1"] == pytest.approx(sk_metrics.accuracy_score(labels_E, predicted_E))
    macro = numbers["averages"]["macro"]["f1"]
    assert macro == pytest.approx(sk_metrics.f1_score(labels_E, predicted_E, average="macro"))


def test_top_confusions_are_the_largest_off_diagonal_cells() -> None:
    confusion_KK = np.asarray([[5, 3, 0], [1, 7, 4], [0, 0, 9]])
    rows = metrics.top_confusions(confusion_KK, ["a", "b", "c"])
    assert [(r["true_name"], r["predicted_name"], r["count"]) for r in rows] == [
        ("b", "c", 4),
        ("a", "b", 3),
        ("b", "a", 1),
    ]  # zero cells are left out
    assert rows[0]["share"] == pytest.approx(4 / 12)


def test_ece_is_zero_when_calibrated_and_the_gap_when_overconfident() -> None:
    # Calibrated: 10 examples at confidence 0.8, 8 of them right; 10 at 0.6, 6 right.
    probs = np.zeros((20, 2), np.float32)
    probs[:10] = [0.8, 0.2]
    probs[10:] = [0.6, 0.4]
    labels = np.zeros(20, np.int64)
    labels[8:10] = 1
    labels[16:] = 1
    ece, bins = metrics.calibration(probs, labels)
    assert ece == pytest.approx(0.0, abs=1e-6)
    assert sum(b["count"] for b in bins) == 20 and len(bins) == metrics.NUM_BINS
    # Overconfident: all at 0.9, half right: |0.5 - 0.9| in the one bin holding every example.
    probs[:] = [0.9, 0.1]
    labels = np.arange(20) % 2
    ece, bins = metrics.calibration(probs, labels)
    assert ece == pytest.approx(0.4, abs=1e-6)
    # Two bins: 0.95 (4 right of 5) and 0.55 (1 right of 5): (5 * 0.15 + 5 * 0.35) / 10.
    probs = np.asarray([[0.95, 0.05]] * 5 + [[0.55, 0.45]] * 5, np.float32)
    labels = np.asarray([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    assert metrics.calibration(probs, labels)[0] == pytest.approx(0.25, abs=1e-6)


def test_a_hundred_class_confusion_figure_renders(tmp_path) -> None:
    probs_EK, labels_E = _toy(num_examples=2000, num_classes=100, seed=1)
    names = [f"class_{k:03d}" for k in range(100)]
    numbers = metrics.report_numbers(probs_EK, labels_E, names)
    confusion_KK = np.asarray(numbers["confusion"])
    order = figures.recall_order(confusion_KK)
    recall = [numbers["per_class"][k]["recall"] for k in order]
    assert sorted(order.tolist()) == list(range(100)) and recall == sorted(recall)
    fig = figures.confusion_figure(confusion_KK, names, numbers["top_confusions"])
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == [names[k] for k in order]
    assert plots.save_figure(fig, tmp_path / "confusion.png").stat().st_size > 0


def test_write_report_writes_every_file(tmp_path) -> None:
    probs_EK, labels_E = _toy(num_examples=60, num_classes=4)
    names = ["cat", "dog", "<b>fish</b>", "bird"]
    wrong = np.flatnonzero(probs_EK.argmax(-1) != labels_E)[:5]
    images = np.random.default_rng(0).integers(0, 255, (len(wrong), 16, 16, 3), dtype=np.uint8)
    predictions = evaluation.SplitPredictions(
        logits_EK=np.log(probs_EK),
        probs_EK=probs_EK,
        labels_E=labels_E,
        kept_E=wrong,
        images_EHWC=images,
    )
    record = {"top1": 0.5, "num_examples": 60, "step": 1, "split": "test"}
    report = writer.write_report(tmp_path / "r", record, predictions, names)
    for name in FILES:
        assert (tmp_path / "r" / name).stat().st_size > 0, name
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == report
    page = (tmp_path / "r" / "index.html").read_text()
    assert all(f'src="{png}"' in page for png in writer.FIGURES.values())
    assert "&lt;b&gt;fish&lt;/b&gt;" in page and "<b>fish" not in page


def test_report_dir_other_files_or_an_old_report_are_refused(tmp_path) -> None:
    assert writer.check_report_dir(tmp_path / "new") == tmp_path / "new"
    assert not (tmp_path / "new").exists()  # nothing written before the work
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(writer.ConfigError, match="holds other files"):
        writer.check_report_dir(tmp_path / "other", overwrite=True)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text("{}")
    with pytest.raises(writer.ConfigError, match="--overwrite_report"):
        writer.check_report_dir(tmp_path / "old")
    assert writer.check_report_dir(tmp_path / "old", overwrite=True) == tmp_path / "old"


def test_split_predictions_agree_with_evaluate() -> None:
    tta = True  # the path with views (flip only: two)
    run = setup_run(make_tiny_config(), splits={"val": "train[:40]"}, train=False)
    state, split = run.take_state(), run.splits["val"]
    scores = evaluation.evaluate(state, split, 16, run.mesh, tta=tta, tta_shift=0)
    kw = {"tta": tta, "tta_shift": 0, "keep_mistakes": 5}
    got = evaluation.split_predictions(state, split, 16, run.mesh, **kw)
    n = split.num_examples
    assert got.probs_EK.shape == (n, split.num_classes) and got.labels_E.shape == (n,)
    np.testing.assert_allclose(got.probs_EK.sum(-1), 1.0, rtol=1e-5)
    correct = (got.probs_EK.argmax(-1) == got.labels_E).sum()
    assert correct == round(scores["top1"] * n)
    confidence = got.probs_EK[got.kept_E].max(-1)
    assert (got.probs_EK[got.kept_E].argmax(-1) != got.labels_E[got.kept_E]).all()
    assert len(got.kept_E) == min(5, n - correct) and (np.diff(confidence) <= 0).all()
    wrong = got.probs_EK.argmax(-1) != got.labels_E
    assert confidence[-1] >= np.sort(got.probs_EK[wrong].max(-1))[-len(got.kept_E)]
    first = next(split.eval_batches(n))["image"]
    np.testing.assert_array_equal(got.images_EHWC, first[got.kept_E])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("report_run")
    trainer.train_and_evaluate(make_tiny_config(num_epochs=1, num_sample_images=0), workdir)
    return workdir


@pytest.mark.slow
def test_eval_report_matches_the_evaluation(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    argv = ["swinjax.eval", "--ckpt", str(tiny_run), "--report", str(out)]
    assert eval_cli.main(argv) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["report"] == str(out)
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    confusion_KK = np.asarray(report["confusion"])
    n = record["num_examples"]
    assert n == 300 and confusion_KK.sum() == n == report["num_examples"]
    assert np.trace(confusion_KK) == round(record["top1"] * n)
    assert report["overall"]["top1"] == record["top1"] and 0 <= report["overall"]["ece"] <= 1
    assert sum(c["support"] for c in report["per_class"]) == n
    wrong = n - np.trace(confusion_KK)
    assert len(report["mistakes"]) == min(wrong, writer.NUM_MISTAKES)
    assert eval_cli.main(argv) == 2  # the report is there: refused without --overwrite_report
    assert "--overwrite_report" in capsys.readouterr().err
    more = ["--split", "val", "--best", "--tta", "--overwrite_report"]
    assert eval_cli.main(argv + more) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((out / "report.json").read_text())
    assert record["tta"] and report["overall"]["split"] == "val" and report["num_examples"] == 120
    assert np.trace(report["confusion"]) == round(record["top1"] * 120)
