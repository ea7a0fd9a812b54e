"""``python -m train``: see :mod:`train.cli`."""

from train.quiet import quiet_tensorflow

quiet_tensorflow()

from train.cli import main  # noqa: E402

raise SystemExit(main())
