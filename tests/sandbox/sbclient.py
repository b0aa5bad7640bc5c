#!/usr/bin/env python3
"""sbclient.py - a tiny HTTPS client for the sandbox, used by
tests/integration/lib.sh (ctl, count, last, sb_request) and the sandbox
self-test. Python 3 standard library only; never the C code under test.

    sbclient.py [options] URL

Options:
  --ca FILE            trust this CA (default: $SB_CA; none = no CA at all)
  --insecure           do not verify the server (self-test only)
  --cert FILE --key FILE [--pass PW]   present a client certificate
  --tls-min V --tls-max V              1.2 or 1.3
  -X METHOD            default GET, or POST when -d is given
  -H 'Name: value'     add a header (repeatable)
  -d DATA              request body ('@FILE' reads a file, '@-' stdin)
  -i                   print "HTTP <status>" on a first line, then the body
  --field PATH         print only this field of a JSON body (dotted path;
                       strings raw, anything else as JSON, missing = nothing)

Exit status: 0 for a 2xx answer, 1 for any other HTTP status, 2 when no
HTTP answer came (connection, TLS or protocol failure; reason on stderr),
3 for bad usage.
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import urllib.parse

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def main():
    ap = argparse.ArgumentParser(add_help=True, usage=__doc__)
    ap.add_argument("url")
    ap.add_argument("--ca", default=os.environ.get("SB_CA"))
    ap.add_argument("--insecure", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--pass", dest="password")
    ap.add_argument("--tls-min", choices=VERSIONS)
    ap.add_argument("--tls-max", choices=VERSIONS)
    ap.add_argument("-X", dest="method")
    ap.add_argument("-H", dest="headers", action="append", default=[])
    ap.add_argument("-d", dest="data")
    ap.add_argument("-i", dest="include", action="store_true")
    ap.add_argument("--field")
    ap.add_argument("--timeout", type=float, default=30)
    try:
        a = ap.parse_args()
    except SystemExit:
        return 3

    u = urllib.parse.urlsplit(a.url)
    if u.scheme not in ("https", "http") or not u.hostname:
        print("sbclient: only https:// and http:// URLs", file=sys.stderr)
        return 3
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if a.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif a.ca:
        ctx.load_verify_locations(cafile=a.ca)
    if a.tls_min:
        ctx.minimum_version = VERSIONS[a.tls_min]
    if a.tls_max:
        ctx.maximum_version = VERSIONS[a.tls_max]
    body = None
    if a.data is not None:
        if a.data == "@-":
            body = sys.stdin.buffer.read()
        elif a.data.startswith("@"):
            with open(a.data[1:], "rb") as f:
                body = f.read()
        else:
            body = a.data.encode("utf-8")
    method = a.method or ("POST" if body is not None else "GET")
    headers = {}
    for h in a.headers:
        name, sep, value = h.partition(":")
        if not sep:
            print("sbclient: bad header %r" % name, file=sys.stderr)
            return 3
        headers[name.strip()] = value.strip()
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    try:
        if a.cert:
            ctx.load_cert_chain(a.cert, a.key, a.password)
        if u.scheme == "http":
            conn = http.client.HTTPConnection(u.hostname, u.port or 80,
                                              timeout=a.timeout)
        else:
            conn = http.client.HTTPSConnection(u.hostname, u.port or 443,
                                               context=ctx, timeout=a.timeout)
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        print("sbclient: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 2
    out = sys.stdout.buffer
    if a.include:
        out.write(b"HTTP %d\n" % resp.status)
    if a.field is not None:
        try:
            v = json.loads(data.decode("utf-8"))
            for part in a.field.split("."):
                v = v[int(part)] if isinstance(v, list) else v[part]
        except (ValueError, KeyError, IndexError, TypeError):
            v = None
        if isinstance(v, str):
            out.write(v.encode("utf-8"))
        elif v is not None:
            out.write(json.dumps(v).encode("utf-8"))
    else:
        out.write(data)
    out.flush()
    return 0 if 200 <= resp.status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
