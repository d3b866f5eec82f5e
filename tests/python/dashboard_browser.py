"""Drives Farside's dashboard in headless Chromium over the DevTools protocol (CDP), as an
operator would: a wrong password, the right one, every page, and ending a TURN allocation.

Usage: dashboard_browser.py BASE_URL PASSWORD SHOTS_DIR EXPECT_JSON

EXPECT_JSON names what must show: {"user": ..., "aor": ..., "relayed": ...}. Prints one JSON
object with what it saw (the test judges it) and keeps a screenshot of each page in SHOTS_DIR.
Only the standard library and `websockets` (as the WebSocket phone test) are used.
"""

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import websockets


class Browser:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.session = None
        self.events = []

    async def call(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        await self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    async def eval(self, js):
        r = await self.call("Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True})
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


async def drive(base, password, shots, expect):
    profile = tempfile.mkdtemp(prefix="farside-chromium-")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    proc = subprocess.Popen(
        [chrome, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,900",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = {}
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
            attached = await b.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False)
            b.session = attached["sessionId"]
            await b.call("Page.enable")
            await b.call("Runtime.enable")

            # The root sends a stranger to the login page.
            seen["root_path"] = await b.goto(base + "/", None)
            await b.shot(os.path.join(shots, "login.png"))
            # A wrong password is refused.
            await b.eval("document.getElementById('password').value = 'not-the-password'")
            seen["after_wrong"] = await b.submit("document.getElementById('login').click()", None)
            seen["wrong_text"] = await b.text()
            await b.shot(os.path.join(shots, "login-refused.png"))
            # The right one.
            await b.eval(f"document.getElementById('password').value = {json.dumps(password)}")
            seen["after_login"] = await b.submit("document.getElementById('login').click()", None)
            await b.shot(os.path.join(shots, "overview.png"))
            seen["overview_text"] = await b.text()
            for page in ["registrations", "sources", "log", "users", "config"]:
                await b.goto(f"{base}/{page}", page)
                seen[f"{page}_text"] = await b.text()
                await b.shot(os.path.join(shots, f"{page}.png"))
            seen["allocations_path"] = await b.goto(base + "/allocations", "allocations")
            seen["allocations_text"] = await b.text()
            await b.shot(os.path.join(shots, "allocations.png"))
            # End the allocation relayed at the expected address.
            relayed = json.dumps(expect["relayed"])
            seen["end_clicked"] = await b.eval(
                "(() => { const f = [...document.querySelectorAll('form[action=\"/allocations/end\"]')]"
                f".find(f => f.relayed.value === {relayed}); if (!f) return false;"
                " f.querySelector('button').click(); return true; })()")
            if seen["end_clicked"]:
                await b.wait_loaded("allocations")
            # Listed at most a second late: look again until it is gone.
            deadline = time.time() + 5
            while time.time() < deadline:
                await b.goto(base + "/allocations", "allocations")
                seen["allocations_after_end"] = await b.text()
                if expect["relayed"] not in seen["allocations_after_end"]:
                    break
                await asyncio.sleep(0.5)
            await b.shot(os.path.join(shots, "allocation-ended.png"))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
    return seen


def main():
    base, password, shots, expect = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    os.makedirs(shots, exist_ok=True)
    seen = asyncio.run(asyncio.wait_for(drive(base, password, shots, expect), 120))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
