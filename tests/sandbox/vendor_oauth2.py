"""Generic OAuth 2.0 token endpoint and API, on the main and mTLS
listeners (SPEC.md: token, api; mtls-token, mtls-api for TOTSCo)."""

from common import Resp, eq, jerr
from state import STATE, expires_in, token_body

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
