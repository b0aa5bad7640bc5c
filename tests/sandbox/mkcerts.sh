#!/bin/sh
# mkcerts.sh DIR - make every certificate and key the sandbox and the
# integration tests use (tests/sandbox/SPEC.md, "Certificates"), with the
# openssl CLI. EC P-256 keys: fast. Idempotent: a complete, still-valid set
# in DIR is kept as it is. Keys are mode 0600, certificates 0644.
#
# Certificates are made at test time on purpose: no private key is ever
# committed. Nothing here is secret outside the test that made it.
set -eu

dir=${1:?usage: mkcerts.sh DIR}
openssl=${OPENSSL:-openssl}

mkdir -p "$dir"
cd "$dir"

# A complete set whose shortest-lived certificate ("soon", 5 days) still has
# more than 4 days left is reused as it is.
if [ -f .complete ] && [ -f soon.pem ] &&
	"$openssl" x509 -in soon.pem -noout -checkend 345600 >/dev/null 2>&1; then
	exit 0
fi
rm -f .complete

umask 077
work=.work
rm -rf "$work"
mkdir "$work"

cat >"$work/x.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[badhost]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
# "openssl ca" is used only where x509 -req cannot set the dates (3.0 has no
# -not_before/-not_after): the expired and the not-yet-valid certificates.
[ca]
default_ca = ca_any
[ca_any]
database = .work/index.txt
new_certs_dir = .work
serial = .work/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[policy_any]
commonName = supplied
organizationName = optional
EOF
: >"$work/index.txt"
echo 1000 >"$work/serial"

key() { # key FILE
	"$openssl" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-out "$1" 2>/dev/null
	chmod 600 "$1"
}

ca() { # ca NAME "CN"
	key "$1.key"
	"$openssl" req -new -x509 -config "$work/x.cnf" -extensions v3_ca \
		-key "$1.key" -subj "/O=apicred sandbox/CN=$2" -days 3650 \
		-sha256 -out "$1.pem"
	chmod 644 "$1.pem"
}

csr() { # csr NAME "CN"  (makes NAME.key unless it exists)
	[ -f "$1.key" ] || key "$1.key"
	"$openssl" req -new -config "$work/x.cnf" -key "$1.key" \
		-subj "/O=apicred sandbox/CN=$2" -out "$work/$1.csr"
}

leaf() { # leaf NAME "CN" ISSUER EXT DAYS
	csr "$1" "$2"
	"$openssl" x509 -req -in "$work/$1.csr" -CA "$3.pem" -CAkey "$3.key" \
		-CAcreateserial -CAserial "$work/$3.srl" -extfile "$work/x.cnf" \
		-extensions "$4" -days "$5" -sha256 -out "$1.pem" 2>/dev/null
	chmod 644 "$1.pem"
}

dated() { # dated NAME "CN" ISSUER START END  (dates YYYYMMDDHHMMSSZ)
	csr "$1" "$2"
	"$openssl" ca -batch -config "$work/x.cnf" -cert "$3.pem" \
		-keyfile "$3.key" -in "$work/$1.csr" -out "$1.pem" -notext -preserveDN \
		-extfile "$work/x.cnf" -extensions client \
		-startdate "$4" -enddate "$5" 2>/dev/null
	chmod 644 "$1.pem"
}

utc() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

# Server side: the CA the client trusts, the server certificate for
# 127.0.0.1/::1/localhost, one for another host name, and an unknown CA.
ca ca "apicred sandbox server CA"
leaf server "127.0.0.1" ca server 30
leaf badhost "wrong.example" ca badhost 30
ca unknown-ca "apicred sandbox untrusted CA"
leaf unknownca-server "127.0.0.1" unknown-ca server 30

# Client side.
ca client-ca "apicred sandbox client CA"
leaf client "sb-client" client-ca client 365
leaf client2 "sb-client2" client-ca client 365
leaf other-ca-client "sb-other-ca-client" unknown-ca client 30
leaf soon "sb-soon" client-ca client 5
dated expired "sb-expired" client-ca "$(utc '-60 days')" "$(utc '-30 days')"
dated future "sb-future" client-ca "$(utc '+30 days')" "$(utc '+60 days')"
key mismatch.key

"$openssl" pkey -in client.key -aes256 -passout pass:sb-keypass \
	-out client-enc.key
chmod 600 client-enc.key
"$openssl" pkcs12 -export -in client.pem -inkey client.key \
	-certfile client-ca.pem -name sb-client -passout pass:sb-p12pass \
	-out client.p12
chmod 600 client.p12

rm -rf "$work" ./*.srl
: >.complete
