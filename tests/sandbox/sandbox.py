#!/usr/bin/env python3
"""apicred test sandbox: a real HTTPS server on 127.0.0.1 emulating every
seed API (API key, Edgecast TOK:, generic OAuth 2.0, MTN MoMo, VDMS IDS, TPV,
TCX, TOTSCo mTLS, AWS SigV4 / S3) with fault injection. Python 3 standard
library only, except the SigV4 routes, which verify signatures with botocore
(Debian's python3-botocore), imported when first needed.

    sandbox.py --certs DIR --dir SBDIR
    sandbox.py --dir SBDIR [--stop-on-eof]   (the plain HTTP listener only)

Listens on ephemeral ports; writes SBDIR/ports.env once every listener is
ready; logs to SBDIR/sandbox.log (never secrets: no headers, bodies or query
strings); exits cleanly on SIGTERM/SIGINT. The contract (routes, secrets,
faults, control API) is tests/sandbox/SPEC.md; keep the two in step.

This file routes requests (the table below names each endpoint's module)
and starts the listeners; server.py is the HTTP(S) plumbing, state.py the
settings, counters, faults, tokens and the control API, common.py the
request and response types, and vendor_*.py one module per emulated API.
"""

import argparse
import logging
import os
import re
import signal
import ssl
import sys
import threading
import time

from common import Resp, tcx_fail
from state import GENERIC_FAULTS, MODIFIER_FAULTS, STATE, fault_response, h_ctl, modify
from server import Listener, make_ctx
import script
import vendor_apikey
import vendor_momo
import vendor_oauth2
import vendor_sigv4
import vendor_tcx
import vendor_tok
import vendor_tpv
import vendor_vdms

log = logging.getLogger("sandbox")

# ---- routing ---------------------------------------------------------------------

ROUTES = [
    # (regex on the path, endpoint name, handler); ARG_ROUTES' handlers also
    # take the first match group
    (r"/apikey/echo", "apikey", vendor_apikey.h_apikey),
    (r"/tok(/.*)?", "tok", vendor_tok.h_tok),
    (r"/redirect", "redirect", vendor_apikey.h_redirect),
    (r"/oauth2/token", "token", vendor_oauth2.h_token),
    (r"/api(/.*)?", "api", vendor_oauth2.h_api),
    (r"/momo/v1_0/apiuser", "momo-apiuser", vendor_momo.h_momo_apiuser),
    (r"/momo/v1_0/apiuser/([^/]+)/apikey", "momo-apikey", vendor_momo.h_momo_apikey),
    (r"/momo/v1_0/apiuser/([^/]+)", "momo-user", vendor_momo.h_momo_user),
    (r"/momo/collection/token/?", "momo-token", vendor_momo.h_momo_token),
    (r"/momo/collection/v1_0/requesttopay", "momo-rtp", vendor_momo.h_momo_rtp),
    (r"/vdms/connect/token", "vdms-token", vendor_vdms.h_vdms_token),
    (r"/vdms/rules(/.*)?", "vdms-api", vendor_vdms.h_vdms_api),
    (r"/tpv/api/v1/auth", "tpv-auth", vendor_tpv.h_tpv_auth),
    (r"/tpv/api/v1/.+", "tpv", vendor_tpv.h_tpv),
    (r"/tcx/tcx/authorize", "tcx-authorize", vendor_tcx.h_tcx_authorize),
    (r"/tcx/tcx/reauthorize", "tcx-reauthorize", vendor_tcx.h_tcx_reauthorize),
    (r"/tcx/api(/.*)?", "tcx", vendor_tcx.h_tcx_api),
    (r"/sigv4(/.*)?", "sigv4", vendor_sigv4.h_sigv4),
    (r"/s3/([^/]+)(?:/.*)?", "s3", vendor_sigv4.h_s3),
    (r"/script(/.*)?", "script", script.h_script),
]
ROUTES = [(re.compile(r), n, h) for r, n, h in ROUTES]
ARG_ROUTES = {"momo-apikey", "momo-user", "s3"}


def endpoint_name(listener, base):
    return base if listener == "main" else "%s-%s" % (listener, base)


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--certs", help="directory made by mkcerts.sh (without it: "
                    "the plain HTTP listener only)")
    ap.add_argument("--dir", required=True, help="where ports.env and the log go")
    ap.add_argument("--stop-on-eof", action="store_true",
                    help="stop when stdin reaches its end (the parent died)")
    args = ap.parse_args()

    logging.basicConfig(filename=os.path.join(args.dir, "sandbox.log"),
                        level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    c = args.certs
    T = ssl.TLSVersion
    listeners = {"http": None} if not c else {
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
    servers = {name: Listener(name, ctx, dispatch) for name, ctx in listeners.items()}
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
    if args.stop_on_eof:
        # A C test that crashed never stops its sandbox: its end of the
        # pipe closing does.
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()),
                         name="stdin-eof", daemon=True).start()

    var = {"main": "SB", "mtls": "SB_MTLS", "tls13": "SB_TLS13",
           "tls12": "SB_TLS12", "badhost": "SB_BADHOST",
           "unknownca": "SB_UNKNOWNCA", "http": "SB_HTTP"}
    lines = ["SB_PID=%d" % os.getpid()]
    if "main" in servers:
        lines.append("SB_PORT=%d" % servers["main"].server_port)
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
