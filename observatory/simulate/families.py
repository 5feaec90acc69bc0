"""Families of modelling choices: the simulator's assumptions, drawn at random per run instead of fixed.

A detector tuned on one simulator learns that simulator: its volunteers' hours, its fault process, its upload
delays. `draw_model(seed, activity)` draws one `Model` (one world's assumptions) from families of them, each
an option of a few dimensions:

- hours: when volunteers measure (evening, office hours, night owls, flat or a mix per installation), a
  weekend effect, and some installations whose clock follows another time zone; dedicated mobile probes
  sleep along the same shape;
- churn: probes that vanish for days and come back, join late, leave early;
- faults: correlated failures, a whole network's flaky hour or its resolver failing for hours;
- uploads: how late and how often twice (same measurement_uid);
- clock: probes whose clock is minutes off;
- versions: web_connectivity 0.4 or 0.5 layouts in OONI documents;
- software (dedicated only): our own probe (with `x_download`) or ooniprobe run every interval (OONI's
  own timing fields, no `x_download`);
- signals: whether IODA-like outside-in series (active probing per country and region, BGP per country)
  exist beside the measurements, and whether they are sparse and noisy (`simulate/signals.py`);
- im: whether ooniprobe measures Telegram, WhatsApp and Signal with OONI's instant-messaging tests in half of
  its runs (no control, fixed endpoints) rather than always with web_connectivity.

`Model()` (no draw) is the simulator's historical behaviour, byte for byte; a drawn model changes only what
its options say. The benchmark (`benchmarks/detection.py --worlds N`) scores detection per option, so that no
single set of assumptions is the judge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Relative activity per local hour (0-23) of each volunteer habit.
EVENING = (
    0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0,
    1.0, 1.0, 1.0, 1.0, 1.1, 1.3, 1.6, 1.9, 2.1, 2.0, 1.5, 0.8,
)  # fmt: skip
OFFICE = (
    0.05, 0.03, 0.02, 0.02, 0.02, 0.05, 0.2, 0.8, 1.8, 2.2, 2.2, 2.0,
    1.6, 2.0, 2.2, 2.1, 1.8, 1.2, 0.6, 0.4, 0.3, 0.2, 0.1, 0.08,
)  # fmt: skip
NIGHT = (
    1.8, 1.6, 1.2, 0.8, 0.4, 0.2, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.7, 2.0, 2.2, 2.1,
)  # fmt: skip
FLAT = (1.0,) * 24
SHAPES = {"evening": EVENING, "office": OFFICE, "night": NIGHT, "flat": FLAT}
SHAPE_NAMES = tuple(SHAPES)

# The options of each dimension; a world draws one option per dimension.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "hours": ("evening", "office", "night", "flat", "mixed"),
    "churn": ("none", "some", "heavy"),
    "faults": ("none", "flaky-hours", "resolver"),
    "uploads": ("prompt", "late", "late-duplicated"),
    "clock": ("true", "skewed"),
    "versions": ("0.4", "mixed", "0.5"),
    "software": ("observatory", "ooniprobe"),
    "im": ("web", "im-tests"),
    "signals": ("absent", "present", "noisy"),
}
# Per-probe-day chance of vanishing for days, per churn option.
ABSENCE_RATE = {"none": 0.0, "some": 0.02, "heavy": 0.06}
# (late share, latest delay in hours, duplicate share) per upload option.
UPLOADS = {"prompt": (0.01, 2.0, 0.0), "late": (0.15, 24.0, 0.01), "late-duplicated": (0.25, 72.0, 0.08)}
SHARE_05 = {"0.4": 0.0, "mixed": 0.5, "0.5": 1.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class Model:
    """One world's modelling choices. The defaults reproduce the simulator's historical behaviour."""

    options: dict[str, str] = field(default_factory=dict)  # dimension -> option drawn ({} for the default)
    shapes: tuple[str, ...] = ("evening",)  # volunteer habits to draw from, one per installation
    weekend: float = 1.0  # activity on Saturday and Sunday relative to weekdays
    zone_shift_share: float = 0.0  # share of installations living by a clock 1-3 hours off the country's
    runs_per_day: float = 3.0  # a volunteer installation's mean runs per day
    absence_rate: float = 0.0  # per probe-day: the probe vanishes for `absence_days`
    absence_days: tuple[float, float] = (1.0, 5.0)
    flaky_hour_rate: float = 0.0  # per network-day: for an hour, a share of everything fails
    resolver_fault_rate: float = 0.0  # per network-day: the ISP's resolver fails for 0.5-3 hours
    late_share: float | None = None  # None: the scenario's [noise] late_share
    late_max_hours: float = 24.0
    duplicate_share: float | None = None  # None: the scenario's [noise] duplicate_share
    skew_share: float = 0.0  # share of probes whose clock is off by up to `skew_max_s`
    skew_max_s: float = 600.0
    share_05: float = 0.0  # share of OONI web_connectivity documents in the 0.5 layout
    dedicated_ooni: bool = False  # dedicated probes are ooniprobe (OONI documents) rather than ours
    im_share: float = 0.0  # share of ooniprobe runs measuring the messaging platforms with OONI's IM tests
    # outside-in signals as IODA publishes them (simulate/signals.py): "absent", "present", or "noisy" (sparse
    # address space, small series that dip by chance, as IODA's sparse regions do)
    signals: str = "absent"

    @property
    def is_default(self) -> bool:
        return self == Model()

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.options.items()) or "default"


def draw_model(seed: int, activity: str) -> Model:
    """One world's assumptions, each dimension's option drawn uniformly (seeded: the same seed, the same
    model). `activity` is "dedicated" or "volunteer"; volunteers are always ooniprobe."""
    rng = random.Random(f"{seed}/families/{activity}")
    opts = {dim: rng.choice(choices) for dim, choices in DIMENSIONS.items() if dim not in ("im", "signals")}
    if activity != "dedicated":
        opts["software"] = "ooniprobe"
    hours = opts["hours"]
    late_share, late_max, dup_share = UPLOADS[opts["uploads"]]
    faults = opts["faults"]
    weekend, zone_shift_share, runs_per_day = rng.uniform(0.5, 1.4), rng.choice((0.0, 0.1, 0.3)), rng.uniform(1, 6)
    flaky = rng.uniform(0.02, 0.1) if faults == "flaky-hours" else 0.0
    resolver = rng.uniform(0.02, 0.08) if faults == "resolver" else 0.0
    # drawn last, so that adding this dimension left every earlier draw as it was; our own probe has no IM tests
    opts["im"] = rng.choice(DIMENSIONS["im"]) if opts["software"] == "ooniprobe" else "web"
    # outside-in signals, drawn from their own stream so that every earlier draw stays as it was
    opts["signals"] = random.Random(f"{seed}/signals/{activity}").choice(DIMENSIONS["signals"])
    return Model(
        options=opts,
        shapes=SHAPE_NAMES if hours == "mixed" else (hours,),
        weekend=weekend,
        zone_shift_share=zone_shift_share,
        runs_per_day=runs_per_day,
        absence_rate=ABSENCE_RATE[opts["churn"]],
        flaky_hour_rate=flaky,
        resolver_fault_rate=resolver,
        late_share=late_share,
        late_max_hours=late_max,
        duplicate_share=dup_share,
        skew_share=0.3 if opts["clock"] == "skewed" else 0.0,
        share_05=SHARE_05[opts["versions"]],
        dedicated_ooni=opts["software"] == "ooniprobe",
        im_share=0.5 if opts["im"] == "im-tests" else 0.0,
        signals=opts["signals"],
    )
