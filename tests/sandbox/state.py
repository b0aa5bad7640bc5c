"""The sandbox's state: settings and test secrets (SPEC.md), counts, last
requests, faults, issued tokens, and the control API (/_ctl/) that reads
and changes them."""

import json
import threading
import time

from common import CLOSE, Resp, eq, jerr, rand_token, tcx_fail, tkey

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

# The scripted endpoint answers this until told otherwise, and keeps up to
# SCRIPT_KEEP requests.
SCRIPT_DEFAULT = {"status": 500, "headers": "", "body": "{}"}
SCRIPT_KEEP = 256



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
            self.script = [SCRIPT_DEFAULT]   # the scripted endpoint's answers
            self.script_next = 0
            self.script_reqs = []            # every request it got

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
            if (name == "script" or name.endswith("-script")) and \
                    len(self.script_reqs) < SCRIPT_KEEP:
                self.script_reqs.append(rec)

    def set_script(self, answers, append):
        with self.lock:
            if append:
                self.script += answers
            else:
                self.script, self.script_next = list(answers), 0

    def take_script(self):
        """The next scripted answer; once used up, the last one repeats."""
        with self.lock:
            a = self.script[self.script_next]
            if self.script_next + 1 < len(self.script):
                self.script_next += 1
            return a

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


# ---- the control API (SPEC.md: control) ---------------------------------

def h_ctl(req):
    op = req.path[len("/_ctl/"):]
    post_only = {"reset", "fault", "set", "expire", "script"}
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
    if op == "requests":
        with STATE.lock:
            return Resp(200, json.dumps(STATE.script_reqs).encode(),
                        ctype="application/json")
    if op == "script":
        try:
            answers = req.json()
        except (ValueError, UnicodeDecodeError):
            answers = None
        if not (isinstance(answers, list) and answers and all(
                isinstance(a, dict) and isinstance(a.get("status"), int) and
                100 <= a["status"] <= 599 and isinstance(a.get("body", ""), str) and
                isinstance(a.get("headers", ""), str) for a in answers)):
            return Resp(400, {"error": "body must be a list of "
                              "{status, headers, body} objects"})
        STATE.set_script([{"status": a["status"], "headers": a.get("headers", ""),
                           "body": a.get("body", "")} for a in answers],
                         q.get("append") == "1")
        return Resp(200, {"ok": True})
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
