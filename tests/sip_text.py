"""SIP message text for the test phones (ws_phone.py, tls_phone.py): header lookup, the
Digest (MD5, qop=auth) answer to a REGISTER challenge as a softphone computes it, responses,
and answering one call."""

import hashlib
import random
import sys


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def header(msg, name):
    """The first value of header `name` (any case) in `msg`, or None."""
    for line in msg.split("\r\n")[1:]:
        if ":" in line and line.split(":", 1)[0].strip().lower() == name.lower():
            return line.split(":", 1)[1].strip()
    return None


def headers(msg, name):
    """Every value of header `name` (any case) in `msg`."""
    return [
        line.split(":", 1)[1].strip()
        for line in msg.split("\r\n")[1:]
        if ":" in line and line.split(":", 1)[0].strip().lower() == name.lower()
    ]


def param(challenge, name):
    for part in challenge.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower().endswith(name):
            return value.strip().strip('"')
    return None


def register_authorization(answer, user, password, domain):
    """The Authorization header line (CRLF-terminated) answering the 401 `answer` to a
    REGISTER for sip:`domain`: its MD5 challenge, qop=auth, nc 1, a fresh cnonce."""
    challenge = next(c for c in headers(answer, "WWW-Authenticate") if "MD5" in c.upper() or "algorithm" not in c)
    realm, nonce = param(challenge, "realm"), param(challenge, "nonce")
    ha1 = md5("%s:%s:%s" % (user, realm, password))
    ha2 = md5("REGISTER:sip:%s" % domain)
    cnonce, nc = "%08x" % random.getrandbits(32), "00000001"
    response = md5("%s:%s:%s:%s:auth:%s" % (ha1, nonce, nc, cnonce, ha2))
    return (
        'Authorization: Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", '
        'response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="%s"\r\n'
    ) % (user, realm, nonce, domain, response, nc, cnonce)


def response(request, code, reason, to_tag, contact):
    """The response `code` `reason` to `request` as a phone writes it: its Vias and
    Record-Routes, its To with `to_tag` added (when given and not there yet), `contact`."""
    to = header(request, "To")
    if to_tag and ";tag=" not in to:
        to += ";tag=" + to_tag
    lines = ["SIP/2.0 %d %s" % (code, reason)]
    lines += ["Via: " + v for v in headers(request, "Via")]
    lines += ["Record-Route: " + r for r in headers(request, "Record-Route")]
    lines += [
        "From: " + header(request, "From"),
        "To: " + to,
        "Call-ID: " + header(request, "Call-ID"),
        "CSeq: " + header(request, "CSeq"),
        "Contact: " + contact,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines)


def answer_one_call(recv, send, contact):
    """Answers one call as a phone does: the INVITE `recv()` gives (keep-alives already taken
    care of) gets 180 and 200, then the ACK is awaited and the BYE answered with 200. Prints
    INVITE and CALL DONE; any surprise exits non-zero."""
    invite = recv()
    if not invite.startswith("INVITE "):
        sys.exit("expected an INVITE, got:\n" + invite)
    print("INVITE", flush=True)
    my_tag = "%08x" % random.getrandbits(32)
    send(response(invite, 180, "Ringing", my_tag, contact))
    send(response(invite, 200, "OK", my_tag, contact))
    seen = set()
    while "BYE" not in seen:
        request = recv()
        method = request.split(" ", 1)[0]
        seen.add(method)
        if method == "BYE":
            send(response(request, 200, "OK", None, contact))
        elif method not in ("ACK", "INVITE"):
            sys.exit("unexpected:\n" + request)
    if "ACK" not in seen:
        sys.exit("no ACK before the BYE")
    print("CALL DONE", flush=True)
