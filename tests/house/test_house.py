"""The house rules, checked on the source tree: imports run downward only, and
every name the contract defines is spelt in the contract alone."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import contract

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("contract", "models", "pipeline", "components", "serving")
# Which product packages each package may import; anything else is upward.
ALLOWED_IMPORTS: Dict[str, Set[str]] = {
  "contract": set(),
  "models": {"contract"},
  "serving": {"contract"},
  "components": {"contract", "models"},
  "pipeline": {"contract", "models", "components", "serving"},
}


# Contract values distinctive enough that a literal copy elsewhere is a copy of
# the contract, not an unrelated word.
def _distinctive_values() -> Dict[str, str]:
  values = {}
  for name in dir(contract):
    value = getattr(contract, name)
    if name.isupper() and isinstance(value, str) and name != "LEGACY_KERAS_ENV":
      values[value] = name
  # Plain words are checked where they act as names: see _score_literals.
  for common in (
    "score",
    "examples",
    "inputs",
    "outputs",
    "classes",
    "scores",
    "train",
    "eval",
    "validation",
    "serve",
    "variables",
    "evaluation",
    "regression",
    "classification",
  ):
    values.pop(common, None)
  return values


def _product_modules() -> Iterator[Tuple[str, Path]]:
  for package in PRODUCT_PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
      yield package, path


def _imported_packages(tree: ast.AST) -> Iterator[Tuple[int, str]]:
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.lineno, node.module.split(".")[0]


def test_product_imports_run_downward_only():
  upward = []
  for package, path in _product_modules():
    tree = ast.parse(path.read_text(), filename=str(path))
    for line, imported in _imported_packages(tree):
      if (
        imported in PRODUCT_PACKAGES
        and imported != package
        and imported not in ALLOWED_IMPORTS[package]
      ):
        upward.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
  assert not upward, "upward imports:\n" + "\n".join(upward)


def test_contract_imports_no_tensorflow_at_package_level():
  tree = ast.parse((ROOT / "contract" / "__init__.py").read_text())
  imported = {name for _, name in _imported_packages(tree)}
  assert imported <= {"__future__", "os"}, imported


def test_contract_names_are_not_copied_as_literals():
  values = _distinctive_values()
  copies = []
  for package, path in _product_modules():
    if package == "contract":
      continue
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
      id(node.body[0].value)
      for node in ast.walk(tree)
      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
      and node.body
      and isinstance(node.body[0], ast.Expr)
      and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
      if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value in values
      ):
        copies.append(
          f"{path.relative_to(ROOT)}:{node.lineno} spells {node.value!r}"
          f" (contract.{values[node.value]})"
        )
  assert not copies, "literal copies of contract names:\n" + "\n".join(copies)


def test_fused_score_output_is_not_spelt_as_a_key():
  """'score' is a common word; as a subscript or dict key it is the output."""
  copies = []
  for package, path in _product_modules():
    if package == "contract":
      continue
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
      keys = []
      if isinstance(node, ast.Subscript):
        keys = [node.slice]
      elif isinstance(node, ast.Dict):
        keys = [k for k in node.keys if k is not None]
      for key in keys:
        if isinstance(key, ast.Constant) and key.value == contract.FUSED_SCORE_OUTPUT:
          copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
  assert not copies, "the fused score output spelt as a literal key:\n" + "\n".join(copies)
