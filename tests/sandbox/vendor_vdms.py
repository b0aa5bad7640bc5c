"""VDMS / Edgecast IDS: token and rules API (SPEC.md: vdms-*)."""

from common import Resp, eq, jerr
from state import STATE, expires_in, token_body
from vendor_oauth2 import parse_token_form

# ---- endpoints: VDMS / Edgecast IDS ----------------------------------------------

VDMS_SCOPES = ("ec.rules", "ec.purge", "ec.analytics")

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
