"""A SIP phone over TLS (Python's ssl, that is OpenSSL) for crates/farside/tests/sip_natlab.rs.

It registers over a TLS connection to the server (checking the server's certificate against
SERVER_CA) with Digest (MD5, qop=auth) and a Contact naming CONTACT (the public address its
router forwards to it) with transport=tls, prints REGISTERED, and closes that connection, as a
phone that restarted or a NAT that forgot it would lose it. It then listens for TLS on LISTEN
with CERT and KEY (prints LISTENING), as a phone's own TLS port: a handshake that fails (the
server refused its certificate) prints HANDSHAKE FAILED and it waits for the next; a request
that arrives is answered: one INVITE with 180 and 200, the ACK awaited, the BYE answered with
200, then CALL DONE. CRLF CRLF keep-alives are answered with CRLF. Any surprise exits non-zero;
so does SECONDS without a call.

usage: tls_phone.py SERVER USER PASSWORD DOMAIN CONTACT LISTEN CERT KEY SERVER_CA SECONDS
(SERVER, CONTACT and LISTEN as address:port)
"""

import random
import socket
import ssl
import sys
import time

from sip_text import answer_one_call, header, register_authorization


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


class Stream:
    """SIP messages over one TLS connection (RFC 3261 section 18.3 framing)."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def send(self, text):
        self.conn.sendall(text.encode())

    def recv(self):
        while True:
            # Keep-alive pings (RFC 5626 section 3.5.1) are answered and skipped.
            while self.buf.startswith(b"\r\n\r\n"):
                self.buf = self.buf[4:]
                self.conn.sendall(b"\r\n")
            end = self.buf.find(b"\r\n\r\n")
            if end > 0:
                head = self.buf[:end].decode()
                length = int(header(head + "\r\n", "Content-Length") or header(head + "\r\n", "l") or 0)
                whole = end + 4 + length
                if len(self.buf) >= whole:
                    msg, self.buf = self.buf[:whole].decode(), self.buf[whole:]
                    return msg
            data = self.conn.recv(65536)
            if not data:
                sys.exit("the connection closed")
            self.buf += data


def main():
    server, user, password, domain, contact_at, listen, cert, key, server_ca, seconds = sys.argv[1:11]
    seconds = float(seconds)
    deadline = time.monotonic() + seconds
    contact = "<sip:%s@%s;transport=tls>" % (user, contact_at)
    host, port = address(listen)

    client = ssl.create_default_context(cafile=server_ca)
    raw = socket.create_connection(address(server), timeout=seconds, source_address=(host, 0))
    conn = client.wrap_socket(raw, server_hostname=address(server)[0])
    sip = Stream(conn)
    local = "%s:%d" % conn.getsockname()[:2]
    tag = "%08x" % random.getrandbits(32)
    call_id = "%016x@%s" % (random.getrandbits(64), host)

    def register(cseq, auth):
        branch = "z9hG4bK%016x" % random.getrandbits(64)
        sip.send(
            (
                "REGISTER sip:%s SIP/2.0\r\n"
                "Via: SIP/2.0/TLS %s;branch=%s;rport\r\n"
                "Max-Forwards: 70\r\n"
                "From: <sip:%s@%s>;tag=%s\r\n"
                "To: <sip:%s@%s>\r\n"
                "Call-ID: %s\r\n"
                "CSeq: %d REGISTER\r\n"
                "Contact: %s;expires=600\r\n"
                "%s"
                "Content-Length: 0\r\n\r\n"
            )
            % (domain, local, branch, user, domain, tag, user, domain, call_id, cseq, contact, auth)
        )
        return sip.recv()

    answer = register(1, "")
    if not answer.startswith("SIP/2.0 401 "):
        sys.exit("expected 401, got:\n" + answer)
    auth = register_authorization(answer, user, password, domain)
    answer = register(2, auth)
    if not answer.startswith("SIP/2.0 200 "):
        sys.exit("expected 200, got:\n" + answer)
    print("REGISTERED", flush=True)
    conn.close()

    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    listener = socket.create_server((host, port))
    print("LISTENING", flush=True)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit("no call within %s s" % seconds)
        listener.settimeout(left)
        raw, peer = listener.accept()
        raw.settimeout(max(deadline - time.monotonic(), 1))
        try:
            conn = server_side.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print("HANDSHAKE FAILED from %s:%d: %s" % (peer[0], peer[1], e), flush=True)
            continue
        print("CONNECTED from %s:%d" % peer[:2], flush=True)
        break
    sip = Stream(conn)

    answer_one_call(sip.recv, sip.send, contact)


if __name__ == "__main__":
    main()
