"""The one place a host gets a plugin manager with the specs and the installed engines."""

from __future__ import annotations

import os
import sys
import warnings

import pluggy

from . import specs
from .markers import PROJECT

PLUGINS_ENV = "AUTOCUT_TTS_PLUGINS"
"""Comma-separated entry-point names to load instead of every installed engine."""

TRACE_ENV = "AUTOCUT_TTS_TRACE_HOOKS"
"""Set to 1 to print every hook call and its result to stderr."""


def plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A ``PluginManager`` with the hook specs added and, by default, the engines loaded.

    Engines are found through the ``autocut_tts`` entry-point group. ``AUTOCUT_TTS_PLUGINS``
    limits loading to the named entry points (empty: none).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(specs)
    if load_entrypoints:
        only = os.environ.get(PLUGINS_ENV)
        if only is None:
            pm.load_setuptools_entrypoints(PROJECT)
        else:
            for name in filter(None, (part.strip() for part in only.split(","))):
                pm.load_setuptools_entrypoints(PROJECT, name=name)
    unknown_hooks(pm)
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def unknown_hooks(pm: pluggy.PluginManager) -> list[str]:
    """Hook implementations the contract has no spec for (a misspelt ``tts_synthesise``, a
    hook from a newer contract), each named and warned about (``UserWarning``): pluggy would
    otherwise never call them and say nothing. The engines stay loaded; the host goes on."""
    found = []
    for name, caller in vars(pm.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                found.append(f"{impl.plugin_name} implements {name!r}, which the contract lacks")
    for problem in found:
        warnings.warn(f"{PROJECT}: {problem}; it will never be called", stacklevel=3)
    return found
