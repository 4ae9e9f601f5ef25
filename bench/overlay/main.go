// Command overlay measures the p2psip overlay: N real libp2p/Kademlia
// nodes in one process on loopback, registration put and lookup latency
// (p50/p99), and lookup success after abruptly killing 30 % of the nodes
// and one refresh round (what every surviving node does once per refresh
// interval; run here at once rather than waiting five minutes).
//
//	go run ./bench/overlay -peers 20,100
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2psip/p2psip/overlay"
)

func main() {
	sizes := flag.String("peers", "20,100", "comma-separated overlay sizes")
	regs := flag.Int("regs", 200, "registrations per run")
	lookups := flag.Int("lookups", 1000, "lookups per run")
	quorum := flag.Int("quorum", 0, "overlay.Config.LookupQuorum (0: the default, -1: whole query)")
	flag.Parse()
	lookupQuorum = *quorum
	fmt.Printf("%-6s %-9s %-9s %-9s %-9s %-14s\n", "peers", "put p50", "put p99", "get p50", "get p99", "after kill 30%")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "bad -peers entry %q\n", s)
			os.Exit(2)
		}
		r, err := runOnce(n, *regs, *lookups)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%d peers: %v\n", n, err)
			os.Exit(1)
		}
		fmt.Printf("%-6d %-9s %-9s %-9s %-9s %d/%d (%.1f%%)\n", n, ms(r.put, 50), ms(r.put, 99), ms(r.get, 50), ms(r.get, 99),
			r.found, r.checked, 100*float64(r.found)/float64(max(r.checked, 1)))
	}
}

type result struct {
	put, get       []time.Duration
	found, checked int
}

func ms(d []time.Duration, p int) string {
	slices.Sort(d)
	v := d[min(len(d)-1, len(d)*p/100)]
	return fmt.Sprintf("%.2fms", float64(v.Microseconds())/1000)
}

func runOnce(n, regs, lookups int) (*result, error) {
	fmt.Fprintf(os.Stderr, "starting %d nodes…\n", n)
	nodes, err := startNodes(n)
	defer func() {
		for _, node := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = node.Close(ctx)
			cancel()
		}
	}()
	if err != nil {
		return nil, err
	}
	r := &result{}
	host := make([]int, regs)
	for i := range regs {
		host[i] = i % n
		key, _ := overlay.NewP256Key()
		start := time.Now()
		_, err := nodes[host[i]].Register(context.Background(), overlay.RegisterRequest{AOR: aor(i), Signer: key,
			Binding: overlay.Binding{Instance: "d", Contact: fmt.Sprintf("sip:u%d@127.0.0.1", i), Expires: time.Now().Add(time.Hour).Unix()}})
		if err != nil {
			return nil, fmt.Errorf("register %d: %w", i, err)
		}
		r.put = append(r.put, time.Since(start))
	}
	fmt.Fprintf(os.Stderr, "%d registrations stored; %d lookups…\n", regs, lookups)
	for range lookups {
		i := rand.N(regs)
		start := time.Now()
		if _, err := nodes[rand.N(n)].Lookup(context.Background(), aor(i)); err != nil {
			return nil, fmt.Errorf("lookup %d: %w", i, err)
		}
		r.get = append(r.get, time.Since(start))
	}
	dead := map[int]bool{}
	for _, i := range rand.Perm(n)[:n*3/10] {
		dead[i] = true
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no time to withdraw: the node just vanishes
		_ = nodes[i].Close(ctx)
	}
	fmt.Fprintf(os.Stderr, "killed %d nodes; one refresh round on the survivors…\n", len(dead))
	var wg sync.WaitGroup
	for i, node := range nodes {
		if !dead[i] {
			wg.Go(func() { node.Refresh(context.Background()) })
		}
	}
	wg.Wait()
	for i := range regs {
		if dead[host[i]] {
			continue
		}
		from := rand.N(n)
		for dead[from] {
			from = rand.N(n)
		}
		r.checked++
		reg, err := nodes[from].Lookup(context.Background(), aor(i))
		if err == nil && len(reg.Live(time.Now())) == 1 {
			r.found++
		} else if err != nil && !errors.Is(err, overlay.ErrNotFound) {
			fmt.Fprintf(os.Stderr, "lookup after kill: %v\n", err)
		}
	}
	return r, nil
}

var lookupQuorum int

func aor(i int) string { return fmt.Sprintf("sip:user%d@bench.overlay", i) }

// startNodes starts n nodes and joins them through node 0, 8 at a time.
func startNodes(n int) ([]*overlay.Node, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	nodes := make([]*overlay.Node, 0, n)
	for range n {
		id, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			return nodes, err
		}
		node, err := overlay.New(overlay.Config{Name: "bench.overlay", Identity: id, Logger: quiet,
			ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}, LookupQuorum: lookupQuorum,
			LookupCacheTTL: -1}) // measure the DHT, not the lookup cache
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, node)
	}
	boot := peer.AddrInfo{ID: nodes[0].Host().ID(), Addrs: nodes[0].Host().Addrs()}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, node := range nodes[1:] {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := node.Connect(ctx, boot); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nodes, errors.Join(errs...)
	}
	for _, node := range nodes {
		node.RefreshRoutingTable()
	}
	return nodes, nil
}
