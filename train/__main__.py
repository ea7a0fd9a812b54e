"""``python -m train``: see :mod:`train.cli`. TensorFlow is imported only after the
command line is parsed, so ``--help`` and bad options answer at once."""

from train.cli import main

raise SystemExit(main())
