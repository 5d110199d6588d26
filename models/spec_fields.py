"""One section of a spec document being read: typed gets that name the file
and the field path in every error, and a check that no unknown field is left."""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Tuple

from models.spec import SpecError


class Fields:
  """Reads one mapping of a spec, naming the field path in every error."""

  def __init__(self, raw: Any, where: str, origin: str):
    self.where, self.origin = where, origin
    if raw is None:
      raw = {}
    if not isinstance(raw, Mapping):
      self.fail(f"must be a mapping, got {type(raw).__name__}")
    self.raw = dict(raw)
    self.used: set = set()

  def fail(self, message: str, key: str | None = None) -> None:
    field = f"{self.where}.{key}" if key and self.where else (key or self.where)
    raise SpecError(f"{self.origin}: {field}: {message}")

  def get(
    self,
    key: str,
    kind: type | Tuple[type, ...],
    default: Any = None,
    required: bool = False,
    choices: Sequence[Any] = (),
  ) -> Any:
    self.used.add(key)
    if key not in self.raw or self.raw[key] is None:
      if required:
        self.fail("is required", key)
      return default
    value = self.raw[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
      names = " or ".join(k.__name__ for k in kinds)
      self.fail(f"must be {names}, got {value!r}", key)
    if choices and value not in choices:
      self.fail(f"{value!r} is not one of: {', '.join(map(str, choices))}", key)
    return value

  def done(self) -> None:
    unknown = sorted(set(self.raw) - self.used)
    if unknown:
      self.fail(f"unknown field(s) {', '.join(unknown)}")
