"""Headless Chromium driven over its DevTools protocol, with the standard library only.

Chromium is started with `--remote-debugging-pipe`: it reads protocol commands from fd 3 and writes
replies and events to fd 4, each a JSON object ended by a NUL byte. No port, no websocket client, no
extra package. A page is loaded in a fresh profile and everything the tests ask about is recorded by
the browser itself, not guessed from the HTML:

- every request the page makes (Network.requestWillBeSent), so a request to the network is seen even
  when, as here, host resolution is switched off and it could never succeed;
- console messages, uncaught exceptions and the browser's own log (a failed image load is logged
  there, not on the page's console);
- values evaluated in the page after its load event: each image's naturalWidth (0 when it did not
  decode), the document's lang and title, and whether anything is wider than the window.

Run as a script it writes a full-page screenshot: `python tests/browser.py report.html out.png`.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# What a locally written report may load: itself and the images embedded in it.
LOCAL_SCHEMES = ("file:", "data:", "about:")

PAGE_FACTS = """JSON.stringify({
  lang: document.documentElement.lang,
  title: document.title,
  images: [...document.images].map(i => ({alt: i.alt, src: i.src.slice(0, 40), complete: i.complete,
                                         naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
})"""


def _above(fd: int, lowest: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    url: str
    facts: dict
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # console messages and exceptions, "level: text"
    log: list[str] = field(default_factory=list)  # the browser's log entries, "level: text"
    screenshot: bytes | None = None

    @property
    def network_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(LOCAL_SCHEMES)]

    @property
    def errors(self) -> list[str]:
        return [m for m in self.console + self.log if m.startswith(("error", "assert"))]

    @property
    def broken_images(self) -> list[dict]:
        return [i for i in self.facts["images"] if not i["complete"] or i["naturalWidth"] == 0]


class Chromium:
    """One headless Chromium process with a throwaway profile; use as a context manager."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError("chromium is not installed")
        self.timeout = timeout
        self._next_id = 0
        self._events: queue.Queue = queue.Queue()
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._closed = False

    def __enter__(self) -> "Chromium":
        self.profile = tempfile.mkdtemp(prefix="resizelab-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium's ends moved above fd 9, so that neither can be one of the fds 3 and 4 that get filled in.
        to_browser_r, from_browser_w = (_above(fd, 10) for fd in (to_browser_r, from_browser_w))
        flags = ["--headless", "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "--no-first-run",
                 "--no-default-browser-check", "--disable-gpu", "--disable-extensions", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                 "--disable-features=Translate,OptimizationHints,MediaRouter", "--mute-audio", "--hide-scrollbars",
                 # No name resolves: a page that reaches for the network is recorded asking, and gets nothing.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--no-proxy-server", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        # A two-line trampoline puts the pipe ends at the fds Chromium expects (3: commands in, 4: replies out)
        # and becomes Chromium (dash, /bin/sh, cannot redirect fds above 9).
        trampoline = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
                      "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
        self.proc = subprocess.Popen([sys.executable, "-c", trampoline, str(to_browser_r), str(from_browser_w), self.executable,
                                      *flags], pass_fds=(to_browser_r, from_browser_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it is being shut down either way
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        shutil.rmtree(self.profile, ignore_errors=True)

    # --- the protocol ----------------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        with self._cond:
                            self._replies[message["id"]] = message
                            self._cond.notify_all()
                    else:
                        self._events.put(message)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while self._next_id not in self._replies:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    stderr = b"".join(self._stderr)[-2000:].decode(errors="replace")
                    raise RuntimeError(f"chromium gave no reply to {method}; its stderr ends: {stderr}")
                self._cond.wait(remaining)
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # --- what the tests use ------------------------------------------------------------------------

    def load(self, path: str | Path, width: int = 1280, height: int = 900, screenshot: bool = False) -> PageReport:
        """Open a local file, wait for its load event, and report what the browser saw."""
        url = Path(path).absolute().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False}, session=session)
        report = PageReport(url=url, facts={})
        self._session = session
        self.send("Page.navigate", {"url": url}, session=session)
        self._collect(report, session, until="Page.loadEventFired")
        # Image decoding can finish after the load event for data: URLs; wait for each to settle.
        self.send("Runtime.evaluate", {"expression": "Promise.all([...document.images].map(i => i.decode().catch(() => null)))",
                                       "awaitPromise": True}, session=session)
        facts = self.send("Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True}, session=session)
        report.facts = json.loads(facts["result"]["value"])
        if screenshot:
            size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                                                                 "scale": 1}}, session=session)
            report.screenshot = base64.b64decode(shot["data"])
        self._collect(report, session, until=None)  # whatever arrived meanwhile
        return report

    def evaluate(self, expression: str):
        """The JSON value of an expression in the page `load` opened last."""
        reply = self.send("Runtime.evaluate", {"expression": f"JSON.stringify({expression})", "returnByValue": True},
                          session=self._session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails'].get('text')}")
        return json.loads(reply["result"]["value"])

    def _collect(self, report: PageReport, session: str, until: str | None) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()) if until else 0.2)
            except queue.Empty:
                if until:
                    raise RuntimeError(f"no {until} from chromium within {self.timeout:.0f} s") from None
                return
            if event.get("sessionId") != session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                report.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                report.failed_requests.append(f"{params.get('errorText')} ({params.get('requestId')})")
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                report.console.append(f"{params['type']}: {text}")
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                report.console.append(f"error: {details.get('exception', {}).get('description') or details.get('text')}")
            elif method == "Log.entryAdded":
                entry = params["entry"]
                report.log.append(f"{entry['level']}: {entry.get('text')} {entry.get('url', '')}".rstrip())
            if until and method == until:
                return


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/browser.py PAGE.html SCREENSHOT.png", file=sys.stderr)
        return 2
    with Chromium() as browser:
        report = browser.load(argv[0], screenshot=True)
    Path(argv[1]).write_bytes(report.screenshot or b"")
    print(json.dumps({"title": report.facts["title"], "lang": report.facts["lang"], "images": report.facts["images"],
                      "network_requests": report.network_requests, "errors": report.errors,
                      "scrollWidth": report.facts["scrollWidth"], "innerWidth": report.facts["innerWidth"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
