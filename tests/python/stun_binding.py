#!/usr/bin/env python3
"""A STUN Binding client built on aioice's codec (an independent implementation, used by aiortc)
and Python's own sockets and TLS (OpenSSL): sends COUNT Binding requests with FINGERPRINT over
UDP, TCP or TLS (RFC 8489 §6.2, messages back to back on a stream, one connection) and checks each
answer: a success response to that transaction, FINGERPRINT verified by aioice. Prints one JSON
line: transport, local address, the XOR-MAPPED-ADDRESS of every answer, answered.

Usage: stun_binding.py udp|tcp|tls SERVER_IP SERVER_PORT COUNT [CA_FILE]
"""

import json
import socket
import ssl
import sys

from aioice import stun


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data


def main():
    transport, host, port, count = sys.argv[1:5]
    port, count = int(port), int(count)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    sock.settimeout(5)
    sock.connect((host, port))
    if transport == "tls":
        context = ssl.create_default_context(cafile=sys.argv[5])
        context.check_hostname = False  # a test certificate for "localhost", dialled by address
        sock = context.wrap_socket(sock)
    local = sock.getsockname()
    mapped = []
    for _ in range(count):
        request = stun.Message(
            message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
        )
        request.add_fingerprint()
        sock.send(bytes(request))
        if transport == "udp":
            data = sock.recv(2048)
        else:
            header = read_exact(sock, 20)
            data = header + read_exact(sock, int.from_bytes(header[2:4], "big"))
        answer = stun.parse_message(data)
        if (
            answer.transaction_id != request.transaction_id
            or answer.message_class != stun.Class.RESPONSE
            or "FINGERPRINT" not in answer.attributes
        ):
            break
        ip, mapped_port = answer.attributes["XOR-MAPPED-ADDRESS"]
        mapped.append(f"[{ip}]:{mapped_port}" if ":" in ip else f"{ip}:{mapped_port}")
    ip, local_port = local[0], local[1]
    print(
        json.dumps(
            {
                "transport": transport,
                "local": f"[{ip}]:{local_port}" if ":" in ip else f"{ip}:{local_port}",
                "mapped": mapped,
                "answered": len(mapped),
            }
        )
    )


if __name__ == "__main__":
    main()
