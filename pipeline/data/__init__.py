"""mtlrank data adapters: raw sources -> `<out_dir>/span-<N>/{train,eval}/data-*.tfrecord.gz`.

- `prepare_census(spec, out_dir, overwrite=False)`: the Census-Income (KDD) file
  (`pipeline.data.census`).
- `simulate(spec, out_dir, overwrite=False, progress=True)`: simulated
  impression logs (`pipeline.data.simulator`).
- `prepare_data(spec, out_dir, overwrite=False)`: dispatches on `spec.data.source`.
- `write_examples`, `read_examples`, `split_files`: `pipeline.data.io`.

See docs/data.md. Selects tf-keras (Keras 2) before TensorFlow can be imported.
The adapters are imported on first use, so that `python -m pipeline.data.census`
and `python -m pipeline.data.simulator` run their module only once.
"""

import importlib
from pathlib import Path
from typing import Any, Dict, Union

_LAZY = {
  "prepare_census": "pipeline.data.census",
  "simulate": "pipeline.data.simulator",
  "write_examples": "pipeline.data.io",
  "read_examples": "pipeline.data.io",
  "split_files": "pipeline.data.io",
}


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'pipeline.data' has no attribute {name!r}")


def prepare_data(spec, out_dir: Union[str, Path], overwrite: bool = False) -> Dict[str, Any]:
  """Writes the spans of `spec`'s data source under `out_dir`; returns the
  adapter's summary."""
  if spec.data.source == "census":
    from pipeline.data.census import prepare_census  # pylint: disable=g-import-not-at-top

    return prepare_census(spec, out_dir, overwrite=overwrite)
  if spec.data.source == "simulator":
    from pipeline.data.simulator import simulate  # pylint: disable=g-import-not-at-top

    return simulate(spec, out_dir, overwrite=overwrite)
  if spec.data.source == "files":
    raise ValueError(
      f"spec {spec.name!r} reads its files in place (data.source files): ExampleGen "
      "ingests them inside the pipeline; there is nothing to prepare"
    )
  raise NotImplementedError(
    f"data.source {spec.data.source!r} has no adapter in "
    "pipeline.data (adapters: census, simulator)"
  )


__all__ = ["prepare_data", *_LAZY]
