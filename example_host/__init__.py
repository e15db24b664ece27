"""A stand-in for the video editor, showing a host how to use TTS engines.

It finds engines only through ``hookspecs.plugin_manager()`` (the ``autocut_tts`` entry points)
and talks to them only through ``tts_capabilities``, ``tts_load`` and ``tts_synthesize``.
Modules: ``settings_store`` (the settings file), ``engines`` (finding engines, schema checks),
``scripts`` (text and .srt parsing), ``dubbing`` (manifest and resume), ``render`` (tables),
``logs`` (structlog setup), ``commands`` and ``cli`` (the command line), ``http`` (FastAPI).
"""
