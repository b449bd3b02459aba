package netem

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func jsonError(status int) (string, []byte) {
	return "application/json", []byte(`{"reason":"injected ` + strconv.Itoa(status) + `"}`)
}

// payload serves body with a Content-Length, as most handlers do.
func payload(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}

// streamed serves body without a Content-Length, flushing as it goes.
func streamed(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(body); i += 1000 {
			_, _ = w.Write(body[i:min(i+1000, len(body))])
			w.(http.Flusher).Flush()
		}
	})
}

func newServer(t *testing.T, c *Conditions, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(c.Middleware(h, jsonError))
	t.Cleanup(ts.Close)
	return ts
}

// fetch GETs url with a fresh connection and reads the whole body.
func fetch(t *testing.T, url string) (*http.Response, []byte, error) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestFaults(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	cases := []struct {
		name     string
		faults   Faults
		handler  http.Handler
		status   int
		wantBody []byte
		check    func(t *testing.T, got []byte, err error)
	}{
		{name: "none", handler: payload(body), status: 200, wantBody: body},
		{name: "500", faults: Faults{Status500: 1}, handler: payload(body), status: 500, wantBody: []byte(`{"reason":"injected 500"}`)},
		{name: "503", faults: Faults{Status503: 1}, handler: payload(body), status: 503, wantBody: []byte(`{"reason":"injected 503"}`)},
		{name: "429", faults: Faults{Status429: 1}, handler: payload(body), status: 429, wantBody: []byte(`{"reason":"injected 429"}`)},
		{name: "reset", faults: Faults{Reset: 1}, handler: payload(body), status: 200, check: wantReset},
		{name: "reset streamed", faults: Faults{Reset: 1}, handler: streamed(body), status: 200, check: wantReset},
		{name: "truncate", faults: Faults{Truncate: 1}, handler: payload(body), status: 200, check: wantTruncated(len(body))},
		{name: "truncate streamed", faults: Faults{Truncate: 1}, handler: streamed(body), status: 200, check: wantTruncated(len(body))},
		{name: "truncate tiny body", faults: Faults{Truncate: 1}, handler: payload([]byte("ab")), status: 200, check: wantTruncated(2)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConditions(WithSeed(1))
			c.SetFaults(tc.faults)
			ts := newServer(t, c, tc.handler)
			resp, got, err := fetch(t, ts.URL)
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.check != nil {
				tc.check(t, got, err)
				return
			}
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if !bytes.Equal(got, tc.wantBody) {
				t.Fatalf("body %.60q (%d bytes), want %.60q (%d bytes)", got, len(got), tc.wantBody, len(tc.wantBody))
			}
		})
	}
}

func wantReset(t *testing.T, got []byte, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("read %d bytes without error, want a connection reset", len(got))
	}
	if !errors.Is(err, syscall.ECONNRESET) && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("error %v, want connection reset by peer", err)
	}
}

func wantTruncated(full int) func(t *testing.T, got []byte, err error) {
	return func(t *testing.T, got []byte, err error) {
		t.Helper()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error %v after %d bytes, want io.ErrUnexpectedEOF", err, len(got))
		}
		if len(got) == 0 || len(got) >= full {
			t.Fatalf("got %d of %d bytes, want a strict, non-empty part", len(got), full)
		}
	}
}

// An empty body cannot be cut in the middle: Reset drops the connection
// before any response, Truncate serves it whole.
func TestFaultsOnEmptyBody(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			c := NewConditions()
			ts := newServer(t, c, payload(nil))
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequest(method, ts.URL, nil)

			c.SetFaults(Faults{Reset: 1})
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				t.Fatalf("reset of an empty body answered %d, want a transport error", resp.StatusCode)
			}

			c.SetFaults(Faults{Truncate: 1})
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("truncate of an empty body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})
	}
}

func TestInjectedStatusOnHEADHasNoBody(t *testing.T) {
	c := NewConditions()
	c.SetFaults(Faults{Status503: 1})
	ts := newServer(t, c, payload([]byte("x")))
	resp, err := http.Head(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 503 || resp.ContentLength != int64(len(`{"reason":"injected 503"}`)) {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestFaultRatesFollowProbabilities(t *testing.T) {
	c := NewConditions(WithSeed(42))
	c.SetFaults(Faults{Status500: 0.25, Status503: 0.25})
	counts := map[fault]int{}
	statuses := map[int]int{}
	const n = 20000
	for range n {
		k, st := c.draw(c.Faults())
		counts[k]++
		statuses[st]++
	}
	for _, st := range []int{500, 503} {
		if got := float64(statuses[st]) / n; got < 0.23 || got > 0.27 {
			t.Errorf("status %d drawn at rate %.3f, want 0.25", st, got)
		}
	}
	if counts[faultReset]+counts[faultTruncate] != 0 {
		t.Errorf("drew faults with zero rate: %v", counts)
	}

	// The same seed gives the same sequence.
	a, b := NewConditions(WithSeed(7)), NewConditions(WithSeed(7))
	f := Faults{Status500: 0.5}
	for i := range 100 {
		if x, y := fmt2(a.draw(f)), fmt2(b.draw(f)); x != y {
			t.Fatalf("draw %d differs with the same seed: %s vs %s", i, x, y)
		}
	}
}

func fmt2(k fault, st int) string { return strconv.Itoa(int(k)) + "/" + strconv.Itoa(st) }

func TestLatency(t *testing.T) {
	const latency = 300 * time.Millisecond
	tests := []struct {
		name   string
		h      http.Handler
		want   string
		atMost time.Duration // 0: no upper bound
	}{
		{"a body", payload([]byte("hello")), "hello", 0},
		{"an empty answer", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), "", 0},
		{"a handler's own work counts toward the latency", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(latency)
			w.Write([]byte("worked"))
		}), "worked", 2*latency - 100*time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Conditions // the zero value must work
			c.SetShaping(Shaping{Latency: latency})
			ts := newServer(t, &c, tc.h)
			start := time.Now()
			_, got, err := fetch(t, ts.URL)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
			d := time.Since(start)
			if d < latency {
				t.Fatalf("answered in %v, want at least %v", d, latency)
			}
			if tc.atMost > 0 && d > tc.atMost {
				t.Fatalf("answered in %v: the latency came on top of the handler's work", d)
			}
		})
	}
}

func TestLatencyHonoursCancellation(t *testing.T) {
	c := NewConditions()
	c.SetShaping(Shaping{Latency: time.Minute})
	var served sync.WaitGroup
	served.Add(1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer served.Done()
		c.Middleware(payload([]byte("late")), jsonError).ServeHTTP(w, r)
	}))
	defer ts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
	start := time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request succeeded despite a minute of latency")
	}
	served.Wait() // the handler must give up, not sleep out its minute
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("handler returned after %v", d)
	}
}

func TestBandwidth(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		rate     int64
		atLeast  time.Duration // the size at the rate, less pacing's slack
		streamed bool
	}{
		{"2 MB at 10 MB/s, content-length", 2_000_000, 10_000_000, 180 * time.Millisecond, false},
		{"2 MB at 10 MB/s, streamed", 2_000_000, 10_000_000, 180 * time.Millisecond, true},
		{"64 KiB at 1 MB/s: small bodies keep the rate too", 64 << 10, 1_000_000, 60 * time.Millisecond, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte{7}, tc.size)
			h := payload(body)
			if tc.streamed {
				h = streamed(body)
			}
			c := NewConditions()
			c.SetShaping(Shaping{BytesPerSecond: tc.rate})
			ts := newServer(t, c, h)
			start := time.Now()
			_, got, err := fetch(t, ts.URL)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("got %d bytes, %v", len(got), err)
			}
			if d := time.Since(start); d < tc.atLeast {
				t.Fatalf("took %v, want at least %v", d, tc.atLeast)
			}
		})
	}
}

// Shaping and faults must not hide http.Flusher from the handler: streaming
// responses would otherwise stall in buffers.
func TestFlusherPassesThrough(t *testing.T) {
	c := NewConditions()
	c.SetShaping(Shaping{BytesPerSecond: 1 << 30})
	first := make(chan struct{})
	release := make(chan struct{})
	ts := newServer(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Error("writer is not an http.Flusher")
			return
		}
		_, _ = w.Write([]byte("first\n"))
		f.Flush()
		close(first)
		<-release
		_, _ = w.Write([]byte("second\n"))
	}))
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("flushed bytes did not arrive before the handler finished: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Fatalf("rest %q", rest)
	}
}

// Conditions change while requests run; the race detector checks the rest.
func TestConcurrentSetAndServe(t *testing.T) {
	c := NewConditions()
	ts := newServer(t, c, payload([]byte("ok")))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if i%2 == 0 {
					c.SetFaults(Faults{Status503: float64(j%2) * 0.5})
					c.SetShaping(Shaping{Latency: time.Duration(j%3) * time.Millisecond})
					_ = c.Faults()
					continue
				}
				resp, err := http.Get(ts.URL)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 && resp.StatusCode != 503 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
}
