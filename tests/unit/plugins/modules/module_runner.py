# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() in-process and return what it handed to exit_json / fail_json."""

from __future__ import annotations

from unittest import mock

import pytest

from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    pass


def run_module(module, args: dict) -> dict:
    """module.main() with args; the result dict, with failed=True when the module called fail_json."""
    out = {}

    def exit_json(self, **kwargs):
        out.update(kwargs)
        raise ModuleExit()

    def fail_json(self, **kwargs):
        kwargs["failed"] = True
        out.update(kwargs)
        raise ModuleExit()

    with patch_module_args(args), \
            mock.patch.object(module.AnsibleModule, "exit_json", exit_json), \
            mock.patch.object(module.AnsibleModule, "fail_json", fail_json), \
            pytest.raises(ModuleExit):
        module.main()
    return out
