#!/bin/sh
# Self-test of the HTTPS sandbox (tests/sandbox/) and of lib.sh: certificates,
# listeners, TLS policy, control API, faults, and every emulated API checked
# with requests computed here independently (python3, never the C code).
. "$top_srcdir/tests/integration/lib.sh"

command -v "$PYTHON3" >/dev/null 2>&1 || skip_all "python3 not found"
command -v "$OPENSSL" >/dev/null 2>&1 || skip_all "openssl not found"

sandbox_start
C=$SB_CERTS

# ---- certificates (mkcerts.sh) -------------------------------------------
verify() { "$OPENSSL" verify -CAfile "$1" "$2" >/dev/null 2>&1; }
valid_for() { "$OPENSSL" x509 -in "$1" -noout -checkend "$2" >/dev/null 2>&1; }
p12() { "$OPENSSL" pkcs12 -in "$C/client.p12" -passin "pass:$1" -noout 2>/dev/null; }
pub() { "$OPENSSL" pkey -in "$1" -pubout ${2:+-passin "pass:$2"} 2>/dev/null; }

ok "server cert verifies against ca.pem" verify "$C/ca.pem" "$C/server.pem"
ok "client.pem verifies against client-ca.pem" verify "$C/client-ca.pem" "$C/client.pem"
ok "client2.pem verifies against client-ca.pem" verify "$C/client-ca.pem" "$C/client2.pem"
ok "soon.pem verifies" verify "$C/client-ca.pem" "$C/soon.pem"
ok "server cert is not from client-ca" ! verify "$C/client-ca.pem" "$C/server.pem"
ok "other-ca-client is not from client-ca" ! verify "$C/client-ca.pem" "$C/other-ca-client.pem"
ok "expired.pem does not verify" ! verify "$C/client-ca.pem" "$C/expired.pem"
ok "future.pem does not verify" ! verify "$C/client-ca.pem" "$C/future.pem"
ok "expired.pem has expired" ! valid_for "$C/expired.pem" 0
ok "soon.pem expires within 6 days" ! valid_for "$C/soon.pem" 518400
ok "soon.pem is valid for 4 more days" valid_for "$C/soon.pem" 345600
like "server cert names 127.0.0.1 and localhost" \
	"$("$OPENSSL" x509 -in "$C/server.pem" -noout -ext subjectAltName)" \
	"*IP Address:127.0.0.1*DNS:localhost*"
like "badhost cert names only wrong.example" \
	"$("$OPENSSL" x509 -in "$C/badhost.pem" -noout -ext subjectAltName | tail -n 1)" \
	"*DNS:wrong.example"
is "client-enc.key is client.key, encrypted" "$(pub "$C/client-enc.key" sb-keypass)" "$(pub "$C/client.key")"
ok "client-enc.key refuses a wrong password" -z "$(pub "$C/client-enc.key" wrong)"
ok "mismatch.key is another key" "$(pub "$C/mismatch.key")" != "$(pub "$C/client.key")"
ok "client.p12 opens with its password" p12 sb-p12pass
ok "client.p12 refuses a wrong password" ! p12 wrong
modes=$(cd "$C" && stat -c '%a' ./*.key client.p12 | sort -u)
is "every key file is 0600" "$modes" "600"
t0=$(stat -c %Y "$C/ca.pem")
ok "mkcerts.sh is idempotent" sh "$SB_SRC/mkcerts.sh" "$C"
is "a second run keeps the certificates" "$(stat -c %Y "$C/ca.pem")" "$t0"

# ---- lib.sh itself ------------------------------------------------------------
confdir_new
like "confdir_new trusts SB_CA" "$(cat "$CONF/apicred.conf")" "*ca_file = \"$SB_CA\"*"
secret_file x/y "a b"
is "secret_file writes the value without newline" "$(od -An -c "$CONF/secrets/x/y" | tr -d ' ')" "ab"
is "secret_file mode" "$(stat -c %a "$CONF/secrets/x/y")" "600"
service_file demo <<EOF
description = "demo";
EOF
is "service_file mode" "$(stat -c %a "$CONF/conf.d/demo.conf")" "600"
is "conf dir modes" "$(stat -c %a "$CONF" "$CONF/conf.d" "$CONF/secrets" | sort -u)" "700"
real_builddir=$top_builddir
top_builddir=$T/fake
mkdir -p "$top_builddir/tools"
printf '#!/bin/sh\nprintf "%%s|" "$@"; echo oops >&2; exit 3\n' >"$top_builddir/tools/apicred"
chmod +x "$top_builddir/tools/apicred"
run apicred get "a b"
is "run: -c CONF -m MODULEDIR, then the arguments" "$OUT" \
	"-c|$CONF|-m|$APICRED_TEST_MODULEDIR|get|a b|"
is "run: stderr in ERR" "$ERR" "oops"
is "run: exit status in RC, script goes on" "$RC" 3
run list
is "run without the word apicred" "$OUT" "-c|$CONF|-m|$APICRED_TEST_MODULEDIR|list|"
top_builddir=$real_builddir

# ---- listeners and control, through lib.sh's helpers -------------------------
K="X-API-Key: sb-apikey-0123456789"
sb_request -H "$K" "$SB/apikey/echo"
is "main listener answers" "$SB_STATUS" 200
sb_request -H "$K" --tls-max 1.2 "$SB_TLS13/apikey/echo"
is "TLS 1.3 listener refuses TLS 1.2" "$SB_STATUS" ""
like "... with a protocol version alert" "$SB_ERR" "*PROTOCOL_VERSION*"
sb_request -H "$K" "$SB_HTTP/apikey/echo"
is "plain HTTP listener answers" "$SB_STATUS" 200
is "... counted as http-apikey" "$(count http-apikey)" 1
sb_request "$SB_MTLS/api/x"
is "mTLS listener refuses a client without certificate" "$SB_STATUS" ""
like "... with certificate required" "$SB_ERR" "*CERTIFICATE_REQUIRED*"
sb_request --cert "$C/client.pem" --key "$C/client.key" "$SB_MTLS/api/x"
is "mTLS listener: client cert, no token -> 401" "$SB_STATUS" 401
is "last: client cert subject on the mTLS listener" \
	"$(last mtls-api client_cert_subject)" "CN=sb-client,O=apicred sandbox"
is "last: no client cert -> null" "$(last apikey client_cert_subject)" ""
is "count before any request" "$(count token)" 0
F='Content-Type: application/x-www-form-urlencoded'
B=$(printf 'sb-client:s3cr%%3At%%2B%%2F%%25%%26%%3D%%C3%%A9' | base64 -w0)
ctl fault token 500 1
sb_request -H "$F" -H "Authorization: Basic $B" -d grant_type=client_credentials "$SB/oauth2/token"
s1=$SB_STATUS
sb_request -H "$F" -H "Authorization: Basic $B" -d grant_type=client_credentials "$SB/oauth2/token"
is "ctl fault 500 once, then normal" "$s1 $SB_STATUS" "500 200"
is "count counts faulted requests too" "$(count token)" 2
like "last: headers, lowercased" "$(last token headers.authorization)" "Basic *"
ctl fault apikey close 1
sb_request -H "$K" "$SB/apikey/echo"
is "fault close drops the connection" "$SB_STATUS" ""
quiet() { "$@" >/dev/null 2>&1; }
ok "ctl refuses an unknown fault kind" ! quiet ctl fault token nosuchkind 1
ctl reset
is "ctl reset clears counters" "$(count token)" 0

# ---- the API emulations, computed independently in python3 -------------------------
"$PYTHON3" - >"$T/py.out" 2>"$T/py.err" <<'PY' || diag "python3 self-test failed: $(cat "$T/py.err")"
import base64, datetime, hashlib, hmac, http.client, json, os, socket, ssl
import sys, time, urllib.parse, uuid

C = os.environ["SB_CERTS"]
def hostport(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port
SB, MTLS = hostport(os.environ["SB"]), hostport(os.environ["SB_MTLS"])
TLS13, TLS12 = hostport(os.environ["SB_TLS13"]), hostport(os.environ["SB_TLS12"])
BADHOST, UNKNOWNCA = hostport(os.environ["SB_BADHOST"]), hostport(os.environ["SB_UNKNOWNCA"])
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

_ctx = {}
def ctx(cert=None, ca="ca", tmin=None, tmax=None, verify=True):
    k = (cert, ca, tmin, tmax, verify)
    if k not in _ctx:
        c = ssl.create_default_context(cafile=C + "/%s.pem" % ca)
        if not verify:
            c.check_hostname = False
            c.verify_mode = ssl.CERT_NONE
        if tmin:
            c.minimum_version = tmin
        if tmax:
            c.maximum_version = tmax
        if cert:
            c.load_cert_chain(C + "/%s.pem" % cert, C + "/%s.key" % cert)
        _ctx[k] = c
    return _ctx[k]

def req(method, path, body=None, headers=None, where=SB, cert=None, raw=False, c=None):
    conn = http.client.HTTPSConnection(*where, context=c or ctx(cert), timeout=20)
    if isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if raw:
        return r.status, data, r
    try:
        return r.status, json.loads(data) if data else None
    except ValueError:
        return r.status, data

def check(cond, what, detail=""):
    print(("PASS " if cond else "FAIL ") + what + ("" if cond or not detail else " -- %r" % (detail,)))
    sys.stdout.flush()

def ctl(op, q="", body=None):
    s, b = req("POST", "/_ctl/%s%s" % (op, q), json.dumps(body) if body is not None else None,
               {"Content-Type": "application/json"})
    assert s == 200, (op, s, b)

def count(ep):
    return req("GET", "/_ctl/count?endpoint=" + ep)[1]["count"]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
AK = {"X-API-Key": "sb-apikey-0123456789"}

def tls_error(where, **kw):
    """The exception text of a refused handshake, or "" if it was served."""
    try:
        s, _ = req("GET", "/apikey/echo", headers=AK, where=where, c=ctx(**kw))
        return ""
    except (ssl.SSLError, OSError) as e:
        return str(e) or type(e).__name__

# -- the other listeners
check(req("GET", "/apikey/echo", headers=AK, where=TLS13, c=ctx(tmin=V13))[0] == 200, "TLS 1.3 listener answers TLS 1.3")
check("PROTOCOL_VERSION" in tls_error(TLS13, tmax=V12), "TLS 1.3 listener refuses TLS 1.2")
check(req("GET", "/apikey/echo", headers=AK, where=TLS12, c=ctx(tmax=V12))[0] == 200, "TLS 1.2 listener answers TLS 1.2")
check(tls_error(TLS12, tmin=V13) != "", "TLS 1.2 listener refuses TLS 1.3")
check("mismatch" in tls_error(BADHOST), "bad-host listener fails host verification", tls_error(BADHOST))
check(req("GET", "/apikey/echo", headers=AK, where=BADHOST, c=ctx(verify=False))[0] == 200,
      "... and answers without verification")
check("CERTIFICATE_VERIFY_FAILED" in tls_error(UNKNOWNCA), "unknown-CA listener fails verification")
check(req("GET", "/apikey/echo", headers=AK, where=UNKNOWNCA, c=ctx(ca="unknown-ca"))[0] == 200,
      "... and is trusted with its own CA")
check(tls_error(MTLS, cert="other-ca-client") != "", "mTLS listener refuses a cert from another CA")
check(tls_error(MTLS, cert="expired") != "", "mTLS listener refuses an expired cert")
check(tls_error(MTLS, cert="future") != "", "mTLS listener refuses a not yet valid cert")
check(count("tls12-apikey") == 1 and count("badhost-apikey") == 1, "other listeners count under their prefix")
def basic(i, s, form=True):
    q = urllib.parse.quote_plus if form else (lambda x: x)
    return "Basic " + base64.b64encode((q(i) + ":" + q(s)).encode()).decode()

# -- API key and TOK:
for name, h, path in [("header", {"X-API-Key": "sb-apikey-0123456789"}, "/apikey/echo"),
                      ("query", {}, "/apikey/echo?api_key=sb-apikey-0123456789"),
                      ("authorization", {"Authorization": "apikey sb-apikey-0123456789"}, "/apikey/echo")]:
    s, b = req("GET", path, headers=h)
    check(s == 200 and b["via"] == name, "apikey accepted in the " + name, (s, b))
s, b = req("GET", "/apikey/echo", headers={"X-API-Key": "sb-apikey-0123456788"})
check(s == 401, "apikey: wrong key -> 401", s)
P, BK = "11111111-2222-3333-4444-555555555555", "99999999-8888-7777-6666-555555555555"
s, b = req("GET", "/tok/x", headers={"Authorization": "TOK:" + P})
check(s == 200 and b["token"] == "primary", "tok: primary", (s, b))
s, b = req("GET", "/tok/x", headers={"Authorization": "tok:" + BK.upper()})
check(s == 200 and b["token"] == "backup", "tok: backup, lowercase prefix", (s, b))
s, b = req("GET", "/tok/x", headers={"Authorization": "Bearer " + P})
check(s == 403 and b == {"reason": "invalid token"}, "tok: other scheme -> 403 reason", (s, b))
ctl("set", body={"tok_primary": None})
s, _ = req("GET", "/tok/x", headers={"Authorization": "TOK:" + P})
s2, _ = req("GET", "/tok/x", headers={"Authorization": "TOK:" + BK})
check((s, s2) == (403, 200), "tok: revoked primary -> 403, backup still 200", (s, s2))
ctl("reset")

# -- generic OAuth 2.0
SEC = "s3cr:t+/%&=\u00e9"
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials&scope=a+b&audience=aud&resource=r1",
           {**FORM, "Authorization": basic("sb-client", SEC)})
check(s == 200 and b["token_type"] == "Bearer" and b["expires_in"] == 3600
      and b["scope"] == "a b" and b["audience"] == "aud" and b["resource"] == "r1",
      "token: basic with a form-encoded awkward secret; scope/audience/resource echoed", (s, b))
tok = b["access_token"]
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials",
           {**FORM, "Authorization": basic("sb-client", SEC, form=False)})
check(s == 401 and b["error"] == "invalid_client", "token: basic without form-encoding -> 401", (s, b))
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials&" +
           urllib.parse.urlencode({"client_id": "sb-client", "client_secret": SEC}), FORM)
check(s == 200 and "access_token" in b, "token: post auth", (s, b))
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials&" +
           urllib.parse.urlencode({"client_id": "sb-client", "client_secret": SEC}),
           {**FORM, "Authorization": basic("sb-client", SEC)})
check(s == 400 and b["error"] == "invalid_request", "token: two auth methods -> 400", (s, b))
s, b = req("POST", "/oauth2/token", "grant_type=password", {**FORM, "Authorization": basic("sb-client", SEC)})
check(s == 400 and b["error"] == "unsupported_grant_type", "token: other grant -> 400", (s, b))
s, b = req("GET", "/api/thing", headers={"Authorization": "Bearer " + tok})
check(s == 200 and b["scope"] == "a b", "api: issued token accepted", (s, b))
s, b = req("GET", "/api/thing", headers={"Authorization": "Bearer nope"})
check(s == 401, "api: unknown token -> 401", s)
ctl("expire")
s, b = req("GET", "/api/thing", headers={"Authorization": "Bearer " + tok})
check(s == 401, "api: _ctl/expire invalidates issued tokens", s)

def tok_with_fault(kind, arg=None, ep="token"):
    ctl("fault", "?endpoint=%s&kind=%s&times=1%s" % (ep, kind, "&arg=" + arg if arg else ""))
    return req("POST", "/oauth2/token", "grant_type=client_credentials",
               {**FORM, "Authorization": basic("sb-client", SEC)}, raw=True)

s, d, r = tok_with_fault("429", "7")
check(s == 429 and r.getheader("Retry-After") == "7", "fault 429 carries Retry-After", (s, r.getheader("Retry-After")))
s, d, r = tok_with_fault("503")
check(s == 503 and r.getheader("Retry-After") is None, "fault 503 without arg: no Retry-After", s)
s, d, r = tok_with_fault("badjson")
try:
    json.loads(d); bad = False
except ValueError:
    bad = True
check(s == 200 and bad, "fault badjson", s)
s, d, r = tok_with_fault("huge")
check(s == 200 and len(d) >= 2 << 20, "fault huge: 2 MiB body", len(d))
for kind, test in [("no_expires", lambda b: "expires_in" not in b),
                   ("expires_str", lambda b: b["expires_in"] == "120"),
                   ("expires_zero", lambda b: b["expires_in"] == 0),
                   ("crlf", lambda b: "\r\n" in b["access_token"])]:
    s, d, r = tok_with_fault(kind)
    b = json.loads(d)
    check(s == 200 and test(b), "fault " + kind, b)
for kind, st, body in [("invalid_scope", 400, b'"invalid_scope"'), ("invalid_client", 401, b'"invalid_client"'),
                       ("login_failed", 500, b'{"error": "login_failed"}'), ("forbidden_empty", 403, b"")]:
    s, d, r = tok_with_fault(kind)
    check(s == st and (body in d if body else d == b""), "fault " + kind, (s, d[:80]))
def tokreq():
    return req("POST", "/oauth2/token", "grant_type=client_credentials", {**FORM, "Authorization": basic("sb-client", SEC)})[0]
ctl("fault", "?endpoint=token&kind=429&times=2")
a = [tokreq(), tokreq(), tokreq()]
check(a == [429, 429, 200], "fault times=2", a)
ctl("fault", "?endpoint=token&kind=503&times=-1")
a = [tokreq(), tokreq()]
ctl("fault", "?endpoint=token&kind=503&times=0")
a.append(tokreq())
check(a == [503, 503, 200], "fault times=-1 lasts, times=0 clears", a)
ctl("fault", "?endpoint=token&kind=503&times=-1")
ctl("reset")
check(tokreq() == 200 and count("token") == 1, "reset clears faults and counters")
ctl("fault", "?endpoint=token&kind=slow&times=1&arg=0.1")
check(tokreq() == 200, "fault slow still answers")
s, l = req("GET", "/_ctl/last?endpoint=token")
check(l["method"] == "POST" and l["path"] == "/oauth2/token" and l["body"] == "grant_type=client_credentials"
      and l["headers"]["content-type"] == FORM["Content-Type"] and l["client_cert_subject"] is None,
      "_ctl/last: method, path, body, headers", l)
s, b = req("POST", "/_ctl/set", json.dumps({"nosuchkey": 1}), {"Content-Type": "application/json"})
check(s == 400, "_ctl/set refuses an unknown key", s)
s, b = req("POST", "/_ctl/set", json.dumps({"tcx_mode": "bogus", "apikey": "x"}), {"Content-Type": "application/json"})
s2, _ = req("GET", "/apikey/echo", headers=AK)
check(s == 400 and s2 == 200, "_ctl/set: a bad value changes nothing", (s, s2))
ctl("set", body={"expires_in": None, "token_type": "bearer"})
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials", {**FORM, "Authorization": basic("sb-client", SEC)})
check(s == 200 and "expires_in" not in b and b["token_type"] == "bearer", "set expires_in null omits it; token_type", b)
ctl("set", body={"expires_in": "300"})
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials", {**FORM, "Authorization": basic("sb-client", SEC)})
check(b.get("expires_in") == "300", "set expires_in to any JSON value", b)
ctl("reset")

# -- mTLS listener: token bound to the certificate that fetched it
TS = basic("sb-totsco-client", "sb-totsco-secret")
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials", {**FORM, "Authorization": TS},
           where=MTLS, cert="client")
check(s == 200, "mtls-token with client cert", (s, b))
mt = b["access_token"]
s, b = req("GET", "/api/x", headers={"Authorization": "Bearer " + mt}, where=MTLS, cert="client")
check(s == 200 and b["client_cert_subject"] == "CN=sb-client,O=apicred sandbox", "mtls-api: cert + token", (s, b))
s, b = req("GET", "/api/x", headers={"Authorization": "Bearer " + mt}, where=MTLS, cert="client2")
check(s == 401, "mtls-api: token bound to the other cert -> 401", s)
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials", {**FORM, "Authorization": basic("sb-client", SEC)},
           where=MTLS, cert="client")
check(s == 401, "mtls-token refuses the generic client", s)
s, b = req("POST", "/oauth2/token", "grant_type=client_credentials", {**FORM, "Authorization": basic("sb-client", SEC)})
s, b = req("GET", "/api/x", headers={"Authorization": "Bearer " + b["access_token"]}, where=MTLS, cert="client")
check(s == 401, "mtls-api refuses a token from the main listener", s)
s, b = req("GET", "/apikey/echo", headers={"X-API-Key": "sb-apikey-0123456789"}, cert="client")
s2, l = req("GET", "/_ctl/last?endpoint=apikey")
check(s == 200 and l["client_cert_subject"] == "CN=sb-client,O=apicred sandbox",
      "main listener reports a client cert sent to it", l.get("client_cert_subject"))

# -- MoMo provisioning, token, requesttopay
SK = {"Ocp-Apim-Subscription-Key": "sb-momo-subkey-abcdef"}
uid = str(uuid.uuid4())
cb = json.dumps({"providerCallbackHost": "clinic.example"})
J = {"Content-Type": "application/json"}
s, b = req("POST", "/momo/v1_0/apiuser", cb, {**SK, **J, "X-Reference-Id": uid})
check(s == 201, "momo: create API user -> 201", (s, b))
s, b = req("POST", "/momo/v1_0/apiuser", cb, {**SK, **J, "X-Reference-Id": uid})
check(s == 409 and b["code"] == "RESOURCE_ALREADY_EXIST", "momo: duplicate -> 409", (s, b))
s, b = req("POST", "/momo/v1_0/apiuser", cb, {"Ocp-Apim-Subscription-Key": "bad", **J, "X-Reference-Id": str(uuid.uuid4())})
check(s == 401, "momo: bad subscription key -> 401", s)
s, b = req("POST", "/momo/v1_0/apiuser", cb, {**SK, **J, "X-Reference-Id": "not-a-uuid"})
check(s == 400, "momo: bad reference id -> 400", s)
s, b = req("POST", "/momo/v1_0/apiuser/%s/apikey" % uid, None, SK)
check(s == 201 and len(b["apiKey"]) == 32, "momo: create API key -> 201", (s, b))
key = b["apiKey"]
s, b = req("GET", "/momo/v1_0/apiuser/" + uid, headers=SK)
check(s == 200 and b == {"providerCallbackHost": "clinic.example", "targetEnvironment": "sandbox"},
      "momo: user details", (s, b))
s, b = req("POST", "/momo/collection/token/", None, {**SK, "Authorization": basic(uid, key, False)})
check(s == 200 and b["token_type"] == "access_token" and b["expires_in"] == 3600, "momo: token", (s, b))
mt = b["access_token"]
s, b = req("POST", "/momo/collection/token/", None, {**SK, "Authorization": basic(uid, "wrong", False)})
check(s == 500 and b == {"error": "login_failed"}, "momo: wrong key -> 500 login_failed", (s, b))
s, b = req("POST", "/momo/collection/token/", None,
           {**SK, "Authorization": basic("c72025f5-5cd1-4630-99e4-8ba4722fad56", "sb-momo-apikey-f1db798c", False)})
check(s == 200, "momo: pre-seeded user", s)
RTP = {**SK, **J, "Authorization": "Bearer " + mt, "X-Target-Environment": "sandbox"}
s, _ = req("POST", "/momo/collection/v1_0/requesttopay", "{}", RTP)
check(s == 202, "momo: requesttopay -> 202", s)
s, _ = req("POST", "/momo/collection/v1_0/requesttopay", "{}", {**RTP, "X-Target-Environment": "mtnuganda"})
s2, _ = req("POST", "/momo/collection/v1_0/requesttopay", "{}", {**RTP, "Authorization": "Bearer x"})
s3, _ = req("POST", "/momo/collection/v1_0/requesttopay", "{}", {**RTP, "Ocp-Apim-Subscription-Key": "x"})
check((s, s2, s3) == (400, 401, 401), "momo: requesttopay checks environment, token, key", (s, s2, s3))

# -- VDMS IDS
V = "grant_type=client_credentials&client_id=sb-vdms-client&client_secret=sb-vdms-secret"
s, b = req("POST", "/vdms/connect/token", V + "&scope=ec.rules+ec.purge", FORM)
check(s == 200 and b["expires_in"] == 300 and b["scope"] == "ec.rules ec.purge", "vdms: token, 300 s, scopes", (s, b))
s2, _ = req("GET", "/vdms/rules", headers={"Authorization": "Bearer " + b["access_token"]})
check(s2 == 200, "vdms: rules with ec.rules", s2)
s, b = req("POST", "/vdms/connect/token", V + "&scope=ec.purge", FORM)
s2, _ = req("GET", "/vdms/rules", headers={"Authorization": "Bearer " + b["access_token"]})
check(s2 == 403, "vdms: rules without ec.rules -> 403", s2)
s, b = req("POST", "/vdms/connect/token", V + "&scope=ec.rules+ec.bogus", FORM)
check(s == 400 and b["error"] == "invalid_scope", "vdms: unknown scope -> invalid_scope", (s, b))
s, b = req("POST", "/vdms/connect/token", "grant_type=client_credentials&scope=ec.rules",
           {**FORM, "Authorization": basic("sb-vdms-client", "sb-vdms-secret")})
check(s == 400 and b["error"] == "invalid_client", "vdms: basic auth refused (post only)", (s, b))

# -- TPV
TT, TSEC = "sb-tpv-token", "sb-tpv-secret-0123456789abcdef"
def h(msg):
    return hmac.new(TSEC.encode(), msg if isinstance(msg, bytes) else msg.encode(), hashlib.sha256).hexdigest()
def tpv_login(ts=None, sig=None):
    ts = str(int(time.time())) if ts is None else ts
    sig = h("token=" + TT + "&timestamp=" + ts) if sig is None else sig
    return req("POST", "/tpv/api/v1/auth?" + urllib.parse.urlencode({"token": TT, "timestamp": ts, "_signature": sig}))
s, b = tpv_login()
check(s == 200 and b.get("auth_token"), "tpv: login with the right signature", (s, b))
at = b["auth_token"]
s, b = tpv_login(sig=h("token=" + TT + "&timestamp=1"))
check(s == 400 and b["error"] == "invalid signature", "tpv: wrong signature -> 400 error", (s, b))
s, b = tpv_login(sig=h("token=" + TT + "&timestamp=" + str(int(time.time()))).upper())
check(s == 400, "tpv: uppercase hex signature refused", s)
old = str(int(time.time()) - 1000)
s, b = tpv_login(ts=old)
check(s == 400 and "timestamp" in b["error"], "tpv: stale timestamp -> 400", (s, b))
q = "b=2&a=%C3%A9+x"
s, b = req("GET", "/tpv/api/v1/products?" + q, headers={"Authorization": at, "Signature": h(q)})
check(s == 200 and b["products"], "tpv: signed query accepted", (s, b))
s, b = req("GET", "/tpv/api/v1/products?" + q, headers={"Authorization": at, "Signature": h("a=%C3%A9+x&b=2")})
check(s == 400 and b["error"] == "invalid signature", "tpv: signature over another query -> 400", (s, b))
s, b = req("GET", "/tpv/api/v1/products", headers={"Authorization": "Bearer " + at, "Signature": h("")})
check(s == 401, "tpv: Bearer prefix is not the token -> 401", s)
ctl("set", body={"tpv_sign": "body"})
body = json.dumps({"channel": "dtd"})
s, b = req("POST", "/tpv/api/v1/tpv", body, {**J, "Authorization": at, "Signature": h(body)})
check(s == 200 and len(b["success"]) == 11, "tpv: body signing, POST /tpv", (s, b))
body = json.dumps({"channel": "web"})
s, b = req("POST", "/tpv/api/v1/tpv", body, {**J, "Authorization": at, "Signature": h(body)})
check(s == 400 and b["error"].startswith("channel must"), "tpv: 400 error body", (s, b))
ctl("set", body={"tpv_sign": "query+body"})
body = '{"channel":"tm"}'
s, b = req("POST", "/tpv/api/v1/tpv?x=1", body, {**J, "Authorization": at, "Signature": h("x=1" + body)})
check(s == 200, "tpv: query+body signing", (s, b))
ctl("reset")

# -- TCX
APP, PUB, MASTER = "sb-tcx-app", "sb-tcx-public", "sb-tcx-master"
def tcx_pass(j, dyn="abcdefghij0123456789abcdefghij01", hash_dyn=None):
    hd = (dyn.lower() if hash_dyn is None else hash_dyn)
    return base64.b64encode((hashlib.sha1((j + PUB + hd).encode()).hexdigest() + ":" + dyn).encode()).decode()
def tcx(path, pw, typ="OWTC", body=None, headers=None, token=None):
    hd = {"X-TCX-TYPE": typ, "X-TCX-APP-ID": APP, "X-TCX-APP-PASS": pw, **(headers or {})}
    if token is not None:
        hd["X-TCX-TOKEN"] = token
    return req("POST" if body is not None else "GET", path, body, hd)
def tcx_ok(b):
    return isinstance(b, dict) and b.get("status") == 1
def tcx_code(b):
    return (b.get("status"), b.get("status_number"), b.get("status_code"))

# param mode (the default)
s, b = tcx("/tcx/api/x?abc=123&_xyz=789&foo=bar&def=456&bar=ghi",
           tcx_pass("_xyz=789&abc=123&bar=ghi&def=456&foo=bar&"))
check(s == 200 and tcx_ok(b), "tcx param: README sample, trailing & kept", b)
s, b = tcx("/tcx/api/x?abc=123&_xyz=789&foo=bar&def=456&bar=ghi",
           tcx_pass("_xyz=789&abc=123&bar=ghi&def=456&foo=bar"))
check(s == 200 and tcx_code(b) == (0, "505003", "TCXPFX"), "tcx param: without trailing & -> TCXPFX", b)
s, b = tcx("/tcx/api/x?B=1&a=q&_=u&k=%2B+%26", tcx_pass("B=1&_=u&a=form&k=+ &&z==&"),
           body="a=form&z=%3D", headers=FORM)
check(tcx_ok(b), "tcx param: query + form, body wins, decoded, byte order", b)
jb = json.dumps({"t": True, "f": False, "n": None, "one": 1.0, "i": 7, "s": "\u00e9"})
s, b = tcx("/tcx/api/x?q=1", tcx_pass("f=&i=7&n=&one=1&q=1&s=\u00e9&t=1&"), body=jb, headers=J)
check(tcx_ok(b), "tcx param: JSON body cast as PHP", b)
s, b = tcx("/tcx/api/x", tcx_pass(""))
check(tcx_ok(b), "tcx param: no parameters -> J empty", b)
s, b = tcx("/tcx/api/x", tcx_pass("", dyn="ABCDEFGHIJ0123456789abcdefghij01"))
check(tcx_ok(b), "tcx: dyn is lowercased by the server before hashing", b)
s, b = tcx("/tcx/api/x", tcx_pass("", dyn="ABCDEFGHIJ0123456789abcdefghij01",
                                   hash_dyn="ABCDEFGHIJ0123456789abcdefghij01"))
check(tcx_code(b) == (0, "505003", "TCXPFX"), "tcx: a hash over an uppercase dyn fails", b)
s, b = req("GET", "/tcx/api/x")
check(s == 200 and tcx_code(b) == (0, "705000", "TCXREQ") and b["status_message"] == "TCX Authentication Required",
      "tcx: no headers -> TCXREQ", b)
s, b = tcx("/tcx/api/x", tcx_pass(""), typ="XYZ")
check(tcx_code(b) == (0, "205001", "TCXRJC"), "tcx: bad type -> TCXRJC", b)
s, b = req("GET", "/tcx/api/x", headers={"X-TCX-TYPE": "OWTC", "X-TCX-APP-ID": "other", "X-TCX-APP-PASS": tcx_pass("")})
check(tcx_code(b) == (0, "405002", "TCXAFX"), "tcx: unknown app -> TCXAFX", b)
s, b = tcx("/tcx/api/x", tcx_pass(""), typ="FTC", token=base64.b64encode(MASTER.encode()).decode())
check(tcx_ok(b), "tcx FTC: master key", b)
s, b = tcx("/tcx/api/x", tcx_pass(""), typ="FTC", token=base64.b64encode(b"nope").decode())
check(tcx_code(b) == (0, "505004", "TCXMKF"), "tcx FTC: wrong master -> TCXMKF", b)
s, b = req("POST", "/tcx/tcx/authorize", json.dumps({"app_id": APP, "app_pass": tcx_pass("")}), J)
check(tcx_code(b) == (0, "505001", "TCXAFX"), "tcx param: authorize cannot succeed (the pass covers itself)", b)
s, b = req("POST", "/tcx/tcx/authorize", json.dumps({"app_id": APP}), J)
check(tcx_code(b) == (0, "405000", "TCXCRQ"), "tcx: authorize without pass -> 405000", b)

# none mode
ctl("set", body={"tcx_mode": "none"})
s, b = tcx("/tcx/api/x?a=1", tcx_pass(""))
check(tcx_ok(b), "tcx none: J empty", b)
s, b = tcx("/tcx/api/x?a=1", tcx_pass("a=1&"))
check(tcx_code(b)[1] == "505003", "tcx none: a param pass fails", b)

# time mode, TWTC
ctl("set", body={"tcx_mode": "time"})
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S")
s, b = tcx("/tcx/api/x?tcx_datetime=" + now, tcx_pass(now))
check(tcx_ok(b), "tcx time: tcx_datetime", b)
stale = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
s, b = tcx("/tcx/api/x?tcx_datetime=" + stale, tcx_pass(stale))
check(tcx_code(b)[1] == "505003", "tcx time: outside the tolerance -> TCXPFX", b)
s, b = tcx("/tcx/api/x", tcx_pass(now))
check(tcx_code(b)[1] == "505003", "tcx time: missing tcx_datetime -> TCXPFX", b)
s, b = req("POST", "/tcx/tcx/authorize", json.dumps({"app_id": APP, "app_pass": tcx_pass(now), "tcx_datetime": now}), J)
ok_auth = tcx_ok(b) and len(b["data"]["token"]) == 40 and b["data"]["refresh"] and b["data"]["expired_at"]
check(ok_auth, "tcx time: authorize", b)
if ok_auth:
    d = b["data"]
    t64 = base64.b64encode(d["token"].encode()).decode()
    s, b = tcx("/tcx/api/x?tcx_datetime=" + now, tcx_pass(now), typ="TWTC", token=t64)
    check(tcx_ok(b), "tcx TWTC: base64(access token)", b)
    s, b = tcx("/tcx/api/x?tcx_datetime=" + now, tcx_pass(now), typ="TWTC", token=d["token"])
    check(tcx_code(b) == (0, "505005", "TCXTFX"), "tcx TWTC: raw token -> TCXTFX", b)
    r64 = base64.b64encode(d["refresh"].encode()).decode()
    s, b = req("POST", "/tcx/tcx/reauthorize", json.dumps({"app_id": APP, "token": r64}), J)
    check(tcx_ok(b) and b["data"]["refresh"] != d["refresh"] and "token" not in b["data"],
          "tcx: reauthorize gives a new refresh token", b)
    s, b = req("POST", "/tcx/tcx/reauthorize", json.dumps({"app_id": APP, "token": r64}), J)
    check(tcx_code(b) == (0, "505101", "TCXAFX"), "tcx: a used refresh token fails", b)
    ctl("expire")
    s, b = tcx("/tcx/api/x?tcx_datetime=" + now, tcx_pass(now), typ="TWTC", token=t64)
    check(tcx_code(b)[1] == "505005", "tcx TWTC: expired token -> TCXTFX", b)
ctl("fault", "?endpoint=tcx-authorize&kind=tcx_fault&times=1")
s, b = req("POST", "/tcx/tcx/authorize", json.dumps({"app_id": APP, "app_pass": tcx_pass(now), "tcx_datetime": now}), J)
check(tcx_code(b) == (0, "105002", "TCXERX"), "tcx: fault tcx_fault -> 105002", b)
ctl("reset")

# -- hostile input: the sandbox must survive all of it
port = SB[1]
def raw(data, tls=True):
    s = socket.create_connection(SB, timeout=5)
    if tls:
        s = ctx().wrap_socket(s, server_hostname="127.0.0.1")
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR) if not tls else None
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (OSError, ssl.SSLError):
        out = b""
    s.close()
    return out
raw(b"\x16\x03\x01\xff\xff garbage that is no TLS at all", tls=False)
raw(os.urandom(4096), tls=False)
r1 = raw(b"GARBAGE GARBAGE GARBAGE\r\n\r\n")
r2 = raw(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
r3 = raw(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
r4 = raw(b"POST /tcx/tcx/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\xff\xfe{[\x00")
r5 = raw(b"POST /_ctl/set HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n[1]]")
r6 = raw(b"GET /tpv/api/v1/auth?token=%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
check(r1.startswith(b"HTTP/1.") and b" 400 " in r1.split(b"\r\n")[0], "garbage request line -> 400", r1[:40])
check(b" 413 " in r2.split(b"\r\n")[0], "huge Content-Length -> 413", r2[:40])
check(b" 400 " in r3.split(b"\r\n")[0], "negative Content-Length -> 400", r3[:40])
check(b" 200 " in r4.split(b"\r\n")[0] and b"TCXCRQ" in r4, "binary JSON body -> TCX credentials required", r4[:80])
check(b" 400 " in r5.split(b"\r\n")[0], "_ctl/set with a non-object -> 400", r5[:40])
check(b" 405 " in r6.split(b"\r\n")[0] or b" 400 " in r6.split(b"\r\n")[0], "bad percent-encoding handled", r6[:40])
s, b = req("GET", "/_ctl/ping")
check(s == 200, "sandbox alive after hostile input", s)
PY
ok_lines <"$T/py.out"

# ---- the scripted endpoint (the unit tests' login servers) ------------------------------
ctl reset
sb_request "$SB/script/x"
is "script: 500 until told" "$SB_STATUS|$SB_BODY" "500|{}"
sb_request -X POST -d '{"status":200}' "$SB/_ctl/script"
is "script: a non-list is refused" "$SB_STATUS" 400
sb_request -X POST -d '[{"status":99,"body":""}]' "$SB/_ctl/script"
is "script: a bad status is refused" "$SB_STATUS" 400
sb_request -X POST -d '[{"status":201,"body":"{\"n\":1}"}]' "$SB/_ctl/script"
is "script: set" "$SB_STATUS" 200
sb_request -X POST -d '[{"status":409,"headers":"X-Why: taken\r\n","body":"two"}]' \
	"$SB/_ctl/script?append=1"
is "script: appended" "$SB_STATUS" 200
sb_request -X POST -d 'a=1' "$SB/script/login?x=1&y=%2F"
is "script: the first answer" "$SB_STATUS|$SB_BODY" '201|{"n":1}'
sb_request "$SB_HTTP/script/again"
is "script: the second, on another listener too" "$SB_STATUS|$SB_BODY" "409|two"
sb_request "$SB/script/third"
is "script: the last one repeats" "$SB_STATUS|$SB_BODY" "409|two"
is "script: every request kept, in order" \
	"$(for i in 0 1 2 3; do _sbclient --field $i.path "$SB/_ctl/requests"; echo; done)" \
	"$(printf '/script/x\n/script/login\n/script/again\n/script/third')"
is "script: the query as sent, the body" \
	"$(_sbclient --field 1.query "$SB/_ctl/requests")|$(_sbclient --field 1.body "$SB/_ctl/requests")" \
	"x=1&y=%2F|a=1"
ctl reset
is "script: reset forgets the requests" "$(_sbclient "$SB/_ctl/requests")" "[]"
sb_request "$SB/script/x"
is "script: and the answers" "$SB_STATUS" 500

# ---- logs never hold secrets; clean shutdown ------------------------------------------
_leak=
for secret in sb-apikey-0123456789 s3cr sb-tpv-secret sb-totsco-secret sb-momo-subkey \
	sb-vdms-secret sb-tcx-public sb-tcx-master 11111111-2222; do
	if grep -q -- "$secret" "$SB_LOG" "$SB_DIR/sandbox.out"; then
		_leak="$_leak $secret"
	fi
done
is "the sandbox log holds no secret" "${_leak:-}" ""
unlike "no traceback in the sandbox output" "$(cat "$SB_DIR/sandbox.out")" "*Traceback*"
unlike "no handler error in the log" "$(cat "$SB_LOG")" "*handler error*"
sandbox_stop
is "SIGTERM: the sandbox exits 0" "$SB_EXIT" 0
like "... and logs its stop" "$(tail -n 1 "$SB_LOG")" "*stopped"

done_testing
