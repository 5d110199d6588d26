"""The spec loads, validates, and names the field at fault."""

from __future__ import annotations

import copy

import pytest
import yaml

from models.spec import SPECS_DIR, SpecError, load_spec, parse_spec, spec_from_json


def _raw(name: str = "synthetic") -> dict:
  return yaml.safe_load((SPECS_DIR / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", ["census", "synthetic", "ali_ccp_sample", "aliexpress_sample"])
def test_bundled_specs_load_and_round_trip_through_json(name):
  spec = load_spec(name)
  assert spec_from_json(spec.to_json()) == spec


def test_conditional_tasks_and_derived_views():
  spec = load_spec("synthetic")
  assert spec.task_names == ("click", "conversion", "dwell")
  assert spec.parent_label(spec.task("conversion")) == "click"
  assert spec.parent_label(spec.task("click")) is None
  assert spec.position_feature.name == "position"
  model_inputs = {f.name for f in spec.model_features}
  assert "position" not in model_inputs and "request_id" not in model_inputs
  assert "p_click" not in model_inputs
  assert spec.raw_columns["click"] == "int" and spec.raw_columns["dwell_seconds"] == "float"


def test_census_never_uses_a_label_or_the_survey_weight_as_a_feature():
  spec = load_spec("census")
  columns = {f.column for f in spec.features}
  assert not {"marital_stat", "instance_weight", "income_50k"} & columns


@pytest.mark.parametrize(
  "mutate, field",
  [
    (lambda r: r["tasks"][1].update(parent="clik"), "tasks[1].parent"),
    (lambda r: r["features"][1].update(kind="embedding"), "features[1].kind"),
    (lambda r: r["features"][1].update(encoding="hash", hash_buckets=0), "hash_buckets"),
    (lambda r: r["tasks"].append(dict(r["tasks"][0])), "tasks[3].name"),
    (lambda r: r["evaluation"]["thresholds"].update(ctr={"auc": {"value": 0.5}}), "thresholds.ctr"),
    (
      lambda r: r["evaluation"]["thresholds"]["dwell"].update(auc={"value": 0.5}),
      "thresholds.dwell.auc",
    ),
    (lambda r: r["evaluation"].update(slices=["country"]), "slices[0]"),
    (lambda r: r["model"].update(architecture="transformer"), "model.architecture"),
    (lambda r: r["training"].update(batch_size="big"), "training.batch_size"),
    (lambda r: r.update(extra=1), "unknown field"),
    (lambda r: r["serving"]["score"].update(ctcvr=1), "serving.score.ctcvr"),
    (lambda r: r["tasks"][0].update(label="device"), "tasks[0].label"),
    (lambda r: r["evaluation"].update(gain_task="dwell"), "evaluation.gain_task"),
    (lambda r: r["evaluation"].update(ndcg_cutoffs=[0]), "evaluation.ndcg_cutoffs"),
    (
      lambda r: r["evaluation"].update(single_task_baseline="yes"),
      "evaluation.single_task_baseline",
    ),
    (
      lambda r: r["model"].update(interaction={"kind": "dot", "pairs": [["user_id", "price"]]}),
      "model.interaction.pairs[0]",
    ),
    (
      lambda r: r["model"].update(interaction={"kind": "dot", "pairs": [["user_id", "position"]]}),
      "model.interaction.pairs[0]",
    ),
    (lambda r: r["model"].update(interaction={"kind": "dot"}), "model.interaction.pairs"),
    (lambda r: r["model"].update(interaction={"kind": "fm"}), "model.interaction.kind"),
    (
      lambda r: r["model"].update(interaction={"kind": "cross", "layers": 0}),
      "model.interaction.layers",
    ),
    (lambda r: r["training"].update(weight_decay=-0.1), "training.weight_decay"),
    (lambda r: r["features"][1].update(fill=0.0), "features[1].fill"),
    (lambda r: r["tasks"][0].update(min_positives=-1), "tasks[0].min_positives"),
  ],
)
def test_invalid_specs_name_the_field(mutate, field):
  raw = copy.deepcopy(_raw())
  mutate(raw)
  with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
    parse_spec(raw, origin="synthetic.yaml")


def test_parent_cycle_is_rejected():
  raw = copy.deepcopy(_raw())
  raw["tasks"][0]["parent"] = "conversion"
  with pytest.raises(SpecError, match="cycle"):
    parse_spec(raw)


def test_unknown_bundled_name_lists_the_bundled_specs():
  with pytest.raises(SpecError, match="census, synthetic"):
    load_spec("nope")


def test_gain_task_defaults_to_the_scored_click():
  spec = load_spec("synthetic")
  assert spec.gain_task.name == "click"
  assert spec.replace(evaluation={"gain_task": "conversion"}).gain_task.name == "conversion"


def test_component_views_keep_caches_across_unrelated_sections():
  spec = load_spec("census")
  evaluation_changed = spec.replace(
    evaluation={"single_task_baseline": True, "confidence_intervals": True}
  )
  budget_changed = spec.replace(training={"epochs": 1})
  assert evaluation_changed.trainer_view().to_json() == spec.trainer_view().to_json()
  assert budget_changed.transform_view().to_json() == spec.transform_view().to_json()
  assert budget_changed.trainer_view().to_json() != spec.trainer_view().to_json()
  single = spec.trainer_view("single_task")
  assert single.model.architecture == "single_task"
  assert single.training == spec.training and single.features == spec.features
  assert spec_from_json(single.to_json()) == single


def test_dot_interaction_pairs_need_equal_embedding_widths_and_round_trip():
  raw = copy.deepcopy(_raw())
  raw["model"]["interaction"] = {"kind": "dot", "pairs": [["user_id", "item_id"]]}
  spec = parse_spec(raw, origin="synthetic.yaml")
  assert spec.model.interaction.pairs == (("user_id", "item_id"),)
  assert spec_from_json(spec.to_json()) == spec
  next(f for f in raw["features"] if f["name"] == "item_id")["embedding_dim"] = 4
  with pytest.raises(SpecError, match=r"pairs\[0\]: .*differ in width"):
    parse_spec(raw, origin="synthetic.yaml")


def _refused(mutate, name: str = "synthetic") -> str:
  raw = _raw(name)
  mutate(raw)
  with pytest.raises(SpecError) as error:
    parse_spec(raw, origin=f"{name}.yaml")
  return str(error.value)


def test_a_misspelt_architecture_option_names_the_key_and_the_valid_ones():
  message = _refused(lambda r: r["model"].setdefault("params", {}).update(huber_detla=2.0))
  assert "model.params.huber_detla" in message
  assert "huber_delta" in message and "steps_per_execution" in message


def test_a_misspelt_balancer_option_is_refused_at_load():
  def mutate(raw):
    raw["model"].update(balancing="dwa", balancing_params={"window": 3})

  message = _refused(mutate)
  assert "model.balancing_params.window" in message and "window_steps" in message


def _switch(raw: dict, architecture: str) -> None:
  """To another architecture, without the MMoE-only num_experts (an error there)."""
  raw["model"].pop("num_experts", None)
  raw["model"].update(architecture=architecture)


def test_esmm_and_aitm_task_rules_fail_at_load():
  census_esmm = _refused(lambda r: _switch(r, "esmm"), "census")
  assert "model.architecture" in census_esmm and "conditional" in census_esmm
  census_aitm = _refused(lambda r: _switch(r, "aitm"), "census")
  assert "model.architecture" in census_aitm and "chain" in census_aitm
  raw = _raw("synthetic")
  _switch(raw, "esmm")
  raw["model"].update(params={"esmm_conversion_task": "conversion"})
  assert parse_spec(raw).model.params["esmm_conversion_task"] == "conversion"


@pytest.mark.parametrize("rate", [0, -0.001, float("nan"), float("inf")])
def test_learning_rate_must_be_finite_and_positive(rate):
  message = _refused(lambda r: r.setdefault("training", {}).update(learning_rate=rate))
  assert "training.learning_rate" in message


def test_thresholds_must_lie_in_the_metric_range():
  def auc_above_one(raw):
    raw["evaluation"]["thresholds"] = {"click": {"auc": {"value": 1.5}}}

  assert "evaluation.thresholds.click.auc.value" in _refused(auc_above_one)

  def negative_regression(raw):
    raw["evaluation"]["thresholds"] = {"click": {"auc": {"max_regression": -0.1}}}

  assert "max_regression" in _refused(negative_regression)


def test_the_single_task_view_of_an_esmm_spec_drops_esmm_options():
  raw = _raw("synthetic")
  _switch(raw, "esmm")
  raw["model"].update(params={"esmm_conversion_task": "conversion"})
  view = parse_spec(raw).trainer_view("single_task")
  assert view.model.architecture == "single_task" and view.model.params == {}


@pytest.mark.parametrize("span", ["0", "-1", "two"])
def test_run_refuses_a_span_below_one_at_parsing(span, capsys):
  from pipeline import cli

  with pytest.raises(SystemExit) as exit_info:
    cli.build_parser().parse_args(["run", "--spec", "census", "--span", span])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "--span" in err and "Traceback" not in err


def test_a_numeric_fill_replaces_non_finite_values_in_the_transform():
  import numpy as np
  import tensorflow as tf

  from models.features import transform_feature
  from models.spec import FeatureSpec

  feature = FeatureSpec(name="x", kind="numeric", dtype="float", transform="identity", fill=-1.0)
  values = tf.constant([[1.5], [float("nan")], [float("inf")], [-float("inf")]])
  np.testing.assert_array_equal(
    transform_feature(feature, values).numpy(), [[1.5], [-1], [-1], [-1]]
  )


def test_truth_features_thresholds_and_early_stopping_task():
  spec = load_spec("synthetic")
  truths = {target: f.column for target, f in spec.truth_features.items()}
  assert truths == {
    "click": "attraction",
    "conversion": "p_conv_given_click",
    "dwell": "expected_dwell",
    "score": "utility",
  }
  raw = _raw()
  raw["evaluation"]["thresholds"]["score"] = {"truth_ndcg@10_share": {"value": 0.3}}
  raw["evaluation"]["thresholds"]["click"]["truth_agreement"] = {"value": 0.6}
  raw["training"]["early_stopping_task"] = "click"
  parsed = parse_spec(raw)
  gates = {(t.task, t.metric): t for t in parsed.evaluation.thresholds}
  assert gates[("score", "truth_ndcg@10_share")].higher_is_better
  assert gates[("click", "truth_agreement")].value == 0.6
  assert parsed.training.early_stopping_task == "click"
  bad = [
    ("features", "truth_of", lambda r: r["features"][1].update(truth_of="click")),
    ("truth_of", "not a task", lambda r: r["features"][-1].update(truth_of="income")),
    ("already the truth", "", lambda r: r["features"][-2].update(truth_of="click")),
    (
      "ndcg_cutoffs",
      "",
      lambda r: r["evaluation"]["thresholds"].update(score={"truth_ndcg@3": {"value": 0.5}}),
    ),
    (
      "gates only truth metrics",
      "",
      lambda r: r["evaluation"]["thresholds"].update(score={"auc": {"value": 0.5}}),
    ),
    ("early_stopping_task", "", lambda r: r["training"].update(early_stopping_task="ctr")),
  ]
  for first, second, change in bad:
    broken = _raw()
    change(broken)
    with pytest.raises(SpecError, match=first) as error:
      parse_spec(broken)
    assert second in str(error.value)
