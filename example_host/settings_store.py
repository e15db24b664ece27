"""The editor's settings file: engine configs by id, each with its ``extra_params``.

Shape: ``{"configs": {"<id>": {"provider": str, "enabled": bool, "description": str,
"extra_params": {...}}}}``. The file is found at an explicit path, else ``$EXAMPLE_HOST_SETTINGS``,
else the per-user config folder. It is written atomically, created with a default config when
missing, and never overwritten when it cannot be read: a malformed file is the user's to fix.
Every change is a read-modify-write under a lock file beside it (``settings.json.lock``), so
the server and a CLI ``settings set`` running at once lose nothing.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

SETTINGS_ENV = "EXAMPLE_HOST_SETTINGS"
DEFAULT_CONFIG_ID = "qwen3_tts_default"
DEFAULT_PROVIDER = "qwen3_tts"
MAX_FILE_BYTES = 1024 * 1024
"""The most a settings file may hold: far above any real config, far below a flood."""
LOCK_TIMEOUT_S = 10.0


class SettingsFileError(Exception):
    """The settings file cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"settings file {path}: {problem}")
        self.path = path
        self.problem = problem


class UnknownConfigError(Exception):
    """No config with that id in the settings file."""

    def __init__(self, path: Path, config_id: str, known: list[str]) -> None:
        choices = ", ".join(known) or "none"
        super().__init__(f"settings file {path} has no config {config_id!r} (configs: {choices})")
        self.config_id = config_id


def default_path() -> Path:
    """``$EXAMPLE_HOST_SETTINGS``, else ``<user config dir>/example_host/settings.json``."""
    configured = os.environ.get(SETTINGS_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("example_host")) / "settings.json"


def default_settings() -> dict[str, Any]:
    """What a new settings file holds: one Qwen3-TTS config that detects its device."""
    return {
        "configs": {
            DEFAULT_CONFIG_ID: {
                "provider": DEFAULT_PROVIDER,
                "enabled": True,
                "description": "Qwen3-TTS, local (GPU when usable, else CPU)",
                "extra_params": {"Device": "auto"},
            }
        }
    }


class SettingsStore:
    """Reads and writes one settings file."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.lock = FileLock(self.path.with_name(self.path.name + ".lock"), timeout=LOCK_TIMEOUT_S)
        """Reentrant in one thread; threads and processes wait for each other."""

    def load(self) -> dict[str, Any]:
        """The file's content, checked for shape; a missing file is created with the default."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            with self.locked():
                if self.path.exists():  # another process made it meanwhile
                    return self.load()
                data = default_settings()
                self.save(data)
            return data
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsFileError(self.path, f"cannot be read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsFileError(
                self.path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        problem = shape_problem(data)
        if problem:
            raise SettingsFileError(self.path, problem)
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Write ``data`` atomically: a temp file in the same folder, then ``os.replace``."""
        problem = shape_problem(data)
        if problem:
            raise ValueError(f"refusing to save settings with the wrong shape: {problem}")
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        if len(text.encode("utf-8")) > MAX_FILE_BYTES:
            from hookspecs import TtsError

            raise TtsError(
                "invalid_settings",
                f"the settings would take {len(text.encode('utf-8')):,} bytes; the host keeps "
                f"at most {MAX_FILE_BYTES:,}",
                "Settings hold choices, not data: keep long texts and recordings out of them.",
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def config(self, config_id: str) -> dict[str, Any]:
        """One config (a copy) by id."""
        return copy.deepcopy(config_of(self.load(), config_id, self.path))

    def enabled_config(self, config_id: str) -> dict[str, Any]:
        """One config to speak with: ``config_disabled`` when it says ``"enabled": false``."""
        config = self.config(config_id)
        if config.get("enabled", True) is False:
            from hookspecs import TtsError

            raise TtsError(
                "config_disabled",
                f'config {config_id!r} is disabled ("enabled": false in {self.path})',
                f'Set "enabled": true for {config_id!r} in the settings file, or choose '
                "another config (--config / config_id).",
            )
        return config

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the settings file's lock (threads and processes alike)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout:
            raise SettingsFileError(
                self.path,
                f"another process has held its lock ({self.lock.lock_file}) for over "
                f"{LOCK_TIMEOUT_S:.0f} s",
            ) from None
        try:
            yield
        finally:
            self.lock.release()

    def update_extra_params(
        self,
        config_id: str,
        changes: dict[str, Any],
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` to a config's extra_params (None removes a key), save, return it;
        all under the lock, after ``check(config)`` judged them against the config as it is
        now (it raises to refuse; nothing is saved then)."""
        with self.locked():
            data = self.load()
            config = config_of(data, config_id, self.path)
            if check is not None:
                check(copy.deepcopy(config))
            params = config.setdefault("extra_params", {})
            for key, value in changes.items():
                if value is None:
                    params.pop(key, None)
                else:
                    params[key] = value
            self.save(data)
            return copy.deepcopy(config)


def config_of(data: dict[str, Any], config_id: str, path: Path) -> dict[str, Any]:
    """The config ``config_id`` inside loaded settings (not a copy)."""
    configs = data["configs"]
    if config_id not in configs:
        raise UnknownConfigError(path, config_id, sorted(configs))
    return configs[config_id]


def shape_problem(data: Any) -> str | None:
    """What is wrong with the shape of loaded settings, or None when it is right."""
    if not isinstance(data, dict) or not isinstance(data.get("configs"), dict):
        return 'expected an object with a "configs" object'
    for config_id, config in data["configs"].items():
        where = f"configs.{config_id}"
        if not isinstance(config, dict):
            return f"{where} must be an object"
        if not isinstance(config.get("provider"), str) or not config["provider"]:
            return f'{where} needs a "provider" string'
        if not isinstance(config.get("extra_params", {}), dict):
            return f"{where}.extra_params must be an object"
        if not isinstance(config.get("enabled", True), bool):
            return f"{where}.enabled must be true or false"
        if not isinstance(config.get("description", ""), str):
            return f"{where}.description must be a string"
    return None
