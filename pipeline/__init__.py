"""mtlrank package; selects tf-keras (Keras 2) before TensorFlow can be imported."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
