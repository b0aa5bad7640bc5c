"""HTTP(S) plumbing: one threaded listener per TLS setting, request
parsing and answers. Knows nothing of the emulated APIs: each listener
hands a parsed request to the dispatch function it was made with."""

import hashlib
import http.server
import logging
import json
import os
import socket
import socketserver
import ssl
import sys
import time

from common import CLOSE, Req, Resp

MAX_BODY = 8 << 20

log = logging.getLogger("sandbox")

# ---- HTTP plumbing --------------------------------------------------------------

class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Errors on unparsable request lines still get a status line.
    default_request_version = "HTTP/1.0"
    server_version = "apicred-sandbox/1"
    sys_version = ""
    timeout = 30
    disable_nagle_algorithm = True    # else 40 ms per answer (delayed ACK)

    def setup(self):
        # The TLS handshake runs here, in the connection's own thread, so a
        # slow or hostile client never blocks the accept loop.
        self.request.settimeout(self.timeout)
        self.cert_subject = None
        self.cert_fp = None
        if not isinstance(self.request, ssl.SSLSocket):     # plain HTTP
            super().setup()
            return
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError):
            self._linger()
            raise
        der = self.request.getpeercert(binary_form=True)
        if der:
            self.cert_fp = hashlib.sha256(der).hexdigest()
            info = self.request.getpeercert() or {}
            rdns = [(k, v) for rdn in info.get("subject", ()) for k, v in rdn]
            short = {"commonName": "CN", "organizationName": "O",
                     "organizationalUnitName": "OU", "countryName": "C"}
            self.cert_subject = ",".join(
                "%s=%s" % (short.get(k, k), v) for k, v in reversed(rdns))
        super().setup()

    def _linger(self):
        """After a refused handshake, let the alert reach the client: close
        our side, then drain what the client already sent (closing with
        unread data would send a TCP reset that can destroy the alert)."""
        try:
            socket.socket.shutdown(self.request, socket.SHUT_WR)
            self.request.settimeout(1.0)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                if not socket.socket.recv(self.request, 65536):
                    break
        except OSError:
            pass

    # Logging: never the query string, headers or body (secrets live there).
    def log_request(self, code="-", size="-"):
        path = (getattr(self, "path", "") or "").split("?", 1)[0]
        log.info("%s %s %s %s", self.server.name, getattr(self, "command", "-"),
                 path[:200], code)

    def log_error(self, format, *args):
        log.info("%s protocol error %s", self.server.name,
                 args[0] if args and isinstance(args[0], int) else "")

    def log_message(self, format, *args):
        pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te and te != "identity":
            if te != "chunked":
                raise BadRequest(501, "unsupported transfer encoding")
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "bad chunk")
                if size < 0:
                    raise BadRequest(400, "bad chunk")
                total += size
                if total > MAX_BODY:
                    raise BadRequest(413, "body too large")
                if size == 0:
                    while self.rfile.readline(8192).strip():
                        pass
                    return b"".join(chunks)
                data = self.rfile.read(size)
                if len(data) != size:
                    raise BadRequest(400, "short chunk")
                chunks.append(data)
                self.rfile.readline(8)
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        if not cl.strip().isdigit():
            raise BadRequest(400, "bad Content-Length")
        n = int(cl)
        if n > MAX_BODY:
            raise BadRequest(413, "body too large")
        data = self.rfile.read(n)
        if len(data) != n:
            raise BadRequest(400, "short body")
        return data

    def _handle(self):
        resp = None
        try:
            body = self._read_body()
        except BadRequest as e:
            self.close_connection = True
            resp = Resp(e.status, {"error": str(e)})
        if resp is None:
            req = Req(self.server.name, self.command, self.path, self.headers,
                      body, self.cert_subject, self.cert_fp)
            try:
                _, resp = self.server.dispatch(req)
            except Exception as e:     # a sandbox bug must not kill the thread
                tb = e.__traceback__
                while tb.tb_next:
                    tb = tb.tb_next
                log.error("%s handler error %s at line %d", self.server.name,
                          type(e).__name__, tb.tb_lineno)
                resp = Resp(500, {"error": "sandbox internal error"})
        if resp is CLOSE:
            self.close_connection = True
            log.info("%s %s %s dropped", self.server.name, self.command,
                     self.path.split("?", 1)[0][:200])
            return
        self._send(resp)

    def _send(self, resp):
        body = resp.body
        ctype = resp.ctype
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode("utf-8")
            ctype = ctype or "application/json"
        elif body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(resp.status)
        if body or ctype:
            self.send_header("Content-Type", ctype or "application/json")
        for k, v in resp.headers.items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, name, ctx, dispatch):
        self.name = name
        self.ctx = ctx
        self.dispatch = dispatch
        super().__init__(("127.0.0.1", 0), Handler)

    def server_bind(self):
        # No getfqdn(): it may wait on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ctx is None:
            return sock, addr
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, OSError, socket.timeout)):
            log.info("%s connection error: %s", self.name, type(e).__name__)
        else:
            log.error("%s unexpected error: %s", self.name, type(e).__name__)


def make_ctx(certs, cert, minv=ssl.TLSVersion.TLSv1_2, maxv=None,
             client_cas=(), required=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    ctx.load_cert_chain(os.path.join(certs, cert + ".pem"),
                        os.path.join(certs, cert + ".key"))
    if client_cas:
        for ca in client_cas:
            ctx.load_verify_locations(cafile=os.path.join(certs, ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    return ctx
