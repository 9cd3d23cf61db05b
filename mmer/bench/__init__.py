"""Benchmarks behind ``mmer bench NAME --json``.

Each module here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> dict``.
The dict is printed as the last stdout line. Targets live here, never in timed unit tests.
"""
