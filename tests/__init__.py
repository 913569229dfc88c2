"""The test suite; a package so that shared fakes import as `tests.fakes`."""
