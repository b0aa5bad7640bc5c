"""Request and response types and small helpers every endpoint module uses."""

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
import secrets
import string
import time
import urllib.parse


CLOSE = object()          # a handler result meaning "drop the connection"


# ---- helpers ---------------------------------------------------------------

def eq(a, b):
    """Constant-time comparison of two str/bytes values (None never matches)."""
    if a is None or b is None:
        return False
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogateescape")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(a, b)


def tkey(token):
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def rand_token(prefix, n=24):
    return prefix + secrets.token_urlsafe(n)


def rand_alnum(n):
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def php_b64decode(text):
    """PHP's lenient base64_decode: ignore characters outside the alphabet,
    padding optional. Returns bytes or None."""
    if text is None:
        return None
    clean = re.sub(r"[^A-Za-z0-9+/]", "", text)
    if len(clean) % 4 == 1:
        return None
    clean += "=" * (-len(clean) % 4)
    try:
        return base64.b64decode(clean)
    except (binascii.Error, ValueError):
        return None


def php_str(v):
    """A JSON value as PHP's string conversion renders it."""
    if v is True:
        return "1"
    if v is False or v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "NAN"
        if v in (float("inf"), float("-inf")):
            return "INF" if v > 0 else "-INF"
        s = "%.14G" % v
        if "E" in s:
            mant, exp = s.split("E")
            if "." not in mant:
                mant += ".0"
            e = int(exp)
            return "%sE%s%d" % (mant, "+" if e >= 0 else "-", abs(e))
        return s
    if isinstance(v, (list, dict)):
        return "Array"
    return str(v)


def utc_stamp(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S")


class Resp:
    def __init__(self, status, body=None, headers=None, ctype=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.ctype = ctype


def jerr(status, error, description=None, headers=None):
    body = {"error": error}
    if description:
        body["error_description"] = description
    return Resp(status, body, headers)


def tcx_fail(number, code, message):
    return Resp(200, {"status": 0, "status_code": code,
                      "status_number": number, "status_message": message})


# ---- the request as handlers see it ----------------------------------------

class Req:
    def __init__(self, listener, method, target, headers, body, cert_subject,
                 cert_fp):
        self.listener = listener
        self.method = method
        path, _, query = target.partition("?")
        self.path = path
        self.query = query                  # raw, as sent, without '?'
        self.headers = headers              # http.client.HTTPMessage
        self.body = body                    # bytes
        self.cert_subject = cert_subject
        self.cert_fp = cert_fp

    def header(self, name):
        return self.headers.get(name)

    def qlast(self):
        """Query parameters, URL-decoded (bad UTF-8 becomes U+FFFD, which
        then simply fails to match), the last of a repeated name wins."""
        return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True,
                                           errors="replace"))

    def ctype(self):
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def is_json(self):
        ct = self.ctype()
        return "/json" in ct or "+json" in ct

    def form_pairs(self):
        return urllib.parse.parse_qsl(self.body.decode("utf-8"),
                                      keep_blank_values=True, errors="strict")

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body.strip() else {}

    def bearer(self):
        auth = self.header("Authorization") or ""
        scheme, _, rest = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not rest.strip():
            return None
        return rest.strip()

    def basic(self, form_decode):
        """(id, secret) from Authorization: Basic, or None. RFC 6749 2.3.1:
        both are form-encoded before base64, so decode them after it."""
        auth = self.header("Authorization") or ""
        scheme, _, rest = auth.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            raw = base64.b64decode(rest.strip(), validate=True)
        except (binascii.Error, ValueError):
            return ("", "")
        user, sep, pw = raw.partition(b":")
        if not sep:
            return ("", "")
        try:
            user, pw = user.decode("utf-8"), pw.decode("utf-8")
            if form_decode:
                user = urllib.parse.unquote_plus(user, errors="strict")
                pw = urllib.parse.unquote_plus(pw, errors="strict")
        except UnicodeDecodeError:
            return ("", "")
        return (user, pw)

    def record(self):
        hdrs = {}
        for name, value in self.headers.items():
            n = name.lower()
            hdrs[n] = hdrs[n] + ", " + value if n in hdrs else value
        return {"method": self.method, "path": self.path, "query": self.query,
                "headers": hdrs,
                "body": self.body.decode("utf-8", "replace"),
                "listener": self.listener,
                "client_cert_subject": self.cert_subject,
                "client_cert_sha256": self.cert_fp,
                "time": time.time()}
