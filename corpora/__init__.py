"""Corpus registry and tiny sample files, shipped inside the wheel as `bilstm_nlp.corpora`."""
