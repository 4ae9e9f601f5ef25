package sip

import (
	"net"
	"sync"
)

// closeNotifyListener tells the service when an accepted connection ends,
// which sipgo does not expose: a device's registration over TCP or TLS
// lives as long as its connection.
type closeNotifyListener struct {
	net.Listener
	onClose func(remote string)
	s       *Service
}

func (l *closeNotifyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuardStreamConn(&closeNotifyConn{Conn: c, onClose: l.onClose}, l.s), nil
}

type closeNotifyConn struct {
	net.Conn
	onClose func(remote string)
	once    sync.Once
}

func (c *closeNotifyConn) notify() {
	c.once.Do(func() { go c.onClose(c.RemoteAddr().String()) })
}

func (c *closeNotifyConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.notify()
	}
	return n, err
}

func (c *closeNotifyConn) Close() error {
	c.notify()
	return c.Conn.Close()
}
