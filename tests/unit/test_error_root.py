# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every error a module_utils raises for the user derives from the one root, _errors.MeshosError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from ansible_collections.meshos.release.plugins import module_utils
from ansible_collections.meshos.release.plugins.module_utils._errors import MeshosError


def _modules():
    for info in pkgutil.walk_packages(module_utils.__path__, module_utils.__name__ + "."):
        yield importlib.import_module(info.name)


def test_every_module_utils_exception_derives_from_the_root():
    found = {}
    for module in _modules():
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[module.__name__ + "." + name] = obj
    assert len(found) >= 12, sorted(found)
    assert [name for name, cls in found.items() if not issubclass(cls, MeshosError)] == []
