#!/usr/bin/env python3
"""A TURN client built on aioice (an independent implementation, used by aiortc): allocates on
the server, sends COUNT datagrams to PEER through the relay and counts the echoes that come
back. Prints one JSON line: relayed and mapped addresses, sent, echoed.

Usage: turn_client.py SERVER_IP SERVER_PORT USERNAME PASSWORD PEER_IP PEER_PORT COUNT
"""

import asyncio
import json
import sys

from aioice import turn


class Echoes(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = set()
        self.errors = []

    def datagram_received(self, data, addr):
        self.received.add(data)

    def error_received(self, exc):
        self.errors.append(repr(exc))


async def main():
    server_ip, server_port, user, password, peer_ip, peer_port, count = sys.argv[1:8]
    count = int(count)
    transport, protocol = await asyncio.wait_for(
        turn.create_turn_endpoint(
            Echoes,
            server_addr=(server_ip, int(server_port)),
            username=user,
            password=password,
        ),
        timeout=10,
    )
    relayed = transport.get_extra_info("sockname")
    mapped = transport.get_extra_info("related_address")
    sent = 0
    for i in range(count):
        transport.sendto(b"aioice %d" % i, (peer_ip, int(peer_port)))
        sent += 1
        await asyncio.sleep(0.02)
    for _ in range(100):
        if len(protocol.received) >= count:
            break
        await asyncio.sleep(0.05)
    transport.close()
    await asyncio.sleep(0.2)
    print(
        json.dumps(
            {
                "relayed": "%s:%d" % (relayed[0], relayed[1]),
                "mapped": "%s:%d" % (mapped[0], mapped[1]),
                "sent": sent,
                "echoed": len(protocol.received),
                "errors": protocol.errors,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
