"""Corpora: one reader per input format, loading through `datasets`, the corpus registry and
statistics.
"""
