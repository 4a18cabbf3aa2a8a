"""The example streamproc application: a small shop pipeline."""
