"""`python -m bilstm_nlp.cli` runs the command line (used by tests that start a process)."""

from . import main

main()
