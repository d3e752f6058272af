"""Windows → encoded records, in this process or in a pool of worker processes, in input order.

Sits between the jobs (windows of documents) and the output. A `WindowEncoder` annotates a
window block by block and encodes its records with the writer. With more than one worker, a
`WorkerPool` owned by the run starts spawned processes (one torch thread each by default) that
each load the model once and encode about 2 windows per worker in flight; results come back in
input order, so the bytes do not depend on the number of workers. Workers die with the process
that started them (Linux's parent-death signal, else a watchdog thread), even when it is killed
with SIGKILL; a worker that dies on its own is one `BilstmNlpError` that says how to finish.

A worker hands its result over in a file of the run's private folder and sends only the file's
name through the pool's pipe: a message that small is written to the pipe at once, so a worker
killed while sending cannot leave half a message that the pool would wait on for ever. A folder
that a killed run left is removed by the next run with workers.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import os
import pickle
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

from ..corpus.readers.documents import Piece
from ..decode import is_onnx
from ..errors import BilstmNlpError
from ..serialize import save_model
from .annotator import Annotator
from .jobs import Window
from .writers import make_writer

if TYPE_CHECKING:
    from ..nn.model import Classifier, Tagger

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_RESULTS_PREFIX = "bilstm-nlp-results-"
_OWNER_FILE = "owner.lock"
# A run locks its owner file microseconds after it makes the folder: a folder without one that is
# older than this was left by a version before owner files.
_UNOWNED_GRACE_S = 60.0
# Seconds between the looks a waiting run takes for Ctrl-C or SIGTERM.
_SIGNAL_LATENCY = 0.2


class WindowEncoder:
    """Texts → encoded records, with one model and writer (in this process or a worker).

    Args:
        model: a loaded tagger or classifier.
        fmt: the output format.
        batch_size: sentences per model batch.
        k_best: k best tag sequences per sentence (taggers; 0: none).
        scheme: the scheme to write tags in (see `Annotator`); None: the training file's.
    """

    def __init__(
        self,
        model: Tagger | Classifier,
        fmt: str,
        batch_size: int,
        k_best: int,
        scheme: str | None = None,
    ) -> None:
        self.annotator = Annotator(model, batch_size=batch_size, k_best=k_best, scheme=scheme)
        self.writer = make_writer(fmt, model.meta.task)
        # The model, its vocabularies and the tokenizer live as long as the run: frozen, the
        # garbage collector stops rescanning their objects (about 15% of annotation time).
        gc.freeze()

    def __call__(
        self, texts: list[str], ids: list[Any], blocks: list[int], piece: Piece | None = None
    ) -> tuple[list[Any], int]:
        """`(encoded, tokens)`: a piece's record (for the writer's stream), or each block's
        records encoded, and the number of tokens."""
        if piece is not None:
            [record] = self.annotator.records(texts, ids)
            return [record], len(record["tokens"])
        encoded: list[bytes] = []
        tokens = start = 0
        for size in blocks:
            # Each block on its own: which sentences share a batch (and so every float the model
            # sums) depends on the block alone.
            records = self.annotator.records(texts[start : start + size], ids[start : start + size])
            encoded.extend(self.writer.encode(record) for record in records)
            tokens += sum(len(record["tokens"]) for record in records)
            start += size
        assert start == len(texts)
        return encoded, tokens


def encode_windows(
    windows: Iterable[Window],
    model: Tagger | Classifier,
    fmt: str,
    batch_size: int,
    k_best: int,
    workers: int,
    threads: int,
    scheme: str | None = None,
) -> Iterator[tuple[Window, list[Any], int]]:
    """Windows → `(window, encoded records, tokens)`, in input order.

    Args:
        windows: the run's windows.
        model: a loaded tagger or classifier.
        fmt: the output format.
        batch_size: sentences per model batch.
        k_best: k best tag sequences per sentence.
        workers: processes (1: this process, with the caller's torch threads).
        threads: model threads (torch, or an ONNX session's intra-op threads) per worker process.
        scheme: the scheme to write tags in (see `Annotator`); None: the training file's.
    Raises:
        BilstmNlpError: a worker process died.
    """
    if workers == 1:
        encoder = WindowEncoder(model, fmt, batch_size, k_best, scheme)
        for window in windows:
            yield (window, *encoder(window.texts, window.ids, window.blocks, window.piece))
        return
    with WorkerPool(model, fmt, batch_size, k_best, workers, threads, scheme) as pool:
        yield from pool.map(windows)


class WorkerPool:
    """Spawned worker processes that encode windows; a context manager owned by one run.

    Leaving it (a failed write, Ctrl-C, SIGTERM, or the end) drops the windows not yet started,
    waits for those in progress and stops the workers.

    Args:
        model: the model (an in-memory one is saved to a temporary folder for the workers).
        fmt: the output format.
        batch_size: sentences per model batch.
        k_best: k best tag sequences per sentence.
        workers: processes.
        threads: model threads (torch, or an ONNX session's intra-op threads) per process.
        scheme: the scheme to write tags in (see `Annotator`); None: the training file's.
    """

    def __init__(
        self,
        model: Tagger | Classifier,
        fmt: str,
        batch_size: int,
        k_best: int,
        workers: int,
        threads: int,
        scheme: str | None = None,
    ) -> None:
        self.model = model
        self.workers = workers
        self.initargs = (fmt, batch_size, k_best, scheme, threads, os.getpid())
        self.stack = contextlib.ExitStack()
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        with self.stack as stack:
            model_dir = self.model.meta.source
            if model_dir is None:  # an in-memory model: workers load a saved copy
                model_dir = stack.enter_context(tempfile.TemporaryDirectory())
                if is_onnx(self.model):
                    self.model.save(model_dir)
                else:
                    save_model(self.model, model_dir)
            results_dir = _results_folder(stack)
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(model_dir), results_dir, *self.initargs),
            )
            # Windows not yet started are dropped, so a failed write, Ctrl-C or SIGTERM waits for
            # the windows in progress only; a second Ctrl-C meanwhile stops their workers.
            stack.callback(_shut_down, self.pool)
            self.stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def map(self, windows: Iterable[Window]) -> Iterator[tuple[Window, list[Any], int]]:
        """`(window, encoded records, tokens)` in input order, about 2 windows per worker ahead.

        Raises:
            BilstmNlpError: a worker died (killed from outside, or for lack of memory).
        """
        assert self.pool is not None, "use the pool in a with block"
        pending: deque[tuple[Window, Future]] = deque()
        # A worker that died breaks the pool: submitting or collecting then raises
        # BrokenProcessPool.
        try:
            for window in windows:
                if window.texts:
                    with signals_held():
                        future = self.pool.submit(
                            _encode_in_worker, window.texts, window.ids, window.blocks, window.piece
                        )
                    window.texts = []  # the worker has them; keep memory flat
                else:
                    future = Future()
                    future.set_result(None)
                pending.append((window, future))
                if len(pending) > 2 * self.workers:
                    yield self._collect(*pending.popleft())
            while pending:
                yield self._collect(*pending.popleft())
        except BrokenProcessPool:
            raise BilstmNlpError(
                "a worker process died before it finished (killed from outside, or by the "
                "system for lack of memory); what was written is kept: rerun with --resume, "
                "with fewer --workers if memory is short"
            ) from None

    @staticmethod
    def _collect(window: Window, future: Future) -> tuple[Window, list[Any], int]:
        path = _result(future)
        return (window, *_read_result(path)) if path is not None else (window, [], 0)


def _result(future: Future) -> Any:
    """The future's result, waited for in short turns so that Ctrl-C or SIGTERM stops the wait
    within a fraction of a second, but never inside the future's lock."""
    while True:
        with signals_held():
            try:
                return future.result(timeout=_SIGNAL_LATENCY)
            except FuturesTimeout:
                pass


def _shut_down(pool: ProcessPoolExecutor) -> None:
    # Ctrl-C or SIGTERM while the windows in progress finish (after a first one, or a failed
    # write) stops their workers at once: nothing of those windows is written yet, and
    # --resume encodes them again.
    with signals_held(on_arrival=lambda: _kill_workers(pool)):
        pool.shutdown(wait=True, cancel_futures=True)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL to the pool's processes: the executor then finds them dead, fails their
    futures and ends, so its shutdown returns. (SIGTERM would wait for a stopped process.)"""
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):  # one step under the GIL: no change halfway
        with contextlib.suppress(OSError, ValueError):  # gone already, or closed
            process.kill()


@contextlib.contextmanager
def signals_held(
    signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
    on_arrival: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Ctrl-C or SIGTERM that arrive in the block are handled as it ends, as if they came then.

    Python runs a signal's handler between two steps of the main thread, which can be the first
    step of a lock's `with` exit. A handler that raises there (KeyboardInterrupt, the CLI's
    SIGTERM) leaves the lock held for ever: inside the executor, its manager thread then waits on
    that lock, and the run's exit waits on the manager thread. Only the main thread runs
    handlers; elsewhere the block runs as it is.

    Args:
        signums: the signals held.
        on_arrival: called as each one arrives, inside the block: what may run there without
            a lock, such as stopping what the block waits for.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: object) -> None:
        arrived.append(signum)
        if on_arrival is not None:
            on_arrival()

    # A handler set outside Python (None) cannot be put back, so such a signal is not held.
    previous = {s: h for s in signums if (h := signal.getsignal(s)) is not None}
    for signum in previous:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(arrived):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)  # raises here, outside the block, as it would have there
            else:
                signal.raise_signal(signum)  # SIG_DFL ends the process; SIG_IGN does nothing


def _results_folder(stack: contextlib.ExitStack) -> str:
    """A new results folder in TMPDIR, private to this user (mkdtemp's 0700) and owned by this
    run until `stack` closes; then it is removed with whatever killed workers left in it.

    A run locks the folder's owner file (an `flock`, which dies with its process) for as long as
    it lives, so a later run tells a folder that a killed run left (kill -9 runs no cleanup) from
    one in use, even from another PID namespace sharing TMPDIR; it removes the first kind.
    """
    _remove_abandoned_results()
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix=_RESULTS_PREFIX))
    # Locked under another name, then renamed: an owner file is never seen unlocked.
    claiming = os.path.join(folder, _OWNER_FILE + ".new")
    descriptor = os.open(claiming, os.O_RDWR | os.O_CREAT, 0o600)
    stack.callback(os.close, descriptor)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.rename(claiming, os.path.join(folder, _OWNER_FILE))
    return folder


def _remove_abandoned_results() -> None:
    """Remove this user's results folders whose runs were killed: their owner file is unlocked
    (or missing, in a folder older than `_UNOWNED_GRACE_S`, from before owner files)."""
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_RESULTS_PREFIX):
            continue
        try:
            status = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
            continue
        try:
            descriptor = os.open(os.path.join(entry.path, _OWNER_FILE), os.O_RDONLY)
        except FileNotFoundError:
            if time.time() - status.st_mtime > _UNOWNED_GRACE_S:
                shutil.rmtree(entry.path, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its run is alive
        else:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(descriptor)


# Set in each spawned worker process by the pool's initializer (never in the process that runs
# the pool): the worker's encoder, built once, used by every task it runs, and the folder its
# results go to.
_process_encoder: list[WindowEncoder] = []
_process_results: list[str] = []


def _init_worker(
    model_dir: str,
    results_dir: str,
    fmt: str,
    batch_size: int,
    k_best: int,
    scheme: str | None,
    threads: int,
    parent: int,
) -> None:
    from ..serialize import load_model

    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group; the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    model = load_model(model_dir, threads=threads)
    if not is_onnx(model):
        import torch

        torch.set_num_threads(threads)
    _process_encoder.append(WindowEncoder(model, fmt, batch_size, k_best, scheme))
    _process_results.append(results_dir)


def _encode_in_worker(
    texts: list[str], ids: list[Any], blocks: list[int], piece: Piece | None
) -> str:
    """A window's `(encoded, tokens)`, written to a file of the results folder: its path."""
    result = _process_encoder[0](texts, ids, blocks, piece)
    folder = _process_results[0]
    try:
        handle, path = tempfile.mkstemp(suffix=".pickle", dir=folder)
        with open(handle, "wb") as file:
            pickle.dump(result, file, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as error:
        raise BilstmNlpError(
            f"a worker cannot hand its results over through {folder}: {error.strerror}; "
            "point TMPDIR at a folder with room (what was written is kept: rerun with --resume)"
        ) from None
    return path


def _read_result(path: str) -> tuple[list[Any], int]:
    """The result a worker of this run wrote into its private folder; the file is removed."""
    with open(path, "rb") as file:
        result = pickle.load(file)
    os.unlink(path)
    return result


def _die_with_parent(parent: int) -> None:
    """End this worker when the process that started it dies, even by kill -9: the kernel's
    parent-death signal on Linux, else a thread that watches the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the signal was set
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
