"""Benchmarks: ``make bench``. They print ratios against a reference; they assert nothing."""
