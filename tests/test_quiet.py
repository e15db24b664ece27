"""Third-party chatter at import: kept in the debug log, the host's streams left as they were.

A made-up noisy package stands in for qwen_tts and sox: it prints a banner, logs a warning,
keeps a reference to sys.stderr (as transformers' logging handler does), prints from another
thread, and its dependency runs a shell that writes straight to file descriptor 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from structlog.testing import capture_logs

from qwen3tts_plugin.quiet import quiet_import

NOISY = """
import logging, sys, threading
print("BANNER from noisy")
logging.getLogger("noisy").warning("WARNED by noisy")
kept = sys.stderr
other = threading.Thread(target=lambda: print("ANOTHER THREAD", flush=True))
other.start()
other.join()
"""

NOISY_SHELL = "import os\nos.system('echo SHELL-SAYS >&2')\n"


@pytest.fixture
def noisy(tmp_path, monkeypatch):
    (tmp_path / "noisy_pkg.py").write_text(NOISY)
    (tmp_path / "noisy_shell.py").write_text(NOISY_SHELL)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("noisy_pkg", "noisy_shell"):
        sys.modules.pop(name, None)


def test_chatter_goes_to_the_debug_log_and_other_threads_are_untouched(noisy, capfd):
    streams = sys.stdout, sys.stderr
    with capture_logs() as logs:
        module = quiet_import("noisy_pkg", loggers=("noisy",), shell_modules=("noisy_shell",))
    out, err = capfd.readouterr()
    assert (sys.stdout, sys.stderr) == streams
    assert out == "ANOTHER THREAD\n"  # another thread's print is the host's business
    assert err == ""
    events = {(e["event"], e["source"]): e["text"] for e in logs}
    assert events[("tts.third_party.output", "import noisy_shell")] == "SHELL-SAYS"
    assert events[("tts.third_party.output", "import noisy_pkg")] == "BANNER from noisy"
    assert events[("tts.third_party.log", "import noisy_pkg")] == "WARNED by noisy"
    assert all(e["log_level"] == "debug" for e in logs)

    # A stream the module kept during the import writes to the real stderr afterwards, from
    # this thread and any other: nothing stays captured.
    module.kept.write("LATER\n")
    writer = threading.Thread(target=lambda: module.kept.write("FROM A THREAD\n"))
    writer.start()
    writer.join()
    module.kept.flush()
    assert capfd.readouterr().err == "LATER\nFROM A THREAD\n"


def test_a_failed_import_still_logs_what_it_printed_and_restores_the_streams(
    tmp_path, monkeypatch, capfd
):
    (tmp_path / "broken_pkg.py").write_text("print('about to fail')\nraise ImportError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    streams = sys.stdout, sys.stderr
    with capture_logs() as logs, pytest.raises(ImportError, match="nope"):
        quiet_import("broken_pkg")
    assert (sys.stdout, sys.stderr) == streams
    assert capfd.readouterr() == ("", "")
    assert [e["text"] for e in logs] == ["about to fail"]


CHATTER = ("flash-attn", "sox: not found", "SoX could not be found", "sox.sourceforge.net")
"""What ``import qwen_tts`` prints (and its ``sox`` dependency, without the SoX binary)."""


@pytest.mark.slow
def test_the_first_smoke_run_on_a_fresh_machine_prints_no_third_party_banner(tmp_path):
    """The very first ``python -m example_host smoke`` builds the tiny checkpoint (importing
    qwen_tts to do so) before the engine loads: neither step may print a banner."""
    cache = tmp_path / "cache"  # empty: the user cache folder of a machine never used
    env = {
        **{k: v for k, v in os.environ.items() if k != "QWEN3TTS_TINY_CACHE"},
        "HF_HUB_OFFLINE": "1",
        "XDG_CACHE_HOME": str(cache),
        "EXAMPLE_HOST_SETTINGS": str(tmp_path / "settings.json"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "example_host", "smoke", "--out", str(tmp_path / "smoke.wav")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    built = cache / "qwen3tts_plugin" / "tiny"
    assert f"using the tiny checkpoint {built}" in proc.stdout  # built here, not reused
    assert not [word for word in CHATTER if word in proc.stdout], proc.stdout
    assert not [word for word in CHATTER if word in proc.stderr], proc.stderr
