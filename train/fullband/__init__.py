"""Full-band training data: random songs composed as General MIDI (:mod:`.compose`),
rendered with FluidSynth and a mix bus (:mod:`.render`), kept in a bounded folder at the
model's rate (:mod:`.cache`), with a sung voice placed in them per example (:mod:`.mix`).
``python -m train --fullband-share P`` uses them; see docs/training.md."""
