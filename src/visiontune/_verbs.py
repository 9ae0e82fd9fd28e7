"""Packages that are also verbs: ``visiontune.audit``, ``visiontune.export`` and ``visiontune.bench``
are subpackages *and* the top-level verbs ``vt.audit(...)``, ``vt.export(...)``, ``vt.bench(...)``.
Importing a subpackage binds the module in ``visiontune``'s namespace, so the module itself is made
callable: calling it runs the verb in `visiontune.api`."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class VerbModule(types.ModuleType):
    """A module whose call is the verb of the same name in `visiontune.api`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        verb = self.__name__.rsplit(".", 1)[-1]
        return getattr(importlib.import_module("visiontune.api"), verb)(*args, **kwargs)


def make_verb(module_name: str) -> None:
    """Turn the (already imported) module ``module_name`` into a callable `VerbModule`."""
    sys.modules[module_name].__class__ = VerbModule
