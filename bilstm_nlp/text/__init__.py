"""Text: spaCy tokenization with character offsets, and the tag schemes (IOB1, IOB2, BIOES)."""
