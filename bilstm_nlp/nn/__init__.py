"""The network: vocabularies, batches, embeddings, the BiLSTM encoder, the CRF, heads and the
models.
"""
