package synapse

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// maxResponseBytes guards memory against a runaway answer; no call synfs
// makes comes close.
const maxResponseBytes = 64 << 20

// maxReasonBytes is how much of a non-JSON error body (a proxy's HTML page)
// ends up in Error.Reason.
const maxReasonBytes = 200

// Client talks to one Synapse deployment as one user. It is safe for
// concurrent use, and meant to be shared: the limiter that keeps the user
// under Synapse's throttle lives here.
type Client struct {
	repo, file string // endpoint base URLs without trailing slash
	token      string
	ua         string
	hc         *http.Client
	sem        *semaphore.Weighted
	lim        *rate.Limiter
	baseDelay  time.Duration
	maxDelay   time.Duration
	maxRetries int
	log        *slog.Logger
}

// NewClient applies Config's defaults and checks the endpoints.
func NewClient(cfg Config) (*Client, error) {
	repo, err := endpoint(cfg.RepoEndpoint, DefaultRepoEndpoint)
	if err != nil {
		return nil, fmt.Errorf("synapse: repo endpoint: %w", err)
	}
	file, err := endpoint(cfg.FileEndpoint, DefaultFileEndpoint)
	if err != nil {
		return nil, fmt.Errorf("synapse: file endpoint: %w", err)
	}
	if cfg.MaxConcurrent < 0 || cfg.RequestsPerMinute < 0 || cfg.MaxRetries < 0 ||
		cfg.RetryBaseDelay < 0 || cfg.RetryMaxDelay < 0 {
		return nil, errors.New("synapse: negative limit or delay in Config")
	}
	if strings.ContainsAny(cfg.Token, "\r\n") {
		return nil, errors.New("synapse: token contains a line break")
	}
	c := &Client{
		repo:       repo,
		file:       file,
		token:      cfg.Token,
		ua:         cmpOr(cfg.UserAgent, "synfs/"+Version),
		hc:         cfg.HTTPClient,
		baseDelay:  cmpOr(cfg.RetryBaseDelay, defaultRetryBaseDelay),
		maxDelay:   cmpOr(cfg.RetryMaxDelay, defaultRetryMaxDelay),
		maxRetries: cmpOr(cfg.MaxRetries, defaultMaxRetries),
		log:        cfg.Logger,
	}
	if c.maxDelay < c.baseDelay {
		c.maxDelay = c.baseDelay
	}
	conc := cmpOr(cfg.MaxConcurrent, defaultMaxConcurrent)
	c.sem = semaphore.NewWeighted(int64(conc))
	rpm := cmpOr(cfg.RequestsPerMinute, defaultRequestsPerMinute)
	c.lim = rate.NewLimiter(rate.Limit(float64(rpm)/60), rpm)
	if c.hc == nil {
		c.hc = defaultHTTPClient(conc)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func endpoint(raw, def string) (string, error) {
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q must not carry a query, fragment or user info", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// defaultHTTPClient has per-phase timeouts but no overall Timeout: a slow
// but progressing call is the caller's to cancel through ctx.
func defaultHTTPClient(conc int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 15 * time.Second
	t.ResponseHeaderTimeout = 2 * time.Minute
	t.ExpectContinueTimeout = time.Second
	t.IdleConnTimeout = 90 * time.Second
	t.MaxIdleConnsPerHost = max(conc, 4)
	return &http.Client{Transport: t}
}

// String and GoString keep the token out of %v / %#v of a *Client.
func (c *Client) String() string {
	return fmt.Sprintf("synapse.Client{repo:%s file:%s authenticated:%t}", c.repo, c.file, c.token != "")
}

func (c *Client) GoString() string { return c.String() }

// LogValue keeps the token out of slog output.
func (c *Client) LogValue() slog.Value {
	return slog.GroupValue(slog.String("repo", c.repo), slog.String("file", c.file), slog.Bool("authenticated", c.token != ""))
}

// Authenticated reports whether calls carry a token.
func (c *Client) Authenticated() bool { return c.token != "" }

// request is one logical call; do turns it into one or more attempts.
type request struct {
	method string
	base   string // c.repo or c.file
	path   string // already escaped, leading slash
	query  url.Values
	in     any // JSON body, or nil
	out    any // decoded from a non-empty success body, or nil
}

func (r *request) pathQuery() string {
	if len(r.query) == 0 {
		return r.path
	}
	return r.path + "?" + r.query.Encode()
}

// outcome tells callers how the call went beyond its error, for the
// idempotency fixes in CreateEntity, UpdateEntity and DeleteEntity.
type outcome struct {
	attempts int
	// maybeApplied: an earlier failed attempt may have reached Synapse and
	// been carried out (5xx, or a connection lost after sending), so a 409,
	// 412 or 404 now may be our own doing.
	maybeApplied bool
	// empty: the success body was empty or "null" (out left untouched).
	empty bool
}

// attemptResult is what one HTTP exchange produced.
type attemptResult struct {
	status int
	body   []byte
	err    error // transport error, including a body cut short
	retry  bool  // worth another attempt
	landed bool  // the request may have been carried out by the server
}

// do runs r with the limiter around every attempt and retries transient
// failures with jittered exponential backoff.
func (c *Client) do(ctx context.Context, r *request) (outcome, error) {
	var out outcome
	var body []byte
	if r.in != nil {
		b, err := json.Marshal(r.in)
		if err != nil {
			return out, fmt.Errorf("synapse: %s %s: encoding body: %w", r.method, r.path, err)
		}
		body = b
	}
	pq := r.pathQuery()
	fullURL := r.base + pq
	var lastErr error
	for attempt := 1; ; attempt++ {
		if err := c.acquire(ctx); err != nil {
			return out, c.giveUp(r, pq, lastErr, err)
		}
		res := c.attempt(ctx, r.method, fullURL, body)
		c.sem.Release(1)
		out.attempts = attempt

		if res.err == nil && (res.status == http.StatusOK || res.status == http.StatusCreated || res.status == http.StatusNoContent) {
			trimmed := bytes.TrimSpace(res.body)
			if len(trimmed) == 0 || string(trimmed) == "null" {
				out.empty = true
				return out, nil
			}
			if r.out != nil {
				if err := json.Unmarshal(trimmed, r.out); err != nil {
					return out, fmt.Errorf("synapse: %s %s: decoding %d answer: %w", r.method, pq, res.status, err)
				}
			}
			return out, nil
		}

		var err error
		if res.err != nil {
			if ctx.Err() != nil {
				return out, c.giveUp(r, pq, lastErr, ctx.Err())
			}
			err = fmt.Errorf("synapse: %s %s: %w", r.method, pq, res.err)
		} else {
			err = c.apiError(r.method, pq, res.status, res.body)
		}
		if !res.retry || attempt > c.maxRetries {
			if attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return out, err
		}
		lastErr = err
		delay := c.backoff(attempt)
		c.log.DebugContext(ctx, "synapse: retrying",
			slog.String("method", r.method), slog.String("path", pq), slog.Int("status", res.status),
			slog.Int("attempt", attempt), slog.Duration("delay", delay), slog.String("error", err.Error()))
		// Set only now: a failure that ends the call has no later attempt to
		// misread.
		if res.landed {
			out.maybeApplied = true
		}
		if err := sleep(ctx, delay); err != nil {
			return out, c.giveUp(r, pq, lastErr, err)
		}
	}
}

// giveUp reports a call abandoned because ctx ended or the limiter could
// not admit it in time: the last real failure if there was one (so IsThrottled
// etc. still work), with the context error also matchable by errors.Is.
func (c *Client) giveUp(r *request, pq string, lastErr, cause error) error {
	if lastErr != nil {
		return fmt.Errorf("%w (gave up retrying: %w)", lastErr, cause)
	}
	return fmt.Errorf("synapse: %s %s: %w", r.method, pq, cause)
}

// acquire admits one attempt: a concurrency slot, then a rate token. The
// slot is taken first so waiters queue on the semaphore instead of burning
// tokens they cannot use yet.
func (c *Client) acquire(ctx context.Context) error {
	if err := c.sem.Acquire(ctx, 1); err != nil {
		return err
	}
	if err := c.lim.Wait(ctx); err != nil {
		c.sem.Release(1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The limiter refuses up front when the wait would outlast the
		// deadline; make that matchable as a deadline error.
		return fmt.Errorf("rate limit wait exceeds deadline: %w", context.DeadlineExceeded)
	}
	return nil
}

// attempt performs one HTTP exchange and reads the whole body, so a body
// cut short counts as a failed (retryable) attempt, not a decode error.
func (c *Client) attempt(ctx context.Context, method, u string, body []byte) attemptResult {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return attemptResult{err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already in our message as method+path
		}
		return attemptResult{err: err, retry: transient(err), landed: !isDialError(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return attemptResult{status: resp.StatusCode, err: fmt.Errorf("reading %d answer: %w", resp.StatusCode, err), retry: true, landed: true}
	}
	if len(b) > maxResponseBytes {
		return attemptResult{status: resp.StatusCode, err: fmt.Errorf("answer larger than %d bytes", maxResponseBytes)}
	}
	res := attemptResult{status: resp.StatusCode, body: b}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		// The throttle filter rejects before any work is done.
		res.retry = true
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		res.retry, res.landed = true, true
	}
	return res
}

// transient says whether a transport error is worth retrying: everything
// except a certificate that will not verify any better next time.
func transient(err error) bool {
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certInvalid x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	return !errors.As(err, &unknownAuth) && !errors.As(err, &hostErr) &&
		!errors.As(err, &certInvalid) && !errors.As(err, &verifyErr)
}

// isDialError: the connection was never made, so the request cannot have
// been carried out.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// backoff is exponential from baseDelay, capped at maxDelay, with equal
// jitter: never less than half the step, so a 429 always slows us down.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.baseDelay
	for i := 1; i < attempt && d < c.maxDelay; i++ {
		d *= 2
	}
	d = min(d, c.maxDelay)
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// apiError builds an *Error from a non-success answer. The token is scrubbed
// from the reason in case a proxy echoes request headers back.
func (c *Client) apiError(method, pq string, status int, body []byte) *Error {
	e := &Error{StatusCode: status, Method: method, Path: pq}
	var er ErrorResponse
	if json.Unmarshal(body, &er) == nil && (er.Reason != "" || er.ErrorCode != "") {
		e.Reason, e.ErrorCode = c.redact(er.Reason), er.ErrorCode
		return e
	}
	// Redact before cutting, or a token straddling the cut would survive.
	reason := c.redact(string(bytes.TrimSpace(body)))
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
	}
	e.Reason = strings.ToValidUTF8(reason, "?")
	return e
}

func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[REDACTED]")
}
