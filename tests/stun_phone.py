"""A SIP phone that fills its Via and Contact from STUN, for crates/farside/tests/sip_natlab.rs.

From its SIP socket (LOCAL, UDP) it asks STUN (a Binding request, RFC 8489) for its public
address, prints MAPPED ip:port, and registers at SERVER with Digest (MD5, qop=auth), its Via
and Contact naming the mapped address, its Call-ID naming its private address (as Yealink
phones write theirs). It prints REGISTERED on the 200. Any surprise exits non-zero.

usage: stun_phone.py LOCAL SERVER STUN USER PASSWORD DOMAIN  (addresses as ip:port)
"""

import os
import random
import socket
import struct
import sys

from sip_text import header, register_authorization

MAGIC = 0x2112A442


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def mapped_address(sock, stun):
    """The XOR-MAPPED-ADDRESS (IPv4) a STUN server answers a Binding request with."""
    tid = os.urandom(12)
    sock.sendto(struct.pack("!HHI", 0x0001, 0, MAGIC) + tid, stun)
    data, _ = sock.recvfrom(2048)
    kind, length, magic = struct.unpack("!HHI", data[:8])
    if kind != 0x0101 or magic != MAGIC or data[8:20] != tid:
        sys.exit("not a Binding success response")
    at = 20
    while at + 4 <= 20 + length:
        atype, alen = struct.unpack("!HH", data[at : at + 4])
        value = data[at + 4 : at + 4 + alen]
        if atype == 0x0020 and value[1] == 1:
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
            ip = struct.unpack("!I", value[4:8])[0] ^ MAGIC
            return socket.inet_ntoa(struct.pack("!I", ip)), port
        at += 4 + (alen + 3) // 4 * 4
    sys.exit("no XOR-MAPPED-ADDRESS")


def main():
    local, server, stun = address(sys.argv[1]), address(sys.argv[2]), address(sys.argv[3])
    user, password, domain = sys.argv[4], sys.argv[5], sys.argv[6]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(local)
    sock.settimeout(5)
    ip, port = mapped_address(sock, stun)
    print("MAPPED %s:%d" % (ip, port), flush=True)
    call_id = "%08x@%s" % (random.getrandbits(32), local[0])
    auth = ""
    for cseq in (1, 2):
        request = (
            "REGISTER sip:%s SIP/2.0\r\n"
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%08x;rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:%s@%s>;tag=%08x\r\n"
            "To: <sip:%s@%s>\r\n"
            "Call-ID: %s\r\n"
            "CSeq: %d REGISTER\r\n"
            "Contact: <sip:%s@%s:%d>\r\n"
            "%s"
            "Expires: 120\r\n"
            "Content-Length: 0\r\n\r\n"
        ) % (
            domain, ip, port, random.getrandbits(32), user, domain, random.getrandbits(32),
            user, domain, call_id, cseq, user, ip, port, auth,
        )
        sock.sendto(request.encode(), server)
        answer = sock.recvfrom(65535)[0].decode()
        status = answer.split(" ", 2)[1]
        if cseq == 1 and status == "401":
            auth = register_authorization(answer, user, password, domain)
        elif status == "200" and header(answer, "Contact"):
            print("REGISTERED", flush=True)
            return
        else:
            sys.exit("unexpected answer:\n" + answer)
    sys.exit("not registered")


main()
