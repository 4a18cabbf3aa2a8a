"""Faust apps that tests start with the faust CLI."""
