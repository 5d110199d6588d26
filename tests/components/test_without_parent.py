"""A conditional label set while its parent's is 0 (a conversion without a
click): the spec's per-task `without_parent` choice (stop, drop, unconditional),
validated at load, applied by DataGate, the heads and the TFMA config."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf
import yaml

from components.data_gate import conditional_label_problems
from models import heads
from models.spec import SPECS_DIR, SpecError, parse_spec
from pipeline.data.io import write_examples
from pipeline.eval_config import eval_config_from_spec

LABELS = {"click": "int", "conversion": "int", "dwell_seconds": "float"}


def _raw() -> dict:
  return yaml.safe_load((SPECS_DIR / "synthetic.yaml").read_text())


def _spec(conversion_choice: str | None = None, architecture: str | None = None):
  raw = copy.deepcopy(_raw())
  if conversion_choice is not None:
    raw["tasks"][1]["without_parent"] = conversion_choice
  if architecture is not None:
    raw["model"].pop("num_experts")  # MMoE's only
    raw["model"]["architecture"] = architecture
  return parse_spec(raw, origin="synthetic.yaml")


@pytest.fixture
def split_with_orphans(tmp_path) -> str:
  """Ten rows: clicks on rows 0-3, conversions on rows 0 and 1 (after a click)
  and on rows 7, 8 and 9 (three conversions without a click)."""
  click = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], np.int64)
  conversion = np.array([1, 1, 0, 0, 0, 0, 0, 1, 1, 1], np.int64)
  columns = {"click": click, "conversion": conversion, "dwell_seconds": click * 10.0}
  write_examples(columns, LABELS, tmp_path / "Split-train" / "data.tfrecord.gz")
  return str(tmp_path / "Split-train" / "*")


def test_the_default_is_stop_and_the_message_names_the_rows_and_the_choices(split_with_orphans):
  spec = _spec()
  assert spec.task("conversion").without_parent == "stop"
  problems, dropped = conditional_label_problems(spec, split_with_orphans, "train")
  assert dropped == {}
  assert len(problems) == 1
  message = problems[0]
  assert "3 rows have 'conversion' (task 'conversion') set while its parent 'click'" in message
  assert "a conversion without a click" in message
  assert "tasks[1].without_parent: drop" in message and "or unconditional" in message


def test_drop_accepts_the_rows_and_counts_them(split_with_orphans):
  spec = _spec("drop")
  problems, dropped = conditional_label_problems(spec, split_with_orphans, "train")
  assert problems == []
  assert dropped == {"conversion": 3}


def test_drop_leaves_those_labels_out_of_the_tasks_loss_and_metric():
  """The conversion head's loss and AUC are the same whatever label the
  click-less rows carry: their conversion label is dropped."""
  spec = _spec("drop")
  head = heads.for_task(spec, spec.task("conversion"))
  logits = {"conversion": tf.constant([[2.0], [-1.0], [0.5], [3.0]])}
  click = tf.constant([[1.0], [1.0], [0.0], [0.0]])
  losses = []
  for orphan_label in (0.0, 1.0):
    labels = {"click": click, "conversion": tf.constant([[1.0], [0.0], [orphan_label], [1.0]])}
    losses.append(float(head.loss(labels, logits)))
  assert losses[0] == pytest.approx(losses[1])
  weights = eval_config_from_spec(spec).model_specs[0].example_weight_keys
  assert weights["conversion"] == "click"


def test_drop_under_esmm_the_product_label_is_the_parents_zero():
  spec = _spec("drop", architecture="esmm")
  chain = ("click", "conversion")
  head = heads.EntireSpaceHead(spec.task("conversion"), chain, "conversion_ctcvr")
  logits = {"click": tf.constant([[0.3], [-2.0]]), "conversion": tf.constant([[1.0], [1.0]])}
  per_row = []
  for orphan_label in (0.0, 1.0):
    labels = {
      "click": tf.constant([[1.0], [0.0]]),
      "conversion": tf.constant([[1.0], [orphan_label]]),
    }
    per_row.append(head.per_row_loss(labels, logits).numpy())
  np.testing.assert_allclose(per_row[0], per_row[1])


def test_unconditional_is_a_task_of_its_own(split_with_orphans):
  spec = _spec("unconditional")
  conversion = spec.task("conversion")
  assert conversion.parent is None and conversion.without_parent == "unconditional"
  problems, dropped = conditional_label_problems(spec, split_with_orphans, "train")
  assert (problems, dropped) == ([], {})
  assert heads.for_task(spec, conversion).mask({"click": tf.zeros([2, 1])}) is None
  weights = eval_config_from_spec(spec).model_specs[0].example_weight_keys
  assert "conversion" not in weights and weights["dwell"] == "click"


def test_unconditional_leaves_esmm_without_its_conditional_task():
  with pytest.raises(SpecError, match="esmm"):
    _spec("unconditional", architecture="esmm")


@pytest.mark.parametrize(
  "task_index, value, message",
  [
    (1, "ignore", "tasks[1].without_parent: 'ignore' is not one of: stop, drop, unconditional"),
    (0, "drop", "tasks[0].without_parent: only a task with a parent takes without_parent"),
  ],
  ids=["unknown-choice", "no-parent"],
)
def test_a_bad_choice_is_refused_at_load_naming_the_field(task_index, value, message):
  raw = _raw()
  raw["tasks"][task_index]["without_parent"] = value
  with pytest.raises(SpecError) as error:
    parse_spec(raw, origin="synthetic.yaml")
  assert message in str(error.value)
