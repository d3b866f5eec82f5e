"""Headless Chromium over the DevTools protocol (CDP), for the browser tests: start it, open a
page, evaluate JavaScript, navigate, submit forms, take screenshots. Only the standard library
and `websockets`."""

import asyncio
import base64
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time

import websockets


class Browser:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.session = None
        self.events = []

    async def call(self, method, params=None, session=True, timeout=20):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def eval(self, js, timeout=20):
        r = await self.call(
            "Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True},
            timeout=timeout)
        if "exceptionDetails" in r:
            raise RuntimeError(json.dumps(r["exceptionDetails"])[:2000])
        return r.get("result", {}).get("value")

    async def wait_loaded(self, path_re=None):
        deadline = time.time() + 15
        while time.time() < deadline:
            state = await self.eval("document.readyState + ' ' + location.pathname")
            if state and state.startswith("complete") and (path_re is None or re.search(path_re, state)):
                return state.split(" ", 1)[1]
            await asyncio.sleep(0.1)
        raise RuntimeError(f"page did not load ({path_re})")

    async def goto(self, url, path_re=None):
        await self.call("Page.navigate", {"url": url})
        return await self.wait_loaded(path_re)

    async def submit(self, form_js, path_re):
        # Clicks a form's button, then waits for the next page to load.
        await self.eval("window.__old = true")
        await self.eval(form_js)
        deadline = time.time() + 15
        while time.time() < deadline:
            gone = await self.eval("window.__old === undefined")
            if gone:
                return await self.wait_loaded(path_re)
            await asyncio.sleep(0.1)
        raise RuntimeError("form submission did not navigate")

    async def text(self):
        return await self.eval("document.body.innerText")

    async def shot(self, path):
        r = await self.call("Page.captureScreenshot", {"format": "png"})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))



@contextlib.asynccontextmanager
async def chromium(extra_args=()):
    """A headless Chromium with a fresh profile and one page attached; killed on exit."""
    profile = tempfile.mkdtemp(prefix="farside-chromium-")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    proc = subprocess.Popen(
        [chrome, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,900",
         *extra_args, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = None
        deadline = time.time() + 30
        while time.time() < deadline and endpoint is None:
            line = proc.stderr.readline()
            m = re.search(r"DevTools listening on (ws://\S+)", line or "")
            if m:
                endpoint = m.group(1)
        if endpoint is None:
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        async with websockets.connect(endpoint, max_size=64 << 20) as ws:
            b = Browser(ws)
            target = await b.call("Target.createTarget", {"url": "about:blank"}, session=False)
            attached = await b.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False)
            b.session = attached["sessionId"]
            await b.call("Page.enable")
            await b.call("Runtime.enable")
            yield b
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
