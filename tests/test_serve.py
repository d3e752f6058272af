"""`bilstm-nlp serve` against a real uvicorn server on 127.0.0.1 (a subprocess), real clients
and a real headless Chromium: records equal `tag -f jsonl`, concurrent clients share batches
and get what they would alone, bad input gets a 4xx with a JSON body, SIGTERM drains."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bilstm_nlp.annotation.annotator import Annotator
from bilstm_nlp.cli import app
from bilstm_nlp.serialize import load_model

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "EU rejects German call to boycott British lamb. Peter Blackburn reported from Brussels.",
    "Germany's representative to the European Union's veterinary committee Werner Zwingmann "
    "said on Wednesday consumers should buy sheepmeat from countries other than Britain.",
    "",
    "Ünïcödé Café in São Paulo hired José Álvarez.",
]


JSON_BODY = {"Content-Type": "application/json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*options: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bilstm_nlp.cli", "serve", "--port", str(port), *options],
        cwd=REPO_ROOT,
        env=None if env is None else {**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode())
        try:
            if _request(port, "GET", "/readyz", timeout=2)[0] == 200:
                return process, port
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the server did not get ready in 90 s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if method == "POST" and headers is None:
        headers = JSON_BODY
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _post(port: int, path: str, value: object) -> tuple[int, dict]:
    status, _, raw = _request(port, "POST", path, json.dumps(value).encode())
    return status, json.loads(raw)


@pytest.fixture(scope="module")
def server():
    process, port = _start(
        *("-m", "ner", "-m", "pos", "-m", "chunk", "-m", "sentiment"),
        *("--max-wait-ms", "30", "--max-body-bytes", "20000", "--max-texts", "8"),
        *("--max-chars", "2000"),
    )
    yield port
    _stop(process)


def _cli_records(model: str, texts: list[str], k: int = 0, *options: str) -> list[dict]:
    result = CliRunner().invoke(
        app, ["tag", "-f", "jsonl", "-m", model, "-k", str(k), "--threads", "1", *options, *texts]
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize(("model", "k"), [("ner", 0), ("ner", 3), ("chunk", 0), ("sentiment", 0)])
def test_records_equal_tag_jsonl(server, model, k):
    status, body = _post(server, "/v1/annotate", {"texts": TEXTS, "model": model, "k": k})
    assert status == 200
    # Whole records, compared exactly: every offset, tag, span and 4-decimal probability.
    assert body["records"] == _cli_records(model, TEXTS, k)


def test_tags_in_the_scheme_asked_for_equal_tag_jsonl(server):
    for scheme in ("IOB2", "bilou"):
        request = {"texts": TEXTS, "model": "ner", "k": 2, "scheme": scheme}
        status, body = _post(server, "/v1/annotate", request)
        assert status == 200
        assert body["records"] == _cli_records("ner", TEXTS, 2, "--scheme", scheme)
    sentence = {"sentences": [["EU", "rejects", "German", "call"]], "scheme": "BIOES"}
    status, body = _post(server, "/v1/tag", sentence)
    assert status == 200
    assert [t["tag"] for t in body["records"][0]["tokens"]] == ["S-ORG", "O", "S-MISC", "O"]


def test_single_text_and_pos_and_tag_endpoint(server):
    status, body = _post(server, "/v1/annotate", {"text": TEXTS[0], "model": "pos"})
    assert status == 200 and body["records"] == _cli_records("pos", TEXTS[:1])
    status, body = _post(server, "/v1/tag", {"sentences": [["EU", "rejects", "German", "call"]]})
    assert status == 200
    [record] = body["records"]
    assert [t["tag"] for t in record["tokens"]][:3] == ["I-ORG", "O", "I-MISC"]
    assert [(s["label"], s["text"]) for s in record["spans"]] == [("ORG", "EU"), ("MISC", "German")]


def test_models_health_and_docs(server):
    status, _, raw = _request(server, "GET", "/v1/models")
    models = {m["name"]: m for m in json.loads(raw)["models"]}
    assert status == 200 and set(models) == {"ner", "pos", "chunk", "sentiment"}
    assert models["ner"]["labels"] == ["LOC", "MISC", "ORG", "PER"]
    assert models["ner"]["dev"] > 90 and models["sentiment"]["kind"] == "classifier"
    assert _request(server, "GET", "/healthz")[0] == 200
    assert _request(server, "GET", "/docs")[0] == 200
    schema = json.loads(_request(server, "GET", "/openapi.json")[2])
    assert "/v1/annotate" in schema["paths"] and "/v1/tag" in schema["paths"]


def test_api_docs_load_nothing_from_other_sites(server):
    # FastAPI's own /docs and /redoc load their scripts from a CDN: blank pages offline.
    for page in ("/docs", "/redoc"):
        status, _, raw = _request(server, "GET", page)
        assert status == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)""", raw.decode())
        assert len(urls) >= 2 and all(url.startswith("/") for url in urls), urls
        for url in urls:
            assert _request(server, "GET", url)[0] == 200, url


def test_api_docs_render_offline_in_a_real_browser(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _browser() as driver:
        driver.get(f"http://127.0.0.1:{server}/docs")
        paths = WebDriverWait(driver, 30).until(
            lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
        )
        assert {"/v1/annotate", "/v1/tag", "/v1/models"} <= set(paths)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
        "application/jsonp",
    ],
)
def test_a_body_not_declared_json_gets_415(server, content_type):
    # Any web page may post a form or plain text to this address without a CORS preflight,
    # from the browser of a user who runs the service; JSON it may not.
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _, raw = _request(server, "POST", "/v1/annotate", b'{"text": "EU"}', headers)
    assert status == 415, raw
    error = json.loads(raw)
    assert error["field"] == "content-type" and "application/json" in error["error"]
    assert (content_type or "none") in error["error"]


def test_json_declared_with_a_charset_or_in_capitals_is_read(server):
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        body = b'{"sentences": [["EU"]]}'
        status, _, raw = _request(server, "POST", "/v1/tag", body, {"Content-Type": content_type})
        assert status == 200, raw


def test_a_host_header_naming_another_site_gets_400(server):
    # DNS rebinding: a page on evil.example, whose name now resolves to 127.0.0.1, reaches the
    # service as its own origin; its requests still say Host: evil.example.
    for method, path, body in [
        ("GET", "/", None),
        ("GET", "/v1/models", None),
        ("POST", "/v1/annotate", b'{"text": "EU"}'),
        ("GET", "/metrics", None),
    ]:
        headers = {"Host": f"evil.example:{server}", **(JSON_BODY if body else {})}
        status, _, raw = _request(server, method, path, body, headers)
        assert status == 400, (path, raw)
        assert json.loads(raw)["field"] == "host" and "evil.example" in json.loads(raw)["error"]
    for host in (f"localhost:{server}", f"127.0.0.1:{server}", f"[::1]:{server}", "LocalHost."):
        assert _request(server, "GET", "/v1/models", headers={"Host": host})[0] == 200, host


def test_a_rebound_name_gets_nothing_in_a_real_browser(server):
    from selenium.webdriver.common.by import By

    # The browser resolves evil.example to 127.0.0.1, as an attacker's DNS would make it.
    with _browser("--host-resolver-rules=MAP evil.example 127.0.0.1") as driver:
        driver.get(f"http://evil.example:{server}/")
        assert "does not answer to the host 'evil.example'" in driver.page_source
        assert not driver.find_elements(By.ID, "form")
        wait = _open_page(driver, server)  # the same browser, the service's own name
        _fill(driver, TEXTS[0])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#spans mark.entity"))


def test_host_names_and_their_patterns():
    from bilstm_nlp.errors import ConfigError
    from bilstm_nlp.integrations.serve.app import (
        HostCheck,
        ServeConfig,
        default_allowed_hosts,
        host_name,
    )

    assert host_name("LocalHost.:8080") == "localhost" and host_name("[::1]:80") == "::1"
    assert host_name("10.0.0.5") == "10.0.0.5" and host_name("[fe80::1]") == "fe80::1"
    check = HostCheck(("tagger.internal", "*.example.org", "[fe80::1]"))
    for allowed in ("tagger.internal:8080", "a.example.org", "b.a.example.org.", "[fe80::1]:1"):
        assert check.allows(allowed), allowed
    for refused in ("example.org", "notexample.org", "example.org.evil.example", "localhost"):
        assert not check.allows(refused), refused
    assert HostCheck(("*",)).allows("anything.at.all")
    ServeConfig(allowed_hosts=("[fe80::1]", "::1", "*.example.org", "10.0.0.5")).check()
    for wrong in ("http://x", "x/y", "a b", "[::1"):
        with pytest.raises(ConfigError, match="--allowed-host"):
            ServeConfig(allowed_hosts=(wrong,)).check()
    # Listening on a loopback address: that address and this machine's names; otherwise any.
    assert set(default_allowed_hosts("127.0.0.1")) == {"localhost", "127.0.0.1", "::1"}
    assert "127.0.0.2" in default_allowed_hosts("127.0.0.2")
    assert set(default_allowed_hosts("[::1]")) == {"localhost", "127.0.0.1", "::1"}
    assert default_allowed_hosts("0.0.0.0") == default_allowed_hosts("10.1.2.3") == ("*",)
    assert default_allowed_hosts("tagger.internal") == ("*",)


def test_allowed_host_option_is_what_the_service_answers_to():
    result = CliRunner().invoke(app, ["serve", "--allowed-host", "http://tagger.internal/"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "--allowed-host 'http://tagger.internal/'" in result.output
    process, port = _start("-m", "chunk", "--allowed-host", "tagger.internal")
    try:
        headers = {"Host": f"tagger.internal:{port}", **JSON_BODY}
        status, _, raw = _request(port, "POST", "/v1/tag", b'{"sentences": [["EU"]]}', headers)
        assert status == 200, raw
        # localhost is no longer among the names; the probes answer any name (Kubernetes
        # sends the pod's address), and tell nothing more than that the service is up.
        assert _request(port, "GET", "/v1/models", headers={"Host": "localhost"})[0] == 400
        for probe in ("/healthz", "/readyz"):
            assert _request(port, "GET", probe, headers={"Host": "10.1.2.3:80"})[0] == 200
    finally:
        _stop(process)


def _dev_sentences(corpora: Path, count: int) -> list[str]:
    sentences, words = [], []
    for line in (corpora / "conll2003" / "dev.txt").read_text().splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
        elif words:
            if len(words) >= 5:
                sentences.append(" ".join(words))
            words = []
        if len(sentences) == count:
            break
    return sentences


def _metric(port: int, name: str) -> float:
    text = _request(port, "GET", "/metrics")[2].decode()
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def test_concurrent_clients_get_their_own_answers_in_shared_batches(server, shared_corpora):
    texts = _dev_sentences(shared_corpora, 50)
    # Each text tagged alone, in this process, with the server's single torch thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        annotator = Annotator(load_model("ner"))
        expected = [annotator.records([text], [1]) for text in texts]
    finally:
        torch.set_num_threads(threads)
    answers: list[object] = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def client(i: int) -> None:
        start.wait()
        answers[i] = _post(server, "/v1/annotate", {"text": texts[i]})

    workers = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    got = [a[1]["records"] if a[0] == 200 else a for a in answers]
    # Records equal but for the scores, which may round the other way in their 4th decimal:
    # float32 products in a batch of another size are summed in another order.
    assert [_without_scores(r) for r in got] == [_without_scores(r) for r in expected]
    assert max(_score_gaps(got, expected)) <= 1.0001e-4
    assert _metric(server, "bilstm_batch_requests_max") > 1


def test_metrics_of_processes_add_up(tmp_path, caplog):
    from bilstm_nlp.integrations.serve.metrics import Metrics, MetricsFolder

    first, second, both = Metrics(), Metrics(), Metrics()
    for metrics, seconds in ((first, 0.003), (second, 0.7), (both, 0.003), (both, 0.7)):
        metrics.record_request("/v1/tag", 200, seconds)
    first.record_request("/v1/tag", 422, 0.001)
    both.record_request("/v1/tag", 422, 0.001)
    for metrics, batch in ((first, (3, 5, 40, 0.5)), (second, (7, 9, 60, 1.5))):
        metrics.record_batch(*batch)
        both.record_batch(*batch)
    # What one process saw of all the requests, rendered from two processes' figures.
    assert first.render([second.state()]) == both.render()
    assert "bilstm_tokens_per_second 50.0" in both.render()
    assert "bilstm_batch_requests_max 7" in both.render()
    # Through the folder the processes share: each reads the others' files, not its own.
    one, other = MetricsFolder(tmp_path), MetricsFolder(tmp_path)
    one.write(first)
    other.write(second)
    assert first.render(one.others()) == both.render() == second.render(other.others())
    written = other.own.stat().st_mtime_ns
    time.sleep(0.01)
    other.write(second)  # unchanged: not written again
    assert other.own.stat().st_mtime_ns == written
    (tmp_path / "stray.json").write_text("{not json")
    assert first.render(one.others()) == both.render()
    assert "stray.json" in caplog.text


def test_metrics_count_every_worker_of_the_service(tmp_path):
    # Each of --workers N processes had its own figures: a scrape counted one of them.
    process, port = _start("-m", "chunk", "--workers", "2", env={"TMPDIR": str(tmp_path)})
    sentence = {"sentences": [["EU", "rejects", "German", "call"]]}
    try:
        # Concurrent connections: the kernel hands them to both processes.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _post(port, "/v1/tag", sentence)[0], range(40)))
        assert statuses == [200] * 40
        time.sleep(2.5)  # each process writes its figures about once a second
        name = 'bilstm_requests_total{endpoint="/v1/tag",status="200"}'
        assert [_metric(port, name) for _ in range(10)] == [40] * 10
        assert _metric(port, "bilstm_tokens_total") == 40 * 4
        assert [p.name for p in tmp_path.iterdir()][0].startswith("bilstm-nlp-serve-metrics-")
    finally:
        _stop(process)
    assert not list(tmp_path.iterdir())  # the folder goes with the service


def _without_scores(value):
    if isinstance(value, dict):
        return {k: _without_scores(v) for k, v in value.items() if k not in ("score", "prob")}
    if isinstance(value, list):
        return [_without_scores(v) for v in value]
    return value


def _score_gaps(got, expected):
    if isinstance(got, dict):
        for key, value in got.items():
            if key in ("score", "prob"):
                yield abs(value - expected[key])
            else:
                yield from _score_gaps(value, expected[key])
    elif isinstance(got, list):
        for a, b in zip(got, expected, strict=True):
            yield from _score_gaps(a, b)
    else:
        yield 0.0


BAD_REQUESTS = [
    # (path, body bytes, status, field)
    ("/v1/annotate", b'{"texts": ["' + b"a" * 30000 + b'"]}', 413, "body"),
    ("/v1/annotate", b'{"texts": ["EU rejects"', 400, "body"),
    # Python's JSON reader raises ValueError and RecursionError on these, not JSONDecodeError.
    ("/v1/annotate", b'{"text": "EU", "k": ' + b"9" * 5000 + b"}", 400, "body"),
    ("/v1/tag", b'{"sentences": [["EU"]], "k": ' + b"9" * 5000 + b"}", 400, "body"),
    ("/v1/annotate", b'{"text": "EU", "model": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "body"),
    ("/v1/annotate", b'{"text": "caf\xe9"}', 400, "body"),
    ("/v1/annotate", b"[1, 2]", 422, "body"),
    ("/v1/annotate", b'{"texts": "EU rejects"}', 422, "texts"),
    ("/v1/annotate", b'{"texts": ["EU", 5]}', 422, "texts[1]"),
    ("/v1/annotate", b'{"text": "EU", "k": "2"}', 422, "k"),
    ("/v1/annotate", b'{"text": "EU", "k": 99}', 422, "k"),
    ("/v1/annotate", b'{"text": "EU", "colour": 1}', 422, "colour"),
    ("/v1/annotate", b'{"text": "EU", "model": "klingon"}', 422, "model"),
    ("/v1/annotate", b'{"text": "EU", "model": "sentiment", "k": 2}', 422, "k"),
    ("/v1/annotate", b'{"texts": []}', 422, "texts"),
    ("/v1/annotate", b"{}", 422, "texts"),
    ("/v1/annotate", b'{"texts": ["a","a","a","a","a","a","a","a","a"]}', 422, "texts"),
    ("/v1/annotate", b'{"text": "' + b"a " * 1001 + b'"}', 422, "text"),
    ("/v1/annotate", b'{"text": "\\ud800"}', 422, "text"),
    ("/v1/tag", b'{"sentences": [["EU", ""]]}', 422, "sentences[0][1]"),
    ("/v1/tag", b'{"sentences": [[]]}', 422, "sentences[0]"),
    ("/v1/tag", b'{"sentences": ["EU rejects"]}', 422, "sentences[0]"),
    ("/v1/tag", b'{"sentences": [["good"]], "model": "sentiment"}', 422, None),
    ("/v1/annotate", b'{"text": "EU", "scheme": "BILUO"}', 422, "scheme"),
    ("/v1/annotate", b'{"text": "EU", "scheme": 2}', 422, "scheme"),
    ("/v1/annotate", b'{"text": "EU", "model": "pos", "scheme": "IOB2"}', 422, "scheme"),
    ("/v1/tag", b'{"sentences": [["good"]], "model": "sentiment", "scheme": "IOB2"}', 422, None),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD_REQUESTS)
def test_bad_requests_get_4xx_with_a_json_error(server, path, body, status, field):
    got, headers, raw = _request(server, "POST", path, body)
    assert got == status, raw
    error = json.loads(raw)
    assert error["error"] and "Traceback" not in raw.decode()
    assert error.get("field") == field
    if "limit" in error:
        assert error["limit"] in (20000, 8, 2000)


def test_wrong_method_and_path_get_json(server):
    for method, path, status in [("GET", "/v1/annotate", 405), ("GET", "/nowhere", 404)]:
        got, _, raw = _request(server, method, path)
        assert got == status and "error" in json.loads(raw)


def test_a_request_that_timed_out_leaves_the_queue_and_is_never_run():
    import asyncio

    from bilstm_nlp.integrations.serve.batching import Job, MicroBatcher

    loop = asyncio.new_event_loop()
    try:
        batcher = MicroBatcher({"ner": load_model("ner")}, max_wait_ms=100)

        def job(text: str) -> Job:
            return Job("ner", "annotate", 0, [text], [1], loop.create_future(), loop)

        gone, first, second = job("a"), job("b"), job("c")
        for queued in (gone, first, second):
            batcher.submit(queued)
        assert batcher.withdraw(gone) and not batcher.withdraw(gone)
        batch = batcher._next_batch()
        assert [id(p.job) for p in batch] == [id(first), id(second)] and batcher.pending() == 0
        # The oldest job withdrawn while its batch waits for a request still being read: the
        # batch starts again from the next job, without it.
        gone, kept = job("d"), job("e")
        batcher.submit(gone)
        batcher.submit(kept)
        batcher.expect()
        threading.Timer(0.02, batcher.withdraw, args=(gone,)).start()
        batch = batcher._next_batch()
        assert [id(p.job) for p in batch] == [id(kept)]
        # A job a batch holds already cannot be withdrawn (it is answered, to nobody).
        assert not batcher.withdraw(kept)
    finally:
        loop.close()


def test_a_request_larger_than_a_batch_runs_in_pieces_taking_turns():
    import asyncio

    from bilstm_nlp.integrations.serve.batching import Job, MicroBatcher

    loop = asyncio.new_event_loop()
    try:
        batcher = MicroBatcher({"ner": load_model("ner")}, max_batch_tokens=350)

        def job(sizes: list[int], kind: str = "annotate") -> Job:
            items = ["EU"] * len(sizes)
            return Job("ner", kind, 0, items, sizes, loop.create_future(), loop)

        def pieces(batch) -> list[tuple[int, int, int]]:
            return [(id(p.job), p.start, p.stop) for p in batch]

        heavy, small, other = job([100] * 10), job([1]), job([1], kind="tag")
        for queued in (heavy, small, other):
            batcher.submit(queued)
        # The heavy job's first piece, then the small job with as much of the heavy one as fits
        # (1 + 300 tokens), then the job of another endpoint, which the remainder queued behind.
        assert pieces(batcher._next_batch()) == [(id(heavy), 0, 3)]
        assert pieces(batcher._next_batch()) == [(id(small), 0, 1), (id(heavy), 3, 6)]
        assert pieces(batcher._next_batch()) == [(id(other), 0, 1)]
        assert pieces(batcher._next_batch()) == [(id(heavy), 6, 9)]
        # Its caller gone, the rest of a job is never run; all that is left in a batch: False.
        assert batcher.withdraw(heavy) and batcher.pending() == 0
        last = job([100, 100])
        batcher.submit(last)
        assert pieces(batcher._next_batch()) == [(id(last), 0, 2)] and not batcher.withdraw(last)
        # An item over the budget runs alone; batching off runs a job whole and alone.
        huge = job([1000, 1])
        batcher.submit(huge)
        assert pieces(batcher._next_batch()) == [(id(huge), 0, 1)]
        assert pieces(batcher._next_batch()) == [(id(huge), 1, 2)]
        batcher.max_batch_tokens = 0
        whole, alone = job([100] * 5), job([1])
        batcher.submit(whole)
        batcher.submit(alone)
        assert pieces(batcher._next_batch()) == [(id(whole), 0, 5)]
        assert pieces(batcher._next_batch()) == [(id(alone), 0, 1)]
    finally:
        loop.close()


def test_a_small_request_is_answered_between_the_pieces_of_a_large_one(shared_corpora):
    import asyncio

    from bilstm_nlp.integrations.serve.app import estimated_tokens
    from bilstm_nlp.integrations.serve.batching import Job, MicroBatcher

    texts = _dev_sentences(shared_corpora, 60)
    model = load_model("ner")
    expected = Annotator(model).records(texts, list(range(1, len(texts) + 1)))
    loop = asyncio.new_event_loop()
    batcher = MicroBatcher({"ner": model}, max_batch_tokens=200, max_wait_ms=0)
    try:
        finished: list[str] = []

        def job(name: str, items: list[str]) -> Job:
            tokens = [estimated_tokens(text) for text in items]
            queued = Job("ner", "annotate", 0, items, tokens, loop.create_future(), loop)
            queued.future.add_done_callback(lambda _: finished.append(name))
            return queued

        heavy, small = job("heavy", texts), job("small", [TEXTS[0]])
        batcher.submit(heavy)
        batcher.submit(small)
        batcher.start()
        got, alone = loop.run_until_complete(
            asyncio.wait_for(asyncio.gather(heavy.future, small.future), 60)
        )
    finally:
        batcher.stop()
        loop.close()
    assert finished == ["small", "heavy"]
    # In pieces, in order, numbered as in one call; scores may differ in their 4th decimal.
    assert _without_scores(got) == _without_scores(expected)
    assert max(_score_gaps(got, expected)) <= 1.0001e-4
    assert [record["id"] for record in alone] == [1] and alone[0]["spans"]


def test_sigterm_answers_every_accepted_request():
    # A long first batch (a request of 600,000 characters) keeps the others queued behind it
    # when SIGTERM arrives: a batch starts as soon as the thread is free, it does not wait.
    process, port = _start("-m", "ner", "--max-body-bytes", "2000000")
    long = {"texts": ["EU rejects German call to boycott British lamb. " * 400] * 30}
    blocker = threading.Thread(target=lambda: answers.append(_post(port, "/v1/annotate", long)))
    answers: list[object] = [None] * 20
    sent = threading.Barrier(21)
    blocker.start()
    time.sleep(0.5)  # read and running

    def client(i: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"text": TEXTS[i % 2]}).encode()
        connection.request("POST", "/v1/annotate", body, JSON_BODY)
        sent.wait()
        response = connection.getresponse()
        answers[i] = (response.status, json.loads(response.read()))

    try:
        workers = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for worker in workers:
            worker.start()
        sent.wait(30)
        time.sleep(0.3)  # the server has read them: they sit in the batcher's queue
        process.send_signal(signal.SIGTERM)
        for worker in [*workers, blocker]:
            worker.join(60)
        # uvicorn re-raises SIGTERM on itself once drained: ended by the signal, not a crash.
        assert process.wait(30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
    expected = _cli_records("ner", TEXTS[:2])
    assert [a[0] for a in answers] == [200] * 21
    assert len(answers[20][1]["records"]) == 30
    assert all(
        a[1]["records"][0]["spans"] == expected[i % 2]["spans"] for i, a in enumerate(answers[:20])
    )


def test_serve_unknown_model_is_one_line():
    result = CliRunner().invoke(app, ["serve", "-m", "klingon"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "klingon" in result.output


def test_serve_without_the_extra_says_what_to_install(tmp_path):
    # fastapi made unimportable for a real `serve` process (a None entry in sys.modules).
    code = (
        "import sys; sys.modules['fastapi'] = None; from bilstm_nlp.cli import main; "
        "sys.argv = ['bilstm-nlp', 'serve']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "pip install 'bilstm-nlp[serve]'" in result.stderr
    assert "Traceback" not in result.stderr
    # Without torch (the bilstm-nlp-runtime distribution): the two packages, not the extra,
    # which would pull in the full distribution beside the runtime.
    code = code.replace(
        "sys.modules['fastapi'] = None",
        "sys.modules['fastapi'] = None; sys.modules['torch'] = None",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "serve needs fastapi: pip install fastapi uvicorn fastapi-offline" in result.stderr


@contextlib.contextmanager
def _browser(*flags: str):
    """A real headless Chromium driven by chromedriver (Debian's packages)."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("needs Debian's chromium")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1000,700",
        *flags,
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def _open_page(driver, port: int):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"http://127.0.0.1:{port}/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    return wait


def _fill(driver, text: str, model: str | None = None, k: int | None = None, scheme=None):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    if model is not None:
        Select(driver.find_element(By.ID, "model")).select_by_value(model)
    if k is not None:
        box = driver.find_element(By.ID, "k")
        box.clear()
        box.send_keys(str(k))
    if scheme is not None:
        Select(driver.find_element(By.ID, "scheme")).select_by_value(scheme)
    box = driver.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    # The last answer's drawing goes first, so that a wait sees this answer's.
    driver.execute_script(
        "for (const id of ['result', 'kbest']) document.getElementById(id).replaceChildren()"
    )
    driver.find_element(By.ID, "submit").click()


def test_page_highlights_entities_in_a_real_browser(server):
    from selenium.webdriver.common.by import By

    with _browser() as driver:
        wait = _open_page(driver, server)
        _fill(driver, TEXTS[1])
        marks = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#spans mark.entity"))
        shown = [
            (m.find_element(By.CLASS_NAME, "text").text, m.get_attribute("data-label"))
            for m in marks
        ]
        [record] = _cli_records("ner", TEXTS[1:2])
        assert shown == [(s["text"], s["label"]) for s in record["spans"]]
        assert driver.find_element(By.ID, "spans").text.replace("\n", " ").startswith("Germany")
        # Below the marks, each token's tag in the model's own scheme (IOB1 for `ner`).
        tags = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#tags .token .tag")]
        assert tags == [t["tag"] for t in record["tokens"]]
        if os.environ.get("BILSTM_NLP_SCREENSHOT"):
            driver.save_screenshot(os.environ["BILSTM_NLP_SCREENSHOT"])


def test_page_cuts_the_text_at_code_points_around_emoji(server):
    """The service's offsets count code points; the page cuts the text with them, so a
    character outside the BMP before an entity must not shift the marks."""
    from selenium.webdriver.common.by import By

    text = "😀 Angela Merkel visited 🇫🇷 Paris. 👍🏽"
    with _browser() as driver:
        wait = _open_page(driver, server)
        # chromedriver types BMP characters only: the text goes in through the DOM.
        _fill(driver, "x")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tags .token"))
        driver.execute_script(
            "document.getElementById('text').value = arguments[0];"
            "for (const id of ['result', 'kbest']) document.getElementById(id).replaceChildren();"
            "document.getElementById('submit').click()",
            text,
        )
        marks = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#spans mark.entity"))
        [record] = _cli_records("ner", [text])
        shown = [m.find_element(By.CLASS_NAME, "text").text for m in marks]
        assert shown == [s["text"] for s in record["spans"]] == ["Angela Merkel", "Paris"]
        # The text as drawn: the plain runs between the marks and each mark's own text.
        drawn = driver.execute_script(
            "return Array.from(document.getElementById('spans').childNodes).map(n =>"
            " n.nodeType === 3 ? n.textContent : n.querySelector('.text').textContent).join('')"
        )
        assert drawn == text


def test_page_writes_tags_and_k_best_paths_in_the_scheme_picked(server):
    from selenium.webdriver.common.by import By

    text = TEXTS[0]
    with _browser() as driver:
        wait = _open_page(driver, server)
        own = driver.find_element(By.CSS_SELECTOR, "#scheme option[value='']").text
        assert own == "the model's own (IOB1)"
        for scheme in ("IOB2", "BILOU"):
            _fill(driver, text, model="ner", k=2, scheme=scheme)
            rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#kbest-table tr.path"))
            [record] = _cli_records("ner", [text], 2, "--scheme", scheme)
            tags = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#tags .token .tag")]
            assert tags == [t["tag"] for t in record["tokens"]]
            paths = [p for sentence in record["kbest"] for p in sentence]
            cells = [row.find_elements(By.TAG_NAME, "td") for row in rows]
            assert [(c[0].text, c[1].text) for c in cells] == [
                (" ".join(p["tags"]), f"{p['prob']:.4f}") for p in paths
            ]
        assert {"U-ORG", "B-PER", "L-PER"} <= set(tags)  # BILOU's own letters, not IOB1's


def test_page_turns_off_the_controls_a_model_has_no_use_for(server):
    from selenium.webdriver.common.by import By

    with _browser() as driver:
        wait = _open_page(driver, server)
        _fill(driver, TEXTS[0], model="ner", scheme="BIOES")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#spans mark.entity"))
        # POS tags have no scheme: the picked one is dropped, not sent (the API would refuse it).
        _fill(driver, TEXTS[0], model="pos")
        assert not driver.find_element(By.ID, "scheme").is_enabled()
        tokens = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tags .token .tag"))
        [record] = _cli_records("pos", TEXTS[0:1])
        assert [t.text for t in tokens] == [t["tag"] for t in record["tokens"]]
        assert driver.find_element(By.ID, "status").text == ""
        # A classifier has neither k best paths nor tags.
        _fill(driver, TEXTS[0], model="sentiment")
        assert not driver.find_element(By.ID, "k").is_enabled()
        assert not driver.find_element(By.ID, "scheme").is_enabled()
        bars = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#distribution .bar"))
        [record] = _cli_records("sentiment", TEXTS[0:1])
        assert {b.get_attribute("data-label") for b in bars} == set(record["probs"])
        # Each bar as long as its probability (300 px for 1), under the page's CSP.
        for bar in bars:
            width = bar.find_element(By.CLASS_NAME, "fill").size["width"]
            assert abs(width - 300 * record["probs"][bar.get_attribute("data-label")]) <= 1
        assert not [e for e in driver.get_log("browser") if "Content Security" in e["message"]]


def test_page_shows_the_services_refusal_and_draws_nothing(server):
    from selenium.webdriver.common.by import By

    with _browser() as driver:
        wait = _open_page(driver, server)
        _fill(driver, TEXTS[0], model="ner")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#spans mark.entity"))
        # Over the server's --max-chars (2,000): the page says what the service said, and the
        # last answer's drawing does not stay as if it were this text's.
        long_text = "EU rejects German call. " * 100
        driver.execute_script("document.getElementById('text').value = arguments[0]", long_text)
        driver.find_element(By.ID, "submit").click()
        status = wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("422") and d)
        text = status.find_element(By.ID, "status").text
        assert "(limit 2000)" in text
        assert not driver.find_elements(By.CSS_SELECTOR, "#result *")


def _half_sent_request(port: int) -> socket.socket:
    """A POST that declares 100 bytes and sends 4, then stalls."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(
        b"POST /v1/annotate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"te'
    )
    return client


def test_a_stalled_or_vanished_client_holds_nothing(tmp_path):
    # A body that never arrives held its connection forever, made every batch wait for it, and
    # kept SIGTERM from finishing; a client gone mid-body was a 500 with two tracebacks.
    process, port = _start("-m", "ner", "--timeout", "1", "--max-wait-ms", "500")
    try:
        stalled = _half_sent_request(port)
        stalled.settimeout(10)
        started = time.monotonic()
        answer = b""
        while b"did not arrive" not in answer:  # the headers and the body may come apart
            chunk = stalled.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"the request body did not arrive in time" in answer
        assert time.monotonic() - started < 5
        stalled.close()
        _half_sent_request(port).close()  # gone mid-body
        time.sleep(0.5)
        status, headers, _ = _request(port, "HEAD", "/healthz")
        assert status == 200
        # Every answer, errors and the page included, carries the security headers.
        for path in ("/healthz", "/", "/no-such-page", "/static/app.js"):
            headers = {k.lower(): v for k, v in _request(port, "GET", path)[1].items()}
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"], path
            if path == "/":
                assert "script-src 'self'" in headers["content-security-policy"]
        assert _request(port, "HEAD", "/readyz")[0] == 200
        status, body = _post(port, "/v1/annotate", {"text": "EU", "model": "x" * 100_000})
        assert status == 422 and len(body["error"]) <= 300
        metrics = _request(port, "GET", "/metrics")[2].decode()
        assert 'status="408"' in metrics and 'status="500"' not in metrics
        _half_sent_request(port)  # still stalled when the server is told to stop
        process.terminate()
        process.wait(10)  # --timeout 1: the body gets 1 s, the answer 1 s more
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in process.stderr.read().decode()


def test_the_token_estimate_counts_punctuation():
    from bilstm_nlp.integrations.serve.app import estimated_tokens

    # Words between spaces alone said 2 for this 15,000-token text: batches and the queue
    # were sized by it.
    assert estimated_tokens("a," * 7500) > 7500
    assert estimated_tokens("EU rejects German call.") == 6
    assert estimated_tokens("") == 1
