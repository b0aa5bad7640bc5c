"""The scripted endpoint (SPEC.md: script): answers what the test told it
to (POST /_ctl/script), in order, and keeps every request it gets
(GET /_ctl/requests). The unit tests use it for login endpoints whose every
byte they choose, on the plain HTTP listener (sandbox.py without --certs)."""

from common import Resp
from state import STATE


def h_script(req):
    a = STATE.take_script()
    headers = {}
    for line in a["headers"].split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return Resp(a["status"], a["body"], headers, ctype="application/json")
