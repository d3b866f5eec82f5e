"""A browser-like SIP phone over WebSocket (RFC 7118) for crates/farside/tests/sip.rs.

The WebSocket side is the `websockets` library from PyPI (its own handshake checks and
framing); the SIP side is the few messages a browser phone such as JsSIP sends (and it answers
the server's CRLF CRLF keep-alives with CRLF while it waits): it registers
with Digest (MD5, qop=auth) from a Contact on an `.invalid` host (a browser has no address
of its own, RFC 7118 section 5.4), prints REGISTERED, then answers one INVITE with 200, waits
for the ACK and the BYE, answers the BYE and prints CALL DONE. Any surprise exits non-zero.

usage: ws_phone.py URI USER PASSWORD DOMAIN SECONDS [CA_FILE]
(a wss:// URI is verified against CA_FILE)
"""

import random
import ssl
import sys

from websockets.sync.client import connect

from sip_text import answer_one_call, register_authorization


def main():
    uri, user, password, domain, seconds = sys.argv[1:6]
    seconds = float(seconds)
    tls = ssl.create_default_context(cafile=sys.argv[6]) if uri.startswith("wss:") else None
    via = "WSS" if tls else "WS"
    host = "%08x.invalid" % random.getrandbits(32)
    contact = "<sip:%s@%s;transport=ws>" % (user, host)
    tag = "%08x" % random.getrandbits(32)
    call_id = "%016x@%s" % (random.getrandbits(64), host)

    def register(ws, cseq, auth):
        branch = "z9hG4bK%016x" % random.getrandbits(64)
        msg = (
            "REGISTER sip:%s SIP/2.0\r\n"
            "Via: SIP/2.0/%s %s;branch=%s\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:%s@%s>;tag=%s\r\n"
            "To: <sip:%s@%s>\r\n"
            "Call-ID: %s\r\n"
            "CSeq: %d REGISTER\r\n"
            "Contact: %s;expires=600\r\n"
            "%s"
            "Content-Length: 0\r\n\r\n"
        ) % (domain, via, host, branch, user, domain, tag, user, domain, call_id, cseq, contact, auth)
        ws.send(msg)
        return ws.recv(timeout=seconds)

    with connect(uri, subprotocols=["sip"], open_timeout=seconds, ssl=tls) as ws:
        if ws.subprotocol != "sip":
            sys.exit("subprotocol %r" % ws.subprotocol)
        answer = register(ws, 1, "")
        if not answer.startswith("SIP/2.0 401 "):
            sys.exit("expected 401, got:\n" + answer)
        auth = register_authorization(answer, user, password, domain)
        answer = register(ws, 2, auth)
        if not answer.startswith("SIP/2.0 200 "):
            sys.exit("expected 200, got:\n" + answer)
        print("REGISTERED", flush=True)

        def recv():
            # RFC 5626 keep-alives from the server (CRLF CRLF) are answered with CRLF, as a
            # browser phone (JsSIP) does, while it waits.
            while True:
                message = ws.recv(timeout=seconds)
                if message != "\r\n\r\n":
                    return message
                ws.send("\r\n")

        answer_one_call(recv, ws.send, contact)


if __name__ == "__main__":
    main()
