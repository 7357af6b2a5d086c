"""Building blocks of ``benchmarks/quality.py`` (data, training, candidates, report)."""
