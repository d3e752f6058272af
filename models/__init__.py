"""Shipped model directories, inside the wheel as `bilstm_nlp.models`."""
