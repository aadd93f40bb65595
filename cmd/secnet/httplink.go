package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
)

// upstreamLink is the upstream connection of one client connection. The
// requests of a client go over its own upstream connection, one at a
// time, written and read in the handler's goroutine: no pool shared
// between clients, no goroutines between the handler and the socket
// (http.Transport runs two per connection, and the hand-offs cost more
// than the proxying on a small machine). The request is written by
// (*http.Request).Write and the response read by http.ReadResponse.
type upstreamLink struct {
	dial func(ctx context.Context) (net.Conn, error)

	mu   sync.Mutex
	conn net.Conn // nil until dialed, and after a failure or a takeover
	br   *bufio.Reader
	bw   *bufio.Writer
}

// take returns the connection to use, dialing one if there is none, and
// whether it was dialed now.
func (l *upstreamLink) take(ctx context.Context) (net.Conn, bool, error) {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c != nil {
		return c, false, nil
	}
	c, err := l.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	l.mu.Lock()
	l.conn, l.br, l.bw = c, bufio.NewReaderSize(c, 32<<10), bufio.NewWriterSize(c, 4<<10)
	l.mu.Unlock()
	return c, true, nil
}

// drop forgets the connection, closing it unless it was taken over.
func (l *upstreamLink) drop(close bool) {
	l.mu.Lock()
	c := l.conn
	l.conn, l.br, l.bw = nil, nil, nil
	l.mu.Unlock()
	if c != nil && close {
		c.Close()
	}
}

// linkTransport is the ReverseProxy's RoundTripper: each request goes
// over the upstream link of its client connection (see upstreamLink).
type linkTransport struct{}

func (linkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(reqStateKey{}).(*reqState)
	if st == nil || st.link == nil {
		return nil, errors.New("request without a client connection")
	}
	l := st.link
	for attempt := 0; ; attempt++ {
		c, fresh, err := l.take(req.Context())
		if err != nil {
			return nil, err
		}
		res, sent, err := l.roundTrip(req, c, st)
		if err == nil {
			return res, nil
		}
		l.drop(true)
		// A kept-alive connection the upstream closed while it was
		// idle: try once more on a new one, if nothing was sent that
		// cannot be sent again.
		if fresh || attempt > 0 || sent || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// roundTrip writes req on c and reads the response. sent reports that
// the upstream may have acted on req (a response began, or a body was
// being sent), so that it must not be sent again.
func (l *upstreamLink) roundTrip(req *http.Request, c net.Conn, st *reqState) (_ *http.Response, sent bool, _ error) {
	l.mu.Lock()
	br, bw := l.br, l.bw
	l.mu.Unlock()
	st.upstream = c
	// The client going away (or the proxy's end) closes the upstream
	// connection too, so that a stream such as logs -f ends there.
	stop := context.AfterFunc(req.Context(), func() { c.Close() })
	hasBody := req.Body != nil && req.Body != http.NoBody
	var wrote chan error
	if hasBody {
		// Sent while the response is read: an upstream may answer
		// before it has read the whole body.
		wrote = make(chan error, 1)
		go func() {
			err := req.Write(bw)
			if err == nil {
				err = bw.Flush()
			}
			wrote <- err
		}()
	} else {
		err := req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			stop()
			return nil, false, err // nothing reached the upstream
		}
	}
	trace := httptrace.ContextClientTrace(req.Context())
	for {
		res, err := http.ReadResponse(br, req)
		if err != nil {
			stop()
			if wrote != nil {
				c.Close() // the request body's writer fails, if it is still at it
			}
			// The upstream closed without a word: it read the request
			// but cannot have acted on it only if it is idempotent.
			idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions
			return nil, hasBody || !idempotent || br.Buffered() > 0 || !errors.Is(err, io.EOF), err
		}
		if res.StatusCode >= 100 && res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
			// 100 Continue and such: pass it on, read the real one.
			if trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
					stop()
					return nil, true, err
				}
			}
			continue
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			// The connection is the response's now: ReverseProxy copies
			// it both ways and closes it.
			stop()
			l.drop(false)
			res.Body = &switchedConn{br: br, Conn: c, wrote: wrote}
			return res, true, nil
		}
		res.Body = &linkBody{ReadCloser: res.Body, l: l, c: c, res: res, stop: stop, wrote: wrote}
		return res, true, nil
	}
}

// linkBody is the body of a response read from an upstream link. When it
// is closed, the link keeps its connection for the next request if the
// body was read to its end and both sides said keep-alive; otherwise the
// connection is closed.
type linkBody struct {
	io.ReadCloser
	l     *upstreamLink
	c     net.Conn
	res   *http.Response
	stop  func() bool
	wrote chan error // the request body's writer's result, when there is one (buffered)
	eof   bool
	done  bool
}

func (b *linkBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *linkBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.ReadCloser.Close()
	stopped := b.stop()
	keep := b.eof && stopped && !b.res.Close && !b.res.Request.Close
	if b.wrote != nil {
		// An upstream may answer before it has read the request's body.
		// If the body is still being sent, the connection cannot carry
		// the next request: closing it ends the writer (which is not
		// waited for: it may be waiting for the client's body).
		select {
		case werr := <-b.wrote:
			keep = keep && werr == nil
		default:
			keep = false
		}
	}
	if !keep {
		b.l.drop(true)
	}
	return err
}

// switchedConn is the body of a 101 response: the upstream connection,
// read through what the response's reader holds already.
type switchedConn struct {
	net.Conn
	br    *bufio.Reader
	wrote chan error
}

func (c *switchedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p[:min(len(p), c.br.Buffered())])
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// CloseWrite passes the end of the client's stream on.
func (c *switchedConn) CloseWrite() error {
	if hc, ok := c.Conn.(halfCloser); ok {
		return hc.CloseWrite()
	}
	return errors.New("the upstream connection cannot half-close")
}
