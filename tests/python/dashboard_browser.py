"""Drives Farside's dashboard in headless Chromium over the DevTools protocol (CDP), as an
operator would: a wrong password, the right one, every page, a registration's check, and
ending a TURN allocation.

Usage: dashboard_browser.py BASE_URL PASSWORD SHOTS_DIR EXPECT_JSON

EXPECT_JSON names what must show: {"user": ..., "aor": ..., "relayed": ...}. Prints one JSON
object with what it saw (the test judges it) and keeps a screenshot of each page in SHOTS_DIR.
Only the standard library and `websockets` (as the WebSocket phone test) are used.
"""

import asyncio
import json
import os
import sys
import time

from cdp import chromium


async def drive(base, password, shots, expect):
    seen = {}
    async with chromium() as b:
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
        for page in ["registrations", "sources", "calls", "log", "users", "config"]:
            await b.goto(f"{base}/{page}", page)
            seen[f"{page}_text"] = await b.text()
            await b.shot(os.path.join(shots, f"{page}.png"))
        # The check of the first registration, from its link.
        await b.goto(f"{base}/registrations", "registrations")
        seen["check_path"] = await b.submit(
            "document.querySelector('a.check').click()", "registrations/check")
        seen["check_text"] = await b.text()
        await b.shot(os.path.join(shots, "phone-check.png"))
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
    return seen


def main():
    base, password, shots, expect = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    os.makedirs(shots, exist_ok=True)
    seen = asyncio.run(asyncio.wait_for(drive(base, password, shots, expect), 120))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
