"""Testbed builder and qualification suites."""
