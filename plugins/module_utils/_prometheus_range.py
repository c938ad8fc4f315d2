# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus range queries (``/api/v1/query_range``) for the release report.

One function, ``query_range``, so that authentication (headers, client certificates) can be plugged in later in one
place: it takes the request headers as they are and never logs them.
"""

from __future__ import annotations

import json
import math

from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.urls import open_url

from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError


class RangeQueryError(MeshosError):
    """A range query that gave no usable answer; one line naming the query and why."""


def auto_step(start, end, points=300):
    """A step (whole seconds, >= 1) giving about ``points`` samples over the window."""
    return max(1, int(math.ceil(float(end - start) / points)))


def query_range(base_url, query, start, end, step, timeout=10.0, validate_certs=True, headers=None, **auth_options):
    """Run ``query`` over [start, end] (UNIX seconds) every ``step`` seconds.

    ``auth_options`` are the other ``open_url`` arguments of ``_monitoring.request_options`` (basic auth, client
    certificate, CA bundle). Returns a list of series ``{"labels": {...}, "points": [(ts, value), ...]}``; a sample that is not a finite number
    (NaN from 0/0, +Inf) is left out rather than drawn as a made-up value. Raises RangeQueryError."""
    if end <= start:
        raise RangeQueryError("range query %r: end %s is not after start %s" % (query, end, start))
    url = "%s/api/v1/query_range?%s" % (str(base_url).rstrip("/"), urlencode(
        {"query": query, "start": "%.3f" % start, "end": "%.3f" % end, "step": "%ss" % step}))
    try:
        response = open_url(url, headers=dict(headers or {}), method="GET", timeout=timeout,
                            validate_certs=validate_certs, **auth_options)
        body = json.loads(response.read())
    except Exception as exc:  # any transport or decoding problem is one failed query
        raise RangeQueryError("range query %r failed: %s" % (query, exc))
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise RangeQueryError("range query %r failed: %s" % (query, error))
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise RangeQueryError("range query %r returned %r, not a matrix" % (query, data.get("resultType")))
    series = []
    for item in data.get("result") or []:
        points = []
        for pair in item.get("values") or []:
            try:
                ts, value = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError):
                continue
            if math.isfinite(value):
                points.append((ts, value))
        series.append({"labels": dict(item.get("metric") or {}), "points": points})
    return series
