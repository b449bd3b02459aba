package s3io

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Credentials are one vended STS set and the prefix they are scoped to.
// They are secrets: String and LogValue hide the keys.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
	Bucket, BaseKey                            string
}

func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{s3://%s/%s expires %s keys:[REDACTED]}", c.Bucket, c.BaseKey, c.Expiration.Format(time.RFC3339))
}

// GoString keeps the keys out of %#v too.
func (c Credentials) GoString() string { return c.String() }

// LogValue keeps the keys out of logs even when a whole value is logged.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("bucket", c.Bucket), slog.String("baseKey", c.BaseKey), slog.Time("expiration", c.Expiration))
}

// Vendor vends credentials for the STS root (an adapter over the Synapse
// client lives elsewhere, so that s3io knows nothing of Synapse).
type Vendor interface {
	Vend(ctx context.Context, write bool) (Credentials, error)
}

// vendTimeout bounds one vend. aws.CredentialsCache strips the caller's
// deadline from the shared refresh (so one impatient reader cannot fail it
// for the others); without a bound, a stuck vend would stall every reader.
const vendTimeout = 2 * time.Minute

// provider feeds aws.CredentialsCache from the Vendor. It also remembers
// where the credentials point and counts generations, so that a burst of
// ExpiredToken answers for one set of credentials invalidates it once.
type provider struct {
	vendor        Vendor
	write         bool
	refreshBefore time.Duration
	log           *slog.Logger
	vends         *atomic.Int64

	mu      sync.Mutex
	gen     uint64 // bumped when a vend starts
	bucket  string // fixed by the first vend
	baseKey string
}

// Retrieve implements aws.CredentialsProvider.
func (p *provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	p.gen++
	p.mu.Unlock()
	p.vends.Add(1)

	ctx, cancel := context.WithTimeout(ctx, vendTimeout)
	defer cancel()
	c, err := p.vendor.Vend(ctx, p.write)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("s3io: vend credentials: %w", err)
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.Bucket == "" {
		return aws.Credentials{}, fmt.Errorf("s3io: vend credentials: incomplete answer (%v)", c)
	}

	p.mu.Lock()
	if p.bucket == "" {
		p.bucket, p.baseKey = c.Bucket, c.BaseKey
	}
	moved := p.bucket != c.Bucket || p.baseKey != c.BaseKey
	was := "s3://" + p.bucket + "/" + p.baseKey
	p.mu.Unlock()
	if moved {
		// Every key the caller holds was computed for the old prefix, and
		// the new credentials would not reach it: fail loudly, not with a
		// stream of AccessDenied.
		return aws.Credentials{}, fmt.Errorf("s3io: STS root moved from %s to s3://%s/%s; remount", was, c.Bucket, c.BaseKey)
	}
	if !c.Expiration.After(time.Now()) {
		p.log.Warn("s3io: vended credentials are already expired (clock skew?)", "creds", c)
	}
	p.log.Debug("s3io: vended credentials", "creds", c, "write", p.write)
	return aws.Credentials{
		AccessKeyID:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		SessionToken:    c.SessionToken,
		Source:          "synfs STS vendor",
		CanExpire:       !c.Expiration.IsZero(),
		Expires:         c.Expiration,
	}, nil
}

// AdjustExpiresBy implements aws.AdjustExpiresByCredentialsCacheStrategy.
// The cache's window is fixed when the cache is built, but the right window
// depends on each set's lifetime: RefreshBefore, capped at half the
// lifetime so that short-lived credentials are not refreshed on every use.
// The cache calls this right after Retrieve, so now is the vend time.
func (p *provider) AdjustExpiresBy(c aws.Credentials, _ time.Duration) (aws.Credentials, error) {
	if !c.CanExpire {
		return c, nil
	}
	window := min(p.refreshBefore, time.Until(c.Expires)/2)
	if window > 0 {
		c.Expires = c.Expires.Add(-window)
	}
	return c, nil
}

// generation identifies the set of credentials handed out last.
func (p *provider) generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// invalidate drops the cached credentials if they are still generation
// gen. Holding mu while invalidating orders it against the start of the
// next vend, so a late ExpiredToken can never throw away fresh credentials.
func (p *provider) invalidate(cache *aws.CredentialsCache, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != gen {
		return false
	}
	cache.Invalidate()
	return true
}

func (p *provider) root() (bucket, baseKey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bucket, p.baseKey
}
