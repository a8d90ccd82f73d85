"""Swagger UI (DESIGN §7) in a real browser: Debian's chromium, headless, opens
/swagger/index.html of a running ``tmq api`` with every host name but 127.0.0.1 unresolvable,
so the page works only if everything it needs comes from our server.

Checked: the DOM chromium dumps once the page has run shows every operation of the spec
(path, summary, operationId), which only Swagger UI rendering the fetched /openapi.json puts
there; the API's access log shows each asset index.html names, the initializer and
/openapi.json fetched by the browser with a 200; chromium's own network log shows that no
request the page made went to another host; index.html and the initializer name no absolute
URL. chromium runs in its own process group, killed whole at the end, each step time-bound.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from api_helpers import ApiProcess, load_csv
from integration_helpers import require_binary

from tmq.api.openapi import build_spec
from tmq.telemetry.csv_source import real_capture_path

#: Headless, no sandbox (tests may run as root), nothing in the background, a fresh profile,
#: and every host but 127.0.0.1 unresolvable. The virtual time budget lets the page's
#: scripts run (fetch the spec, render) before the DOM is dumped, without waiting for real.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--virtual-time-budget=10000",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
#: Real seconds chromium may take for the whole page.
BROWSER_TIMEOUT = 90.0
#: How long the API's access log may lag behind the browser.
LOG_TIMEOUT = 10.0

SWAGGER_INDEX = "/swagger/index.html"
SWAGGER_INITIALIZER = "/swagger/swagger-initializer.js"
#: What Swagger UI shows when it cannot load or parse the spec.
LOAD_FAILURE = "Failed to load API definition"

_ACCESS = re.compile(r'"(GET|HEAD) (\S+) HTTP/[0-9.]+" ([0-9]{3}) \S+ "[^"]*" "([^"]*)"')
_REFERENCE = re.compile(r'\b(?:src|href)="([^"]+)"')
_ABSOLUTE_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://|(?<![:\w])//[^/\s]")


@pytest.fixture
def api(pg_dsn, tmp_path) -> Iterator[ApiProcess]:
    """``tmq api --access-log`` over the real capture; stopped at the end."""
    load_csv(pg_dsn, real_capture_path())
    process = ApiProcess(pg_dsn, tmp_path, "--access-log")
    try:
        yield process
    finally:
        process.stop()


def _fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200, url
        return response.read().decode("utf-8")


def _tail(path: Path, size: int = 3000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-size:]


def _kill_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGKILL chromium's whole process group (its zygote, renderers and utilities outlive the
    browser process otherwise) and wait until none of it is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"chromium's process group {process.pid} still alive {timeout} s after SIGKILL")


class Browsed:
    """What headless chromium made of ``url``: the DOM after the page ran, and the URLs of the
    requests the page made (from chromium's network log)."""

    def __init__(self, chromium: str, url: str, work: Path):
        work.mkdir()
        profile = work / "profile"
        self.dom_path = work / "dom.html"
        self.log_path = work / "chromium.log"
        self.net_log_path = work / "net-log.json"
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--log-net-log={self.net_log_path}",
            "--dump-dom",
            url,
        ]
        # HOME too: nothing of the user's own profile is read or written.
        env = {**os.environ, "HOME": str(work)}
        with open(self.dom_path, "wb") as out, open(self.log_path, "wb") as err:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=work,
                env=env,
                start_new_session=True,
            )
        try:
            try:
                status = process.wait(BROWSER_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"chromium ran over {BROWSER_TIMEOUT} s:\n{_tail(self.log_path)}")
        finally:
            _kill_group(process)
        assert status == 0, f"chromium exited with {status}:\n{_tail(self.log_path)}"
        self.dom = self.dom_path.read_text(errors="replace")
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))

    def page_requests(self) -> list[str]:
        """The URLs the page (not the browser's own services) requested: the main frame, and
        every request whose initiator is the page's origin."""
        log = json.loads(self.net_log_path.read_text())
        start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        urls = []
        for event in log["events"]:
            params = event.get("params") or {}
            if event["type"] != start_job or "url" not in params:
                continue
            if params.get("initiator") == self.origin or params.get("request_type") == "main frame":
                urls.append(params["url"])
        return urls


def _access_log(api: ApiProcess, expected: set[str]) -> dict[str, set[int]]:
    """The browser's requests in the API's access log (path -> statuses), once all of
    ``expected`` are there (the log is written as each request finishes)."""
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        seen: dict[str, set[int]] = {}
        for _method, path, status, agent in _ACCESS.findall(api.log_path.read_text()):
            if "HeadlessChrome" in agent:
                seen.setdefault(path, set()).add(int(status))
        if expected <= set(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


class SwaggerUiTests:
    def test_index_and_initializer_name_no_absolute_url(self, api):
        """index.html and swagger-initializer.js, as served, reference no absolute or
        protocol-relative URL: everything is relative to our server."""
        for path in (SWAGGER_INDEX, SWAGGER_INITIALIZER):
            text = _fetch_text(api.url(path))
            assert _ABSOLUTE_URL.findall(text) == [], (path, text)

    def test_browser_renders_the_spec_from_our_server_alone(self, api, tmp_path):
        """Headless chromium with no other host reachable renders every operation of the
        spec, fetching index.html's assets, the initializer and /openapi.json from our
        server (access log, all 200) and nothing from anywhere else (network log)."""
        chromium = require_binary("chromium", "chromium")
        index_html = _fetch_text(api.url(SWAGGER_INDEX))
        page = Browsed(chromium, api.url(SWAGGER_INDEX), tmp_path / "chromium")

        spec = build_spec()
        dom = page.dom
        missing = [spec["info"]["title"]] if spec["info"]["title"] not in dom else []
        for path, operations in spec["paths"].items():
            missing += [path] if html.escape(path) not in dom else []
            for operation in operations.values():
                for text in (operation["summary"], operation["operationId"]):
                    missing += [text] if html.escape(text, quote=False) not in dom else []
        assert missing == [], (
            f"Swagger UI did not render {missing}; chromium said:\n{_tail(page.log_path)}\n"
            f"DOM: {dom[:3000]}"
        )
        assert LOAD_FAILURE not in dom

        references = _REFERENCE.findall(index_html)
        assets = {urlsplit(urljoin(SWAGGER_INDEX, ref)).path for ref in references}
        assert {"/swagger/swagger-ui-bundle.js", "/swagger/swagger-ui.css"} <= assets
        expected = assets | {SWAGGER_INDEX, SWAGGER_INITIALIZER, "/openapi.json"}
        fetched = _access_log(api, expected)
        assert expected <= set(fetched), f"not fetched: {sorted(expected - set(fetched))}"
        failed = {path: statuses for path, statuses in fetched.items() if statuses != {200}}
        assert failed == {}, f"the browser's requests that did not answer 200: {failed}"

        requested = page.page_requests()
        elsewhere = [url for url in requested if not url.startswith(page.origin + "/")]
        assert elsewhere == [], f"the page requested other hosts: {elsewhere}"
        assert {urlsplit(url).path for url in requested} == set(fetched)
