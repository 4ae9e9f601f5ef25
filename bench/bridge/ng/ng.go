// Package ng speaks rtpengine's ng control protocol (docs/ng_control_protocol.md
// in sipwise/rtpengine): each UDP datagram is a cookie, a space, and a
// bencoded dictionary; the reply carries the same cookie. Dictionaries
// decode to map[string]any, lists to []any, strings to string and integers
// to int64.
package ng

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
)

// Encode bencodes v: a map[string]any (keys sorted, as bencode wants), a
// []any or []string, a string or []byte, or an integer.
func Encode(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := encode(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func encode(b *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case string:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.WriteString(x)
	case []byte:
		b.WriteString(strconv.Itoa(len(x)))
		b.WriteByte(':')
		b.Write(x)
	case int:
		fmt.Fprintf(b, "i%de", x)
	case int64:
		fmt.Fprintf(b, "i%de", x)
	case []string:
		b.WriteByte('l')
		for _, s := range x {
			_ = encode(b, s)
		}
		b.WriteByte('e')
	case []any:
		b.WriteByte('l')
		for _, e := range x {
			if err := encode(b, e); err != nil {
				return err
			}
		}
		b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('d')
		for _, k := range keys {
			_ = encode(b, k)
			if err := encode(b, x[k]); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		b.WriteByte('e')
	default:
		return fmt.Errorf("ng: cannot bencode %T", v)
	}
	return nil
}

// Decode reads one bencoded value that fills all of b.
func Decode(b []byte) (any, error) {
	v, rest, err := decode(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("ng: %d bytes after the value", len(rest))
	}
	return v, nil
}

var errShort = errors.New("ng: truncated bencode")

func decode(b []byte, depth int) (any, []byte, error) {
	if depth > 32 {
		return nil, nil, errors.New("ng: bencode nested too deep")
	}
	if len(b) == 0 {
		return nil, nil, errShort
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errShort
		}
		n, err := strconv.ParseInt(string(b[1:end]), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("ng: integer: %w", err)
		}
		return n, b[end+1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errShort
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || len(b)-colon-1 < n {
			return nil, nil, errShort
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	case c == 'l':
		var l []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := decode(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			l, b = append(l, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errShort
		}
		return l, b[1:], nil
	case c == 'd':
		d := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := decode(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, errors.New("ng: dictionary key is not a string")
			}
			v, rest, err := decode(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			d[ks], b = v, rest
		}
		if len(b) == 0 {
			return nil, nil, errShort
		}
		return d, b[1:], nil
	}
	return nil, nil, fmt.Errorf("ng: unexpected byte %q", b[0])
}

// Split separates a datagram into its cookie and dictionary.
func Split(msg []byte) (cookie string, dict map[string]any, err error) {
	sp := bytes.IndexByte(msg, ' ')
	if sp <= 0 {
		return "", nil, errors.New("ng: no cookie")
	}
	v, err := Decode(msg[sp+1:])
	if err != nil {
		return string(msg[:sp]), nil, err
	}
	d, ok := v.(map[string]any)
	if !ok {
		return string(msg[:sp]), nil, errors.New("ng: message is not a dictionary")
	}
	return string(msg[:sp]), d, nil
}

// Join makes a datagram of a cookie and a dictionary.
func Join(cookie string, dict map[string]any) ([]byte, error) {
	body, err := Encode(dict)
	if err != nil {
		return nil, err
	}
	return append([]byte(cookie+" "), body...), nil
}

// Str is d[k] as a string ("" when absent or not a string).
func Str(d map[string]any, k string) string {
	s, _ := d[k].(string)
	return s
}

// Client sends commands to one ng server and matches replies by cookie.
// It is safe for concurrent use.
type Client struct {
	conn   *net.UDPConn
	prefix string
	seq    atomic.Uint64

	mu      sync.Mutex
	waiting map[string]chan map[string]any // guarded by mu
}

// Dial opens a client for the ng server at addr (host:port).
func Dial(addr string) (*Client, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	cl := &Client{conn: c, prefix: strconv.FormatInt(int64(c.LocalAddr().(*net.UDPAddr).Port), 36), waiting: map[string]chan map[string]any{}}
	go cl.read()
	return cl, nil
}

// Close stops the client.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) read() {
	buf := make([]byte, 65536)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		cookie, d, err := Split(buf[:n])
		if err != nil {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[cookie]
		delete(c.waiting, cookie)
		c.mu.Unlock()
		if ch != nil {
			ch <- d
		}
	}
}

// Do sends one command and waits for its reply. A reply whose result is
// not "ok" is returned with an error naming its error-reason.
func (c *Client) Do(ctx context.Context, cmd map[string]any) (map[string]any, error) {
	cookie := c.prefix + "_" + strconv.FormatUint(c.seq.Add(1), 36)
	msg, err := Join(cookie, cmd)
	if err != nil {
		return nil, err
	}
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	c.waiting[cookie] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, cookie)
		c.mu.Unlock()
	}()
	if _, err := c.conn.Write(msg); err != nil {
		return nil, err
	}
	select {
	case d := <-ch:
		if r := Str(d, "result"); r != "ok" && r != "pong" {
			return d, fmt.Errorf("ng %s: %s: %s", Str(cmd, "command"), r, Str(d, "error-reason"))
		}
		return d, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("ng %s: %w", Str(cmd, "command"), ctx.Err())
	}
}
