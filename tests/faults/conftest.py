"""Fixtures of the fault-injection suite: the sandbox tests' config, store and compiled matching."""

from sandbox.conftest import sb_cfg, sb_compiled, sb_store  # noqa: F401 - shared with tests/sandbox
