"""Slices on derived features: a bucketized feature (census's `age_bucket`,
quantile buckets of the `age` column) is sliced per bucket, a feature reading
a column of another name (Ali-CCP's `user_gender`, column `124`) per value of
that column, both through the export's `slice_features` signature; an
identifier of a column of another name is refused at load, naming the field."""

from __future__ import annotations

import copy

import pytest
import yaml

from contract import SLICE_SIGNATURE
from models.spec import SPECS_DIR, SpecError, load_spec, parse_spec
from pipeline import results
from pipeline.eval_config import eval_config_from_spec, sliced_derived_features


def _census_raw() -> dict:
  return yaml.safe_load((SPECS_DIR / "census.yaml").read_text())


def test_a_bucket_slice_makes_tfma_call_the_bucket_signature():
  spec = load_spec("census")
  assert spec.derived_features == ("age_bucket",)
  assert eval_config_from_spec(spec).model_specs[0].preprocessing_function_names == []
  sliced = spec.replace(evaluation={"slices": (("sex",), ("age_bucket", "sex"))})
  assert sliced_derived_features(sliced) == ["age_bucket"]
  config = eval_config_from_spec(sliced)
  assert list(config.model_specs[0].preprocessing_function_names) == [SLICE_SIGNATURE]


def test_a_renamed_column_is_sliced_through_the_signature():
  spec = load_spec("ali_ccp_sample")
  assert spec.feature("user_gender").column == "124"
  assert sliced_derived_features(spec) == ["user_gender"]
  config = eval_config_from_spec(spec)
  assert list(config.model_specs[0].preprocessing_function_names) == [SLICE_SIGNATURE]


def test_a_slice_on_a_renamed_identifier_is_refused_at_load():
  raw = copy.deepcopy(_census_raw())
  raw["features"].append({"name": "person", "column": "instance_weight", "kind": "identifier"})
  raw["evaluation"]["slices"] = ["sex", "person"]
  with pytest.raises(SpecError) as error:
    parse_spec(raw, origin="census.yaml")
  message = str(error.value)
  assert message.startswith("census.yaml: evaluation.slices[1]: 'person' reads column")
  assert "declare it with name 'instance_weight' to slice on it" in message


@pytest.mark.pipeline
def test_the_census_run_reports_one_slice_per_age_bucket(first_census_run, small_census_spec):
  """The session's census run slices on age_bucket (tests/conftest.py)."""
  _, summary = first_census_run
  every_slice = small_census_spec.replace(evaluation={"min_slice_size": 0})
  metrics = results.slice_metrics(every_slice, summary.evaluation_uri)
  buckets = {name for _, name in metrics if name.startswith("age_bucket=")}
  assert len(buckets) >= 8, sorted({name for _, name in metrics})
  counts = [metrics[("income", name)]["example_count"] for name in buckets]
  assert sum(counts) == metrics[("income", "overall")]["example_count"]
