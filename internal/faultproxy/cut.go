// SPDX-License-Identifier: Apache-2.0

package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Cut starts a cut of kind c (replacing any running one) that lasts d,
// or until Restore when d is 0.
func (p *Proxy) Cut(c Cut, d time.Duration) error {
	if c != CutRefuse && c != CutBlackhole {
		return fmt.Errorf("faultproxy: unknown cut %q", c)
	}
	if err := p.Restore(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	p.cut = c
	if c == CutBlackhole {
		p.gate = make(chan struct{})
	} else {
		p.ln.Close() // the accept loop ends
		p.ln = nil
		for gc := range p.open {
			gc.reset()
		}
	}
	if d > 0 {
		p.timer = time.AfterFunc(d, func() {
			if err := p.Restore(); err != nil {
				p.log.Warn("end of cut", "err", err)
			}
		})
	}
	p.changedLocked()
	p.log.Info("cut", "kind", c, "for", d)
	return nil
}

// Restore ends the running cut, if any: held exchanges go on, and
// connections are accepted again.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	switch p.cut {
	case CutBlackhole:
		close(p.gate)
		p.gate = nil
	case CutRefuse:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faultproxy: listen again on %s: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Go(func() { p.accept(ln) })
	default:
		return nil
	}
	p.log.Info("cut ended", "kind", p.cut)
	p.cut = ""
	p.changedLocked()
	return nil
}

// gateConn is an accepted connection that moves no byte while a blackhole
// lasts.
type gateConn struct {
	net.Conn
	p      *Proxy
	once   sync.Once
	closed chan struct{}
}

// wait blocks while a blackhole lasts, unless the connection or the proxy
// closes.
func (c *gateConn) wait() error {
	c.p.mu.Lock()
	gate := c.p.gate
	c.p.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
		return nil
	case <-c.closed:
		return net.ErrClosed
	case <-c.p.done:
		return net.ErrClosed
	}
}

func (c *gateConn) Read(b []byte) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		// Bytes that arrived while a blackhole began are held too.
		if werr := c.wait(); werr != nil {
			return 0, werr
		}
	}
	return n, err
}

func (c *gateConn) Write(b []byte) (int, error) {
	if err := c.wait(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *gateConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	c.p.mu.Lock()
	delete(c.p.open, c)
	c.p.mu.Unlock()
	return c.Conn.Close()
}

// reset closes the connection with a TCP RST.
func (c *gateConn) reset() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.once.Do(func() { close(c.closed) })
	c.Conn.Close()
}
