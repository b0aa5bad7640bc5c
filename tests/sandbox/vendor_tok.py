"""Edgecast TOK: endpoint (SPEC.md: tok)."""

from common import Resp, eq
from state import STATE

# ---- endpoints: Edgecast TOK: ----------------------------------------------

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
