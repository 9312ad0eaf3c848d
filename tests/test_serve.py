"""chargen serve: what it answers, whom it answers, its command and its page (in a headless browser); load: test_serve_load."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app
from chargen.generation.copies import index_for_run, novelty
from chargen.inspect import score_text, trace
from chargen.serve import Limits, Service
from chargen.tasks.classify import classify_names

from serving import (TINY_LIMITS, Running, call, library, lines_of, need_extra, post, raw_http, save_tiny,  # noqa: E402
                     streamed, threads_one, tiny, tiny_run)  # noqa: F401 - the last three are fixtures

LIMITS = Limits(max_length=400, max_text=300, max_names=5, max_body=4096)


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {"grimm": checkpoint.load("grimm"), "surnames": checkpoint.load("surnames")}




@pytest.fixture(scope="module")
def running(models: dict[str, Any]) -> Iterator[Running]:
    with Running(Service(models, LIMITS)) as server:
        yield server


@pytest.fixture(scope="module")
def base(running: Running) -> str:
    return running.url


# --------------------------------------------------------------------------- the API equals the library


def test_generate_equals_the_library_and_chargen_sample(base: str, models: dict[str, Any]) -> None:
    body = {"prime": "The king", "length": 120, "temperature": 0.8, "top_k": 10, "seed": 3}
    settings, text = streamed(base, body)
    assert settings["seed"] == 3 and settings["model"] == "grimm"
    assert text == library(models["grimm"], body) and len(text) == 120
    cli = CliRunner().invoke(app, ["sample", "--prime", "The king", "--length", "120", "--temp", "0.8",
                                   "--top-k", "10", "--seed", "3"])
    assert cli.exit_code == 0 and cli.stdout == "The king" + text + "\n"
    whole = post(base, "/api/generate", {**body, "stream": False})
    assert whole["text"] == text
    lines = call(base, "/api/generate", body)[1].decode().splitlines()
    assert [len(json.loads(line)["text"]) for line in lines[1:-1]] == [30] * 4  # in pieces of the training length
    # no seed: the server picks one and says which, so the text can be had again
    settings, first = streamed(base, {"prime": "A", "length": 40})
    assert streamed(base, {"prime": "A", "length": 40, "seed": settings["seed"]})[1] == first


def test_stop_strings_cut_as_chargen_sample_does(base: str, models: dict[str, Any]) -> None:
    for stop in (" the", [" and", ",", "xyz"], "\n"):
        body = {"prime": "Once", "length": 300, "seed": 11, "stop": stop}
        expected = library(models["grimm"], body)
        assert len(expected) < 300  # the stop string was met
        assert streamed(base, body)[1] == expected
        assert post(base, "/api/generate", {**body, "stream": False})["text"] == expected


def test_concurrent_requests_equal_sequential_ones(base: str) -> None:
    bodies = [{"prime": "Once", "length": 60, "seed": s, "temperature": 1.0} for s in range(5)]
    sequential = [streamed(base, b)[1] for b in bodies]
    assert len(set(sequential)) == len(sequential)  # different seeds, different texts
    with ThreadPoolExecutor(max_workers=5) as pool:
        concurrent = list(pool.map(lambda b: streamed(base, b)[1], bodies))
        scores = list(pool.map(lambda t: post(base, "/api/score", {"text": t})["total_log_prob"], sequential))
    assert concurrent == sequential
    assert scores == [post(base, "/api/score", {"text": t})["total_log_prob"] for t in sequential]


STUDIO = [  # the decoding controls and the constraints, each request as chargen sample would run it
    {"prime": "The king", "length": 80, "seed": 3, "temperature": 0.8, "top_p": 0.9, "min_p": 0.05},
    {"prime": "The king", "length": 80, "seed": 3, "temperature": "1.0:0.3", "repetition_penalty": 1.2,
     "repetition_window": 20, "no_repeat": 12},
    {"prime": "The king", "length": 80, "seed": 4, "typical": 0.9, "max_copy": 8},
    {"prime": "The", "length": 80, "seed": 5, "pattern": "[A-Za-z ]+ (was|is) [a-z ]+\\.", "include": ["gold"]},
    {"prime": "Once", "length": 80, "seed": 6, "temperature": 0.7, "stop": "\n"},  # a plain one beside them
]


def test_controls_and_constraints_in_a_batch_equal_chargen_sample(base: str, models: dict[str, Any], corpus_mirror: Path) -> None:  # max_copy reads grimm's text
    expected = [library(models["grimm"], body) for body in STUDIO]
    with ThreadPoolExecutor(max_workers=len(STUDIO)) as pool:  # joining and leaving one batch together
        served = list(pool.map(lambda b: streamed(base, b)[1], STUDIO * 2))
    assert served == expected * 2
    assert len(set(expected)) == len(expected)
    pattern = STUDIO[3]
    assert re.fullmatch(pattern["pattern"], pattern["prime"] + expected[3]) and "gold" in expected[3]
    cli = CliRunner().invoke(app, ["sample", "--prime", "The king", "--length", "80", "--seed", "3", "--temp", "1.0:0.3",
                                   "--repetition-penalty", "1.2", "--repetition-window", "20", "--no-repeat", "12"])
    assert cli.exit_code == 0 and cli.stdout == "The king" + expected[1] + "\n"
    cli = CliRunner().invoke(app, ["sample", "--prime", "The", "--length", "80", "--seed", "5", "--pattern",
                                   pattern["pattern"], "--include", "gold"])
    assert cli.exit_code == 0 and cli.stdout == "The" + expected[3] + "\n"
    settings, text = streamed(base, STUDIO[1])  # the settings reported are a request for the same text
    assert streamed(base, settings)[1] == text == expected[1] and settings["no_repeat"] == 12
    for seed in range(4):  # every sample matches in full
        text = post(base, "/api/generate", {**pattern, "seed": seed, "stream": False})["text"]
        assert re.fullmatch(pattern["pattern"], "The" + text) and "gold" in text


def test_novelty_reports_the_copies_of_each_sample(base: str, models: dict[str, Any], corpus_mirror: Path) -> None:  # max_copy reads grimm's text
    body = {"prime": "The king", "length": 120, "seed": 1, "temperature": 0, "novelty": True}
    lines = [json.loads(line) for line in call(base, "/api/generate", body)[1].decode().splitlines()]
    text = "".join(line.get("text", "") for line in lines)
    report = lines[-1]["copies"]
    whole = post(base, "/api/generate", {**body, "stream": False})
    assert whole["text"] == text and whole["copies"] == report
    index = index_for_run(models["grimm"].path, models["grimm"].config)
    assert report == json.loads(json.dumps(novelty("The king" + text, index)))
    corpus, sample = index.text, "The king" + text
    assert report["long_copies"]  # greedy from a prime copies the tales
    covered, start, longest = set(), 0, 0  # brute force: the longest copy ending at each position, by `in`
    for end in range(1, len(sample) + 1):
        while sample[start:end] not in corpus:
            start += 1
        longest = max(longest, end - start)
        covered |= set(range(start, end)) if end - start >= 20 else set()
    assert {i for a, b in report["long_copies"] for i in range(a, b)} == covered
    assert report["longest_copy"] == longest
    start, end = report["copy_start"], report["copy_end"]
    assert end - start == longest and corpus[report["corpus_start"]:report["corpus_end"]] == sample[start:end]
    assert "copies" not in post(base, "/api/generate", {**body, "novelty": False, "stream": False})


def test_a_stream_its_controls_leave_no_character_ends_alone_with_one_line(tiny: Running, tiny_run: Path) -> None:
    loaded = checkpoint.load(tiny_run)
    stuck = {"length": 100, "seed": 2, "no_repeat": 1}  # never repeat a character: stuck once each is written
    plain = {"prime": "a cat", "length": 100, "seed": 2}
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda b: call(tiny.url, "/api/generate", b)[1], [stuck, plain]))
    lines = [json.loads(line) for line in answers[0].decode().splitlines()]
    text = "".join(line.get("text", "") for line in lines)
    assert lines[-1]["status"] == 422 and "no_repeat" in lines[-1]["error"]
    assert len(set(text)) == len(text) >= 20  # every character once, then nothing left
    assert lines_of(answers[1])[1] == library(loaded, plain)  # its neighbour in the batch is untouched
    status, data, _ = call(tiny.url, "/api/generate", {**stuck, "stream": False})
    assert status == 422 and json.loads(data)["error"].startswith("generation stopped: no_repeat: stream 0: every character")


def test_copies_need_a_model_that_records_its_corpus(tiny: Running) -> None:
    assert json.loads(call(tiny.url, "/api/models")[1])["models"][0]["corpus"] is False
    for field in ("max_copy", "novelty"):
        status, data, _ = call(tiny.url, "/api/generate", {field: 5 if field == "max_copy" else True})
        assert status == 400 and re.search(f"does not record the corpus it was trained on; {field} needs it",
                                           json.loads(data)["error"]), data


def test_score_classify_and_inspect_equal_the_library(base: str, models: dict[str, Any]) -> None:
    grimm, surnames = models["grimm"], models["surnames"]
    text = "The queen said, ‘Mirror, mirror.’"
    assert post(base, "/api/score", {"text": text}) == {"model": "grimm", **score_text(grimm.model, grimm.vocab, text)}
    answer = post(base, "/api/classify", {"names": ["Nguyen", "Schmidt", "42"], "top": 2})
    assert answer["model"] == "surnames"
    assert answer["results"] == json.loads(json.dumps(classify_names(surnames, ["Nguyen", "Schmidt", "42"], top=2)))
    seen = post(base, "/api/inspect", {"text": text, "unit": 162, "layer": 2, "what": "c", "top": 5})
    tr = trace(grimm.model, grimm.vocab, text)
    assert seen["chars"] == list(text)
    assert seen["activation"]["values"] == pytest.approx(tr.activation(162, "c", 2).tolist(), abs=1e-6)
    assert [[c for c, _ in row] for row in seen["top"]] == [[c for c, _ in row] for row in tr.top(5)]
    info = json.loads(call(base, "/api/models")[1])
    assert [m["name"] for m in info["models"]] == ["grimm", "surnames"] and info["limits"]["max_length"] == 400


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/generate", {"length": 401}, 413, "at most 400|between 0 and 400"),
    ("/api/generate", {"prime": "x" * 301}, 413, "at most 300"),
    ("/api/score", {"text": "a" * 301}, 413, "at most 300"),
    ("/api/inspect", {"text": "a" * 301}, 413, "at most 300"),
    ("/api/classify", {"names": ["Ng"] * 6}, 413, "at most 5"),
    ("/api/generate", {"length": -1}, 400, "between 0 and 400"),
    ("/api/generate", {"length": "10"}, 400, "length: expected an integer"),
    ("/api/generate", {"temperature": -1}, 400, "temperature"),
    ("/api/generate", {"temperature": float("nan")}, 400, "temperature"),
    ("/api/generate", {"seed": 2**63}, 400, "seed"),
    ("/api/generate", {"prime": "#"}, 400, "outside the model's vocabulary"),
    ("/api/generate", {"stop": "#"}, 400, "stop string '#'.*outside the model's vocabulary"),
    ("/api/generate", {"stop": [""]}, 400, "stop: expected a string or a list"),
    ("/api/generate", {"stop": ["a"] * 9}, 413, "at most 8"),
    ("/api/generate", {"top_pp": 0.9}, 400, "unknown field 'top_pp'; generate takes .*temperature, top_k"),
    ("/api/generate", {"top_p": 1.5}, 400, "top_p must be in"),
    ("/api/generate", {"min_p": "a"}, 400, "min_p must be a number"),
    ("/api/generate", {"temperature": "0.8:x"}, 400, "temperature schedule"),
    ("/api/generate", {"greedy": True, "top_p": 0.9}, 400, "greedy and top_p contradict"),
    ("/api/generate", {"temperature": 0, "min_p": 0.1}, 400, "temperature 0 and min_p contradict"),
    ("/api/generate", {"no_repeat": -1}, 400, "no_repeat must be"),
    ("/api/generate", {"max_copy": 0}, 400, "max_copy: must be at least 1"),
    ("/api/generate", {"max_copy": "5"}, 400, "max_copy: expected an integer"),
    ("/api/generate", {"pattern": "(a"}, 400, "pattern '\\(a' is not a valid regular expression"),
    ("/api/generate", {"pattern": "(a)\\1"}, 400, "pattern .* uses what a finite automaton"),
    ("/api/generate", {"pattern": "[#@]+"}, 400, "no text made of the model's characters .*matches pattern"),
    ("/api/generate", {"pattern": "[a-z]{50}", "length": 10}, 400, "no text of at most 10 characters.*raise length"),
    ("/api/generate", {"prime": "The", "pattern": "[a-z]+"}, 400, "no text that starts with the prime 'T'"),
    ("/api/generate", {"include": ["#"]}, 400, "include word '#'"),
    ("/api/generate", {"include": [""]}, 400, "include: expected a word"),
    ("/api/generate", {"novelty": 1}, 400, "novelty: expected true or false"),
    ("/api/generate", {"model": "nope"}, 404, "no model 'nope'"),
    ("/api/generate", {"model": "surnames"}, 400, "'classify' model"),
    ("/api/classify", {"names": "Ng"}, 400, "names: expected a list"),
    ("/api/classify", {"names": [1]}, 400, "list of strings"),
    ("/api/inspect", {"text": "ab", "unit": 9999}, 400, "unit must be in"),
    ("/api/nothing", {}, 404, "no such endpoint"),
    ("/api/score", [1, 2], 400, "JSON object"),
    ("/api/score", {"text": [[[[[[[[[[[[[[[[[["a"]]]]]]]]]]]]]]]]]]}, 400, "nests deeper than 16"),
])
def test_bad_requests_get_4xx_json(base: str, path: str, body: Any, status: int, message: str) -> None:
    got, data, kind = call(base, path, body)
    assert got == status and kind.startswith("application/json")
    answer = json.loads(data)
    assert answer["status"] == status
    assert re.search(message, answer["error"]), answer


def test_oversize_deep_and_broken_bodies(running: Running) -> None:
    base = running.url
    status, data, _ = call(base, "/api/score", raw=b'{"text": "' + b"a" * 5000 + b'"}')
    assert status == 413 and "at most 4,096" in json.loads(data)["error"]
    status, data, _ = call(base, "/api/score", raw=b"{not json")
    assert status == 400 and "not JSON" in json.loads(data)["error"]
    status, data, _ = call(base, "/api/score", raw=b"[" * 100_000 + b"]" * 100_000)  # refused before it is parsed
    assert status == 413
    for deep in (b"[" * 2000 + b"]" * 2000, b'{"a":' * 600 + b"1" + b"}" * 600):  # past, and within, the recursion limit
        status, data, _ = call(base, "/api/score", raw=deep)
        assert status == 400 and "nests deeper than 16" in json.loads(data)["error"]
    assert call(base, "/nowhere")[0] == 404

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it is read
        yield b'{"text": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}'

    import httpx

    response = httpx.post(base + "/api/score", content=chunks(), timeout=30)
    assert response.status_code == 413 and "over 4,096 bytes" in response.json()["error"]
    small = httpx.post(base + "/api/score", content=iter([b'{"text": ', b'"Once upon"}']), timeout=30)
    assert small.status_code == 200 and small.json()["chars"] == 8


def test_a_negative_malformed_missing_or_huge_content_length(tiny: Running) -> None:
    for length in (b"-1", b"abc", b"1, 2"):
        answer = raw_http(tiny.port, b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + length
                          + b"\r\n\r\n" + b"a" * 100_000)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    big = raw_http(tiny.port, b"POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 300000000\r\n\r\n{")
    assert big.startswith(b"HTTP/1.1 413") and b"connection: close" in big.lower()
    # none: no body (HTTP/1.1), so the bytes sent anyway are not read as one
    none = raw_http(tiny.port, b'POST /api/score HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n{"text": "a cat"}')
    assert none.startswith(b"HTTP/1.1 400") and b"needs at least two characters" in none
    assert call(tiny.url, "/api/models")[0] == 200  # and the server answers on


def test_the_page_and_its_files_are_served_from_package_data(running: Running) -> None:
    base = running.url
    status, page, kind = call(base, "/")
    assert status == 200 and kind.startswith("text/html")
    for needed in (b'id="prime"', b'id="generate"', b'id="temperature"', b'id="top5"', b'id="coloured"', b'id="stop"'):
        assert needed in page
    for path, kind_start in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        status, data, kind = call(base, path)
        assert status == 200 and kind.startswith(kind_start) and data
        assert b"http://" not in data and b"https://" not in data  # nothing from a CDN
    assert b"https://" not in page and b"http://" not in page
    assert call(base, "/static/../server.py")[0] == 404
    assert call(base, "/", headers={"Connection": "Upgrade", "Upgrade": "websocket"})[1] == page  # no WebSockets
    assert not [line for line in running.lines if "WebSocket" in line or "upgrade" in line]


# --------------------------------------------------------------------------- who may call it


def test_foreign_hosts_and_other_origins_are_refused(tiny: Running) -> None:
    body = {"text": "a cat"}
    own = f"http://127.0.0.1:{tiny.port}"
    for headers in ({"Host": "evil.example"}, {"Host": f"evil.example:{tiny.port}"},
                    {"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": "http://[::1"},
                    {"Origin": f"file://127.0.0.1:{tiny.port}"},
                    {"Origin": f"http://127.0.0.1:{tiny.port + 1}"},  # another port is another origin
                    {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://evil.example", "Content-Type": "text/plain"}):  # a page's simple POST
        status, data, _ = call(tiny.url, "/api/score", body, headers=headers)
        assert status == 403, (headers, data)
        assert "DNS-rebinding" in json.loads(data)["error"] or "other web pages" in json.loads(data)["error"]
    assert call(tiny.url, "/", headers={"Host": "evil.example"})[0] == 403  # the page too: rebinding reads it
    for headers in ({}, {"Origin": own}, {"Host": f"localhost:{tiny.port}", "Origin": f"http://localhost:{tiny.port}"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": own}):
        assert call(tiny.url, "/api/score", body, headers=headers)[0] == 200, headers


def test_allowed_hosts_origins_and_the_token(tiny_run: Path) -> None:
    service = Service({"tiny": checkpoint.load(tiny_run)}, TINY_LIMITS)
    with Running(service, allow_hosts=("studio.lan",), allow_origins=("http://localhost:3000",),
                 token="s3cret") as server:
        body = {"text": "a cat"}
        bearer = {"Authorization": "Bearer s3cret"}
        assert call(server.url, "/api/score", body)[0] == 401
        assert call(server.url, "/api/score", body, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(server.url, "/api/score", body, headers=bearer)[0] == 200
        assert call(server.url, "/api/score?token=s3cret", body)[0] == 200
        assert call(server.url, "/api/score?token=s3cre", body)[0] == 401
        assert call(server.url, "/")[0] == 200  # the page itself holds no data; it sends the token it was opened with
        assert call(server.url, "/api/score", body, headers={**bearer, "Host": "studio.lan:80"})[0] == 200
        assert call(server.url, "/api/score", body, headers={**bearer, "Origin": "http://localhost:3000"})[0] == 200
        assert call(server.url, "/api/score", body, headers={**bearer, "Origin": "http://localhost:3001"})[0] == 403


def test_serve_without_the_extra_says_how_to_install_it(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("chargen.serve.server", "chargen.serve.app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of it now fails, as when it is not installed
    result = CliRunner().invoke(app, ["serve", "--model", str(tiny_run), "--port", "0"])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and 'pip install -e ".[serve]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_chargen_serve_prints_its_url_with_the_token_and_stops_cleanly_on_ctrl_c(tiny_run: Path) -> None:
    need_extra()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "chargen", "serve", "--model", str(tiny_run), "--port", "0",
                                "--token", "auto"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        found = re.search(r"serving tiny on (http://127\.0\.0\.1:\d+)/\?token=([\w-]{20,}) \(Ctrl-C stops\)", first)
        assert found, first
        url, token = found.groups()
        assert call(url, "/api/score", {"text": "a cat"})[0] == 401
        assert call(url, f"/api/score?token={token}", {"text": "a cat"})[0] == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
        assert "Traceback" not in rest and rest.strip().splitlines()[-1] == "stopped"
        assert '"POST /api/score?token=... HTTP/1.1" 200' in rest and token not in rest  # logged, the token hidden
    finally:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- the page in a browser


def _browser() -> Any:
    """A headless chromium driven by selenium, or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    chromium = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1300"):
        options.add_argument(arg)
    options.binary_location = chromium
    try:
        return webdriver.Chrome(service=DriverService(driver), options=options)
    except Exception as e:  # noqa: BLE001 - a browser that cannot start is an environment problem
        pytest.skip(f"chromium would not start: {str(e).splitlines()[0][:200]}")


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _browser()
    yield driver
    driver.quit()


def test_the_page_in_a_headless_browser(base: str, models: dict[str, Any], browser: Any, corpus_mirror: Path) -> None:  # copies need grimm's text
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(base + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
    prime = browser.find_element(By.ID, "prime")
    prime.clear()
    prime.send_keys("The king said to his daughter")
    browser.find_element(By.ID, "seed").send_keys("7")
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#top5 li")) == 5)
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("done"))
    shown = browser.find_element(By.ID, "generated").text
    expected = library(models["grimm"], {"prime": "The king said to his daughter", "length": 300,
                                         "temperature": 0.8, "seed": 7})
    assert shown and " ".join(shown.split()) == " ".join(expected.split())  # the page's own layout of spaces
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#coloured span"))

    def fill(field: str, value: str) -> None:
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)

    def run() -> str:
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text.startswith(("done", "generation stopped"))
                   or "error" in b.find_element(By.ID, "status").get_attribute("class"))
        return browser.find_element(By.ID, "status").text

    # the studio: the controls as inputs give the text the library gives with them
    controls = {"top_p": 0.9, "min_p": 0.02, "repetition_penalty": 1.1, "repetition_window": 32, "no_repeat": 16}
    for name, value in controls.items():
        fill(name, str(value))
    assert run().startswith("done")
    body = {"prime": "The king said to his daughter", "length": 300, "temperature": 0.8, "seed": 7, **controls}
    expected = library(models["grimm"], body)
    assert expected != shown and _spaced(browser.find_element(By.ID, "generated").text) == _spaced(expected)
    # a refusal is one line naming the field
    fill("pattern", "(")
    assert run().startswith("pattern '(' is not a valid regular expression")
    # greedy from a prime copies the tales: the copied spans are highlighted and the numbers shown
    for name in (*controls, "pattern"):
        browser.find_element(By.ID, name).clear()
    fill("schedule", "0")
    fill("length", "200")
    fill("prime", "Little Red-Cap")
    assert run().startswith("done")
    greedy = {"prime": "Little Red-Cap", "length": 200, "temperature": 0, "seed": 7, "novelty": True, "stream": False}
    answer = post(base, "/api/generate", greedy)
    sample, copies = greedy["prime"] + answer["text"], answer["copies"]
    assert copies["long_copies"] and _spaced(browser.find_element(By.ID, "generated").text) == _spaced(answer["text"])
    assert browser.find_elements(By.CSS_SELECTOR, "#generated mark.copy")  # copied from the tales, not just the prime
    marks = "".join(m.text for m in browser.find_elements(By.CSS_SELECTOR, "#output mark.copy"))
    assert _spaced(marks) == _spaced("".join(sample[a:b] for a, b in copies["long_copies"]))
    report = browser.find_element(By.ID, "novelty-report").text
    assert f"longest copy {copies['longest_copy']} characters" in report and f"line {copies['corpus_line']}" in report
    if os.environ.get("CHARGEN_SCREENSHOT"):  # docs/serve.png is taken this way
        browser.save_screenshot(os.environ["CHARGEN_SCREENSHOT"])


def _spaced(text: str) -> str:
    """Text with its runs of white space as one space: the page's own layout of spaces and line breaks."""
    return " ".join(text.split())


def test_the_page_sends_the_token_it_was_opened_with(tiny_run: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with Running(Service({"tiny": checkpoint.load(tiny_run)}, TINY_LIMITS), token="t0ken") as server:
        browser.get(server.url + "/?token=t0ken")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        browser.find_element(By.ID, "prime").clear()  # the tiny model knows lower-case letters only
        browser.find_element(By.ID, "prime").send_keys("once upon a time")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda b: b.find_element(By.ID, "status").text.startswith("done"))
        browser.get(server.url + "/")  # without it: one clear line on the page
        wait.until(lambda b: "token" in b.find_element(By.ID, "status").text)
