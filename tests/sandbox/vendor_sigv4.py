"""AWS Signature Version 4 and S3 (SPEC.md: sigv4, s3); botocore
recomputes each signature."""

import datetime
import hashlib
import re
import time

from common import Resp, eq
from state import STATE

# ---- endpoints: AWS Signature Version 4 (botocore recomputes) ------------------------

SIGV4_SKEW = 15 * 60          # AWS's RequestTimeTooSkewed window, seconds
S3_OBJECTS = (("photos/2024/beach.jpg", 52311), ("photos/2024/city.jpg", 40960),
              ("notes.txt", 12))
SIGV4_AUTH_RX = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/([0-9]{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,"
    r"\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})")


def sigv4_check(req, s3):
    """None when botocore computes the same signature for the request as
    the client sent, else (error code, reason)."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials

    m = SIGV4_AUTH_RX.fullmatch((req.header("Authorization") or "").strip())
    if not m:
        return "AccessDenied", "no AWS4-HMAC-SHA256 Authorization header"
    akid, date, region, service, signed, sig = m.groups()
    if not eq(akid, STATE.get("sigv4_access_key_id")):
        return "InvalidAccessKeyId", "unknown access key id"
    want_service = "s3" if s3 else STATE.get("sigv4_service")
    if region != STATE.get("sigv4_region") or service != want_service:
        return "AuthorizationHeaderMalformed", "credential scope must be %s/%s" % (
            STATE.get("sigv4_region"), want_service)
    names = signed.split(";")
    stamp = req.header("X-Amz-Date") or ""
    for must in ("host", "x-amz-date"):
        if must not in names:
            return "AccessDenied", "%s is not signed" % must
    for name in req.headers.keys():
        if name.lower().startswith("x-amz-") and name.lower() not in names:
            return "AccessDenied", "%s is not signed" % name.lower()
    if names != sorted(set(names)):
        return "AccessDenied", "SignedHeaders are not sorted and distinct"
    try:
        t = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return "AccessDenied", "X-Amz-Date is not YYYYMMDDTHHMMSSZ"
    if stamp[:8] != date:
        return "AuthorizationHeaderMalformed", "credential date is not X-Amz-Date's"
    if abs(time.time() - t) > SIGV4_SKEW:
        return "RequestTimeTooSkewed", "X-Amz-Date is more than 15 minutes off"
    token = STATE.get("sigv4_session_token")
    if token is not None and not eq(req.header("X-Amz-Security-Token"), token):
        return "InvalidToken", "the security token is missing or wrong"
    claimed = req.header("X-Amz-Content-Sha256")
    if s3 and claimed is None:
        return "InvalidRequest", "X-Amz-Content-Sha256 is required"
    if claimed not in (None, "UNSIGNED-PAYLOAD") and \
            claimed != hashlib.sha256(req.body).hexdigest():
        return "XAmzContentSHA256Mismatch", "X-Amz-Content-Sha256 is not the body's SHA-256"
    # The request as received: raw path and query, exactly the signed
    # headers (repeated ones in order), the client's timestamp.
    query = "?" + req.query if req.query else ""
    r = AWSRequest(method=req.method, url="https://%s%s%s" % (
        req.header("Host") or "", req.path, query), data=req.body)
    r.headers = HTTPHeaders()
    for name, value in req.headers.items():
        if name.lower() in names:
            r.headers[name] = value
    r.context["timestamp"] = stamp
    auth = (S3SigV4Auth if s3 else SigV4Auth)(
        Credentials(akid, STATE.get("sigv4_secret_access_key"), token), service, region)
    if auth.signed_headers(auth.headers_to_sign(r)) != signed:
        return "AccessDenied", "botocore would not sign the same headers"
    want = auth.signature(auth.string_to_sign(r, auth.canonical_request(r)), r)
    if not eq(sig, want):
        return "SignatureDoesNotMatch", ("The request signature we calculated does not "
                                         "match the signature you provided.")
    return None


def sigv4_refuse(code, reason):
    status = 500 if code == "InternalError" else 400 if code in ("AuthorizationHeaderMalformed", "InvalidRequest",
                             "XAmzContentSHA256Mismatch") else 403
    return Resp(status, {"error": code, "message": reason})


def sigv4_verify(req, s3):
    try:
        return sigv4_check(req, s3)
    except ImportError:
        return "InternalError", "python3 cannot import botocore (install python3-botocore)"


def h_sigv4(req):
    err = sigv4_verify(req, False)
    if err:
        return sigv4_refuse(*err)
    return Resp(200, {"ok": True, "method": req.method, "path": req.path,
                      "payload": req.header("X-Amz-Content-Sha256") or "signed"})


def h_s3(req, bucket):
    err = sigv4_verify(req, True)
    if err:
        return sigv4_refuse(*err)
    if req.method == "GET" and req.path.rstrip("/") == "/s3/" + bucket:
        q = req.qlast()
        prefix = q.get("prefix", "")
        keys = [o for o in S3_OBJECTS if o[0].startswith(prefix)]
        keys = keys[:int(q.get("max-keys", "1000") or "1000")]
        items = "".join("<Contents><Key>%s</Key><Size>%d</Size></Contents>" % o for o in keys)
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>%s</Name>'
               "<Prefix>%s</Prefix><KeyCount>%d</KeyCount>%s</ListBucketResult>" % (
                   bucket, prefix, len(keys), items))
        return Resp(200, xml.encode(), ctype="application/xml")
    if req.method == "PUT":
        return Resp(200, None, {"ETag": '"%s"' % hashlib.md5(req.body).hexdigest()})
    return Resp(200, {"ok": True, "bucket": bucket, "path": req.path})
