"""Epoch selection (models/selection.py): the declared monitor, each task's own
best epoch and its trade-off, and per-task weights for a model that shares
nothing between tasks."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras

from models import architectures, selection, telemetry
from models.spec import SpecError

from .conftest import VOCAB_SIZES, make_dataset, make_spec


def _with_training(spec, **training):
  return make_spec(spec.model.architecture, _TASKS[len(spec.tasks)], training=training)


_TASKS = {2: "two_binary", 3: "click_conversion_dwell"}


def test_selection_is_normalised_and_checked():
  spec = _with_training(
    make_spec(tasks="two_binary"),
    selection={"click": "auc", "like": {"metric": "loss", "weight": 2}},
  )
  assert spec.training.selection == {
    "click": {"metric": "auc", "weight": 1.0},
    "like": {"metric": "loss", "weight": 2.0},
  }
  assert telemetry.early_stopping_monitor(spec) == selection.SELECTION_LOG_KEY
  base = make_spec(tasks="click_conversion_dwell")
  for bad, message in [
    ({"ctr": "auc"}, "training.selection.ctr: not a task"),
    ({"dwell": "auc"}, "metric 'auc' is not one of this task's (loss, mse)"),
    ({"click": {"metric": "auc", "weight": 0}}, "weight must be a number > 0"),
    ({"click": {"metric": "auc", "wieght": 1}}, "must be a metric name or"),
  ]:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
      _with_training(base, selection=bad)
  with pytest.raises(SpecError, match="early_stopping_task"):
    _with_training(base, selection={"click": "auc"}, early_stopping_task="click")


def test_monitor_is_written_before_early_stopping_reads_it():
  spec = _with_training(
    make_spec(tasks="two_binary"),
    selection={"click": "auc", "like": {"metric": "loss", "weight": 0.5}},
  )
  recorder = selection.SelectionRecorder(spec)
  callbacks = telemetry.callbacks(spec, "/tmp/unused-logs", recorder=recorder)
  stopper = callbacks[-1]
  assert isinstance(stopper, keras.callbacks.EarlyStopping)
  assert callbacks.index(recorder) < callbacks.index(stopper)
  assert stopper.monitor == selection.SELECTION_LOG_KEY and stopper.monitor_op == np.greater
  logs = {"val_click_auc": 0.8, "val_like_loss": 0.4, "val_click_loss": 0.5, "val_like_auc": 0.6}
  recorder.on_epoch_end(0, logs)
  assert logs[selection.SELECTION_LOG_KEY] == pytest.approx(0.8 - 0.5 * 0.4)


def _epoch_logs(click_auc: float, like_auc: float) -> dict:
  return {
    "val_click_auc": click_auc,
    "val_click_loss": 1 - click_auc,
    "val_like_auc": like_auc,
    "val_like_loss": 1 - like_auc,
  }


def test_report_gives_each_tasks_best_epoch_and_what_the_kept_one_gives_up():
  spec = make_spec(tasks="two_binary")
  recorder = selection.SelectionRecorder(spec)
  # click peaks at epoch 1 (0-based), like at epoch 2; the loss monitor keeps 1.
  for epoch, (click, like) in enumerate([(0.70, 0.60), (0.80, 0.62), (0.78, 0.66)]):
    recorder.on_epoch_end(epoch, _epoch_logs(click, like))
  report = recorder.report(kept_epoch=1)
  assert report["monitor"] == "-val_loss" and report["kept_epoch"] == 2
  assert report["epochs_run"] == 3 and not report["per_task"]
  assert report["tasks"]["click"] == {
    "metric": "auc",
    "best_epoch": 2,
    "best": 0.80,
    "kept_epoch": 2,
    "kept": 0.80,
    "given_up": 0.0,
  }
  like = report["tasks"]["like"]
  assert (like["best_epoch"], like["kept_epoch"]) == (3, 2)
  assert like["given_up"] == pytest.approx(0.04)


def test_kept_epoch_is_early_stoppings_best_when_it_restores():
  stopper = keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True)
  assert selection.kept_epoch([stopper], 4) == 3  # never ran: the last epoch
  stopper.best_weights, stopper.best_epoch = [np.zeros(1)], 1
  assert selection.kept_epoch([stopper], 4) == 1


def _set_all(model, value: float) -> None:
  for variable in model.weights:
    variable.assign(np.full(variable.shape, value, variable.dtype.as_numpy_dtype))


def test_per_task_selection_keeps_each_tasks_weights_from_its_own_best_epoch():
  spec = _with_training(make_spec("single_task", tasks="two_binary"), per_task_selection=True)
  model = architectures.build_model(spec, VOCAB_SIZES)
  architectures.compile_model(model, spec)
  model.fit(make_dataset(spec, n=64), epochs=1, verbose=0)  # builds every weight
  assert selection.shares_nothing(model)
  recorder = selection.SelectionRecorder(spec, per_task=True)
  recorder.set_model(model)
  # Every weight holds the epoch's number; click is best at epoch 0, like at 2.
  for epoch, (click, like) in enumerate([(0.9, 0.5), (0.8, 0.6), (0.7, 0.7)]):
    _set_all(model, float(epoch))
    recorder.on_epoch_end(epoch, _epoch_logs(click, like))
  recorder.on_train_end()
  for index, expected in [(0, 0.0), (1, 2.0)]:
    owned, stacked = model.task_variables(index)
    assert owned and stacked
    for variable in owned:
      np.testing.assert_array_equal(variable.numpy(), expected)
    for variable in stacked:
      np.testing.assert_array_equal(variable.numpy()[index], expected)
  report = recorder.report(kept_epoch=None)
  assert report["per_task"] and report["kept_epoch"] is None
  assert report["tasks"]["click"]["kept_epoch"] == 1 and report["tasks"]["like"]["kept_epoch"] == 3
  assert all(t["given_up"] == 0 for t in report["tasks"].values())
  # Early stopping must not restore one joint epoch over the per-task weights.
  stopper = telemetry.callbacks(spec, "/tmp/unused-logs", recorder=recorder)[-1]
  assert isinstance(stopper, keras.callbacks.EarlyStopping) and not stopper.restore_best_weights


def test_a_shared_backbone_keeps_one_epoch():
  spec = make_spec("mmoe", tasks="two_binary")
  model = architectures.build_model(spec, VOCAB_SIZES)
  assert not selection.shares_nothing(model)
