//go:build e2e

// Package e2e holds end-to-end tests that build the real p2psip binary and run it
// as separate processes: several peers on loopback, peers inside throw-away
// network namespaces, and the binary exactly as the container image runs it.
//
// The files carry the e2e build tag so that a plain `go test ./...` stays fast;
// run them with
//
//	go test -race -count=1 -tags e2e ./e2e/...
//
// Some tests need root (network namespaces) or system tools (ip); outside CI they
// skip with a message naming the Debian package to install, in CI (CI non-empty)
// they fail instead, so a missing install step in scripts/install-test-deps.sh
// cannot hide behind a green run.
package e2e
