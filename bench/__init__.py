"""streamproc benchmarks: ``make bench`` (``python -m bench``)."""
