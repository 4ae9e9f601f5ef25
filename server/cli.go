package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/p2psip/p2psip/web"
)

// errNoBindings is the lookup command's "found nothing" (exit status 1).
var errNoBindings = errors.New("no bindings")

// cliFlags are the flags every operator command takes.
type cliFlags struct {
	peer     string
	json     bool
	contact  string
	expires  int
	instance string
}

func runCLI(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	var f cliFlags
	fs := flag.NewFlagSet("p2psip "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.peer, "peer", "https://127.0.0.1:8443/", "https:// URL of the peer to ask")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
	if cmd == "register" {
		fs.StringVar(&f.contact, "contact", "", "contact URI to bind (required)")
		fs.IntVar(&f.expires, "expires", 3600, "binding lifetime in seconds")
	}
	if cmd == "register" || cmd == "unregister" {
		fs.StringVar(&f.instance, "instance", "", "device instance id (default: derived from the contact; unregister: all)")
	}
	fs.Usage = func() {
		arg := " AOR"
		if cmd == "status" {
			arg = ""
		}
		fmt.Fprintf(stderr, "Usage: p2psip %s%s [flags]\n", cmd, arg)
		fs.PrintDefaults()
	}
	// Let the AOR stand before or after the flags.
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		args = fs.Args()
		if len(args) > 0 {
			positional, args = append(positional, args[0]), args[1:]
		}
	}
	want := 1
	if cmd == "status" {
		want = 0
	}
	if len(positional) != want {
		fs.Usage()
		return fmt.Errorf("%w: %s takes %d argument(s)", errUsage, cmd, want)
	}
	c := newClient(f.peer)
	switch cmd {
	case "status":
		return c.status(ctx, f, stdout)
	case "lookup":
		return c.lookup(ctx, positional[0], f, stdout)
	case "register":
		return c.register(ctx, positional[0], f, stdout)
	default:
		return c.unregister(ctx, positional[0], f, stdout)
	}
}

// client talks to a peer's HTTPS API. Peers usually have self-signed
// certificates; the commands read public state or talk to the local peer.
type client struct {
	base string
	http *http.Client
}

func newClient(base string) *client {
	return &client{
		base: strings.TrimRight(base, "/"),
		http: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // self-signed peers
		}},
	}
}

// do sends a request and decodes a JSON answer into out; a non-2xx
// answer becomes an error carrying the peer's message.
func (c *client) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("%w: bad --peer URL: %w", errUsage, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the peer at %s (is it running? check --peer): %w", c.base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return resp.StatusCode, fmt.Errorf("peer answered %s: %s", resp.Status, e.Error)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("the peer's answer is not the expected JSON: %w", err)
		}
	}
	return resp.StatusCode, nil
}

func (c *client) status(ctx context.Context, f cliFlags, w io.Writer) error {
	var s web.OverlayStatus
	if _, err := c.do(ctx, http.MethodGet, "/api/overlay", nil, &s); err != nil {
		return err
	}
	if f.json {
		return printJSON(w, s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "overlay:\t%s\nnode id:\t%s\npeers:\t%d\nrecords stored:\t%d\nrecords hosted:\t%d\n",
		s.Overlay, s.NodeID, len(s.Peers), s.Records.Stored, len(s.Records.Hosted))
	if tu := s.TURN; tu != nil {
		if tu.Role {
			switch tu.SelfTest {
			case "":
				fmt.Fprintf(tw, "turn relay:\ton, self-test running\n")
			case "ok":
				fmt.Fprintf(tw, "turn relay:\ton, self-test ok (%.1f ms)\n", tu.SelfTestRTTMillis)
			default:
				fmt.Fprintf(tw, "turn relay:\ton, self-test FAILED: %s\n", tu.SelfTest)
			}
		}
		fmt.Fprintf(tw, "overlay relays:\t%d working\n", len(tu.Working))
		for _, r := range tu.Working {
			fmt.Fprintf(tw, "  relay\t%s (%.1f ms)\n", r.Node, r.RTTMillis)
		}
	}
	if st := s.SIPStreams; st != nil {
		fmt.Fprintf(tw, "sip streams:\t%d peers, %d direct, %d relayed%s\n", st.Peers, st.Direct, st.Relayed, transportCounts(st.Transports))
	}
	if b := s.Bridge; b != nil {
		fmt.Fprintf(tw, "media bridge:\t%d calls, browsers on UDP %d, RTP ports %s, phones' RTP on %s\n", b.Calls, b.ICEPort, b.RTPPorts, b.PhoneSide)
	}
	if r := s.Reach; r != nil {
		dht := "client"
		if r.DHTServer {
			dht = "server"
		}
		fmt.Fprintf(tw, "reachability:\t%s (setting %s, DHT %s)\n", r.Reachability, r.Setting, dht)
		fmt.Fprintf(tw, "connections:\t%d direct, %d relayed\n", r.DirectConns, r.RelayedConns)
		relays := "none"
		if len(r.Relays) > 0 {
			relays = strings.Join(r.Relays, " ")
		}
		fmt.Fprintf(tw, "relay reservations:\t%d: %s\n", len(r.Relays), relays)
		for _, a := range r.CircuitAddrs {
			fmt.Fprintf(tw, "  circuit\t%s\n", a)
		}
		if r.RelayService {
			fmt.Fprintf(tw, "relay service:\ton, %d reservations, %d circuits\n", r.RelayReservations, r.RelayCircuits)
		} else {
			fmt.Fprintf(tw, "relay service:\toff\n")
		}
	}
	for _, p := range s.Peers {
		fmt.Fprintf(tw, "  peer\t%s\t%s\n", p.ID, strings.Join(p.Addrs, " "))
	}
	for _, h := range s.Records.Hosted {
		fmt.Fprintf(tw, "  hosts\t%s %s\tuntil %s\n", h.Kind, h.Name, h.Expires.Format(time.RFC3339))
	}
	return tw.Flush()
}

func (c *client) lookup(ctx context.Context, aor string, f cliFlags, w io.Writer) error {
	var v web.RegistrationView
	code, err := c.do(ctx, http.MethodGet, "/api/registrations/"+url.PathEscape(aor), nil, &v)
	if code == http.StatusNotFound {
		return fmt.Errorf("%w for %s", errNoBindings, aor)
	}
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(w, v)
	}
	printBindings(w, v)
	return nil
}

func printBindings(w io.Writer, v web.RegistrationView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t(seq %d, owner %s…)\n", v.AOR, v.Seq, v.Owner[:min(12, len(v.Owner))])
	for _, b := range v.Bindings {
		fmt.Fprintf(tw, "  %s\tinstance %s\tvia node %s\texpires in %s\n", b.Contact, b.Instance, b.Node,
			time.Until(b.ExpiresAt()).Round(time.Second))
	}
	_ = tw.Flush()
}

func (c *client) register(ctx context.Context, aor string, f cliFlags, w io.Writer) error {
	if f.contact == "" {
		return fmt.Errorf("%w: register needs --contact", errUsage)
	}
	var v web.RegistrationView
	body := web.RegisterBody{AOR: aor, Contact: f.contact, Expires: f.expires, Instance: f.instance}
	if _, err := c.do(ctx, http.MethodPost, "/api/registrations", body, &v); err != nil {
		return err
	}
	if f.json {
		return printJSON(w, v)
	}
	printBindings(w, v)
	return nil
}

func (c *client) unregister(ctx context.Context, aor string, f cliFlags, w io.Writer) error {
	path := "/api/registrations/" + url.PathEscape(aor)
	if f.instance != "" {
		path += "?instance=" + url.QueryEscape(f.instance)
	}
	if _, err := c.do(ctx, http.MethodDelete, path, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(w, "withdrawn: %s\n", aor)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// transportCounts shows SIP streams by connection kind, as ", over tcp 2".
func transportCounts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(", over")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %d", k, m[k])
	}
	return b.String()
}
