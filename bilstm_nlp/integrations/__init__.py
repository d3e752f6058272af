"""Other libraries' entry points into bilstm-nlp: the spaCy pipeline components."""
