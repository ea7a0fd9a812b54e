"""The test suite, a package: its fixtures (tests.helpers, tests.jack_harness, ...) are
imported by package name, here and in benchmarks/."""
