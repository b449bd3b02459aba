package synapse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testToken = "tok-SECRET-a1b2c3d4e5"

// newTestClient serves h at /repo/v1 and /file/v1 with tiny retry delays.
func newTestClient(t *testing.T, h http.Handler, mutate ...func(*Config)) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg := Config{
		RepoEndpoint:   srv.URL + "/repo/v1",
		FileEndpoint:   srv.URL + "/file/v1/",
		Token:          testToken,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  2 * time.Millisecond,
		MaxRetries:     3,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, ErrorResponse{ConcreteType: "org.sagebionetworks.repo.model.ErrorResponse", Reason: reason})
}

func TestRetryTransientThenSuccess(t *testing.T) {
	var n atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			writeErr(w, http.StatusServiceUnavailable, "read-only mode")
			return
		}
		writeJSON(w, 200, Entity{ID: "syn1", Name: "a", ConcreteType: TypeFolder})
	}))
	e, err := c.GetEntity(t.Context(), "syn1")
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "syn1" || !e.IsFolder() {
		t.Fatalf("entity = %+v", e)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("attempts = %d, want 3", got)
	}
	// Every attempt, retries included, took a rate token (burst 600).
	if tok := c.lim.Tokens(); tok > 597.5 {
		t.Fatalf("limiter tokens = %.2f, want about 597 after 3 attempts", tok)
	}
}

func TestRetryStatuses(t *testing.T) {
	tests := []struct {
		status       int
		wantAttempts int32
		is           func(error) bool
	}{
		{http.StatusBadRequest, 1, IsBadRequest},
		{http.StatusUnauthorized, 1, IsUnauthorized},
		{http.StatusForbidden, 1, IsForbidden},
		{http.StatusNotFound, 1, IsNotFound},
		{http.StatusConflict, 1, IsConflict},
		{http.StatusPreconditionFailed, 1, IsPreconditionFailed},
		{http.StatusTooManyRequests, 4, IsThrottled}, // MaxRetries 3 -> 4 attempts
		{http.StatusInternalServerError, 4, nil},
		{http.StatusBadGateway, 4, nil},
		{http.StatusServiceUnavailable, 4, nil},
		{http.StatusGatewayTimeout, 4, nil},
	}
	preds := []func(error) bool{IsBadRequest, IsUnauthorized, IsForbidden, IsNotFound, IsConflict, IsPreconditionFailed, IsThrottled}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			var n atomic.Int32
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				writeErr(w, tt.status, "nope")
			}))
			_, err := c.GetEntity(t.Context(), "syn1")
			var se *Error
			if !errors.As(err, &se) || se.StatusCode != tt.status {
				t.Fatalf("err = %v, want *Error %d", err, tt.status)
			}
			if got := n.Load(); got != tt.wantAttempts {
				t.Fatalf("attempts = %d, want %d", got, tt.wantAttempts)
			}
			matched := 0
			for _, p := range preds {
				if p(err) {
					matched++
				}
			}
			if tt.is != nil && (!tt.is(err) || matched != 1) {
				t.Fatalf("predicates: want exactly the matching one, %d matched", matched)
			}
			if tt.is == nil && matched != 0 {
				t.Fatalf("predicates matched a %d", tt.status)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "syn2") {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "<html>"+strings.Repeat("x", 500)+"</html>")
			return
		}
		writeJSON(w, 404, ErrorResponse{Reason: "The resource you are attempting to access cannot be found", ErrorCode: "NOT_FOUND"})
	}))
	_, err := c.GetEntity(t.Context(), "syn1")
	want := "synapse: GET /entity/syn1: 404 Not Found: The resource you are attempting to access cannot be found"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	var se *Error
	if !errors.As(err, &se) || se.ErrorCode != "NOT_FOUND" || se.Method != "GET" || se.Path != "/entity/syn1" {
		t.Fatalf("fields = %+v", se)
	}

	_, err = c.GetEntity(t.Context(), "syn2")
	if !errors.As(err, &se) || len(se.Reason) != maxReasonBytes || !strings.HasPrefix(se.Reason, "<html>xxx") {
		t.Fatalf("non-JSON reason = %q (len %d)", se.Reason, len(se.Reason))
	}
}

// hijackTruncate answers 200 with a Content-Length longer than the body it
// sends, then drops the connection: the client sees an unexpected EOF.
func hijackTruncate(t *testing.T, w http.ResponseWriter, partial string) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(partial)+100, partial)
	buf.Flush()
	conn.Close()
}

func TestTransportFailuresRetried(t *testing.T) {
	tests := []struct {
		name string
		fail func(t *testing.T, w http.ResponseWriter)
	}{
		{"body truncated mid-way", func(t *testing.T, w http.ResponseWriter) { hijackTruncate(t, w, `{"id":"syn1","na`) }},
		{"connection dropped before answering", func(t *testing.T, w http.ResponseWriter) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					tt.fail(t, w)
					return
				}
				writeJSON(w, 200, Entity{ID: "syn1", Name: "whole", ConcreteType: TypeFile})
			}))
			e, err := c.GetEntity(t.Context(), "syn1")
			if err != nil {
				t.Fatal(err)
			}
			if e.Name != "whole" || n.Load() != 2 {
				t.Fatalf("entity %+v after %d attempts", e, n.Load())
			}
		})
	}
}

func TestTruncatedBodyEveryTimeFails(t *testing.T) {
	var n atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		hijackTruncate(t, w, `{"id":`)
	}))
	_, err := c.GetEntity(t.Context(), "syn1")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if n.Load() != 4 {
		t.Fatalf("attempts = %d, want 4", n.Load())
	}
}

func TestCancelStopsRetryLoop(t *testing.T) {
	first := make(chan struct{})
	var once sync.Once
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(first) })
		writeErr(w, http.StatusServiceUnavailable, "down")
	}), func(cfg *Config) {
		cfg.RetryBaseDelay, cfg.RetryMaxDelay, cfg.MaxRetries = 10*time.Second, 10*time.Second, 8
	})
	ctx, cancel := context.WithCancel(t.Context())
	// Cancel while the client sleeps in its 5-10s backoff after the 503.
	go func() { <-first; time.Sleep(100 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := c.GetEntity(ctx, "syn1")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s after cancel", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var se *Error
	if !errors.As(err, &se) || se.StatusCode != 503 {
		t.Fatalf("err = %v, want the last 503 kept", err)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	var inflight, peak atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := inflight.Add(1)
		for {
			p := peak.Load()
			if now <= p || peak.CompareAndSwap(p, now) {
				break
			}
		}
		time.Sleep(15 * time.Millisecond)
		inflight.Add(-1)
		writeJSON(w, 200, UserProfile{OwnerID: "1"})
	}), func(cfg *Config) { cfg.MaxConcurrent = 2 })
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if _, err := c.UserProfile(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak in-flight = %d, want 2", p)
	}
}

func TestLimiterWaitHonoursContext(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		writeJSON(w, 200, UserProfile{OwnerID: "1"})
	}), func(cfg *Config) { cfg.MaxConcurrent = 1 })
	defer close(release)
	go c.UserProfile(context.Background())
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.UserProfile(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %s, want prompt deadline error", err, time.Since(start))
	}
}

func TestRateLimitBurst(t *testing.T) {
	var n atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		writeJSON(w, 200, UserProfile{OwnerID: "1"})
	}), func(cfg *Config) { cfg.RequestsPerMinute = 60 })
	if c.lim.Burst() != 60 || float64(c.lim.Limit()) != 1 {
		t.Fatalf("limiter burst %d limit %v, want 60 and 1/s", c.lim.Burst(), c.lim.Limit())
	}
	for i := range 60 {
		if _, err := c.UserProfile(t.Context()); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	// The 61st must wait for a refill (about a second): with a shorter
	// deadline the limiter refuses at once, without reaching the server.
	r := c.lim.Reserve()
	if d := r.Delay(); d < 500*time.Millisecond {
		t.Fatalf("61st reservation delay = %s, want about 1s", d)
	}
	r.Cancel()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.UserProfile(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("61st call err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("61st call took %s; the limiter should refuse up front", d)
	}
	if n.Load() != 60 {
		t.Fatalf("server saw %d calls, want 60", n.Load())
	}
}

func TestTokenNeverLeaks(t *testing.T) {
	var logs bytes.Buffer
	var sawBearer atomic.Bool
	var n atomic.Int32
	c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		sawBearer.Store(auth == "Bearer "+testToken)
		switch n.Add(1) {
		case 1: // a proxy echoing headers, non-JSON, long enough to be cut
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, strings.Repeat("p", 190)+"Authorization: "+auth)
		case 2:
			writeErr(w, http.StatusInternalServerError, "bad token "+auth)
		default:
			writeErr(w, http.StatusUnauthorized, "Invalid access token "+testToken)
		}
	}), func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	_, err := c.GetEntity(t.Context(), "syn1")
	if !IsUnauthorized(err) || !sawBearer.Load() {
		t.Fatalf("err = %v, bearer sent = %v", err, sawBearer.Load())
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("expected retry logs, got %q", logs.String())
	}
	cfg := Config{Token: testToken}
	checks := map[string]string{
		"error":             err.Error(),
		"logs":              logs.String(),
		"client %v":         fmt.Sprintf("%v %+v %#v", c, c, c),
		"config %v":         fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg),
		"config/client log": logValues(cfg, c),
	}
	for where, text := range checks {
		if strings.Contains(text, testToken) || strings.Contains(text, testToken[:12]) {
			t.Errorf("token leaked in %s: %s", where, text)
		}
	}
}

func logValues(vs ...any) string {
	var b bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&b, nil))
	for _, v := range vs {
		l.Info("v", "v", v)
	}
	return b.String()
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name  string
		token string
	}{{"authenticated", testToken}, {"anonymous", ""}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Accept"); got != "application/json" {
					t.Errorf("Accept = %q", got)
				}
				if got := r.Header.Get("User-Agent"); got != "synfs/"+Version {
					t.Errorf("User-Agent = %q", got)
				}
				wantAuth := ""
				if tt.token != "" {
					wantAuth = "Bearer " + tt.token
				}
				if got := r.Header.Get("Authorization"); got != wantAuth {
					t.Errorf("Authorization = %q, want %q", got, wantAuth)
				}
				wantCT := ""
				if r.Method == http.MethodPost {
					wantCT = "application/json; charset=UTF-8"
				}
				if got := r.Header.Get("Content-Type"); got != wantCT {
					t.Errorf("%s Content-Type = %q, want %q", r.Method, got, wantCT)
				}
				writeJSON(w, 200, map[string]string{"id": "syn9", "ownerId": AnonymousPrincipalID})
			}), func(cfg *Config) { cfg.Token = tt.token })
			p, err := c.UserProfile(t.Context())
			if err != nil || !p.IsAnonymous() {
				t.Fatalf("profile %+v, %v", p, err)
			}
			if _, err := c.LookupChild(t.Context(), "syn1", "x"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNewClientValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value is production", Config{}, true},
		{"relative URL", Config{RepoEndpoint: "/repo/v1"}, false},
		{"bad scheme", Config{FileEndpoint: "ftp://x/file/v1"}, false},
		{"unparsable", Config{RepoEndpoint: "http://[::1"}, false},
		{"negative", Config{MaxConcurrent: -1}, false},
		{"token with newline", Config{Token: "a\nb"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (c.repo != DefaultRepoEndpoint || c.file != DefaultFileEndpoint || c.maxRetries != 8 || c.lim.Burst() != 600) {
				t.Fatalf("defaults not applied: %+v", c)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	c, err := NewClient(Config{RetryBaseDelay: 100 * time.Millisecond, RetryMaxDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for attempt, step := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		step *= time.Millisecond
		for range 50 {
			d := c.backoff(attempt + 1)
			if d < step/2 || d > step {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt+1, d, step/2, step)
			}
		}
	}
}
