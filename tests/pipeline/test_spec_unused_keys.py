"""Every key a spec gives is read: a field the section, the feature's kind,
the architecture or the data source does not read is an error at load naming
the field, never a setting silently ignored."""

from __future__ import annotations

import pytest
import yaml

from models.spec import SPECS_DIR, SpecError, parse_spec


def _raw(name: str) -> dict:
  return yaml.safe_load((SPECS_DIR / f"{name}.yaml").read_text())


def _feature(raw: dict, name: str) -> dict:
  return next(f for f in raw["features"] if f["name"] == name)


CASES = {
  "census-params-unknown": (
    "census",
    lambda r: r["data"]["params"].update(file="x.gz"),
    "data.params.file: census reads no file (its params: path, eval_every, validation_every)",
  ),
  "simulator-params-unknown": (
    "synthetic",
    lambda r: r["data"]["params"].update(path="x.csv"),
    "data.params.path: simulator reads no path",
  ),
  "files-params": (
    "ali_ccp_sample",
    lambda r: r["data"].update(params={"path": "x.csv"}),
    "data.params: data.source files takes no params",
  ),
  "transform-on-categorical": (
    "census",
    lambda r: _feature(r, "sex").update(transform="bucketize"),
    "features[17].transform: only numeric features read transform; this one is categorical",
  ),
  "hash-buckets-on-vocabulary": (
    "census",
    lambda r: _feature(r, "race").update(hash_buckets=10),
    "features[15].hash_buckets: only hash-encoded categorical features read hash_buckets",
  ),
  "num-buckets-on-zscore": (
    "census",
    lambda r: _feature(r, "age").update(num_buckets=4),
    "features[0].num_buckets: only numeric features with transform bucketize read num_buckets",
  ),
  "top-k-on-hash": (
    "synthetic",
    lambda r: _feature(r, "user_id").update(top_k=100),
    "features[1].top_k: only vocabulary-encoded categorical features read top_k",
  ),
  "max-value-on-numeric": (
    "census",
    lambda r: _feature(r, "age").update(max_value=3),
    "features[0].max_value: only the position feature read max_value",
  ),
  "num-experts-on-esmm": (
    "synthetic",
    lambda r: r["model"].update(architecture="shared_bottom"),
    "model.num_experts: only architecture mmoe reads num_experts (this one is 'shared_bottom')",
  ),
  "levels-on-mmoe": (
    "census",
    lambda r: r["model"].update(levels=3),
    "model.levels: only architecture ple or stem reads levels",
  ),
  "position-task-without-bias": (
    "synthetic",
    lambda r: r["model"].update(position_bias=False),
    "model.position_bias_task: is read only with position_bias: true",
  ),
  "unknown-top-level": (
    "census",
    lambda r: r.update(sliced_by=["sex"]),
    ": unknown field(s) sliced_by",
  ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unread_key_is_an_error_naming_the_field(case):
  name, mutate, message = CASES[case]
  raw = _raw(name)
  mutate(raw)
  with pytest.raises(SpecError) as error:
    parse_spec(raw, origin=f"{name}.yaml")
  assert message in str(error.value)


def test_the_bundled_specs_give_no_unread_key():
  for name in ("census", "synthetic", "ali_ccp_sample", "aliexpress_sample"):
    parse_spec(_raw(name), origin=f"{name}.yaml")
