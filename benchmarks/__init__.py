"""mtlrank benchmarks: scripts that print ratios measured in one run (not tests).

Run them as modules (`python -m benchmarks.<name>`), so this package, and with
it the contract's Keras choice, is imported first."""

import contract  # noqa: F401  (chooses Keras before TensorFlow is touched)
