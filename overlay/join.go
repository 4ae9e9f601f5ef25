package overlay

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// WellKnownPath is where every peer serves its JoinInfo, so that any
// peer's URL is enough to join its overlay.
const WellKnownPath = "/.well-known/p2psip"

// JoinInfo is what a peer serves at WellKnownPath.
type JoinInfo struct {
	Overlay string   `json:"overlay"`
	NodeID  string   `json:"node_id"`
	Addrs   []string `json:"addrs"`
}

// JoinInfo describes this node for WellKnownPath.
func (n *Node) JoinInfo() JoinInfo {
	return JoinInfo{Overlay: n.cfg.Name, NodeID: n.ID(), Addrs: n.Addrs()}
}

// FetchJoinInfo reads a peer's JoinInfo from its https:// URL. Peers
// usually have self-signed certificates, and the libp2p handshake
// authenticates the node ID anyway; a URL fragment "#sha256=<hex>" pins
// the certificate's SHA-256 fingerprint when the operator knows it.
func FetchJoinInfo(ctx context.Context, rawURL string) (*JoinInfo, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an http(s) URL of a peer", ErrJoin, rawURL)
	}
	pin := strings.TrimPrefix(u.Fragment, "sha256=")
	pin = strings.ToLower(strings.ReplaceAll(pin, ":", ""))
	u.Fragment, u.Path, u.RawQuery = "", WellKnownPath, ""
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: pinnedTLS(pin)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: fetching %s: %w", ErrJoin, u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s answered %s; is it a p2psip peer?", ErrJoin, u, resp.Status)
	}
	var info JoinInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&info); err != nil {
		return nil, fmt.Errorf("%w: %s: bad join info: %w", ErrJoin, u, err)
	}
	return &info, nil
}

func pinnedTLS(pin string) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see FetchJoinInfo; pinned below when asked
	if pin == "" {
		return cfg
	}
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return fmt.Errorf("%w: no certificate", ErrJoin)
		}
		sum := sha256.Sum256(raw[0])
		if hex.EncodeToString(sum[:]) != pin {
			return fmt.Errorf("%w: certificate fingerprint does not match the pinned one", ErrJoin)
		}
		return nil
	}
	return cfg
}

// AddrInfo turns join info into a dialable peer. It adds the URL's own
// host and port as /tls/ws, because that path is known to pass (we just
// fetched the URL through it) even where the advertised ones do not.
func (j *JoinInfo) AddrInfo(rawURL string) (peer.AddrInfo, error) {
	id, err := peer.Decode(j.NodeID)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("%w: bad node id %q: %w", ErrJoin, j.NodeID, err)
	}
	ai := peer.AddrInfo{ID: id}
	for _, s := range j.Addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		a, _ = ma.SplitLast(a) // drop /p2p/<id>
		if a != nil {
			ai.Addrs = append(ai.Addrs, a)
		}
	}
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "https" {
		if a := wssAddrOf(u); a != nil {
			ai.Addrs = append(ai.Addrs, a)
		}
	}
	return ai, nil
}

func wssAddrOf(u *url.URL) ma.Multiaddr {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	proto := "dns"
	if ip := net.ParseIP(host); ip != nil {
		proto = "ip4"
		if ip.To4() == nil {
			proto = "ip6"
		}
	}
	a, err := ma.NewMultiaddr("/" + proto + "/" + host + "/tcp/" + port + "/tls/ws")
	if err != nil {
		return nil
	}
	return a
}

// JoinURL joins the overlay of the peer at rawURL: it fetches the peer's
// join info, checks the overlay name, and connects with retries.
func (n *Node) JoinURL(ctx context.Context, rawURL string) error {
	info, err := FetchJoinInfo(ctx, rawURL)
	if err != nil {
		return err
	}
	if info.Overlay != n.cfg.Name {
		return fmt.Errorf("%w: %s is in overlay %q, this peer in %q (set --overlay)", ErrWrongOverlay, rawURL, info.Overlay, n.cfg.Name)
	}
	ai, err := info.AddrInfo(rawURL)
	if err != nil {
		return err
	}
	return n.Connect(ctx, ai)
}
