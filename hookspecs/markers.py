"""Pluggy markers and the project name shared by hosts and engines."""

import pluggy

PROJECT = "autocut_tts"
"""Pluggy project name, and the entry-point group engines register under."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
