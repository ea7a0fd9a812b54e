"""The model's speed over the last live starts, so one run's plan agrees with the next's.

Every fitted live start times a few windows (:func:`stream_sep.engine.fitting.measure`). On
a shared machine one such measurement can differ from the next by a third: a run refused
``--latency 0.5`` with "at least 1.164 s", and the next, with ``--latency auto``, chose
0.864 s. So each start's measurement is kept (per model file, provider, stream, window
options and CPU) and the plan is chosen from the median of the last :data:`KEPT` starts'
90th percentiles, this one's included (:func:`fitting.typical`). The lowest latency a refusal
names is then what ``auto`` would choose next time too, and asking for it runs.

The file is ``$XDG_CACHE_HOME/stream-sep/speed-history.json`` (JSON, written whole or not
at all); a missing, unreadable or foreign file is an empty history, never an error.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from stream_sep import atomic
from stream_sep.engine.fitting import SpeedProfile
from stream_sep.models import providers

log = logging.getLogger(__name__)

FILE_NAME = "speed-history.json"
KEPT = 5  # starts per key: enough for a median that one outlier does not move
MAX_AGE_DAYS = 30  # older measurements describe another machine state: dropped
MAX_KEYS = 50


def history_path() -> Path:
    return providers.cache_dir() / FILE_NAME


def key_of(model, rate: int, channels: int, window_options: dict) -> str:
    """What makes two measurements comparable: the model file (path, size, mtime), the
    provider, the stream's rate and channels, the window's options and the CPU."""
    path = Path(model.path)
    try:
        stat = path.stat()
        identity = f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"
    except OSError:
        identity = str(path)
    options = json.dumps(window_options, sort_keys=True, default=str)
    parts = (identity, model.provider, rate, channels, options, providers.cpu_description())
    return "|".join(str(part) for part in parts)


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _profile(entry) -> SpeedProfile | None:
    try:
        return SpeedProfile(tuple(map(float, entry["batch"])), tuple(map(float, entry["mid"])))
    except (KeyError, TypeError, ValueError):
        return None


def recent(key: str, now: float | None = None) -> list[SpeedProfile]:
    """The kept measurements for ``key``, oldest first (those within :data:`MAX_AGE_DAYS`)."""
    now = time.time() if now is None else now
    entries = _read(history_path()).get(key, [])
    if not isinstance(entries, list):
        return []
    fresh = [
        e for e in entries if isinstance(e, dict) and now - e.get("time", 0) < MAX_AGE_DAYS * 86400
    ]
    return [p for p in map(_profile, fresh) if p is not None]


def remember(key: str, profile: SpeedProfile, now: float | None = None) -> None:
    """Keep ``profile`` as the newest of ``key``'s last :data:`KEPT` measurements. A cache
    that cannot be written is logged, not raised: the run goes on without it."""
    now = time.time() if now is None else now
    path = history_path()
    data = _read(path)
    entries = data.get(key) if isinstance(data.get(key), list) else []
    entries = [*entries, {"time": now, "batch": list(profile.batch), "mid": list(profile.mid)}]
    data.pop(key, None)
    data[key] = entries[-KEPT:]  # insertion order: the least recently used keys come first
    for stale in list(data)[: max(0, len(data) - MAX_KEYS)]:
        del data[stale]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(data))
    except OSError as error:
        log.info("speed history not kept (%s): %s", path, error)
