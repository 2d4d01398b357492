#!/usr/bin/env bash
# Runs every test of mailnotary on a fresh Debian machine.
#
# It installs what the interoperability tests need when it can (Debian
# packages through apt-get when run as root), then runs the whole suite in
# debug mode. When a tool cannot be installed, the tests that need it say
# SKIPPED with the reason, and this script lists them at the end.
#
#   bash tests/run-all.sh            # everything
#   bash tests/run-all.sh threading  # extra arguments go to cargo test
set -uo pipefail
cd "$(dirname "$0")/.."

# Debian packages the interop tests use, with the command that proves each
# one is there.
packages=(
  "dovecot-imapd:/usr/sbin/dovecot"   # threading compared with THREAD REFS
  "python3:python3"                   # oracles under tests/support
  "default-jre-headless:java"         # runs the Bouncy Castle checker
  "libbcpkix-java:/usr/share/java/bcpkix.jar"  # RFC 4998 hash trees
  "curl:curl"                         # HTTP client for tsa serve
  "openssl:openssl"                   # the outside verifier of receipts and tokens
  "swaks:swaks"                       # an SMTP client for the listener's tests
  "libio-socket-ssl-perl:/usr/share/perl5/IO/Socket/SSL.pm"  # swaks --tls (brings Net::SSLeay)
  "postfix:/usr/sbin/smtp-source"     # smtp-source (tests, bench) and smtp-sink (bench)
  "dnsmasq-base:/usr/sbin/dnsmasq"    # the DNS server that serves DKIM keys to the tests
  "chromium:/usr/bin/chromium"        # the real browser that drives the web page
  "chromium-driver:/usr/bin/chromedriver"  # its WebDriver server
  "fonts-wqy-zenhei:/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"  # Chinese glyphs in the screenshot
)

missing=()
for entry in "${packages[@]}"; do
  pkg=${entry%%:*}
  probe=${entry#*:}
  command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix installs without asking, and without a mail setup of its own.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    # The install leaves the system's own services stopped: the tests start
    # private instances with their own configuration.
    apt-get update -qq >/dev/null &&
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
      echo "warning: apt-get could not install ${missing[*]}"
    for svc in dovecot postfix; do
      if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
      service "$svc" stop >/dev/null 2>&1 || true
    done
  else
    echo "note: not root or no apt-get; cannot install ${missing[*]}"
  fi
fi

# Python packages: dkimpy signs the DKIM tests' messages (an independent
# signer), PyNaCl gives it Ed25519.
# openapi-spec-validator checks the API's OpenAPI document; selenium is the
# WebDriver client that drives Chromium through the web page; schemathesis
# sends the API generated requests from its OpenAPI document.
if command -v python3 >/dev/null 2>&1 &&
  ! python3 -c "import dkim, nacl, openapi_spec_validator, selenium, schemathesis" 2>/dev/null; then
  echo "installing Python packages: dkimpy pynacl openapi-spec-validator selenium schemathesis"
  python3 -m pip install -q dkimpy pynacl openapi-spec-validator selenium schemathesis >/dev/null 2>&1 ||
    python3 -m pip install -q --break-system-packages dkimpy pynacl openapi-spec-validator selenium schemathesis >/dev/null 2>&1 ||
    echo "warning: pip could not install dkimpy, pynacl, openapi-spec-validator, selenium and schemathesis"
fi

skipped=()
require=1
[ -x /usr/sbin/dovecot ] || { skipped+=("Dovecot threading comparison: dovecot-imapd is not installed"); require=0; }
command -v python3 >/dev/null 2>&1 || { skipped+=("Python oracles: python3 is not installed"); require=0; }
for tool in openssl curl swaks; do
  command -v "$tool" >/dev/null 2>&1 || { skipped+=("tests that use $tool: it is not installed"); require=0; }
done
{ command -v java >/dev/null 2>&1 && [ -f /usr/share/java/bcpkix.jar ]; } ||
  { skipped+=("Bouncy Castle hash-tree check: java or libbcpkix-java is not installed"); require=0; }
[ -x /usr/sbin/smtp-source ] || { skipped+=("SMTP load with Postfix's smtp-source: postfix is not installed"); require=0; }
[ -x /usr/sbin/dnsmasq ] || { skipped+=("DKIM tests: dnsmasq-base is not installed"); require=0; }
python3 -c "import dkim, nacl" 2>/dev/null || { skipped+=("DKIM tests with dkimpy: the Python packages dkimpy and pynacl are not installed"); require=0; }
python3 -c "import openapi_spec_validator" 2>/dev/null || { skipped+=("OpenAPI validation: the Python package openapi-spec-validator is not installed"); require=0; }
python3 -c "import schemathesis" 2>/dev/null || { skipped+=("schemathesis against the API: the Python package schemathesis is not installed"); require=0; }
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && python3 -c "import selenium" 2>/dev/null; } ||
  { skipped+=("the web page in a real browser: chromium, chromium-driver or selenium is missing"); require=0; }
perl -MNet::SSLeay -e1 2>/dev/null || { skipped+=("swaks with STARTTLS: libio-socket-ssl-perl is not installed"); require=0; }
# With every tool present, a test that would skip fails instead, so that a
# broken install cannot pass silently.
export MAILNOTARY_REQUIRE_INTEROP=$require

log=$(mktemp)
MAILNOTARY_SKIP_LOG=$(mktemp)
export MAILNOTARY_SKIP_LOG
cargo test --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# One closing line for the whole run, summed over every test binary.
summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed", p, f }' "$log")
# Tests that skipped by themselves (a privilege missing, say) say so.
while IFS= read -r line; do
  skipped+=("$line")
done < <(sort -u "$MAILNOTARY_SKIP_LOG")
rm -f "$log" "$MAILNOTARY_SKIP_LOG"

if [ ${#skipped[@]} -gt 0 ]; then
  echo
  echo "SKIPPED (tests that could not run here):"
  for s in "${skipped[@]}"; do echo "  - $s"; done
fi
echo
echo "$summary"
exit $status
