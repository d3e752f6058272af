"""Training: data → declared model → epochs scored on dev → the kept model with its card.

`loop` runs a training (`train`), `data` reads its corpora, `setup` builds the model and
optimizer, `epochs` runs and checks one epoch, `averaging` keeps the weight average, `checkpoint`
makes runs resumable, `cards` writes model cards and `export` makes the small shipped copies.
"""

from .epochs import run_epoch
from .loop import EpochReport, TrainResult, train
from .setup import PreparedRun, prepare_training

__all__ = ["EpochReport", "PreparedRun", "TrainResult", "prepare_training", "run_epoch", "train"]
