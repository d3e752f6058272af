"""The annotation core: documents in, records out (tokenized text, tags, spans, probabilities),
written by the writers.
"""
