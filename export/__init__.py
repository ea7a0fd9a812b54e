"""A trained checkpoint becomes an ONNX separation model the host can run, proven on export.

Only the *core network* (spectrogram in, spectrogram per source out) is converted: tf2onnx
cannot convert Keras' STFT/iSTFT, and the host does those in numpy anyway
(:mod:`stream_sep.dsp.spectral`). One module per stage, each a set of functions a test can call:

1. :mod:`export.checkpoint` picks the files (:func:`~export.checkpoint.resolve_checkpoint`,
   :func:`~export.checkpoint.default_output`) and reads the model's configuration and host
   contract; :mod:`export.provenance` says where the weights came from;
2. :mod:`export.convert` runs tf2onnx on the core network, with the passes of
   :mod:`export.graph_passes` (contract names, a dynamic batch axis, adjacent-axis means,
   the op check, the metadata);
3. :mod:`export.fp16` (``--fp16``) stores float16 weights behind float32 inputs/outputs;
4. :mod:`export.parity` loads the written file with the host's own loader, runs it on a
   test chunk and compares the waveforms with Keras' against its tolerance table;
5. :mod:`export.pipeline` composes them, writing to a hidden file beside the output that is
   moved into place only after the parity check passed, so a failed export leaves nothing
   behind (and keeps an older file intact).

``export/to_onnx.py`` is the command line. Imports go one way: ``to_onnx -> pipeline ->
{checkpoint, provenance, convert, fp16, parity}``, ``provenance -> checkpoint``,
``{convert, fp16} -> graph_passes``, and every stage ``-> errors``. TensorFlow, Keras,
tf2onnx and ``train`` are imported inside the functions that need them, so ``--help`` and
argument errors are immediate.
"""
