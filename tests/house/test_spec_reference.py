"""docs/spec.md is generated from the spec's definitions (models/spec_reference.py):
regenerating it gives the same page, and every field has a meaning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from models import spec_reference

PAGE = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


def test_docs_spec_md_is_the_generated_page():
  assert PAGE.read_text() == spec_reference.render(), (
    "docs/spec.md drifted from the spec's definitions: "
    "run `python -m models.spec_reference > docs/spec.md`"
  )


def test_every_field_has_a_meaning():
  assert spec_reference.undocumented() == []


def test_every_section_field_is_listed_with_its_default():
  page = PAGE.read_text()
  for path, cls, skip in spec_reference.SECTIONS:
    assert f"## `{path}`" in page
    for field in dataclasses.fields(cls):
      if field.name not in skip:
        assert f"| `{field.name}` |" in page, f"{path}.{field.name}"
  row = next(line for line in page.splitlines() if line.startswith("| `dtype` |"))
  assert "string" in row and "float for numeric" in row  # the loader's derived default
  assert "| `without_parent` | str: stop \\| drop \\| unconditional | 'stop' |" in page


def test_an_architecture_registered_at_run_time_leaves_the_page_alone():
  from models import options

  before = spec_reference.render()
  options.register_architecture_options("reference_probe")
  try:
    assert spec_reference.render() == before
  finally:
    del options.ARCHITECTURE_OPTIONS["reference_probe"]
