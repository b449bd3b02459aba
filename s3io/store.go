// Package s3io is synfs's data plane: it reads object bytes straight from
// S3, and uploads staged files to it, with the temporary credentials that
// Synapse vends for an STS folder.
//
// One Store serves one STS root (bucket + base key). It keeps the vended
// credentials in one cache shared by all readers, refreshes them before
// they expire, and recovers from the failures a long-lived mount meets:
// credentials that expire anyway (ExpiredToken), a bucket in another
// region, transient S3 errors, and bodies cut off mid-transfer.
//
// It knows nothing of Synapse's JSON: a Vendor adapter supplies credentials.
// Errors wrap ErrNotFound, ErrAccessDenied, ErrChanged and ErrReadOnly so
// that the fs layer can map them to errno values with errors.Is.
package s3io

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
)

// Defaults for Options.
const (
	DefaultRegion        = "us-east-1" // Synapse storage lives here
	DefaultRefreshBefore = 5 * time.Minute
	DefaultMaxAttempts   = 5
)

// Options configure a Store.
type Options struct {
	Vendor Vendor
	Write  bool // ask for read_write credentials

	// Endpoint is the S3 endpoint URL. "" means AWS (regional endpoints,
	// virtual-host style); anything else is taken to be an S3-compatible
	// service or an emulator and is addressed path-style.
	Endpoint string
	// Region "" means us-east-1. Either way, an error answer carrying
	// x-amz-bucket-region switches the Store to the bucket's region.
	Region string

	HTTPClient *http.Client // nil: NewHTTPClient()

	// RefreshBefore is how long before Expiration credentials are renewed:
	// default 5 min, and never more than half the credentials' lifetime, so
	// that short-lived credentials are still used for half their life.
	RefreshBefore time.Duration

	// MaxAttempts bounds the SDK's attempts for each request (transient
	// 5xx, throttling, connection errors; uploads included) and, separately,
	// per ReadAt, the resumptions of bodies cut off mid-transfer. Default 5.
	MaxAttempts int

	Logger *slog.Logger // nil: discard
}

// Store is the data plane of one STS root: a credentials cache that
// refreshes before expiry and one S3 client. Safe for concurrent use.
type Store struct {
	log         *slog.Logger
	prov        *provider
	creds       *aws.CredentialsCache
	maxAttempts int

	base   s3.Options // the client's options but the region; for a region switch
	mu     sync.Mutex // serializes region switches
	client atomic.Pointer[regionalClient]

	noACL atomic.Bool // the bucket refused a canned ACL: stop sending one

	stats counters
}

type regionalClient struct {
	region string
	*s3.Client
}

// Stats say what a Store has cost, for tests, benchmarks and logs.
type Stats struct {
	Gets           int64 // GetObject calls, resumptions and retries included
	Heads          int64 // HeadObject calls
	Attempts       int64 // HTTP requests sent, the SDK's own retries included
	BytesRead      int64 // object bytes copied into callers' buffers
	Vends          int64 // calls to Vendor.Vend
	ExpiredRetries int64 // requests repeated after an ExpiredToken answer
	Resumes        int64 // GETs re-issued after a body broke off
	RegionSwitches int64 // region corrections from x-amz-bucket-region
	Puts           int64 // PutObject calls, repeats after ExpiredToken or an ACL refusal included
	Parts          int64 // UploadPart calls, likewise
	BytesUploaded  int64 // bytes of objects and parts S3 accepted (parts of aborted uploads included)
	Aborts         int64 // multipart uploads abandoned after a failure
}

type counters struct {
	gets, heads, attempts, bytesRead, vends, expiredRetries, resumes, regionSwitches atomic.Int64
	puts, parts, bytesUploaded, aborts                                               atomic.Int64
}

// New builds a Store and vends credentials once, so that a folder without
// STS, a missing permission or a bad token fails at mount time, not at the
// first read.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Vendor == nil {
		return nil, errors.New("s3io: Options.Vendor is nil")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	refresh := opts.RefreshBefore
	if refresh <= 0 {
		refresh = DefaultRefreshBefore
	}
	attempts := opts.MaxAttempts
	if attempts <= 0 {
		attempts = DefaultMaxAttempts
	}
	region := opts.Region
	if region == "" {
		region = DefaultRegion
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = NewHTTPClient()
	}

	s := &Store{log: log, maxAttempts: attempts}
	s.prov = &provider{vendor: opts.Vendor, write: opts.Write, refreshBefore: refresh, log: log, vends: &s.stats.vends}
	s.creds = aws.NewCredentialsCache(s.prov, func(o *aws.CredentialsCacheOptions) {
		// Any positive window makes the cache call AdjustExpiresBy, which
		// picks the real window per set of credentials.
		o.ExpiryWindow = refresh
	})

	s.base = s3.Options{
		Credentials:                s.creds,
		HTTPClient:                 hc,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		// Ranged GETs carry no full-object checksum to validate; asking for
		// one only adds warnings and work.
		ResponseChecksumValidation:                aws.ResponseChecksumValidationWhenRequired,
		DisableLogOutputChecksumValidationSkipped: true,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.MaxBackoff = 5 * time.Second
			// The client-side retry budget is shared by every reader of
			// the mount; a burst of 503s would drain it and turn later,
			// retryable errors into EIO. MaxAttempts already bounds work.
			o.RateLimiter = ratelimit.None
		}),
		APIOptions: []func(*middleware.Stack) error{s.countAttempts},
	}
	if opts.Endpoint != "" {
		u, err := url.Parse(opts.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3io: endpoint %q is not an http(s) URL", opts.Endpoint)
		}
		s.base.BaseEndpoint = aws.String(opts.Endpoint)
		s.base.UsePathStyle = true
	}
	s.client.Store(s.newClient(region))

	if _, err := s.creds.Retrieve(ctx); err != nil {
		return nil, err
	}
	bucket, baseKey := s.prov.root()
	log.Debug("s3io: store ready", "bucket", bucket, "baseKey", baseKey, "endpoint", opts.Endpoint, "region", region)
	return s, nil
}

// NewHTTPClient returns the client a Store uses by default: many idle
// connections per host, because S3 throughput comes from parallel ranged
// GETs to one host; no overall timeout, because that would cut long
// bodies (callers bound requests with their ctx); and no redirects, because
// a signed request must not be replayed elsewhere and S3's 301 carries the
// region that the Store learns from.
func NewHTTPClient() *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (s *Store) newClient(region string) *regionalClient {
	o := s.base
	o.Region = region
	return &regionalClient{region: region, Client: s3.New(o)}
}

// countAttempts counts every HTTP attempt, so that Stats show the SDK's
// hidden retries.
func (s *Store) countAttempts(st *middleware.Stack) error {
	return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("s3io.CountAttempts",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			s.stats.attempts.Add(1)
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
}

// Bucket is the bucket of the STS root.
func (s *Store) Bucket() string { b, _ := s.prov.root(); return b }

// BaseKey is the key prefix the credentials are scoped to ("" = whole bucket).
func (s *Store) BaseKey() string { _, k := s.prov.root(); return k }

// Region is the region requests are signed for, after any correction.
func (s *Store) Region() string { return s.client.Load().region }

// Stats is a snapshot of the counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Gets: c.gets.Load(), Heads: c.heads.Load(), Attempts: c.attempts.Load(), BytesRead: c.bytesRead.Load(),
		Vends: c.vends.Load(), ExpiredRetries: c.expiredRetries.Load(), Resumes: c.resumes.Load(), RegionSwitches: c.regionSwitches.Load(),
		Puts: c.puts.Load(), Parts: c.parts.Load(), BytesUploaded: c.bytesUploaded.Load(), Aborts: c.aborts.Load(),
	}
}

// call runs one S3 operation and repairs, once each, the two failures that
// a retry of the same request cannot fix: credentials the server calls
// expired (refresh, then retry) and a bucket in another region (switch,
// then retry). bodiless marks HEAD, whose error answers carry no code.
func (s *Store) call(ctx context.Context, bodiless bool, op func(*s3.Client) error) error {
	refreshed, moved := false, false
	for {
		gen := s.prov.generation()
		c := s.client.Load()
		err := op(c.Client)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return err
		case !refreshed && isExpired(err, bodiless):
			refreshed = true
			s.stats.expiredRetries.Add(1)
			if s.prov.invalidate(s.creds, gen) {
				s.log.Info("s3io: S3 says credentials expired; refreshing", "bucket", s.Bucket(), "cause", err)
			}
		case !moved && s.switchRegion(c, err):
			moved = true
		default:
			return err
		}
	}
}

// switchRegion moves the Store to the region an error answer names, if it
// names another one. It reports whether a retry can help.
func (s *Store) switchRegion(failed *regionalClient, err error) bool {
	region := bucketRegion(err)
	if region == "" || region == failed.region {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.client.Load(); cur.region != failed.region {
		return cur.region == region // another caller switched meanwhile
	}
	s.client.Store(s.newClient(region))
	s.stats.regionSwitches.Add(1)
	s.log.Info("s3io: bucket lives in another region; switching", "bucket", s.Bucket(), "from", failed.region, "to", region)
	return true
}
