"""MTN MoMo: provisioning, token, request to pay (SPEC.md: momo-*)."""

import re
import secrets

from common import Resp, eq
from state import STATE, expires_in, token_body

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
