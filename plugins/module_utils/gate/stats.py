# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Small statistics helpers for the health gate (stdlib only, Python 3.9+).

- ``parse_duration``: seconds from ``30``, ``'30s'``, ``'2m'``, ``'1h30m'``, ``'500ms'``.
- ``parse_exposition``: Prometheus text format into ``(name, labels, value)`` samples.
- ``histogram_quantile``: the same linear interpolation Prometheus uses.
- ``counter_delta`` / ``rate``: counter arithmetic with reset handling.
- ``mann_whitney_u``: U statistic and normal-approximation p-value with tie correction.
"""

from __future__ import annotations

import math
import re

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value, name="duration"):
    """Seconds (float) from a number or a string like '2m', '30s', '1m30s', '500ms'.

    Raises ValueError with a one-line message naming the bad value.
    """
    if isinstance(value, bool):
        raise ValueError("%s: %r is not a duration; use seconds or a string like '30s', '2m', '1h'" % (name, value))
    if isinstance(value, (int, float)):
        if math.isnan(value) or math.isinf(value):
            # an infinite duration would poll forever, NaN compares false everywhere: both fail closed here
            raise ValueError("%s: %r is not a finite number of seconds; use seconds >= 0 or a string like '30s', '2m'"
                             % (name, value))
        if value < 0:
            raise ValueError("%s: %r is negative; use seconds >= 0 or a string like '30s', '2m'" % (name, value))
        return float(value)
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return parse_duration(number, name)
    pos = 0
    total = 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError("%s: %r is not a duration; use seconds or a string like '30s', '2m', '1h30m', '500ms'"
                         % (name, value))
    return total


def format_duration(seconds):
    """PromQL range string for a number of seconds ('30s', '1500ms')."""
    millis = max(1, int(round(seconds * 1000)))
    if millis % 1000 == 0:
        return "%ds" % (millis // 1000)
    return "%dms" % millis


_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(text):
    return text.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


def parse_exposition(text):
    """Parse Prometheus text exposition format into a list of (name, labels dict, float value)."""
    samples = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        labels = {}
        if "{" in line:
            name, rest = line.split("{", 1)
            body, _sep, tail = rest.rpartition("}")
            for match in _LABEL_RE.finditer(body):
                labels[match.group(1)] = _unescape(match.group(2))
            fields = tail.split()
        else:
            parts = line.split()
            name, fields = parts[0], parts[1:]
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        samples.append((name.strip(), labels, value))
    return samples


def _le_value(text):
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def histogram_buckets(samples, metric, match=None):
    """Sum the cumulative buckets of histogram ``metric`` over series matching ``match``: {le: count}."""
    buckets = {}
    bucket_name = metric + "_bucket"
    for name, labels, value in samples:
        if name != bucket_name or "le" not in labels:
            continue
        if match and any(labels.get(k) != v for k, v in match.items()):
            continue
        le = _le_value(labels["le"])
        buckets[le] = buckets.get(le, 0.0) + value
    return buckets


def histogram_quantile(q, buckets):
    """Quantile ``q`` (0..1) of a cumulative histogram {upper bound: count}, like PromQL histogram_quantile.

    Returns None when the histogram holds no observations.
    """
    if not buckets:
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bounds = sorted(buckets)
    if bounds[-1] != math.inf:
        return None
    counts = [buckets[b] for b in bounds]
    # enforce monotonicity like Prometheus does
    for i in range(1, len(counts)):
        if counts[i] < counts[i - 1]:
            counts[i] = counts[i - 1]
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    idx = 0
    while idx < len(counts) - 1 and counts[idx] < rank:
        idx += 1
    if bounds[idx] == math.inf:
        return bounds[-2] if len(bounds) > 1 else None
    lower = 0.0 if idx == 0 else bounds[idx - 1]
    prev = 0.0 if idx == 0 else counts[idx - 1]
    upper = bounds[idx]
    if idx == 0 and upper <= 0:
        return upper
    in_bucket = counts[idx] - prev
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * ((rank - prev) / in_bucket)


def counter_delta(before, after):
    """Increase of a counter between two readings; a decrease means a reset (then the new value is the increase)."""
    if after < before:
        return after
    return after - before


def rate(before, after, seconds):
    """Per-second increase of a counter over ``seconds``; None when the interval is not positive."""
    if seconds <= 0:
        return None
    return counter_delta(before, after) / seconds


def bucket_delta(before, after):
    """Per-bucket increase between two cumulative histograms (reset aware, per bucket)."""
    return dict((le, counter_delta(before.get(le, 0.0), value)) for le, value in after.items())


def _norm_sf(z):
    """Survival function of the standard normal distribution."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mann_whitney_u(x, y, alternative="greater"):
    """Mann-Whitney U test of samples ``x`` against ``y``.

    Returns (u_x, p_value). ``alternative``: 'greater' (x tends to be larger than y), 'less' or 'two-sided'.
    Normal approximation with tie correction and continuity correction (what scipy does with method='asymptotic').
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs two non-empty samples (got %d and %d)" % (n1, n2))
    combined = sorted([(v, 0) for v in x] + [(v, 1) for v in y], key=lambda item: item[0])
    ranks = [0.0] * len(combined)
    tie_term = 0.0
    i = 0
    while i < len(combined):
        j = i
        while j + 1 < len(combined) and combined[j + 1][0] == combined[i][0]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[k] = avg
        t = j - i + 1
        tie_term += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_v, g) in zip(ranks, combined) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))) if n > 1 else 0.0
    if sigma == 0:
        return u1, 1.0
    if alternative == "greater":
        z = (u1 - mu - 0.5) / sigma
        p = _norm_sf(z)
    elif alternative == "less":
        z = (u1 - mu + 0.5) / sigma
        p = 1.0 - _norm_sf(z)
    else:
        z = (abs(u1 - mu) - 0.5) / sigma
        p = min(1.0, 2.0 * _norm_sf(z))
    return u1, max(0.0, min(1.0, p))


def median(values):
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0
