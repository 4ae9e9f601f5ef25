#!/usr/bin/env bash
# Installs the system tools the test suite needs, and staticcheck.
#
# Idempotent: a tool already on PATH is left alone, and apt-get update runs at most
# once, only when something is missing. CI runs this on a machine that may be new
# (nothing installed by hand survives a change of machine), so every tool a test
# needs must be listed here.
#
# To add a tool for a later issue, append "command:debian-package" to DEPS; for a
# package that ships no command of its own (plugin modules), "-:debian-package".
set -euo pipefail

# command:package pairs. The command is what the tests look for on PATH; the package
# is the Debian package that ships it.
DEPS=(
	ip:iproute2
	nft:nftables
	iptables:iptables
	ps:procps
	pkill:procps
	curl:curl
	update-ca-certificates:ca-certificates
	# SIP: sipp drives the SIP e2e tests; Kamailio is the public SIP domain
	# (registrar + proxy, WebSocket and TLS modules); dnsmasq serves the overlay
	# FQDN inside test namespaces; nc sends raw messages inside namespaces.
	sipp:sip-tester
	kamailio:kamailio
	-:kamailio-websocket-modules
	-:kamailio-tls-modules
	-:kamailio-extra-modules
	dnsmasq:dnsmasq
	nc:netcat-openbsd
	# The web softphone's browser tests (e2e/browser_test.go) drive Chromium.
	chromium:chromium
	-:fonts-liberation
	# The page's own unit tests (make web-test) and bundle check run on Node.js.
	node:nodejs
	npm:npm
	# The relay role's e2e tests (e2e/relay_test.go) drive coturn's test
	# clients, turnutils_uclient and turnutils_peer.
	turnutils_uclient:coturn
	# baresip, a real SIP phone with plain RTP/AVP audio, for the media tests
	# (e2e/baresip_harness_test.go): its modules (g711, aufile, aubridge,
	# rtcpsummary, account, menu, ctrl_tcp) come in the same package.
	baresip:baresip-core
)

STATICCHECK_VERSION=v0.8.2
PEBBLE_VERSION=v2.10.1

log() { echo "install-test-deps: $*"; }

# have reports whether a command is available, also in sbin dirs that a non-login
# root shell may not have on PATH.
have() {
	command -v "$1" >/dev/null 2>&1 && return 0
	local d
	for d in /usr/sbin /sbin /usr/local/sbin; do
		[ -x "$d/$1" ] && return 0
	done
	return 1
}

# installed reports whether a Debian package is installed.
installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pair in "${DEPS[@]}"; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	if [ "$cmd" = - ]; then
		installed "$pkg" && continue
	elif have "$cmd"; then
		continue
	fi
	# De-duplicate: several commands may come from one package.
	case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		log "missing packages: ${missing[*]} (not root: install them yourself; tests that need them will skip outside CI)"
	else
		log "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
	fi
else
	log "system tools present"
fi

# staticcheck: a Go tool, installed from the Go module proxy. Look in PATH, GOBIN
# and GOPATH/bin, since PATH may not include the latter two.
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
if command -v staticcheck >/dev/null 2>&1 || [ -x "$gobin/staticcheck" ]; then
	log "staticcheck present"
else
	log "installing staticcheck@$STATICCHECK_VERSION into $gobin"
	# Outside the module so the project's go.mod is not touched; GOFLAGS cleared so
	# a -mod setting in the environment does not break the install.
	(cd / && GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
fi

# pebble: Let's Encrypt's small ACME test CA, for the --acme end-to-end test.
# The test also reads pebble's test certificates from the module cache, which
# this install fills.
if [ -x "$gobin/pebble" ] && [ -d "$(go env GOMODCACHE)/github.com/letsencrypt/pebble/v2@$PEBBLE_VERSION/test/certs" ]; then
	log "pebble present"
else
	log "installing pebble@$PEBBLE_VERSION into $gobin"
	(cd / && GOFLAGS= go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION")
fi
