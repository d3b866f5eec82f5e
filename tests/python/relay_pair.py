#!/usr/bin/env python3
"""One side of a two-host exchange, for the NAT lab: each side writes where it can be reached
into DIR/<me>, waits for DIR/<other>, then sends COUNT datagrams there while counting what
arrives from the other side. Prints one JSON line: {"me": ..., "other": ..., "sent", "received"}.

--relay: reachable at a TURN relayed address (aioice allocates on SERVER with USER/PASSWORD;
         data is relayed both ways, with permissions and channels as aioice sets them up).
--direct: reachable at the server-reflexive address a STUN Binding to SERVER returned (the
          control: behind symmetric NATs nothing should arrive).

Usage: relay_pair.py --relay|--direct DIR ME OTHER SERVER_IP SERVER_PORT USER PASSWORD COUNT
"""

import asyncio
import json
import os
import socket
import struct
import sys
import time


def wait_for(path, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                host, port = text.rsplit(":", 1)
                return host, int(port)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise SystemExit("no address from the other side in %s" % path)


def publish(path, addr):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%s:%d" % addr)
    os.rename(tmp, path)


class Counter(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = set()

    def datagram_received(self, data, addr):
        if data.startswith(b"pair "):
            self.received.add(data)


async def relay(d, me, other, server, user, password, count):
    from aioice import turn

    transport, protocol = await asyncio.wait_for(
        turn.create_turn_endpoint(Counter, server_addr=server, username=user, password=password),
        timeout=10,
    )
    mine = transport.get_extra_info("sockname")
    publish(os.path.join(d, me), mine)
    theirs = wait_for(os.path.join(d, other))
    # A first datagram makes aioice install the permission (and channel) for the other side;
    # until both sides have, the relay rightly drops what arrives (RFC 8656 §9).
    transport.sendto(b"warm-up", theirs)
    await asyncio.sleep(1.0)
    for i in range(count):
        transport.sendto(b"pair %s %d" % (me.encode(), i), theirs)
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    transport.close()
    return mine, theirs, protocol.received


def reflexive(sock, server):
    tid = os.urandom(12)
    sock.sendto(struct.pack("!HHI", 1, 0, 0x2112A442) + tid, server)
    sock.settimeout(2.0)
    data, _ = sock.recvfrom(2048)
    pos = 20
    while pos + 4 <= len(data):
        typ, length = struct.unpack("!HH", data[pos : pos + 4])
        value = data[pos + 4 : pos + 4 + length]
        if typ == 0x0020:
            port = struct.unpack("!H", value[2:4])[0] ^ 0x2112
            ip = struct.unpack("!I", value[4:8])[0] ^ 0x2112A442
            return socket.inet_ntoa(struct.pack("!I", ip)), port
        pos += 4 + ((length + 3) & ~3)
    raise SystemExit("no XOR-MAPPED-ADDRESS")


def direct(d, me, other, server, count):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    mine = reflexive(sock, server)
    publish(os.path.join(d, me), mine)
    theirs = wait_for(os.path.join(d, other))
    # The same warm-up as through the relay: a hole-punching attempt from both sides.
    sock.sendto(b"warm-up", theirs)
    time.sleep(1.0)
    sock.settimeout(0.05)
    received = set()
    for i in range(count):
        sock.sendto(b"pair %s %d" % (me.encode(), i), theirs)
        end = time.time() + 0.05
        while time.time() < end:
            try:
                data, _ = sock.recvfrom(2048)
                if data.startswith(b"pair "):
                    received.add(data)
            except socket.timeout:
                pass
    end = time.time() + 1.0
    while time.time() < end:
        try:
            data, _ = sock.recvfrom(2048)
            if data.startswith(b"pair "):
                received.add(data)
        except socket.timeout:
            pass
    return mine, theirs, received


def main():
    mode, d, me, other, server_ip, server_port, user, password, count = sys.argv[1:10]
    server = (server_ip, int(server_port))
    if mode == "--relay":
        mine, theirs, received = asyncio.run(relay(d, me, other, server, user, password, int(count)))
    else:
        mine, theirs, received = direct(d, me, other, server, int(count))
    print(
        json.dumps(
            {
                "me": "%s:%d" % mine,
                "other": "%s:%d" % theirs,
                "sent": int(count),
                "received": len(received),
            }
        )
    )


if __name__ == "__main__":
    main()
