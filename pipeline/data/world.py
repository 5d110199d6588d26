"""The impression-log simulator's world: users see slates of items; clicks, conversions
after clicks and dwell times after clicks, with the ground truth.

This module is the generative model: its parameters (`SimParams`, from
`spec.data.params`: num_spans, requests_per_span, slate_size (K), num_users,
num_items, latent_dim (d), seed, eval_fraction, intent_strength (s), and the
optional conversion_bias (gamma, default -2.95) and conversion_click_match
(w1, default 0.3)), the
world (`make_world`) and one span's impressions (`simulate_span`).
`pipeline.data.simulator.simulate` writes the spans.

The model
---------
The world (fixed for a seed, shared by all spans):
- Users: click factors u and conversion factors u' (d-dim Gaussians scaled so
  that a dot product has unit variance), an activity weight (lognormal), a
  segment (new / casual / regular / loyal / premium, with its own click bias,
  conversion bias and price sensitivity) and a primary device.
- Items: click factors v, conversion factors v'' (independent of u/v), a click
  bias b ("clickbait": attracts, does not convert), a quality q (converts,
  does not attract), a popularity weight (lognormal, correlated with b), a
  category = argmax of v over 12 fixed random directions (so the category
  tells something about v) and a price: lognormal around the category's
  typical price, shifted by v'' (so price tells something about v'').

A request (one per `request_id`): a user drawn by activity, a device (the
user's primary device with probability 0.85, else uniform), an hour of day
from a diurnal curve peaking at 20:00, and a slate of K distinct items drawn
by popularity. A noisy production ranker orders the slate: by the true
attraction logit plus N(0, 1) noise, so the top positions hold somewhat more
attractive items (position and relevance are confounded, as in real logs).

For the item at position p (1..K):
- attraction      a = sigmoid(alpha + u.v + b + segment + device + device x category
                                + 0.3 cos(2 pi (hour - peak_hour(category)) / 24))
- examination     e(p) = 1 / p^0.7
- click           = examined AND attracted, both sampled:  p_click = e(p) * a
- conversion      only after a click, with
                  p_conv_given_click = sigmoid(gamma + w1 u.v + 1.0 u'.v'' + q
                                               - 0.8 * sensitivity(segment) * (log price - mean)
                                               + segment + device + hour)
  so at the default w1 = 0.3 it shares little with the click: a high-CTR item
  is not necessarily a converter, and price lowers conversion but not
  attraction. A larger w1 makes conversion follow the click's user-item match
  (what ESMM's shared embeddings transfer), a lower gamma makes conversions
  sparse (benchmarks/esmm_experiment.py's ESMM-premise setting).
- hidden intent    z ~ N(0, 1) per impression, never logged, drawn after the
                   production ranker ordered the slate: s z is added to both the
                   attraction logit and the conversion logit (with offsets
                   -0.23 s^2 and -0.83 s^2 that keep the base rates). Users who
                   click for a reason the features do not show also convert for
                   it: the clicked impressions are a selected sample (the
                   sample selection bias of the ESMM paper). `p_click` and
                   `p_conv_given_click` are exact given the row's own z; a model
                   of the logged features can at best learn them with z
                   integrated out (`benchmarks.simulator_truth`).
- dwell_seconds   only after a click: lognormal with
                  log mean = ln 20 + 0.4 u.v + 0.3 u'.v'' + 0.3 conversion + device,
                  sigma 0.7; exactly 0 where there is no click.

The position-free truths a ranker should order by, per impression (never
features): `attraction` a (the click probability if examined at the top),
`p_conv_given_click`, `expected_dwell` E[dwell | click] (the conversion's lift
averaged over p_conv) and `utility`, the spec's `serving.score` formula applied
to the truths of its tasks (written by `pipeline.data.simulator`).

Base rates at the synthetic spec's parameters: CTR about 7 %, CVR given click
about 10 %, median dwell about 25 s (docs/data.md has the measured figures).

Randomness: the world from numpy Generator seeded with (seed, 0), span N from
(seed, N), so every span is deterministic and independent of the others; all
of it vectorized (no Python loop per row). The train/validation/eval split
takes whole requests: with u = splitmix64(seed, N, r) / 2^64, request r of span
N goes to eval when u < eval_fraction, to validation when eval_fraction <= u <
eval_fraction + validation_fraction (default: a tenth of the rest, 0.1 * (1 -
eval_fraction)), else to train.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Tuple

import numpy as np
import pyarrow as pa

from models.spec import SOURCE_PARAMS, RankingSpec

# 4: three splits (train, validation, eval); spans of version 3 had two.
SIMULATOR_VERSION = 4

# The columns the simulator produces, with their dtypes.
COLUMNS: Dict[str, str] = {
  "request_id": "string",
  "user_id": "string",
  "item_id": "string",
  "item_category": "string",
  "user_segment": "string",
  "device": "string",
  "hour": "int",
  "item_price": "float",
  "position": "int",
  "p_click": "float",
  "p_conv_given_click": "float",
  "attraction": "float",
  "expected_dwell": "float",
  "utility": "float",
  "click": "int",
  "conversion": "int",
  "dwell_seconds": "float",
}
PARAMS = SOURCE_PARAMS["simulator"]
# Knobs a spec may leave out (SimParams' defaults: the bundled world).
OPTIONAL_PARAMS = ("conversion_bias", "conversion_click_match")
# Derived from the others when left out (SimParams.from_spec).
DERIVED_PARAMS = ("validation_fraction",)
FLOAT_PARAMS = (
  "eval_fraction",
  "validation_fraction",
  "intent_strength",
  "conversion_bias",
  "conversion_click_match",
)

SEGMENTS = ("new", "casual", "regular", "loyal", "premium")
SEGMENT_SHARE = (0.15, 0.35, 0.25, 0.15, 0.10)
SEGMENT_CLICK = np.array([-0.3, -0.1, 0.0, 0.2, 0.1])
SEGMENT_CONV = np.array([-0.6, -0.2, 0.0, 0.4, 0.3])
SEGMENT_PRICE_SENSITIVITY = np.array([1.3, 1.1, 1.0, 0.8, 0.4])

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARE = (0.6, 0.3, 0.1)
DEVICE_CLICK = np.array([0.1, 0.0, -0.05])
DEVICE_CONV = np.array([-0.3, 0.2, 0.0])
DEVICE_DWELL = np.array([-0.2, 0.1, 0.0])
PRIMARY_DEVICE_PROB = 0.85

# Category name -> typical price (log dollars).
CATEGORIES = (
  "apparel",
  "auto",
  "beauty",
  "books",
  "electronics",
  "garden",
  "grocery",
  "home",
  "jewelry",
  "music",
  "sports",
  "toys",
)
CATEGORY_LOG_PRICE = np.array([3.6, 4.2, 3.0, 2.7, 5.0, 3.5, 2.0, 3.9, 4.6, 2.8, 3.7, 3.2])

# Calibration of the base rates (see the module docstring).
CLICK_BIAS = -2.6  # alpha
CONV_BIAS = -2.95  # gamma
EXAMINATION_DECAY = 0.7  # e(p) = 1 / p^0.7
RANKER_NOISE = 1.5
HOUR_CLICK_AMPLITUDE = 0.3
HOUR_CONV_AMPLITUDE = 0.15
CONV_CLICK_MATCH = 0.3  # w1
CONV_OWN_MATCH = 1.0  # w2
PRICE_EFFECT = 0.8
DWELL_LOG_MEDIAN = math.log(20.0)
DWELL_SIGMA = 0.7
INTENT_STREAM = 1  # the intent's random stream: (seed, span, INTENT_STREAM)


# Logit offsets c * s^2 that keep the CTR and the CVR given a click where they
# are without intent (the intent spreads the logits, and given a click it is
# shifted upwards). c fitted at s = 1 by root-finding on the exact mean rates
# of a 100k-impression span; the roots at s = 0.5 / 1.5 are -0.24 / -0.21
# (click) and -0.90 / -0.74 (conversion), so away from s = 1 the rates drift
# a little (the sweep in docs/evaluation.md).
INTENT_CLICK_OFFSET = -0.23
INTENT_CONV_OFFSET = -0.83


def intent_click_offset(strength: float) -> float:
  return INTENT_CLICK_OFFSET * strength**2


def intent_conv_offset(strength: float) -> float:
  return INTENT_CONV_OFFSET * strength**2


@dataclasses.dataclass(frozen=True)
class SimParams:
  num_spans: int
  requests_per_span: int
  slate_size: int
  num_users: int
  num_items: int
  latent_dim: int
  seed: int
  eval_fraction: float
  intent_strength: float
  conversion_bias: float = CONV_BIAS
  conversion_click_match: float = CONV_CLICK_MATCH
  # The share of requests in validation; from_spec's default: 0.1 * (1 - eval_fraction).
  validation_fraction: float = 0.0

  @classmethod
  def from_spec(cls, spec: RankingSpec) -> SimParams:
    raw = dict(spec.data.params)
    unknown = sorted(set(raw) - set(PARAMS))
    if unknown:
      raise ValueError(f"simulator: unknown data.params {unknown} (known: {', '.join(PARAMS)})")
    if "num_spans" in raw and raw["num_spans"] != spec.data.num_spans:
      raise ValueError(
        f"simulator: data.params.num_spans ({raw['num_spans']}) and "
        f"data.num_spans ({spec.data.num_spans}) disagree"
      )
    raw.setdefault("num_spans", spec.data.num_spans)
    missing = [
      p for p in PARAMS if p not in raw and p not in OPTIONAL_PARAMS and p not in DERIVED_PARAMS
    ]
    if missing:
      raise ValueError(f"simulator: data.params is missing {missing}")
    if "validation_fraction" not in raw:
      raw["validation_fraction"] = round(0.1 * (1.0 - float(raw["eval_fraction"])), 6)
    params = cls(
      **{p: (float(raw[p]) if p in FLOAT_PARAMS else int(raw[p])) for p in PARAMS if p in raw}
    )
    params.validate()
    return params

  def fingerprinted(self) -> Dict[str, Any]:
    """The parameters that determine a span's content: the optional knobs
    only where they differ from the bundled world, so spans written before
    the knobs existed keep their fingerprint."""
    values = dataclasses.asdict(self)
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    return {k: v for k, v in values.items() if k not in OPTIONAL_PARAMS or v != defaults[k]}

  def validate(self) -> None:
    for name in ("num_spans", "requests_per_span", "slate_size", "num_users", "latent_dim"):
      if getattr(self, name) < 1:
        raise ValueError(f"simulator: data.params.{name} must be >= 1")
    if self.num_items < self.slate_size:
      raise ValueError(
        f"simulator: num_items ({self.num_items}) must be >= slate_size "
        f"({self.slate_size}): a slate holds distinct items"
      )
    if not 0.0 <= self.eval_fraction <= 1.0:
      raise ValueError("simulator: eval_fraction must be in [0, 1]")
    if not 0.0 <= self.validation_fraction <= 1.0 - self.eval_fraction:
      raise ValueError(
        "simulator: validation_fraction must be in [0, 1 - eval_fraction] "
        f"(got {self.validation_fraction}, eval_fraction {self.eval_fraction})"
      )
    if self.seed < 0:
      raise ValueError("simulator: seed must be >= 0")
    if self.intent_strength < 0:
      raise ValueError("simulator: data.params.intent_strength must be >= 0")


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, n: int, width: int) -> pa.Array:
  """prefix + zero-padded 0..n-1, built without a Python loop per value."""
  width = max(width, len(str(max(n - 1, 0))))
  digits = (
    np.arange(n, dtype=np.int64)[:, None]
    // (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))[None, :]
  ) % 10
  chars = np.empty((n, len(prefix) + width), dtype=np.uint8)
  chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
  chars[:, len(prefix) :] = digits + ord("0")
  offsets = np.arange(n + 1, dtype=np.int32) * chars.shape[1]
  return pa.Array.from_buffers(
    pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars.reshape(-1))]
  )


def splitmix64(x: np.ndarray) -> np.ndarray:
  """The splitmix64 finalizer, vectorized (uint64 in, uint64 out)."""
  with np.errstate(over="ignore"):
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _request_hashes(seed: int, span: int, num_requests: int) -> np.ndarray:
  """Each request's uniform [0, 1) draw, a hash of (seed, span, request)."""
  with np.errstate(over="ignore"):
    key = splitmix64(
      np.uint64(seed) * np.uint64(0x100000001B3) + np.uint64(span) + np.zeros(1, np.uint64)
    )
    h = splitmix64(np.arange(num_requests, dtype=np.uint64) ^ key)
  return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def eval_requests(seed: int, span: int, num_requests: int, eval_fraction: float) -> np.ndarray:
  """Which requests of a span go to eval: a hash of (seed, span, request)."""
  return _request_hashes(seed, span, num_requests) < eval_fraction


def validation_requests(
  seed: int, span: int, num_requests: int, eval_fraction: float, validation_fraction: float
) -> np.ndarray:
  """Which requests of a span go to validation: the next `validation_fraction`
  of the same draw after eval's, so eval is the same with or without it."""
  u = _request_hashes(seed, span, num_requests)
  return (u >= eval_fraction) & (u < eval_fraction + validation_fraction)


@dataclasses.dataclass
class World:
  user_click: np.ndarray  # (U, d) u
  user_conv: np.ndarray  # (U, d) u'
  user_activity: np.ndarray  # (U,) sampling probabilities
  user_segment: np.ndarray  # (U,) index into SEGMENTS
  user_device: np.ndarray  # (U,) primary device, index into DEVICES
  item_click: np.ndarray  # (I, d) v
  item_conv: np.ndarray  # (I, d) v''
  item_bias: np.ndarray  # (I,) b
  item_quality: np.ndarray  # (I,) q
  item_popularity: np.ndarray  # (I,) sampling probabilities
  item_category: np.ndarray  # (I,) index into CATEGORIES
  item_price: np.ndarray  # (I,) dollars
  device_category: np.ndarray  # (devices, categories) click interaction
  category_peak_hour: np.ndarray  # (categories,)
  hour_share: np.ndarray  # (24,)


def make_world(p: SimParams) -> World:
  rng = np.random.default_rng([p.seed, 0])
  d = p.latent_dim
  scale = d**-0.25  # so that u.v has unit variance
  user_click = rng.normal(0.0, scale, (p.num_users, d))
  user_conv = rng.normal(0.0, scale, (p.num_users, d))
  activity = np.exp(rng.normal(0.0, 0.8, p.num_users))
  user_segment = rng.choice(len(SEGMENTS), p.num_users, p=SEGMENT_SHARE)
  user_device = rng.choice(len(DEVICES), p.num_users, p=DEVICE_SHARE)
  item_click = rng.normal(0.0, scale, (p.num_items, d))
  item_conv = rng.normal(0.0, scale, (p.num_items, d))
  item_bias = rng.normal(0.0, 0.5, p.num_items)
  item_quality = rng.normal(0.0, 0.5, p.num_items)
  popularity = np.exp(rng.normal(0.0, 1.0, p.num_items) + 1.0 * item_bias)
  directions = rng.normal(0.0, 1.0, (d, len(CATEGORIES)))
  directions /= np.linalg.norm(directions, axis=0, keepdims=True)
  item_category = np.argmax(item_click @ directions, axis=1)
  price_direction = rng.normal(0.0, 1.0, d)
  price_direction /= np.linalg.norm(price_direction)
  log_price = (
    CATEGORY_LOG_PRICE[item_category]
    + 0.4 * (item_conv @ price_direction) / scale
    + rng.normal(0.0, 0.3, p.num_items)
  )
  item_price = np.maximum(np.round(np.exp(log_price), 2), 0.5)
  device_category = rng.normal(0.0, 0.25, (len(DEVICES), len(CATEGORIES)))
  category_peak_hour = rng.uniform(0.0, 24.0, len(CATEGORIES))
  hours = np.arange(24)
  hour_share = 1.0 + 0.7 * np.cos(2 * np.pi * (hours - 20) / 24)
  return World(
    user_click=user_click,
    user_conv=user_conv,
    user_activity=activity / activity.sum(),
    user_segment=user_segment,
    user_device=user_device,
    item_click=item_click,
    item_conv=item_conv,
    item_bias=item_bias,
    item_quality=item_quality,
    item_popularity=popularity / popularity.sum(),
    item_category=item_category,
    item_price=item_price,
    device_category=device_category,
    category_peak_hour=category_peak_hour,
    hour_share=hour_share / hour_share.sum(),
  )


def _draw(
  rng: np.random.Generator, probabilities: np.ndarray, shape: Tuple[int, ...]
) -> np.ndarray:
  cdf = np.cumsum(probabilities)
  cdf /= cdf[-1]
  return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), len(cdf) - 1)


def _distinct_slates(
  rng: np.random.Generator, popularity: np.ndarray, num_requests: int, k: int
) -> np.ndarray:
  """(num_requests, k) items drawn by popularity, distinct within a row:
  rows with a repeated item are redrawn whole until none is left."""
  slates = _draw(rng, popularity, (num_requests, k))
  for _ in range(1000):
    ordered = np.sort(slates, axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if not len(repeated):
      return slates
    slates[repeated] = _draw(rng, popularity, (len(repeated), k))
  raise RuntimeError(
    "simulator: could not draw slates of distinct items; popularity is "
    "too concentrated for the slate size"
  )


def simulate_span(world: World, p: SimParams, span: int) -> Dict[str, Any]:
  """All rows of one span, in request order then position order, plus an
  `is_eval` and `is_validation` row masks. Columns are numpy arrays or pyarrow string arrays."""
  rng = np.random.default_rng([p.seed, span])
  n_req, k = p.requests_per_span, p.slate_size
  n = n_req * k

  # Requests: user, device, hour.
  user = _draw(rng, world.user_activity, (n_req,))
  device = np.where(
    rng.random(n_req) < PRIMARY_DEVICE_PROB,
    world.user_device[user],
    rng.integers(0, len(DEVICES), n_req),
  )
  hour = _draw(rng, world.hour_share, (n_req,))
  items = _distinct_slates(rng, world.item_popularity, n_req, k)  # (n_req, k)

  # Per impression (n_req, k).
  u, u2 = world.user_click[user], world.user_conv[user]  # (n_req, d)
  click_match = np.einsum("rd,rkd->rk", u, world.item_click[items])
  conv_match = np.einsum("rd,rkd->rk", u2, world.item_conv[items])
  segment = world.user_segment[user]
  category = world.item_category[items]
  hour_k = hour[:, None]
  attraction_logit = (
    CLICK_BIAS
    + click_match
    + world.item_bias[items]
    + SEGMENT_CLICK[segment][:, None]
    + DEVICE_CLICK[device][:, None]
    + world.device_category[device[:, None], category]
    + HOUR_CLICK_AMPLITUDE * np.cos(2 * np.pi * (hour_k - world.category_peak_hour[category]) / 24)
  )

  # The production ranker orders the slate by a noisy attraction score.
  order = np.argsort(
    -(attraction_logit + rng.normal(0.0, RANKER_NOISE, (n_req, k))), axis=1, kind="stable"
  )
  items = np.take_along_axis(items, order, axis=1)
  click_match = np.take_along_axis(click_match, order, axis=1)
  conv_match = np.take_along_axis(conv_match, order, axis=1)
  category = np.take_along_axis(category, order, axis=1)
  attraction_logit = np.take_along_axis(attraction_logit, order, axis=1)

  position = np.broadcast_to(np.arange(1, k + 1), (n_req, k))
  examination = position**-EXAMINATION_DECAY
  log_price = np.log(world.item_price[items])
  mean_log_price = float(np.log(world.item_price).mean())
  conv_logit = (
    p.conversion_bias
    + p.conversion_click_match * click_match
    + CONV_OWN_MATCH * conv_match
    + world.item_quality[items]
    - PRICE_EFFECT * SEGMENT_PRICE_SENSITIVITY[segment][:, None] * (log_price - mean_log_price)
    + SEGMENT_CONV[segment][:, None]
    + DEVICE_CONV[device][:, None]
    + HOUR_CONV_AMPLITUDE * np.cos(2 * np.pi * (hour_k - 21) / 24)
  )

  # The hidden intent (after the ranker, which cannot see it). Its own stream,
  # so that intent_strength 0 reproduces the columns of SIMULATOR_VERSION 1.
  s = p.intent_strength
  intent = np.random.default_rng([p.seed, span, INTENT_STREAM]).normal(0.0, 1.0, (n_req, k))
  attraction_logit_x = attraction_logit + intent_click_offset(s)
  conv_logit_x = conv_logit + intent_conv_offset(s)
  attraction = _sigmoid(attraction_logit_x + s * intent)
  p_click = examination * attraction
  p_conv = _sigmoid(conv_logit_x + s * intent)

  examined = rng.random((n_req, k)) < examination
  attracted = rng.random((n_req, k)) < attraction
  click = examined & attracted
  conversion = click & (rng.random((n_req, k)) < p_conv)
  dwell_log_mean = (
    DWELL_LOG_MEDIAN
    + 0.4 * click_match
    + 0.3 * conv_match
    + 0.3 * conversion
    + DEVICE_DWELL[device][:, None]
  )
  dwell = np.where(click, np.exp(dwell_log_mean + rng.normal(0.0, DWELL_SIGMA, (n_req, k))), 0.0)
  # E[dwell | click], the conversion's lift averaged over p_conv (position-free).
  expected_dwell = np.exp(dwell_log_mean - 0.3 * conversion + DWELL_SIGMA**2 / 2) * (
    1.0 + p_conv * (math.exp(0.3) - 1.0)
  )

  request_of_row = np.repeat(np.arange(n_req), k)
  is_eval = np.repeat(eval_requests(p.seed, span, n_req, p.eval_fraction), k)
  is_validation = np.repeat(
    validation_requests(p.seed, span, n_req, p.eval_fraction, p.validation_fraction), k
  )
  user_row = user[request_of_row]

  def vocab(names, index: np.ndarray) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(index.reshape(-1)))

  columns = {
    "request_id": _ids(f"s{span}-r", n_req, 6).take(pa.array(request_of_row)),
    "user_id": _ids("u", p.num_users, 5).take(pa.array(user_row)),
    "item_id": _ids("i", p.num_items, 5).take(pa.array(items.reshape(-1))),
    "item_category": vocab(CATEGORIES, category),
    "user_segment": vocab(SEGMENTS, segment[request_of_row]),
    "device": vocab(DEVICES, device[request_of_row]),
    "hour": hour[request_of_row].astype(np.int64),
    "item_price": world.item_price[items].reshape(-1).astype(np.float32),
    "position": position.reshape(-1).astype(np.int64),
    "p_click": p_click.reshape(-1).astype(np.float32),
    "p_conv_given_click": p_conv.reshape(-1).astype(np.float32),
    "attraction": attraction.reshape(-1).astype(np.float32),
    "expected_dwell": expected_dwell.reshape(-1).astype(np.float32),
    "click": click.reshape(-1).astype(np.int64),
    "conversion": conversion.reshape(-1).astype(np.int64),
    "dwell_seconds": dwell.reshape(-1).astype(np.float32),
  }
  # `utility` depends on the spec's score formula: pipeline.data.simulator adds it.
  assert all(len(v) == n for v in columns.values())
  # Never written: what the logged features do not show (for the ESMM
  # experiment's x-only oracle, benchmarks/esmm_experiment.py).
  hidden = {
    "intent": intent.reshape(-1),
    "attraction_logit_x": attraction_logit_x.reshape(-1),
    "conv_logit_x": conv_logit_x.reshape(-1),
  }
  return {"columns": columns, "is_eval": is_eval, "is_validation": is_validation, "hidden": hidden}
