"""Faust apps the pipeline benchmark starts with the faust CLI."""
