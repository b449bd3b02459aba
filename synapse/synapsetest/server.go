// Package synapsetest is an emulator of the parts of Synapse that synfs uses
// (the REST API of synapse-api.md, STS credential vending) and of S3 scoped
// by the vended credentials, served over real HTTP on loopback.
//
// Like net/http/httptest: NewServer(t, opts) gives a running emulator whose
// endpoints, tokens and admin S3 key go into a client's configuration;
// methods on *Server change its behaviour at run time (faults, shaping, the
// throttle) and report what was asked of it (Stats).
//
// Where the real service's behaviour is uncertain, the emulator follows
// synapse-api.md; the known differences are listed in differences.go.
package synapsetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/synfs/synfs/synapse/synapsetest/netem"
	"github.com/synfs/synfs/synapse/synapsetest/s3emu"
)

// Options configure an emulator. The zero value is a faithful Synapse:
// throttle on, 1-hour credentials, no added latency, storage in memory.
type Options struct {
	Listen   string // address of the Synapse listener (repo and file); default 127.0.0.1:0
	S3Listen string // address of the S3 listener; default 127.0.0.1:0
	DataDir  string // keep S3 objects in this directory instead of memory

	RESTLatency      time.Duration // time to the first byte of each Synapse answer
	S3Latency        time.Duration // time to the first byte of each S3 answer
	S3BytesPerSecond int64         // cap per S3 response body; 0 = none

	DisableThrottle    bool // the service's per-user throttle is on unless this is set
	ThrottleConcurrent int  // default 3
	ThrottlePerMinute  int  // default 600

	STSLifetime time.Duration // default 1 hour
	Logger      *slog.Logger  // default: discard
}

// User is an account of the emulator and the personal access token it
// signs in with (all scopes).
type User struct {
	ID       int64
	UserName string
	Token    string
}

// Server is a running emulator.
type Server struct {
	RepoEndpoint string // e.g. http://127.0.0.1:PORT/repo/v1
	FileEndpoint string // e.g. http://127.0.0.1:PORT/file/v1
	S3Endpoint   string // e.g. http://127.0.0.1:PORT (path-style)

	// Owner is the emulator's first user: imports belong to it.
	Owner User

	// The static S3 key that may read and write everything, for peers
	// (rclone, s3fs) and for checking what landed in a bucket.
	AdminAccessKeyID     string
	AdminSecretAccessKey string

	log         *slog.Logger
	st          *state
	s3          *s3emu.Server
	rest        netem.Conditions
	throttle    *throttle
	stats       *restStats
	stsLifetime atomic.Int64 // nanoseconds
	project     int64        // the project imports go into; 0 until the first
	servers     []*http.Server
}

// NewServer starts an emulator for the length of a test.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("synapsetest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts an emulator; Close stops it.
func Start(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backend, err := newBackend(opts.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log:                  log,
		st:                   newState(time.Now),
		stats:                newRESTStats(),
		AdminAccessKeyID:     "SYNFSADMIN" + randomKey(upperAlnum, 10),
		AdminSecretAccessKey: randomKey(alnum, 40),
	}
	s.s3, err = s3emu.New(s3emu.Options{
		Backend:              backend,
		AdminAccessKeyID:     s.AdminAccessKeyID,
		AdminSecretAccessKey: s.AdminSecretAccessKey,
		Logger:               log.With("emulator", "s3"),
	})
	if err != nil {
		return nil, fmt.Errorf("synapsetest: S3 emulator: %w", err)
	}
	if err := s.s3.CreateBucket(ManagedBucket); err != nil {
		return nil, fmt.Errorf("synapsetest: %w", err)
	}
	lifetime := opts.STSLifetime
	if lifetime <= 0 {
		lifetime = time.Hour
	}
	s.stsLifetime.Store(int64(lifetime))
	s.throttle = newThrottle(opts.ThrottleConcurrent, opts.ThrottlePerMinute)
	if opts.DisableThrottle {
		s.throttle.set(0, 0)
	}
	s.rest.SetShaping(netem.Shaping{Latency: opts.RESTLatency})
	s.s3.Conditions().SetShaping(netem.Shaping{Latency: opts.S3Latency, BytesPerSecond: opts.S3BytesPerSecond})
	s.Owner = s.AddUser("synfs-owner")

	restLn, err := listen(opts.Listen)
	if err != nil {
		return nil, err
	}
	s3Ln, err := listen(opts.S3Listen)
	if err != nil {
		restLn.Close()
		return nil, err
	}
	base := "http://" + restLn.Addr().String()
	s.RepoEndpoint, s.FileEndpoint = base+"/repo/v1", base+"/file/v1"
	s.S3Endpoint = "http://" + s3Ln.Addr().String()
	s.serve(restLn, s.restHandler())
	s.serve(s3Ln, s.s3)
	log.Info("emulator started", "repo", s.RepoEndpoint, "s3", s.S3Endpoint)
	return s, nil
}

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("synapsetest: listen on %s: %w", addr, err)
	}
	return ln, nil
}

func (s *Server) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.servers = append(s.servers, srv)
	go srv.Serve(ln)
}

// Close stops both listeners and drops open connections.
func (s *Server) Close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

func newBackend(dir string) (gofakes3.Backend, error) {
	if dir == "" {
		return s3mem.New(), nil
	}
	return dirBackend(dir)
}

const (
	upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// AddUser creates an account with a full-scope token. New users can see
// nothing until access is granted with SetAccess.
func (s *Server) AddUser(userName string) User {
	return s.addUser(userName, nil)
}

// AddToken gives u another personal access token limited to scopes
// ("view", "download", "modify").
func (s *Server) AddToken(u User, scopes ...string) string {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	tok := "synfs-pat-" + randomKey(alnum, 40)
	s.st.tokens[tok] = u.ID
	s.tokenScopes(tok, scopes)
	return tok
}

func (s *Server) addUser(userName string, scopes []string) User {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	u := &user{id: s.st.newID(), userName: userName}
	s.st.users[u.id] = u
	tok := "synfs-pat-" + randomKey(alnum, 40)
	s.st.tokens[tok] = u.id
	s.tokenScopes(tok, scopes)
	return User{ID: u.id, UserName: userName, Token: tok}
}

func (s *Server) tokenScopes(tok string, scopes []string) {
	if scopes == nil {
		return
	}
	m := map[string]bool{}
	for _, sc := range scopes {
		m[sc] = true
	}
	s.st.scopes[tok] = m
}

// SetAccess gives u exactly access a on the entity (0 removes it), creating
// local sharing settings there if the entity inherited them, as the web
// UI does. Children inherit unless they have their own.
func (s *Server) SetAccess(entityID string, u User, a Access) error {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	id, ok := parseSynID(entityID)
	if !ok {
		return fmt.Errorf("synapsetest: bad entity id %q", entityID)
	}
	e, aerr := s.st.get(id)
	if aerr != nil {
		return fmt.Errorf("synapsetest: %s: %w", entityID, aerr)
	}
	s.st.setAccess(e, u.ID, a)
	return nil
}

// CreateBucket makes an external bucket (idempotent), as a data owner would
// in their AWS account.
func (s *Server) CreateBucket(name string) error { return s.s3.CreateBucket(name) }

// PutObject writes an object directly, as a data owner with their own AWS
// keys would (for owner.txt, or objects changed behind Synapse's back).
func (s *Server) PutObject(ctx context.Context, bucket, key string, data []byte) error {
	return s.s3.PutObject(ctx, bucket, key, strings.NewReader(string(data)), int64(len(data)))
}

// GetObject reads an object directly, to check what a client uploaded.
func (s *Server) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	return s.s3.GetObject(ctx, bucket, key)
}

// RESTConditions are the faults and shaping of the Synapse listener.
func (s *Server) RESTConditions() *netem.Conditions { return &s.rest }

// S3Conditions are the faults and shaping of the S3 listener.
func (s *Server) S3Conditions() *netem.Conditions { return s.s3.Conditions() }

// SetThrottle changes the per-user throttle; zeros turn it off.
func (s *Server) SetThrottle(concurrent, perMinute int) { s.throttle.set(concurrent, perMinute) }

// SetSTSLifetime changes the lifetime of credentials vended from now on.
func (s *Server) SetSTSLifetime(d time.Duration) { s.stsLifetime.Store(int64(d)) }

// vend makes STS credentials for loc and teaches the S3 endpoint their policy.
func (s *Server) vend(loc *storageLocation, write bool) s3emu.Grant {
	g := s3emu.Grant{
		AccessKeyID:     "ASIA" + randomKey(upperAlnum, 16),
		SecretAccessKey: randomKey(alnum, 40),
		SessionToken:    "FwoGZXIvYXdzE" + randomKey(alnum, 300),
		Bucket:          loc.bucket,
		BaseKey:         loc.baseKey,
		Write:           write,
		Expiration:      time.Now().Add(time.Duration(s.stsLifetime.Load())).Truncate(time.Millisecond),
	}
	s.s3.AddGrant(g)
	return g
}

type principalKey struct{}

type principal struct {
	id     int64
	scopes map[string]bool // nil: every scope
}

func principalFrom(ctx context.Context) principal {
	p, ok := ctx.Value(principalKey{}).(principal)
	if !ok {
		return principal{id: anonymousID}
	}
	return p
}

// restHandler is the Synapse listener: the stats endpoint, then for the API
// authentication, the throttle, shaping and faults, and the routes.
func (s *Server) restHandler() http.Handler {
	mux := s.restMux()
	api := s.rest.Middleware(mux, func(status int) (string, []byte) {
		b, _ := json.Marshal(errorJSON(http.StatusText(status)))
		return "application/json;charset=UTF-8", b
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/__emulator/stats" && r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, s.Stats())
			return
		}
		p, err := s.authenticate(r)
		if err != nil {
			s.stats.count(r, mux, http.StatusUnauthorized)
			writeJSON(w, http.StatusUnauthorized, errorJSON(err.Error()))
			return
		}
		release, reason := s.throttle.enter(p.id)
		if reason != "" {
			s.stats.count(r, mux, http.StatusTooManyRequests)
			s.stats.throttle()
			// The throttle filter answers before the controllers, with a
			// bare {"reason": ...}: no concreteType.
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"reason": reason})
			return
		}
		defer release()
		rec := &statusRecorder{ResponseWriter: w}
		api.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
		s.stats.count(r, mux, rec.status())
	})
}

func (s *Server) authenticate(r *http.Request) (principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return principal{id: anonymousID}, nil
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	tok = strings.TrimSpace(tok)
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	uid, known := s.st.tokens[tok]
	if !ok || !known {
		return principal{}, errors.New("Invalid access token")
	}
	return principal{id: uid, scopes: s.st.scopes[tok]}, nil
}

// statusRecorder remembers the status for the counters and passes Flush
// through so that shaping and faults still reach the client.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
