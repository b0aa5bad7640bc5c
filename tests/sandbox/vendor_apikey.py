"""API key endpoints (SPEC.md: apikey, redirect)."""

import urllib.parse

from common import Resp, eq
from state import STATE

# ---- endpoints: API key ------------------------------------------------

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
