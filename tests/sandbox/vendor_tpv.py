"""TPV: auth token and HMAC-signed API (SPEC.md: tpv-auth, tpv)."""

import hashlib
import hmac
import re
import secrets
import time

from common import Resp, eq
from state import STATE

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
