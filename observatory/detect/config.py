"""The detector's knobs, in one frozen record passed down from the entry point (no global settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectConfig:
    bucket_seconds: int = 300
    # Bernoulli CUSUM on distinct probes: p0 is learned per series, p1 is the share we test against. 0.5 keeps
    # partial events (one region of a network, coverage 60%) detectable while a 3% noise floor never drifts up.
    p1: float = 0.5
    prior_rate: float = 0.03  # anomaly rate assumed before a series has history
    prior_weight: float = 60.0  # how many probe-observations the prior is worth
    min_rate: float = 0.01
    max_rate: float = 0.25
    threshold: float = 10.0  # h: log-likelihood ratio (nats) at which a series raises an alarm
    # one test over a window that other data chose (detect/faults.py: was the control failing during a
    # platform's episode?) is not a scan over every bucket: odds of 100 to 1 are decisive there
    window_evidence: float = 4.6  # ln 100
    end_threshold: float = 8.0  # evidence for "back to normal" that ends an alarm
    # once alarmed, "back to normal" is tested against the share the disruption showed so far, capped here
    # so that a few stray successes inside a near-total block cannot end it
    end_share_cap: float = 0.9
    baseline_seconds: int = 3 * 86400  # trailing window of a series' own history used for its baseline
    end_grace_seconds: int = 3600  # an alarm with no anomalous bucket for this long before "now" has ended
    # throughput: a bucket whose median collapses by this factor against the series' baseline is throttled
    throttle_ratio: float = 8.0
    # silence: negative-binomial CUSUM of a network-region's active probes, per block of its own pace, against
    # its usual activity at that time of day (detect/silence.py)
    silence_ratio: float = 0.1
    silence_threshold: float = 9.0
    silence_history_days: int = 28  # weekdays count once two weeks of history are there
    # confirmation: independent evidence
    min_probes: int = 3  # distinct anomalous probes (probe_id, else report_id, else network+resolver)
    min_networks_national: int = 2
    merge_gap_seconds: int = 1800  # anomalies this close in time merge into one incident
    sync_seconds: int = 3600  # connectivity losses in several networks are one event if they began this close
    # scope: share of the measured networks / regions that must be affected for a wider claim
    national_share: float = 0.6
    regional_share: float = 0.6
    outage_min_countries: int = 3  # one platform failing in this many countries at once is its own outage

    @property
    def bucket_td_seconds(self) -> int:
        return self.bucket_seconds
