#!/usr/bin/env python3
"""An ng control client, as an operator's script would be: after DELAY seconds it asks the relay
at HOST:PORT for its calls (`list`), then `query`s each, and prints one JSON line:
{"calls": {call-id: {tag: [[rtp packets, rtcp packets], ...per stream], ...}}}.

Usage: ng_query.py HOST PORT DELAY
"""

import json
import socket
import sys
import time


def encode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(encode(x) for x in v) + b"e"
    return b"d" + b"".join(encode(k) + encode(x) for k, x in v.items()) + b"e"


def decode(b, i=0):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i:i + 1] != b"e":
            x, i = decode(b, i)
            out.append(x)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i:i + 1] != b"e":
            k, i = decode(b, i)
            x, i = decode(b, i)
            out[k.decode(errors="replace")] = x
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


def ask(sock, addr, cookie, command):
    sock.sendto(cookie.encode() + b" " + encode(command), addr)
    data, _ = sock.recvfrom(65536)
    head, _, body = data.partition(b" ")
    assert head == cookie.encode(), data
    return decode(body)[0]


def main():
    host, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    time.sleep(delay)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    addr = (host, port)
    calls = ask(sock, addr, "l1", {"command": "list"}).get("calls", [])
    out = {}
    for n, call_id in enumerate(calls):
        q = ask(sock, addr, "q%d" % n, {"command": "query", "call-id": call_id})
        parties = {}
        for tag, party in q.get("tags", {}).items():
            parties[tag] = [
                [s["stats"]["packets"] for s in media["streams"]]
                for media in party.get("medias", [])
            ]
        out[call_id.decode(errors="replace")] = parties
    print(json.dumps({"calls": out}), flush=True)


if __name__ == "__main__":
    main()
