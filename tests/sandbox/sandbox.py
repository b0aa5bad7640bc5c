#!/usr/bin/env python3
"""apicred test sandbox: a real HTTPS server on 127.0.0.1 emulating every
seed API (API key, Edgecast TOK:, generic OAuth 2.0, MTN MoMo, VDMS IDS, TPV,
TCX, TOTSCo mTLS, AWS SigV4 / S3) with fault injection. Python 3 standard
library only, except the SigV4 routes, which verify signatures with botocore
(Debian's python3-botocore), imported when first needed.

    sandbox.py --certs DIR --dir SBDIR

Listens on ephemeral ports; writes SBDIR/ports.env once every listener is
ready; logs to SBDIR/sandbox.log (never secrets: no headers, bodies or query
strings); exits cleanly on SIGTERM/SIGINT. The contract (routes, secrets,
faults, control API) is tests/sandbox/SPEC.md; keep the two in step.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import http.server
import json
import logging
import os
import re
import secrets
import signal
import socket
import socketserver
import ssl
import string
import sys
import threading
import time
import urllib.parse

# ---- fixed test secrets and settings (SPEC.md) ---------------------------

DEFAULTS = {
    "apikey": "sb-apikey-0123456789",
    "tok_primary": "11111111-2222-3333-4444-555555555555",
    "tok_backup": "99999999-8888-7777-6666-555555555555",
    "momo_subkey": "sb-momo-subkey-abcdef",
    "oauth_client_id": "sb-client",
    "oauth_client_secret": "s3cr:t+/%&=\u00e9",
    "vdms_client_id": "sb-vdms-client",
    "vdms_client_secret": "sb-vdms-secret",
    "tpv_token": "sb-tpv-token",
    "tpv_secret": "sb-tpv-secret-0123456789abcdef",
    "tpv_sign": "query",
    "tcx_app_id": "sb-tcx-app",
    "tcx_app_public": "sb-tcx-public",
    "tcx_master": "sb-tcx-master",
    "tcx_mode": "param",
    "tcx_token_ttl": 3600,
    "tcx_time_tolerance": 300,
    "mtls_client_id": "sb-totsco-client",
    "mtls_client_secret": "sb-totsco-secret",
    "mtls_bind": True,
    "sigv4_access_key_id": "AKIDSANDBOX0123456789",
    "sigv4_secret_access_key": "sb-sigv4/secret+0123456789EXAMPLEKEY",
    "sigv4_session_token": None,
    "sigv4_region": "us-east-1",
    "sigv4_service": "execute-api",
    # expires_in / token_type: absent = each endpoint's own default.
}
MOMO_SEED_USER = "c72025f5-5cd1-4630-99e4-8ba4722fad56"
MOMO_SEED_KEY = "sb-momo-apikey-f1db798c"
MOMO_SEED_HOST = "clinic.com"

STRING_KEYS = {"apikey", "momo_subkey", "oauth_client_id",
               "oauth_client_secret", "vdms_client_id", "vdms_client_secret",
               "tpv_token", "tpv_secret", "tcx_app_id", "tcx_app_public",
               "tcx_master", "mtls_client_id", "mtls_client_secret",
               "token_type", "sigv4_access_key_id", "sigv4_secret_access_key",
               "sigv4_region", "sigv4_service"}
NULLABLE_KEYS = {"tok_primary", "tok_backup",     # null = revoked
                 "sigv4_session_token"}           # null = none expected
CHOICE_KEYS = {"tcx_mode": ("param", "time", "none"),
               "tpv_sign": ("query", "body", "query+body", "none")}
INT_KEYS = {"tcx_token_ttl", "tcx_time_tolerance"}
BOOL_KEYS = {"mtls_bind"}
ANY_KEYS = {"expires_in"}                         # null = omit it

GENERIC_FAULTS = {"500", "429", "503", "badjson", "huge", "invalid_scope",
                  "invalid_client", "forbidden_empty", "login_failed",
                  "close", "tcx_fault", "crlf_error"}
MODIFIER_FAULTS = {"no_expires", "expires_str", "expires_zero", "crlf",
                   "crlf_type"}
FAULTS = GENERIC_FAULTS | MODIFIER_FAULTS | {"slow"}

VDMS_SCOPES = ("ec.rules", "ec.purge", "ec.analytics")
MAX_BODY = 8 << 20
CLOSE = object()          # a handler result meaning "drop the connection"

log = logging.getLogger("sandbox")


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


# ---- shared state ------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.conf = dict(DEFAULTS)
            self.counts = {}
            self.faults = {}
            self.last = {}
            self.tokens = {}          # realm -> {tkey: info}
            self.tcx_refresh = {}     # tkey(refresh) -> tkey(token)
            self.momo_users = {MOMO_SEED_USER: {"host": MOMO_SEED_HOST,
                                                "apikey": MOMO_SEED_KEY}}

    def get(self, key, default=None):
        with self.lock:
            return self.conf.get(key, default)

    def has(self, key):
        with self.lock:
            return key in self.conf

    def apply_set(self, obj):
        """Validate everything first so a bad request changes nothing."""
        for k, v in obj.items():
            if k in STRING_KEYS:
                ok = isinstance(v, str)
            elif k in NULLABLE_KEYS:
                ok = v is None or isinstance(v, str)
            elif k in CHOICE_KEYS:
                ok = v in CHOICE_KEYS[k]
            elif k in INT_KEYS:
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
            elif k in BOOL_KEYS:
                ok = isinstance(v, bool)
            elif k in ANY_KEYS:
                ok = True
            else:
                return "unknown key: %s" % k
            if not ok:
                return "bad value for %s" % k
        with self.lock:
            self.conf.update(obj)
        return None

    def count(self, name):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def record(self, name, rec):
        with self.lock:
            self.last[name] = rec

    def set_fault(self, name, kind, times, arg):
        with self.lock:
            if times == 0:
                self.faults.pop(name, None)
            else:
                self.faults[name] = [kind, times, arg]

    def take_fault(self, name):
        with self.lock:
            f = self.faults.get(name)
            if not f:
                return None
            kind, times, arg = f
            if times > 0:
                f[1] -= 1
                if f[1] == 0:
                    del self.faults[name]
            return kind, arg

    # tokens: stored by SHA-256 of the value, then compared in constant time
    def issue(self, realm, ttl, token=None, **info):
        token = token or rand_token("sb-%s-" % realm)
        info.update(token=token, expires=time.time() + ttl)
        with self.lock:
            self.tokens.setdefault(realm, {})[tkey(token)] = info
        return token

    def find(self, realm, token, valid=True):
        if not token:
            return None
        with self.lock:
            info = self.tokens.get(realm, {}).get(tkey(token))
        if not info or not eq(info["token"], token):
            return None
        if valid and info["expires"] <= time.time():
            return None
        return info

    def expire_all(self):
        with self.lock:
            for realm in self.tokens.values():
                for info in realm.values():
                    info["expires"] = 0


STATE = State()


def expires_in(default):
    """(value to send or None to omit, server-side lifetime in seconds)."""
    with STATE.lock:
        present = "expires_in" in STATE.conf
        v = STATE.conf.get("expires_in")
    if not present:
        return default, default
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return v, v
    if v is None:
        return None, default
    return v, default


def token_body(token, default_ttl, default_type):
    value, _ = expires_in(default_ttl)
    body = {"access_token": token,
            "token_type": STATE.get("token_type", default_type)}
    if value is not None:
        body["expires_in"] = value
    return body


# ---- faults --------------------------------------------------------------

def fault_response(kind, arg):
    if kind == "close":
        return CLOSE
    if kind == "500":
        return jerr(500, "server_error")
    if kind in ("429", "503"):
        h = {"Retry-After": arg} if arg else {}
        if kind == "429":
            return jerr(429, "too_many_requests", headers=h)
        return jerr(503, "temporarily_unavailable", headers=h)
    if kind == "badjson":
        return Resp(200, b'{"access_token": "sb-bad", "expires_in": 36',
                    ctype="application/json")
    if kind == "huge":
        pad = b"A" * (2 << 20)
        return Resp(200, b'{"access_token":"' + pad +
                    b'","token_type":"Bearer","expires_in":3600}',
                    ctype="application/json")
    if kind == "invalid_scope":
        return jerr(400, "invalid_scope", "the requested scope is invalid")
    if kind == "invalid_client":
        return jerr(401, "invalid_client", "client authentication failed",
                    {"WWW-Authenticate": 'Basic realm="sandbox"'})
    if kind == "forbidden_empty":
        return Resp(403, b"", ctype="text/plain")
    if kind == "login_failed":
        return Resp(500, {"error": "login_failed"})
    if kind == "tcx_fault":
        return tcx_fail("105002", "TCXERX", "Server Fault")
    if kind == "crlf_error":
        # A hostile server's error text: forged log lines, terminal escapes.
        return Resp(int(arg or 400), {"error": "invalid_request\r\nX-Forged: 1",
                          "error_description": "\x1b[2Jcleared\nforged line",
                          "code": "BAD\r\nX-Forged: 2"})
    raise ValueError(kind)


def modify(resp, kind):
    """Token-response faults: only 2xx JSON objects are changed."""
    if not (200 <= resp.status < 300 and isinstance(resp.body, dict)):
        return resp
    targets = [resp.body]
    if isinstance(resp.body.get("data"), dict):
        targets.append(resp.body["data"])
    for b in targets:
        if kind == "no_expires":
            b.pop("expires_in", None)
            b.pop("expired_at", None)
        elif kind == "expires_str" and "access_token" in b:
            b["expires_in"] = "120"
        elif kind == "expires_zero" and "access_token" in b:
            b["expires_in"] = 0
        elif kind == "crlf_type" and "access_token" in b:
            b["token_type"] = "mac\r\nX-Forged: 3"
        elif kind == "crlf":
            for k in ("access_token", "auth_token", "token", "apiKey"):
                if isinstance(b.get(k), str):
                    v = b[k]
                    b[k] = v[:len(v) // 2] + "\r\nX-Injected: 1\r\n" + v[len(v) // 2:]
    return resp


# ---- endpoints: API key and TOK: --------------------------------------------

def h_apikey(req):
    key = STATE.get("apikey")
    auth = (req.header("Authorization") or "").strip()
    scheme, _, rest = auth.partition(" ")
    q = req.qlast()
    if req.header("X-API-Key") is not None and eq(req.header("X-API-Key"), key):
        return Resp(200, {"ok": True, "via": "header"})
    if "api_key" in q and eq(q["api_key"], key):
        return Resp(200, {"ok": True, "via": "query"})
    if scheme.lower() == "apikey" and eq(rest.strip(), key):
        return Resp(200, {"ok": True, "via": "authorization"})
    return Resp(401, {"error": "invalid api key"})


def h_redirect(req):
    """302 to ?to= (default /apikey/echo), echoing the rest of the query,
    as a careless server would: a client must not show it whole."""
    q = req.qlast()
    to = q.pop("to", "/apikey/echo")
    if q:
        to += "?" + urllib.parse.urlencode(q)
    return Resp(302, {"moved": True}, {"Location": to})


def h_tok(req):
    auth = (req.header("Authorization") or "").strip()
    if auth[:4].lower() == "tok:":
        given = auth[4:].strip().lower()
        # Evaluate both so timing does not tell which one matched.
        p = STATE.get("tok_primary")
        b = STATE.get("tok_backup")
        mp = eq(given, p.lower()) if p is not None else False
        mb = eq(given, b.lower()) if b is not None else False
        if mp or mb:
            return Resp(200, {"ok": True, "token": "primary" if mp else "backup",
                              "method": req.method, "path": req.path})
    return Resp(403, {"reason": "invalid token"})


# ---- endpoints: generic OAuth 2.0 (main and mTLS listeners) --------------------

def client_auth(req, form, want_id, want_secret, allow_basic=True,
                allow_post=True):
    """RFC 6749 2.3.1 client authentication. Returns (method, error Resp)."""
    basic = req.basic(form_decode=True)
    in_body = "client_secret" in form
    if basic is not None and in_body:
        return None, jerr(400, "invalid_request",
                          "more than one client authentication method")
    if basic is not None and allow_basic:
        cid, csec = basic
        method = "basic"
    elif in_body and allow_post:
        cid, csec = form.get("client_id", ""), form["client_secret"]
        method = "post"
    else:
        return None, jerr(401, "invalid_client", "client authentication required",
                          {"WWW-Authenticate": 'Basic realm="sandbox"'})
    ok_id = eq(cid, want_id)
    ok_secret = eq(csec, want_secret)
    if not (ok_id and ok_secret):
        h = {"WWW-Authenticate": 'Basic realm="sandbox"'} if method == "basic" else {}
        return None, jerr(401, "invalid_client", "client authentication failed", h)
    return method, None


def parse_token_form(req):
    """(dict, resources list, error Resp)."""
    if req.method != "POST":
        return None, None, Resp(405, {"error": "invalid_request"},
                                {"Allow": "POST"})
    if req.ctype() != "application/x-www-form-urlencoded":
        return None, None, jerr(400, "invalid_request",
                                "Content-Type must be application/x-www-form-urlencoded")
    try:
        pairs = req.form_pairs()
    except (UnicodeDecodeError, ValueError):
        return None, None, jerr(400, "invalid_request", "body is not form-encoded UTF-8")
    form, resources = {}, []
    for k, v in pairs:
        if k == "resource":
            resources.append(v)
            continue
        if k in form:
            return None, None, jerr(400, "invalid_request", "repeated parameter")
        form[k] = v
    if form.get("grant_type") != "client_credentials":
        return None, None, jerr(400, "unsupported_grant_type")
    return form, resources, None


def h_token(req):
    mtls = req.listener == "mtls"
    form, resources, err = parse_token_form(req)
    if err:
        return err
    if mtls:
        want = (STATE.get("mtls_client_id"), STATE.get("mtls_client_secret"))
    else:
        want = (STATE.get("oauth_client_id"), STATE.get("oauth_client_secret"))
    method, err = client_auth(req, form, *want)
    if err:
        return err
    _, ttl = expires_in(3600)
    realm = "mtls" if mtls else "oauth"
    token = STATE.issue(realm, ttl, scope=form.get("scope"), client_auth=method,
                        cert=req.cert_fp)
    body = token_body(token, 3600, "Bearer")
    for k in ("scope", "audience"):
        if k in form:
            body[k] = form[k]
    if resources:
        body["resource"] = resources[0] if len(resources) == 1 else resources
    return Resp(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})


def h_api(req):
    mtls = req.listener == "mtls"
    realm = "mtls" if mtls else "oauth"
    info = STATE.find(realm, req.bearer())
    hdr = {"WWW-Authenticate": 'Bearer realm="sandbox", error="invalid_token"'}
    if not info:
        return jerr(401, "invalid_token", "missing, unknown or expired token", hdr)
    if mtls and STATE.get("mtls_bind") and not eq(info.get("cert"), req.cert_fp):
        return jerr(401, "invalid_token",
                    "token was issued to another client certificate", hdr)
    return Resp(200, {"ok": True, "method": req.method, "path": req.path,
                      "scope": info.get("scope"),
                      "client_cert_subject": req.cert_subject})


# ---- endpoints: MTN MoMo ----------------------------------------------------------

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                   r"[0-9a-f]{12}$", re.I)
APIM_401 = {"statusCode": 401, "message": "Access denied due to invalid "
            "subscription key. Make sure to provide a valid key for an active "
            "subscription."}
MOMO_404 = {"code": "RESOURCE_NOT_FOUND", "message": "Requested resource was not found."}


def momo_subkey_ok(req):
    return eq(req.header("Ocp-Apim-Subscription-Key"), STATE.get("momo_subkey"))


def h_momo_apiuser(req):
    if req.method != "POST":
        return Resp(405, {"error": "method not allowed"}, {"Allow": "POST"})
    if not momo_subkey_ok(req):
        return Resp(401, APIM_401)
    ref = (req.header("X-Reference-Id") or "").strip()
    if not UUID4.match(ref):
        return Resp(400, {"code": "INVALID_REFERENCE_ID",
                          "message": "X-Reference-Id must be a UUID version 4"})
    try:
        obj = req.json()
    except (ValueError, UnicodeDecodeError):
        obj = None
    host = obj.get("providerCallbackHost") if isinstance(obj, dict) else None
    if not isinstance(host, str) or not host:
        return Resp(400, {"code": "INVALID_CALLBACK_URL_HOST",
                          "message": "providerCallbackHost is required"})
    with STATE.lock:
        if ref.lower() in STATE.momo_users:
            return Resp(409, {"code": "RESOURCE_ALREADY_EXIST",
                              "message": "Duplicated reference id. Creation of "
                              "resource failed."})
        STATE.momo_users[ref.lower()] = {"host": host, "apikey": None}
    return Resp(201, b"")


def h_momo_apikey(req, user):
    if req.method != "POST":
        return Resp(405, {"error": "method not allowed"}, {"Allow": "POST"})
    if not momo_subkey_ok(req):
        return Resp(401, APIM_401)
    key = secrets.token_hex(16)
    with STATE.lock:
        u = STATE.momo_users.get(user.lower())
        if not u:
            return Resp(404, MOMO_404)
        u["apikey"] = key           # a new key replaces the old one
    return Resp(201, {"apiKey": key})


def h_momo_user(req, user):
    if req.method != "GET":
        return Resp(405, {"error": "method not allowed"}, {"Allow": "GET"})
    if not momo_subkey_ok(req):
        return Resp(401, APIM_401)
    with STATE.lock:
        u = STATE.momo_users.get(user.lower())
        host = u["host"] if u else None
    if not u:
        return Resp(404, MOMO_404)
    return Resp(200, {"providerCallbackHost": host, "targetEnvironment": "sandbox"})


def h_momo_token(req):
    if req.method != "POST":
        return Resp(405, {"error": "method not allowed"}, {"Allow": "POST"})
    if not momo_subkey_ok(req):
        return Resp(401, APIM_401)
    basic = req.basic(form_decode=False)
    if basic is None:
        return Resp(401, {"error": "invalid_client"},
                    {"WWW-Authenticate": 'Basic realm="momo"'})
    user, key = basic
    with STATE.lock:
        u = STATE.momo_users.get(user.lower())
        want = u["apikey"] if u else None
    ok = eq(key, want if want is not None else "\0never")
    if not (u and ok):
        # What the MoMo sandbox really answers for a wrong user or key.
        return Resp(500, {"error": "login_failed"})
    _, ttl = expires_in(3600)
    token = STATE.issue("momo", ttl, user=user.lower())
    return Resp(200, token_body(token, 3600, "access_token"))


def h_momo_rtp(req):
    if req.method != "POST":
        return Resp(405, {"error": "method not allowed"}, {"Allow": "POST"})
    if not momo_subkey_ok(req):
        return Resp(401, APIM_401)
    if not STATE.find("momo", req.bearer()):
        return Resp(401, {"code": "UNAUTHORIZED",
                          "message": "Invalid or expired access token"})
    if req.header("X-Target-Environment") != "sandbox":
        return Resp(400, {"code": "INVALID_TARGET_ENVIRONMENT",
                          "message": "X-Target-Environment must be sandbox"})
    return Resp(202, b"")


# ---- endpoints: VDMS / Edgecast IDS ----------------------------------------------

def h_vdms_token(req):
    form, _, err = parse_token_form(req)
    if err:
        return err
    # IdentityServer: client authentication in the body only; bad client = 400.
    if "client_secret" not in form:
        return jerr(400, "invalid_client")
    ok_id = eq(form.get("client_id", ""), STATE.get("vdms_client_id"))
    ok_secret = eq(form["client_secret"], STATE.get("vdms_client_secret"))
    if not (ok_id and ok_secret):
        return jerr(400, "invalid_client")
    scopes = form.get("scope", "").split()
    if any(s not in VDMS_SCOPES for s in scopes):
        return jerr(400, "invalid_scope")
    if not scopes:
        scopes = list(VDMS_SCOPES)
    _, ttl = expires_in(300)
    token = STATE.issue("vdms", ttl, scopes=scopes)
    body = token_body(token, 300, "Bearer")
    body["scope"] = " ".join(scopes)
    return Resp(200, body, {"Cache-Control": "no-store, no-cache, max-age=0"},
                ctype="application/json; charset=UTF-8")


def h_vdms_api(req):
    info = STATE.find("vdms", req.bearer())
    if not info:
        return Resp(401, {"error": "unauthenticated access"},
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if "ec.rules" not in info["scopes"]:
        return Resp(403, {"error": "insufficient_scope"})
    return Resp(200, {"ok": True, "policies": []})


# ---- endpoints: TPV -----------------------------------------------------------------

def hmac_hex(secret, msg):
    if isinstance(msg, str):
        msg = msg.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def h_tpv_auth(req):
    if req.method != "POST":
        return Resp(405, {"error": "method not allowed"}, {"Allow": "POST"})
    try:
        q = req.qlast()
    except (UnicodeDecodeError, ValueError):
        return Resp(400, {"error": "malformed query string"})
    tok, ts, sig = q.get("token"), q.get("timestamp"), q.get("_signature")
    if not tok or not ts or not sig:
        return Resp(400, {"error": "token, timestamp and _signature are required"})
    if not eq(tok, STATE.get("tpv_token")):
        return Resp(400, {"error": "invalid application token"})
    if not re.fullmatch(r"[0-9]{1,16}", ts):
        return Resp(400, {"error": "timestamp must be unix seconds"})
    t = int(ts)
    if t > 10 ** 11:                # milliseconds
        t //= 1000
    if abs(time.time() - t) > 300:
        return Resp(400, {"error": "timestamp out of range"})
    want = hmac_hex(STATE.get("tpv_secret"), "token=" + tok + "&timestamp=" + ts)
    if not eq(sig, want):
        return Resp(400, {"error": "invalid signature"})
    token = STATE.issue("tpv", 1800)
    return Resp(200, {"auth_token": token})


def h_tpv(req):
    auth = (req.header("Authorization") or "").strip()
    if not STATE.find("tpv", auth):
        return Resp(401, {"error": "unauthenticated"})
    mode = STATE.get("tpv_sign")
    if mode != "none":
        # http.server decoded the request line as latin-1: this gives back
        # the query bytes exactly as they were sent.
        query = req.query.encode("latin-1")
        msg = {"query": query, "body": req.body,
               "query+body": query + req.body}[mode]
        sig = req.header("Signature")
        if not sig:
            return Resp(400, {"error": "signature required"})
        if not eq(sig.strip(), hmac_hex(STATE.get("tpv_secret"), msg)):
            return Resp(400, {"error": "invalid signature"})
    sub = req.path[len("/tpv/api/v1/"):]
    if sub == "tpv":
        if req.method != "POST":
            return Resp(405, {"error": "method not allowed"}, {"Allow": "POST"})
        try:
            data = req.json()
        except (ValueError, UnicodeDecodeError):
            return Resp(400, {"error": "body must be JSON"})
        if not isinstance(data, dict) or data.get("channel") not in ("dtd", "tm", "retail"):
            return Resp(400, {"error": "channel must be defined as one of dtd, tm, or retail."})
        return Resp(200, {"success": "%011d" % secrets.randbelow(10 ** 11)})
    if sub == "products":
        return Resp(200, {"products": [{"program_code": "555",
                                        "name": "Sandbox product"}]})
    return Resp(200, {"success": "ok", "path": req.path})


# ---- endpoints: TCX (verzth/tcx server semantics) ----------------------------------

def tcx_params(req):
    """All request parameters as Laravel's $request->all() sees them: the
    query, then a JSON body (any method) or a form body (not GET/HEAD) on
    top; values rendered as PHP strings."""
    params = {}
    for k, v in urllib.parse.parse_qsl(req.query, keep_blank_values=True,
                                       errors="strict"):
        params[k] = v
    if req.is_json():
        obj = req.json()
        if isinstance(obj, list):
            obj = {str(i): v for i, v in enumerate(obj)}
        if isinstance(obj, dict):
            for k, v in obj.items():
                params[k] = php_str(v)
    elif (req.ctype() == "application/x-www-form-urlencoded" and
          req.method not in ("GET", "HEAD")):
        for k, v in req.form_pairs():
            params[k] = v
    return params


def tcx_joined(params):
    """ksort(SORT_STRING) then k=v& for each pair, the trailing & kept."""
    items = sorted(params.items(), key=lambda kv: kv[0].encode("utf-8", "surrogatepass"))
    return "".join("%s=%s&" % (k, v) for k, v in items)


def tcx_pass_ok(app_pass, params):
    raw = php_b64decode(app_pass)
    if raw is None:
        return False
    parts = raw.split(b":")
    if len(parts) != 2:
        return False
    got, dyn = parts[0].lower(), parts[1].lower()
    mode = STATE.get("tcx_mode")
    if mode == "param":
        j = tcx_joined(params)
    elif mode == "time":
        j = params.get("tcx_datetime", "")
        if len(j) != 14:
            return False
        try:
            t = datetime.datetime.strptime(j, "%Y%m%d%H%M%S").replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            return False
        if abs(time.time() - t) > STATE.get("tcx_time_tolerance"):
            return False
    else:
        j = ""
    want = hashlib.sha1(j.encode("utf-8", "surrogatepass") +
                        STATE.get("tcx_app_public").encode("utf-8") + dyn).hexdigest()
    return eq(want.encode("ascii"), got)


def tcx_app_ok(app_id):
    return eq((app_id or "").lower(), STATE.get("tcx_app_id").lower())


def h_tcx_authorize(req):
    try:
        params = tcx_params(req)
    except (ValueError, UnicodeDecodeError):
        params = {}
    app_id, app_pass = params.get("app_id", ""), params.get("app_pass", "")
    if not app_id.strip() or not app_pass.strip():
        return tcx_fail("405000", "TCXCRQ", "Credentials Required")
    ok_app = tcx_app_ok(app_id)
    ok_pass = tcx_pass_ok(app_pass, params)
    if not (ok_app and ok_pass):
        return tcx_fail("505001", "TCXAFX", "Authentication Failed")
    ttl = STATE.get("tcx_token_ttl")
    refresh = rand_alnum(40)
    token = STATE.issue("tcx", ttl, token=rand_alnum(40), refresh=refresh)
    with STATE.lock:
        STATE.tcx_refresh[tkey(refresh)] = tkey(token)
    return Resp(200, {"status": 1, "status_code": "TCXSSS",
                      "status_number": "F05003",
                      "status_message": "Authentication Success",
                      "data": {"token": token, "refresh": refresh,
                               "expired_at": utc_stamp(time.time() + ttl)}})


def h_tcx_reauthorize(req):
    try:
        params = tcx_params(req)
    except (ValueError, UnicodeDecodeError):
        params = {}
    app_id, tok = params.get("app_id", ""), params.get("token", "")
    if not app_id.strip() or not tok.strip():
        return tcx_fail("405100", "TCXCRQ", "Credentials Required")
    raw = php_b64decode(tok)
    refresh = raw.decode("utf-8", "replace") if raw is not None else ""
    ok_app = tcx_app_ok(app_id)
    with STATE.lock:
        k = STATE.tcx_refresh.get(tkey(refresh)) if refresh else None
        info = STATE.tokens.get("tcx", {}).get(k) if k else None
        ok = info is not None and eq(info["refresh"], refresh)
        if ok_app and ok:
            # The access token stays; it gets a new refresh token and expiry.
            ttl = STATE.conf["tcx_token_ttl"]
            del STATE.tcx_refresh[tkey(refresh)]
            info["refresh"] = rand_alnum(40)
            info["expires"] = time.time() + ttl
            STATE.tcx_refresh[tkey(info["refresh"])] = k
            new_refresh = info["refresh"]
    if not (ok_app and ok):
        return tcx_fail("505101", "TCXAFX", "Authentication Failed")
    return Resp(200, {"status": 1, "status_code": "TCXSSS",
                      "status_number": "F05103",
                      "status_message": "Token refreshed",
                      "data": {"refresh": new_refresh,
                               "expired_at": utc_stamp(time.time() + ttl)}})


def h_tcx_api(req):
    ttype = req.header("X-TCX-TYPE")
    app_id = req.header("X-TCX-APP-ID")
    if ttype is None or app_id is None:
        return tcx_fail("705000", "TCXREQ", "TCX Authentication Required")
    ttype = ttype.strip().upper()
    if ttype not in ("OWTC", "TWTC", "FTC"):
        return tcx_fail("205001", "TCXRJC", "TCX Authentication Rejected")
    if not tcx_app_ok(app_id.strip()):
        return tcx_fail("405002", "TCXAFX", "TCX Authentication Failed")
    app_pass = req.header("X-TCX-APP-PASS")
    try:
        params = tcx_params(req)
    except (ValueError, UnicodeDecodeError):
        params = {}
    if app_pass is None or not tcx_pass_ok(app_pass, params):
        return tcx_fail("505003", "TCXPFX", "TCX Pass did not match")
    token = req.header("X-TCX-TOKEN")
    if ttype == "TWTC":
        raw = php_b64decode(token)
        if raw is None or not STATE.find("tcx", raw.decode("utf-8", "replace")):
            return tcx_fail("505005", "TCXTFX", "TCX Token did not valid")
    elif ttype == "FTC":
        raw = php_b64decode(token)
        if raw is None or not eq(raw, STATE.get("tcx_master")):
            return tcx_fail("505004", "TCXMKF", "TCX Master Key did not valid")
    return Resp(200, {"status": 1, "status_code": "TCXSSS",
                      "status_number": "F00000", "status_message": "OK",
                      "data": {"type": ttype, "method": req.method,
                               "path": req.path}})


# ---- endpoints: AWS Signature Version 4 (botocore recomputes) ------------------------

SIGV4_SKEW = 15 * 60          # AWS's RequestTimeTooSkewed window, seconds
S3_OBJECTS = (("photos/2024/beach.jpg", 52311), ("photos/2024/city.jpg", 40960),
              ("notes.txt", 12))
SIGV4_AUTH_RX = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/([0-9]{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,"
    r"\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})")


def sigv4_check(req, s3):
    """None when botocore computes the same signature for the request as
    the client sent, else (error code, reason)."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials

    m = SIGV4_AUTH_RX.fullmatch((req.header("Authorization") or "").strip())
    if not m:
        return "AccessDenied", "no AWS4-HMAC-SHA256 Authorization header"
    akid, date, region, service, signed, sig = m.groups()
    if not eq(akid, STATE.get("sigv4_access_key_id")):
        return "InvalidAccessKeyId", "unknown access key id"
    want_service = "s3" if s3 else STATE.get("sigv4_service")
    if region != STATE.get("sigv4_region") or service != want_service:
        return "AuthorizationHeaderMalformed", "credential scope must be %s/%s" % (
            STATE.get("sigv4_region"), want_service)
    names = signed.split(";")
    stamp = req.header("X-Amz-Date") or ""
    for must in ("host", "x-amz-date"):
        if must not in names:
            return "AccessDenied", "%s is not signed" % must
    for name in req.headers.keys():
        if name.lower().startswith("x-amz-") and name.lower() not in names:
            return "AccessDenied", "%s is not signed" % name.lower()
    if names != sorted(set(names)):
        return "AccessDenied", "SignedHeaders are not sorted and distinct"
    try:
        t = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return "AccessDenied", "X-Amz-Date is not YYYYMMDDTHHMMSSZ"
    if stamp[:8] != date:
        return "AuthorizationHeaderMalformed", "credential date is not X-Amz-Date's"
    if abs(time.time() - t) > SIGV4_SKEW:
        return "RequestTimeTooSkewed", "X-Amz-Date is more than 15 minutes off"
    token = STATE.get("sigv4_session_token")
    if token is not None and not eq(req.header("X-Amz-Security-Token"), token):
        return "InvalidToken", "the security token is missing or wrong"
    claimed = req.header("X-Amz-Content-Sha256")
    if s3 and claimed is None:
        return "InvalidRequest", "X-Amz-Content-Sha256 is required"
    if claimed not in (None, "UNSIGNED-PAYLOAD") and \
            claimed != hashlib.sha256(req.body).hexdigest():
        return "XAmzContentSHA256Mismatch", "X-Amz-Content-Sha256 is not the body's SHA-256"
    # The request as received: raw path and query, exactly the signed
    # headers (repeated ones in order), the client's timestamp.
    query = "?" + req.query if req.query else ""
    r = AWSRequest(method=req.method, url="https://%s%s%s" % (
        req.header("Host") or "", req.path, query), data=req.body)
    r.headers = HTTPHeaders()
    for name, value in req.headers.items():
        if name.lower() in names:
            r.headers[name] = value
    r.context["timestamp"] = stamp
    auth = (S3SigV4Auth if s3 else SigV4Auth)(
        Credentials(akid, STATE.get("sigv4_secret_access_key"), token), service, region)
    if auth.signed_headers(auth.headers_to_sign(r)) != signed:
        return "AccessDenied", "botocore would not sign the same headers"
    want = auth.signature(auth.string_to_sign(r, auth.canonical_request(r)), r)
    if not eq(sig, want):
        return "SignatureDoesNotMatch", ("The request signature we calculated does not "
                                         "match the signature you provided.")
    return None


def sigv4_refuse(code, reason):
    status = 500 if code == "InternalError" else 400 if code in ("AuthorizationHeaderMalformed", "InvalidRequest",
                             "XAmzContentSHA256Mismatch") else 403
    return Resp(status, {"error": code, "message": reason})


def sigv4_verify(req, s3):
    try:
        return sigv4_check(req, s3)
    except ImportError:
        return "InternalError", "python3 cannot import botocore (install python3-botocore)"


def h_sigv4(req):
    err = sigv4_verify(req, False)
    if err:
        return sigv4_refuse(*err)
    return Resp(200, {"ok": True, "method": req.method, "path": req.path,
                      "payload": req.header("X-Amz-Content-Sha256") or "signed"})


def h_s3(req, bucket):
    err = sigv4_verify(req, True)
    if err:
        return sigv4_refuse(*err)
    if req.method == "GET" and req.path.rstrip("/") == "/s3/" + bucket:
        q = req.qlast()
        prefix = q.get("prefix", "")
        keys = [o for o in S3_OBJECTS if o[0].startswith(prefix)]
        keys = keys[:int(q.get("max-keys", "1000") or "1000")]
        items = "".join("<Contents><Key>%s</Key><Size>%d</Size></Contents>" % o for o in keys)
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>%s</Name>'
               "<Prefix>%s</Prefix><KeyCount>%d</KeyCount>%s</ListBucketResult>" % (
                   bucket, prefix, len(keys), items))
        return Resp(200, xml.encode(), ctype="application/xml")
    if req.method == "PUT":
        return Resp(200, None, {"ETag": '"%s"' % hashlib.md5(req.body).hexdigest()})
    return Resp(200, {"ok": True, "bucket": bucket, "path": req.path})


# ---- routing ---------------------------------------------------------------------

ROUTES = [
    # (regex on the path, endpoint name, handler, takes the match groups)
    (r"/apikey/echo", "apikey", h_apikey),
    (r"/tok(/.*)?", "tok", h_tok),
    (r"/redirect", "redirect", h_redirect),
    (r"/oauth2/token", "token", h_token),
    (r"/api(/.*)?", "api", h_api),
    (r"/momo/v1_0/apiuser", "momo-apiuser", h_momo_apiuser),
    (r"/momo/v1_0/apiuser/([^/]+)/apikey", "momo-apikey", h_momo_apikey),
    (r"/momo/v1_0/apiuser/([^/]+)", "momo-user", h_momo_user),
    (r"/momo/collection/token/?", "momo-token", h_momo_token),
    (r"/momo/collection/v1_0/requesttopay", "momo-rtp", h_momo_rtp),
    (r"/vdms/connect/token", "vdms-token", h_vdms_token),
    (r"/vdms/rules(/.*)?", "vdms-api", h_vdms_api),
    (r"/tpv/api/v1/auth", "tpv-auth", h_tpv_auth),
    (r"/tpv/api/v1/.+", "tpv", h_tpv),
    (r"/tcx/tcx/authorize", "tcx-authorize", h_tcx_authorize),
    (r"/tcx/tcx/reauthorize", "tcx-reauthorize", h_tcx_reauthorize),
    (r"/tcx/api(/.*)?", "tcx", h_tcx_api),
    (r"/sigv4(/.*)?", "sigv4", h_sigv4),
    (r"/s3/([^/]+)(?:/.*)?", "s3", h_s3),
]
ROUTES = [(re.compile(r), n, h) for r, n, h in ROUTES]
ARG_ROUTES = {"momo-apikey", "momo-user", "s3"}


def endpoint_name(listener, base):
    return base if listener == "main" else "%s-%s" % (listener, base)


def h_ctl(req):
    op = req.path[len("/_ctl/"):]
    post_only = {"reset", "fault", "set", "expire"}
    if op in post_only and req.method != "POST":
        return Resp(405, {"error": "use POST"}, {"Allow": "POST"})
    try:
        q = req.qlast()
    except (UnicodeDecodeError, ValueError):
        return Resp(400, {"error": "malformed query"})
    if op == "ping":
        return Resp(200, {"ok": True})
    if op == "reset":
        STATE.reset()
        return Resp(200, {"ok": True})
    if op == "expire":
        STATE.expire_all()
        return Resp(200, {"ok": True})
    if op == "count":
        with STATE.lock:
            return Resp(200, {"count": STATE.counts.get(q.get("endpoint", ""), 0)})
    if op == "counts":
        with STATE.lock:
            return Resp(200, dict(STATE.counts))
    if op == "last":
        with STATE.lock:
            rec = STATE.last.get(q.get("endpoint", ""))
        return Resp(200, json.dumps(rec).encode(), ctype="application/json")
    if op == "fault":
        ep, kind = q.get("endpoint"), q.get("kind", "")
        if not ep:
            return Resp(400, {"error": "endpoint is required"})
        try:
            times = int(q.get("times", "1"))
        except ValueError:
            return Resp(400, {"error": "times must be an integer"})
        if times != 0 and kind not in FAULTS:
            return Resp(400, {"error": "unknown fault kind", "kinds": sorted(FAULTS)})
        if times < -1:
            return Resp(400, {"error": "times must be >= -1"})
        arg = q.get("arg")
        if kind == "slow":
            try:
                if not 0 <= float(arg or "2") <= 120:
                    raise ValueError
            except ValueError:
                return Resp(400, {"error": "slow needs 0 <= arg <= 120"})
        if kind == "crlf_error":
            try:
                if not 200 <= int(arg or "400") <= 599:
                    raise ValueError
            except ValueError:
                return Resp(400, {"error": "crlf_error needs 200 <= arg <= 599"})
        STATE.set_fault(ep, kind, times, arg)
        return Resp(200, {"ok": True})
    if op == "set":
        try:
            obj = req.json()
        except (ValueError, UnicodeDecodeError):
            return Resp(400, {"error": "body must be a JSON object"})
        if not isinstance(obj, dict):
            return Resp(400, {"error": "body must be a JSON object"})
        err = STATE.apply_set(obj)
        if err:
            return Resp(400, {"error": err})
        return Resp(200, {"ok": True})
    return Resp(404, {"error": "unknown control operation"})


def dispatch(req):
    if req.path.startswith("/_ctl/"):
        return "_ctl", h_ctl(req)
    for rx, base, handler in ROUTES:
        m = rx.fullmatch(req.path)
        if m:
            break
    else:
        return None, Resp(404, {"error": "not found"})
    name = endpoint_name(req.listener, base)
    STATE.count(name)
    STATE.record(name, req.record())
    fault = STATE.take_fault(name)
    kind = None
    if fault:
        kind, arg = fault
        if kind in GENERIC_FAULTS:
            if kind == "tcx_fault" and base == "tcx-reauthorize":
                return name, tcx_fail("105102", "TCXERX", "Server Fault")
            return name, fault_response(kind, arg)
        if kind == "slow":
            time.sleep(float(arg or "2"))
    resp = handler(req, m.group(1)) if base in ARG_ROUTES else handler(req)
    if kind in MODIFIER_FAULTS:
        resp = modify(resp, kind)
    return name, resp


# ---- HTTP plumbing --------------------------------------------------------------

class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Errors on unparsable request lines still get a status line.
    default_request_version = "HTTP/1.0"
    server_version = "apicred-sandbox/1"
    sys_version = ""
    timeout = 30
    disable_nagle_algorithm = True    # else 40 ms per answer (delayed ACK)

    def setup(self):
        # The TLS handshake runs here, in the connection's own thread, so a
        # slow or hostile client never blocks the accept loop.
        self.request.settimeout(self.timeout)
        self.cert_subject = None
        self.cert_fp = None
        if not isinstance(self.request, ssl.SSLSocket):     # plain HTTP
            super().setup()
            return
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self._linger()
            raise
        der = self.request.getpeercert(binary_form=True)
        if der:
            self.cert_fp = hashlib.sha256(der).hexdigest()
            info = self.request.getpeercert() or {}
            rdns = [(k, v) for rdn in info.get("subject", ()) for k, v in rdn]
            short = {"commonName": "CN", "organizationName": "O",
                     "organizationalUnitName": "OU", "countryName": "C"}
            self.cert_subject = ",".join(
                "%s=%s" % (short.get(k, k), v) for k, v in reversed(rdns))
        super().setup()

    def _linger(self):
        """After a refused handshake, let the alert reach the client: close
        our side, then drain what the client already sent (closing with
        unread data would send a TCP reset that can destroy the alert)."""
        try:
            socket.socket.shutdown(self.request, socket.SHUT_WR)
            self.request.settimeout(1.0)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if not socket.socket.recv(self.request, 65536):
                    break
        except OSError:
            pass

    # Logging: never the query string, headers or body (secrets live there).
    def log_request(self, code="-", size="-"):
        path = (getattr(self, "path", "") or "").split("?", 1)[0]
        log.info("%s %s %s %s", self.server.name, getattr(self, "command", "-"),
                 path[:200], code)

    def log_error(self, format, *args):
        log.info("%s protocol error %s", self.server.name,
                 args[0] if args and isinstance(args[0], int) else "")

    def log_message(self, format, *args):
        pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te and te != "identity":
            if te != "chunked":
                raise BadRequest(501, "unsupported transfer encoding")
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk")
                if size < 0:
                    raise BadRequest(400, "bad chunk")
                total += size
                if total > MAX_BODY:
                    raise BadRequest(413, "body too large")
                if size == 0:
                    while self.rfile.readline(8192).strip():
                        pass
                    return b"".join(chunks)
                data = self.rfile.read(size)
                if len(data) != size:
                    raise BadRequest(400, "short chunk")
                chunks.append(data)
                self.rfile.readline(8)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        if not cl.strip().isdigit():
            raise BadRequest(400, "bad Content-Length")
        n = int(cl)
        if n > MAX_BODY:
            raise BadRequest(413, "body too large")
        data = self.rfile.read(n)
        if len(data) != n:
            raise BadRequest(400, "short body")
        return data

    def _handle(self):
        resp = None
        try:
            body = self._read_body()
        except BadRequest as e:
            self.close_connection = True
            resp = Resp(e.status, {"error": str(e)})
        if resp is None:
            req = Req(self.server.name, self.command, self.path, self.headers,
                      body, self.cert_subject, self.cert_fp)
            try:
                _, resp = dispatch(req)
            except Exception as e:     # a sandbox bug must not kill the thread
                tb = e.__traceback__
                while tb.tb_next:
                    tb = tb.tb_next
                log.error("%s handler error %s at line %d", self.server.name,
                          type(e).__name__, tb.tb_lineno)
                resp = Resp(500, {"error": "sandbox internal error"})
        if resp is CLOSE:
            self.close_connection = True
            log.info("%s %s %s dropped", self.server.name, self.command,
                     self.path.split("?", 1)[0][:200])
            return
        self._send(resp)

    def _send(self, resp):
        body = resp.body
        ctype = resp.ctype
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            ctype = ctype or "application/json"
        elif body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(resp.status)
        if body or ctype:
            self.send_header("Content-Type", ctype or "application/json")
        for k, v in resp.headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, name, ctx):
        self.name = name
        self.ctx = ctx
        super().__init__(("127.0.0.1", 0), Handler)

    def server_bind(self):
        # No getfqdn(): it may wait on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ctx is None:
            return sock, addr
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, OSError, socket.timeout)):
            log.info("%s connection error: %s", self.name, type(e).__name__)
        else:
            log.error("%s unexpected error: %s", self.name, type(e).__name__)


def make_ctx(certs, cert, minv=ssl.TLSVersion.TLSv1_2, maxv=None,
             client_cas=(), required=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    ctx.load_cert_chain(os.path.join(certs, cert + ".pem"),
                        os.path.join(certs, cert + ".key"))
    if client_cas:
        for ca in client_cas:
            ctx.load_verify_locations(cafile=os.path.join(certs, ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    return ctx


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--certs", required=True, help="directory made by mkcerts.sh")
    ap.add_argument("--dir", required=True, help="where ports.env and the log go")
    args = ap.parse_args()

    logging.basicConfig(filename=os.path.join(args.dir, "sandbox.log"),
                        level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    c = args.certs
    T = ssl.TLSVersion
    listeners = {
        # main asks for (but does not need) a client certificate, so tests
        # can see in _ctl/last whether one was sent where it should not be.
        "main": make_ctx(c, "server", client_cas=("client-ca.pem", "unknown-ca.pem")),
        "mtls": make_ctx(c, "server", client_cas=("client-ca.pem",), required=True),
        "tls13": make_ctx(c, "server", minv=T.TLSv1_3),
        "tls12": make_ctx(c, "server", minv=T.TLSv1_2, maxv=T.TLSv1_2),
        "badhost": make_ctx(c, "badhost"),
        "unknownca": make_ctx(c, "unknownca-server"),
        "http": None,       # plain HTTP, for insecure_http tests
    }
    servers = {name: Listener(name, ctx) for name, ctx in listeners.items()}
    threads = []
    for s in servers.values():
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                             name="listener-" + s.name, daemon=True)
        t.start()
        threads.append(t)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    var = {"main": "SB", "mtls": "SB_MTLS", "tls13": "SB_TLS13",
           "tls12": "SB_TLS12", "badhost": "SB_BADHOST",
           "unknownca": "SB_UNKNOWNCA", "http": "SB_HTTP"}
    lines = ["SB_PID=%d" % os.getpid(),
             "SB_PORT=%d" % servers["main"].server_port]
    for name, s in servers.items():
        lines.append("%s=%s://127.0.0.1:%d" % (
            var[name], "http" if s.ctx is None else "https", s.server_port))
    tmp = os.path.join(args.dir, "ports.env.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(tmp, os.path.join(args.dir, "ports.env"))
    log.info("ready: %s", " ".join("%s=%d" % (n, s.server_port)
                                   for n, s in servers.items()))

    while not stop.wait(1.0):
        pass
    log.info("stopping")
    stoppers = [threading.Thread(target=s.shutdown) for s in servers.values()]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    for s in servers.values():
        s.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
