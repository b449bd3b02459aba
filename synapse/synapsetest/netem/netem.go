// Package netem makes an http.Handler behave like a service over a real,
// imperfect network: added latency, a bandwidth cap, and injected failures
// (error statuses, connection resets, truncated bodies). The Synapse REST
// emulator and the S3 emulator share it so that clients are tested against
// the failures they will meet in production, switchable while a test runs.
package netem

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Faults are per-request probabilities in [0, 1]. One uniform draw per
// request picks at most one fault, in field order, so the rates are exact
// while they sum to at most 1; beyond that, earlier fields win.
type Faults struct {
	// Answer with that status instead of serving; the body comes from the
	// errorBody func given to Middleware.
	Status500, Status503, Status429 float64
	// Serve, but reset the TCP connection (RST) after about half of the
	// response body, at least one byte of it when the body is not empty. An
	// empty body (HEAD, 204, Content-Length 0) is reset before the headers.
	Reset float64
	// Serve, but close the connection normally after about half of the
	// body, so the client sees fewer bytes than Content-Length promised. An
	// empty body has nothing to truncate and is served whole.
	Truncate float64
}

// Shaping slows responses down the way a long or thin link would.
type Shaping struct {
	// Latency is the time from a request's arrival to the first byte of
	// its answer. The handler runs meanwhile, so its own work counts
	// towards the latency, as a real server's does.
	Latency time.Duration
	// BytesPerSecond caps each response body; 0 means unlimited. Bodies
	// are paced in small chunks so that large bodies keep the rate without
	// bursts.
	BytesPerSecond int64
}

// Conditions holds the faults and shaping of one endpoint. The zero value
// is ready to use (no faults, no shaping, randomly seeded); it must not be
// copied after first use. All methods are safe for concurrent use, so a
// test can change conditions while requests are in flight; a request uses
// the conditions current when it arrived.
type Conditions struct {
	faults  atomic.Pointer[Faults]
	shaping atomic.Pointer[Shaping]

	mu  sync.Mutex
	rnd *rand.Rand // nil until the first draw unless seeded
}

// Option configures NewConditions.
type Option func(*Conditions)

// WithSeed makes the fault draws reproducible, for deterministic tests.
func WithSeed(seed uint64) Option {
	return func(c *Conditions) { c.rnd = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// NewConditions returns Conditions with no faults and no shaping.
func NewConditions(opts ...Option) *Conditions {
	c := &Conditions{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// SetFaults replaces the fault rates for requests arriving from now on.
func (c *Conditions) SetFaults(f Faults) { c.faults.Store(&f) }

// Faults returns the current fault rates.
func (c *Conditions) Faults() Faults {
	if f := c.faults.Load(); f != nil {
		return *f
	}
	return Faults{}
}

// SetShaping replaces the shaping for requests arriving from now on.
func (c *Conditions) SetShaping(s Shaping) { c.shaping.Store(&s) }

// Shaping returns the current shaping.
func (c *Conditions) Shaping() Shaping {
	if s := c.shaping.Load(); s != nil {
		return *s
	}
	return Shaping{}
}

// fault is what one request suffers.
type fault int

const (
	faultNone fault = iota
	faultStatus
	faultReset
	faultTruncate
)

// draw picks the fault for one request; status is set for faultStatus.
func (c *Conditions) draw(f Faults) (fault, int) {
	table := []struct {
		p      float64
		kind   fault
		status int
	}{
		{f.Status500, faultStatus, http.StatusInternalServerError},
		{f.Status503, faultStatus, http.StatusServiceUnavailable},
		{f.Status429, faultStatus, http.StatusTooManyRequests},
		{f.Reset, faultReset, 0},
		{f.Truncate, faultTruncate, 0},
	}
	var total float64
	for _, t := range table {
		total += max(t.p, 0)
	}
	if total == 0 {
		return faultNone, 0 // no lock, no draw: the common case stays cheap
	}
	c.mu.Lock()
	if c.rnd == nil {
		c.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	u := c.rnd.Float64()
	c.mu.Unlock()
	var acc float64
	for _, t := range table {
		acc += max(t.p, 0)
		if t.p > 0 && u < acc {
			return t.kind, t.status
		}
	}
	return faultNone, 0
}

// maxDrain bounds how much of an unread request body is read before an
// injected status is sent. A client still sending when the server answers
// and closes may see a broken pipe or a reset instead of the answer, and
// clients do send before any "100 Continue" (the Go SDK always does).
const maxDrain = 64 << 20

// Middleware applies c to every request served by next. errorBody renders
// the body of an injected status answer (JSON for Synapse, XML for S3).
// Writes of next pass through http.Flusher, and http.ResponseController
// reaches the underlying writer through Unwrap.
func (c *Conditions) Middleware(next http.Handler, errorBody func(status int) (contentType string, body []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, status := c.draw(c.Faults())
		shaping := c.Shaping()
		ctx := r.Context()
		if kind == faultNone && shaping == (Shaping{}) {
			next.ServeHTTP(w, r)
			return
		}
		sw := &shapedWriter{
			w:      w,
			rc:     http.NewResponseController(w),
			ctx:    ctx,
			head:   r.Method == http.MethodHead,
			fault:  kind,
			rate:   shaping.BytesPerSecond,
			cutAt:  -1,
			header: w.Header(),
		}
		if shaping.Latency > 0 {
			sw.firstByte = time.Now().Add(shaping.Latency)
		}
		if sw.rate > 0 {
			sw.chunk = int(min(max(sw.rate/50, 512), 32<<10)) // about 20 ms of data per write
		}

		if kind == faultStatus {
			_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
			if sw.awaitFirstByte() != nil {
				return // the client is gone; nobody to answer
			}
			ct, body := errorBody(status)
			h := w.Header()
			h.Set("Content-Type", ct)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(status)
			if r.Method != http.MethodHead {
				_, _ = w.Write(body)
			}
			return
		}
		next.ServeHTTP(sw, r)
		if !sw.wroteHeader && !sw.dead {
			// The handler wrote nothing (an empty 200): the server
			// answers when the handler returns, so keep it from doing
			// that before the latency is up.
			_ = sw.awaitFirstByte()
		}
	})
}

// errCut is what the handler's writes return once the connection has been
// cut on purpose.
var errCut = errors.New("netem: connection cut by fault injection")

// shapedWriter paces and cuts one response body.
type shapedWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	ctx    context.Context
	header http.Header
	head   bool

	fault fault
	cutAt int64 // body bytes to let through before cutting; -1 until known
	dead  bool  // the connection is cut: swallow everything

	// firstByte is when the answer may start: the request's arrival plus
	// the latency. The handler runs meanwhile, as a real server's work is
	// part of its first-byte latency; zero when there is no latency.
	firstByte time.Time

	rate  int64
	chunk int
	start time.Time
	sent  int64 // body bytes written

	wroteHeader bool
}

func (s *shapedWriter) Header() http.Header { return s.header }

// Unwrap lets http.ResponseController find the underlying writer.
func (s *shapedWriter) Unwrap() http.ResponseWriter { return s.w }

// Flush passes through, so streaming handlers keep working.
func (s *shapedWriter) Flush() {
	if !s.wroteHeader {
		s.WriteHeader(http.StatusOK) // a flush starts the answer: not before its time
	}
	if !s.dead {
		_ = s.rc.Flush()
	}
}

func (s *shapedWriter) WriteHeader(code int) {
	if s.dead || s.wroteHeader {
		return
	}
	if s.awaitFirstByte() != nil {
		s.dead = true // the client is gone; the handler's writes go nowhere
		return
	}
	if code >= 100 && code < 200 {
		s.w.WriteHeader(code)
		return
	}
	if s.fault != faultNone {
		size := int64(-1)
		if v := s.header.Get("Content-Length"); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				size = n
			}
		}
		empty := s.head || size == 0 || code == http.StatusNoContent || code == http.StatusNotModified
		switch {
		case empty && s.fault == faultReset:
			s.cut() // before the headers: the client gets no response at all
			return
		case empty:
			s.fault = faultNone // nothing to truncate
		case size > 0:
			s.cutAt = max(size/2, 1)
		}
	}
	s.wroteHeader = true
	s.w.WriteHeader(code)
}

func (s *shapedWriter) Write(p []byte) (int, error) {
	if !s.wroteHeader && !s.dead {
		s.WriteHeader(http.StatusOK)
	}
	if s.dead {
		if err := s.ctx.Err(); err != nil {
			return 0, err
		}
		return 0, errCut
	}
	if s.fault != faultNone && s.cutAt < 0 && len(p) > 0 {
		// No Content-Length: cut halfway through the first write.
		s.cutAt = s.sent + max(int64(len(p))/2, 1)
	}
	written := 0
	for written < len(p) {
		n := len(p) - written
		if s.chunk > 0 {
			n = min(n, s.chunk)
		}
		if s.cutAt >= 0 {
			n = int(min(int64(n), s.cutAt-s.sent))
		}
		if err := s.pace(n); err != nil {
			return written, err
		}
		m, err := s.w.Write(p[written : written+n])
		written += m
		s.sent += int64(m)
		if err != nil {
			return written, err
		}
		if s.rate > 0 {
			_ = s.rc.Flush() // put paced bytes on the wire now, not in a buffer
		}
		if s.cutAt >= 0 && s.sent >= s.cutAt {
			s.cut()
			return written, errCut
		}
	}
	return written, nil
}

// awaitFirstByte sleeps until the answer may start.
func (s *shapedWriter) awaitFirstByte() error {
	if s.firstByte.IsZero() {
		return nil
	}
	wait := time.Until(s.firstByte)
	s.firstByte = time.Time{}
	return s.sleep(wait)
}

// paceSlack is how far ahead of its schedule a body may run before pace
// sleeps. Go's timers overshoot short waits to about a millisecond, so
// sleeping the 82 µs that 4 KiB takes at 50 MB/s would make a small
// response 1 ms slower than the link it stands for. The schedule is
// anchored at the first byte, so the average rate holds all the same.
const paceSlack = 2 * time.Millisecond

// pace sleeps until sending n more bytes keeps the body at the rate.
func (s *shapedWriter) pace(n int) error {
	if s.rate <= 0 {
		return nil
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	due := s.start.Add(time.Duration(float64(s.sent+int64(n)) / float64(s.rate) * float64(time.Second)))
	wait := time.Until(due)
	if wait <= paceSlack {
		return nil
	}
	return s.sleep(wait)
}

// sleep waits d, or until the client is gone.
func (s *shapedWriter) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// cut ends the connection the way the fault asks: an RST for Reset, an
// orderly close for Truncate. Where the connection cannot be hijacked
// (HTTP/2) the stream is aborted instead, which clients see as a reset.
func (s *shapedWriter) cut() {
	s.dead = true
	if s.wroteHeader {
		_ = s.rc.Flush()
	}
	conn, buf, err := s.rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = buf.Flush()
	if s.fault == faultReset {
		if tc := tcpConn(conn); tc != nil {
			_ = tc.SetLinger(0) // close sends RST instead of FIN
			_ = tc.Close()
		}
	}
	_ = conn.Close()
}

func tcpConn(c net.Conn) *net.TCPConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, _ := c.(*net.TCPConn)
	return tc
}
