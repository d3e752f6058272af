"""Run the bilstm-nlp command line from a checkout: `python cli.py --help`."""

from bilstm_nlp.cli import main

if __name__ == "__main__":
    main()
