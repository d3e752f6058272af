"""Scoring against gold data: seqeval entity P/R/F1, token accuracy, sentence accuracy and
macro-F1.
"""
