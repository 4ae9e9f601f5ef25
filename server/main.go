// Command p2psip runs a peer of a P2P SIP overlay: the overlay node
// (libp2p Kademlia DHT of signed SIP registrations), the HTTPS site and
// API, and — as later releases add them — the SIP registrar and proxy, the
// web softphone and the media bridge. This package is the composition root
// only: configuration, wiring, listeners, lifecycle and signals.
//
// It also carries the operator commands (status, lookup, register,
// unregister) that talk to a running peer's HTTPS API.
//
// Unless GOGC or GOMEMLIMIT is set in the environment, serve sets GOGC
// after every collection so that the collector takes about 5 % of the
// peer's CPU (GOGC 50 to 400), under a soft memory limit of half the
// machine's (or cgroup's) memory; gc.go says why.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: tests boot whole peers through it.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		var cfg Config
		cfg, err = parseConfig(args, getenv, stderr)
		if err == nil {
			err = servePeer(ctx, cfg, stdout, stderr)
		}
	case "status", "lookup", "register", "unregister":
		err = runCLI(ctx, cmd, args, stdout, stderr)
	case "help":
		_, _ = parseConfig([]string{"--help"}, getenv, stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "p2psip: unknown command %q; commands: serve (default), status, lookup, register, unregister\n", cmd)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "p2psip: %v (see p2psip --help)\n", err)
		return 2
	case errors.Is(err, errNoBindings):
		fmt.Fprintf(stderr, "p2psip: %v\n", err)
		return 1
	default:
		fmt.Fprintf(stderr, "p2psip: %v\n", err)
		return 1
	}
}
