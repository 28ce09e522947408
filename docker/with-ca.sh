#!/bin/sh
# with-ca COMMAND...: run a build step trusting an extra CA bundle when the build was given one as the
# BuildKit secret `ca_bundle` (a TLS-intercepting proxy). The combined bundle lives only for the
# step, in a temporary file removed before the layer is written; without the secret, COMMAND runs as is.
set -e
extra=/run/secrets/ca_bundle
if [ ! -s "$extra" ]; then
    exec "$@"
fi
system=/etc/ssl/certs/ca-certificates.crt
[ -s "$system" ] || system=$(python -c 'import pip._vendor.certifi as c; print(c.where())')
bundle=$(mktemp)
trap 'rm -f "$bundle"' EXIT
cat "$system" "$extra" > "$bundle"
PIP_CERT=$bundle SSL_CERT_FILE=$bundle REQUESTS_CA_BUNDLE=$bundle GIT_SSL_CAINFO=$bundle CURL_CA_BUNDLE=$bundle "$@"
