"""The command-line layer: one module per command, each ``add_arguments(parser)`` and
``run(args) -> int`` over the library. No command imports another."""
