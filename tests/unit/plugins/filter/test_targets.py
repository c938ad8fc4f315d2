# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.meshos.release.plugins.filter.targets import base_urls


def test_base_urls_keep_scheme_host_and_port_in_order():
    targets = [{"name": "a", "ready_url": "http://10.0.0.1:8080/ready"},
               {"name": "b", "ready_url": "https://app-b.example:8443/healthz?x=1"},
               {"name": "c", "ready_url": "http://[::1]:9000"}]
    assert base_urls(targets) == ["http://10.0.0.1:8080", "https://app-b.example:8443", "http://[::1]:9000"]


@pytest.mark.parametrize("targets, needle", [
    ("nope", "expects a list"),
    ([{"name": "a"}], "target a has no ready_url"),
    ([{"name": "a", "ready_url": "ftp://x/ready"}], "target a has ready_url 'ftp://x/ready'"),
    ([{"name": "a", "ready_url": "/ready"}], "expected http(s)://host[:port]/path"),
])
def test_bad_targets_fail_naming_the_target(targets, needle):
    with pytest.raises(AnsibleFilterError) as err:
        base_urls(targets)
    assert needle in str(err.value)
