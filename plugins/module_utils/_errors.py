# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception root of the collection's module_utils (standard library only, Python 3.9+).

Every error a module_utils raises for the user derives from ``MeshosError`` so a module can map all of them in one
``except``; ``str(exc)`` is one line (whitespace folded) naming the bad value and what is allowed.
"""

from __future__ import annotations


def one_line(msg: object) -> str:
    """Fold any whitespace (newlines from a command's stderr) so the message stays one line."""
    return " ".join(str(msg).split())


class MeshosError(Exception):
    """Root of every meshos.release module_utils error."""
