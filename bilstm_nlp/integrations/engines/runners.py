"""Engines that run part tasks: Ray, Spark and Dask, on a local instance or an existing cluster.

Sits on `parts`: each runner takes the tasks still to do and runs `parts.run_part` on each, one
task per part, with the engine's own retries (a worker that dies has its task run again; the part
file is written once whatever happens). A runner started without `address` starts a local
instance of `workers` single-threaded worker processes and stops it at the end; with `address` it
joins that cluster and leaves it running. Each engine is an optional extra; a missing one is one
`ConfigError` naming the extra to install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ...errors import BilstmNlpError, ConfigError
from .parts import PartResult, PartTask, run_part

ENGINES = ("local", "ray", "spark", "dask")
# Runs of a task before the job fails: a worker lost mid-task is not the task's fault.
TASK_ATTEMPTS = 4
_DEFAULT_PORTS = {"ray": 10001, "spark": 7077, "dask": 8786}


def quiet_engine_logs() -> None:
    """The engines' own INFO chatter (cluster start and stop) off stderr; warnings stay."""
    for name in ("distributed", "py4j", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # pyspark warns that it does not yet support pandas 3; part tasks never use pandas.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


def runner_for(engine: str, address: str | None, workers: int) -> Runner:
    """The runner of `engine` (`ray`, `spark` or `dask`).

    Raises:
        ConfigError: an unknown engine, its extra not installed, or `address` not reachable.
    """
    runners: dict[str, Callable[[str | None, int], Runner]] = {
        "ray": RayRunner,
        "spark": SparkRunner,
        "dask": DaskRunner,
    }
    if engine not in runners:
        raise ConfigError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    _check_installed(engine)
    if engine == "spark":
        _check_java()
    quiet_engine_logs()
    if address is not None:
        check_reachable(engine, address)
    return runners[engine](address, workers)


def _check_java() -> None:
    """Spark's driver runs in a JVM this process starts (unless a session runs already): without
    Java, pyspark fails late with a gateway error that names no cause.

    Raises:
        ConfigError: no java where pyspark looks for it (`$JAVA_HOME/bin/java`, else PATH).
    """
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        return
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        if (Path(java_home) / "bin" / "java").is_file():
            return
        where = f"JAVA_HOME ({java_home}) has no bin/java"
    elif shutil.which("java"):
        return
    else:
        where = "no java on PATH and JAVA_HOME is not set"
    raise ConfigError(
        f"--engine spark needs Java 17 ({where}): install it (Debian: apt-get install "
        "openjdk-17-jre-headless) and put java on PATH or set JAVA_HOME"
    )


class Runner:
    """Runs part tasks on an engine; a context manager that owns what it started.

    Args:
        address: a cluster to join; None starts a local instance.
        workers: processes of a local instance.
        task: what runs each part, `run_part`; tests inject faults with a function (in an
            importable module, so workers can unpickle it) that ends by calling `run_part`.
    """

    name = ""

    def __init__(
        self,
        address: str | None,
        workers: int,
        task: Callable[[PartTask], PartResult] = run_part,
    ) -> None:
        # `task` is what each part runs: `run_part`, or a wrapper of it (tests inject faults).
        self.address = address
        self.workers = workers
        self.task = task

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, tasks: list[PartTask]) -> list[PartResult]:
        raise NotImplementedError


class RayRunner(Runner):
    """Ray tasks (`ray.remote`, `max_retries`): a local instance (`ray.init(num_cpus=workers)`)
    or a cluster (`ray://host:10001`, `host:6379`, `auto`)."""

    name = "ray"

    def __enter__(self) -> RayRunner:
        import ray

        self._started = not ray.is_initialized()
        if self._started:
            with _engine_errors("ray", self.address):
                ray.init(
                    address=self.address,
                    num_cpus=None if self.address else self.workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    runtime_env={"env_vars": _worker_env()} if not self.address else None,
                )
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._started:
            ray.shutdown()

    def __call__(self, tasks: list[PartTask]) -> list[PartResult]:
        import ray

        remote = ray.remote(num_cpus=1, max_retries=TASK_ATTEMPTS - 1)(self.task)
        with _engine_errors("ray", self.address):
            return ray.get([remote.remote(task) for task in tasks])


class SparkRunner(Runner):
    """Spark tasks over an RDD of part tasks, one partition per part: `local[workers, attempts]`
    (plain `local[N]` never retries a failed task) or a cluster master (`spark://host:7077`)."""

    name = "spark"

    def __enter__(self) -> SparkRunner:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        if self.address is None:
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local instance stays local
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        # A session this process already runs (a notebook's, a test's) is used and left running.
        self._started = SparkContext._active_spark_context is None
        master = self.address or f"local[{self.workers},{TASK_ATTEMPTS}]"
        builder = (
            SparkSession.builder.master(master)
            .appName("bilstm-nlp annotate")
            .config("spark.task.maxFailures", str(TASK_ATTEMPTS))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.python.worker.reuse", "true")
            .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        )
        with _engine_errors("spark", self.address):
            self._session = builder.getOrCreate()
            self._session.sparkContext.setLogLevel("ERROR")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._session.stop()

    def __call__(self, tasks: list[PartTask]) -> list[PartResult]:
        context = self._session.sparkContext
        with _engine_errors("spark", self.address):
            return context.parallelize(tasks, max(len(tasks), 1)).map(self.task).collect()


class DaskRunner(Runner):
    """Dask futures (`client.map(..., retries=)`): a `LocalCluster` of `workers` processes of one
    thread each, or a scheduler (`tcp://host:8786`)."""

    name = "dask"

    def __enter__(self) -> DaskRunner:
        from distributed import Client, LocalCluster

        self._cluster = None
        with _engine_errors("dask", self.address):
            if self.address is None:
                self._cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=40,
                )
                self._client = Client(self._cluster)
            else:
                self._client = Client(self.address, timeout="10s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __call__(self, tasks: list[PartTask]) -> list[PartResult]:
        with _engine_errors("dask", self.address):
            futures = self._client.map(self.task, tasks, retries=TASK_ATTEMPTS - 1, pure=False)
            return self._client.gather(futures)


def check_reachable(engine: str, address: str, timeout: float = 5.0) -> None:
    """Refuse a cluster address nobody answers at, in seconds rather than an engine's minutes.

    Raises:
        ConfigError: the address cannot be parsed or does not accept a connection.
    """
    if engine == "ray" and address == "auto":
        return  # Ray finds the local cluster's address itself
    parsed = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port or _DEFAULT_PORTS[engine]
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"--address {address!r} is not host:port or a {engine} URL")
    if engine == "spark" and parsed.scheme in ("local", "yarn", "k8s"):
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise ConfigError(
            f"no {engine} cluster answers at {address} ({error.strerror or error}); "
            "start one or leave out --address to run a local instance"
        ) from None


def _check_installed(engine: str) -> None:
    module = {"ray": "ray", "spark": "pyspark", "dask": "distributed"}[engine]
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(
            f"--engine {engine} needs {module}: pip install 'bilstm-nlp[{engine}]'"
        ) from None


@contextlib.contextmanager
def _engine_errors(engine: str, address: str | None) -> Iterator[None]:
    """An engine's failure as one error that says which engine and what failed; our own errors
    (raised in a task, carried back by the engine) keep their message."""
    try:
        yield
    except BilstmNlpError:
        raise
    except Exception as error:
        cause = _our_error(error)
        if cause is not None:
            raise cause from None
        where = f" at {address}" if address else ""
        message = str(error).strip().splitlines()
        raise BilstmNlpError(
            f"the {engine} job{where} failed: {message[-1] if message else type(error).__name__};"
            " rerun the same command to finish the missing parts"
        ) from error


def _our_error(error: BaseException) -> BilstmNlpError | None:
    """A `BilstmNlpError` raised in a task, as the engine wrapped it (Ray keeps it as the cause
    and a subclass; Spark only as text)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, BilstmNlpError):
            return seen
        seen = seen.__cause__
    return None


def _worker_env() -> dict[str, str]:
    # Local Ray workers start from the driver's interpreter; the package may be on its path only.
    path = os.pathsep.join(p for p in sys.path if p)
    return {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
