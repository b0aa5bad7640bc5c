"""TCX: authorize, reauthorize and API (SPEC.md: tcx-*)."""

import datetime
import hashlib
import time
import urllib.parse

from common import Resp, eq, php_b64decode, php_str, rand_alnum, tcx_fail, tkey, utc_stamp
from state import STATE

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
