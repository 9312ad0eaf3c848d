"""chargen serve: a real server on a free loopback port, a real HTTP client, and the page in a headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from chargen import checkpoint
from chargen.cli import app
from chargen.inspect import score_text, trace
from chargen.sample import generate
from chargen.serve import Limits, Service, make_server
from chargen.tasks.classify import classify_names

LIMITS = Limits(max_length=400, max_text=300, max_names=5, max_body=4096)


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    return {"grimm": checkpoint.load("grimm"), "surnames": checkpoint.load("surnames")}


@pytest.fixture(scope="module")
def base(models: dict[str, Any]) -> Iterator[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models; two threads crawl when other processes hold the cores
    server = make_server(Service(models, LIMITS), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()
    torch.set_num_threads(threads)


def call(base: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) of a GET (no body) or a POST."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers["Content-Type"]


def post(base: str, path: str, body: Any) -> Any:
    status, data, _ = call(base, path, body)
    assert status == 200, data
    return json.loads(data)


def streamed(base: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    status, data, kind = call(base, "/api/generate", body)
    assert status == 200 and kind.startswith("application/x-ndjson"), data
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert lines[-1] == {"done": True}
    return lines[0]["start"], "".join(line["text"] for line in lines[1:-1])


def test_generate_equals_the_library_and_chargen_sample(base: str, models: dict[str, Any]) -> None:
    body = {"prime": "The king", "length": 120, "temperature": 0.8, "top_k": 10, "seed": 3}
    settings, text = streamed(base, body)
    assert settings["seed"] == 3 and settings["model"] == "grimm"
    loaded = models["grimm"]
    library = "".join(generate(loaded.model, loaded.vocab, prime="The king", length=120, temperature=0.8,
                               top_k=10, seed=3, chunk_size=30))
    assert text == library and len(text) == 120
    cli = CliRunner().invoke(app, ["sample", "--prime", "The king", "--length", "120", "--temp", "0.8",
                                   "--top-k", "10", "--seed", "3"])
    assert cli.exit_code == 0 and cli.stdout == "The king" + text + "\n"
    whole = post(base, "/api/generate", {**body, "stream": False})
    assert whole["text"] == text
    # no seed: the server picks one and says which, so the text can be had again
    settings, first = streamed(base, {"prime": "A", "length": 40})
    assert streamed(base, {"prime": "A", "length": 40, "seed": settings["seed"]})[1] == first


def test_concurrent_requests_equal_sequential_ones(base: str) -> None:
    bodies = [{"prime": "Once", "length": 60, "seed": s, "temperature": 1.0} for s in range(5)]
    sequential = [streamed(base, b)[1] for b in bodies]
    assert len(set(sequential)) == len(sequential)  # different seeds, different texts
    with ThreadPoolExecutor(max_workers=5) as pool:
        concurrent = list(pool.map(lambda b: streamed(base, b)[1], bodies))
        scores = list(pool.map(lambda t: post(base, "/api/score", {"text": t})["total_log_prob"], sequential))
    assert concurrent == sequential
    assert scores == [post(base, "/api/score", {"text": t})["total_log_prob"] for t in sequential]


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


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/generate", {"length": 401}, 413, "at most 400|between 0 and 400"),
    ("/api/generate", {"prime": "x" * 301}, 413, "at most 300"),
    ("/api/score", {"text": "a" * 301}, 413, "at most 300"),
    ("/api/inspect", {"text": "a" * 301}, 413, "at most 300"),
    ("/api/classify", {"names": ["Ng"] * 6}, 413, "at most 5"),
    ("/api/generate", {"length": -1}, 400, "between 0 and 400"),
    ("/api/generate", {"length": "10"}, 400, "length: expected an integer"),
    ("/api/generate", {"temperature": -1}, 400, "temperature"),
    ("/api/generate", {"prime": "#"}, 400, "outside the model's vocabulary"),
    ("/api/generate", {"model": "nope"}, 404, "no model 'nope'"),
    ("/api/generate", {"model": "surnames"}, 400, "'classify' model"),
    ("/api/classify", {"names": "Ng"}, 400, "names: expected a list"),
    ("/api/classify", {"names": [1]}, 400, "list of strings"),
    ("/api/inspect", {"text": "ab", "unit": 9999}, 400, "unit must be in"),
    ("/api/nothing", {}, 404, "no such endpoint"),
    ("/api/score", [1, 2], 400, "JSON object"),
])
def test_bad_requests_get_4xx_json(base: str, path: str, body: Any, status: int, message: str) -> None:
    got, data, kind = call(base, path, body)
    assert got == status and kind.startswith("application/json")
    answer = json.loads(data)
    assert answer["status"] == status
    assert re.search(message, answer["error"]), answer


def test_oversize_and_broken_bodies(base: str) -> None:
    status, data, _ = call(base, "/api/score", raw=b'{"text": "' + b"a" * 5000 + b'"}')
    assert status == 413 and "at most 4,096" in json.loads(data)["error"]
    status, data, _ = call(base, "/api/score", raw=b"{not json")
    assert status == 400 and "not JSON" in json.loads(data)["error"]
    assert call(base, "/nowhere")[0] == 404


def test_the_page_and_its_files_are_served_from_package_data(base: str) -> None:
    status, page, kind = call(base, "/")
    assert status == 200 and kind.startswith("text/html")
    for needed in (b'id="prime"', b'id="generate"', b'id="temperature"', b'id="top5"', b'id="coloured"'):
        assert needed in page
    for path, kind_start in (("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")):
        status, data, kind = call(base, path)
        assert status == 200 and kind.startswith(kind_start) and data
        assert b"http://" not in data and b"https://" not in data  # nothing from a CDN
    assert b"https://" not in page and b"http://" not in page
    assert call(base, "/static/../server.py")[0] == 404


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


def test_the_page_in_a_headless_browser(base: str, models: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    try:
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
        loaded = models["grimm"]
        expected = "".join(generate(loaded.model, loaded.vocab, prime="The king said to his daughter", length=300,
                                    temperature=0.8, seed=7, chunk_size=30))
        assert shown and " ".join(shown.split()) == " ".join(expected.split())  # the page's own layout of spaces
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#coloured span"))
        if os.environ.get("CHARGEN_SCREENSHOT"):  # docs/serve.png is taken this way
            browser.save_screenshot(os.environ["CHARGEN_SCREENSHOT"])
    finally:
        browser.quit()
