"""Full-band training data: random songs composed as General MIDI (:mod:`.compose`),
rendered with FluidSynth and a mix bus (:mod:`.render`), kept in a bounded folder at the
model's rate (:mod:`.cache`), with a sung voice placed in them per example (:mod:`.mix`).
``python -m train --fullband-share P`` uses them; see docs/training.md."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from stream_sep.errors import UserError

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def check_requirements(soundfont: Path = SOUNDFONT) -> None:
    """UserError naming what is missing: the fluidsynth program, the SoundFont or
    pretty-midi. Imports nothing heavy, so a run checks before it loads its data."""
    if shutil.which("fluidsynth") is None:
        raise UserError(
            "full-band data needs the fluidsynth program (Debian: apt-get install fluidsynth)"
        )
    if not Path(soundfont).is_file():
        raise UserError(
            f"full-band data needs the General MIDI SoundFont {soundfont} "
            "(Debian: apt-get install fluid-soundfont-gm)"
        )
    if importlib.util.find_spec("pretty_midi") is None:
        raise UserError(
            "full-band data needs pretty-midi (pip install pretty-midi, or the train extra)"
        )
