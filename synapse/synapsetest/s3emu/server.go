// Package s3emu is the S3 endpoint of the Synapse emulator: path-style S3
// over HTTP that checks AWS Signature Version 4 and enforces the session
// policy Synapse attaches to the STS credentials it vends, with gofakes3
// for storage. It exists so that synfs meets, in tests, the answers real S3
// gives to its temporary credentials: AccessDenied outside the folder's
// prefix, and for missing keys inside it (the policy allows s3:ListBucket
// only under an s3:prefix condition), ExpiredToken after expiry, owner.txt
// off limits. Where gofakes3 is kinder than S3, the emulator answers as S3
// does, so client bugs show: EntityTooSmall, InvalidPart and
// InvalidPartOrder on CompleteMultipartUpload, and, for an object assembled
// from parts, the ETag "<md5 of the parts' MD5s>-<parts>", which is not a
// content MD5, on GET, HEAD, ListObjects and If-Match/If-None-Match.
//
// A static admin key may do anything, so that peers (rclone, s3fs) and the
// emulator itself can read and write every bucket.
//
// What differs from S3, on purpose or for lack of gofakes3 support:
//   - object ACLs are accepted (PutObjectAcl, x-amz-acl) and not stored;
//     GetObjectAcl answers the owner's FULL_CONTROL;
//   - some versions of Synapse's STS policy template deny s3:PutObject
//     unless x-amz-acl: bucket-owner-full-control is sent; the emulator does
//     not enforce that, so clients should send that ACL on PutObject and
//     CreateMultipartUpload;
//   - UploadPartCopy and subresources gofakes3 lacks (tagging, policy, ...)
//     answer NotImplemented (after the policy check, so grants see
//     AccessDenied first);
//   - checksums sent by clients are verified on upload and not stored, so
//     GetObject returns none and SDKs skip response validation;
//   - the clock skew and presign expiry checks use the wall clock, while
//     Options.Now drives credential expiry, so tests can expire credentials
//     without making every signature look skewed;
//   - conditional writes (If-Match, If-None-Match on PutObject) are
//     gofakes3's, compared with the content MD5 even for an object
//     assembled from parts, and ListObjectVersions lists content MD5s;
//   - injected faults (Conditions) answer 500 InternalError, 503 SlowDown,
//     and 429 SlowDown: real S3 throttles with 503, but SlowDown makes SDKs
//     retry the 429 as a throttle too.
package s3emu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/johannesboyne/gofakes3"

	"github.com/synfs/synfs/synapse/synapsetest/netem"
)

// Grant is one set of vended STS credentials and the policy Synapse
// attaches to them.
type Grant struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Bucket                                     string
	BaseKey                                    string // "" = whole bucket
	Write                                      bool   // read_write credentials
	Expiration                                 time.Time
}

// Options configure New.
type Options struct {
	// Backend stores the objects: s3mem.New() or an s3afero directory
	// backend; the caller decides.
	Backend gofakes3.Backend
	// A static key that may do anything, without a session token; both
	// empty for none.
	AdminAccessKeyID, AdminSecretAccessKey string
	Region                                 string           // default "us-east-1"
	Now                                    func() time.Time // credential expiry clock; default time.Now
	Logger                                 *slog.Logger     // default: discard
}

// Server is the S3 endpoint. It implements http.Handler.
type Server struct {
	backend gofakes3.Backend
	fake    http.Handler // gofakes3, reached only after auth and policy
	handler http.Handler // the whole chain, netem included
	conds   *netem.Conditions
	region  string
	now     func() time.Time
	wallNow func() time.Time // replaced by tests that replay AWS's dated examples
	log     *slog.Logger

	adminKey, adminSecret string

	mu     sync.Mutex
	grants map[string]Grant

	uploads  uploads  // multipart uploads, to check completions
	mpETags  mpETags  // S3's ETags of objects assembled from parts
	keyLocks keyLocks // writes to a key, with their mpETags update

	stats stats

	idPrefix string
	seq      atomic.Uint64
}

// New returns a Server storing into opts.Backend.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("s3emu: Options.Backend is required")
	}
	if (opts.AdminAccessKeyID == "") != (opts.AdminSecretAccessKey == "") {
		return nil, errors.New("s3emu: set both AdminAccessKeyID and AdminSecretAccessKey, or neither")
	}
	s := &Server{
		backend:     opts.Backend,
		conds:       netem.NewConditions(),
		region:      opts.Region,
		now:         opts.Now,
		wallNow:     time.Now,
		log:         opts.Logger,
		adminKey:    opts.AdminAccessKeyID,
		adminSecret: opts.AdminSecretAccessKey,
		grants:      map[string]Grant{},
		stats:       newStats(),
	}
	if s.region == "" {
		s.region = "us-east-1"
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	s.idPrefix = strings.ToUpper(hex.EncodeToString(id[:]))

	s.fake = gofakes3.New(opts.Backend,
		gofakes3.WithAutoBucket(false),
		gofakes3.WithTimeSkewLimit(0), // checked here, against the signature's date
		gofakes3.WithTimeSource(clock{s.now}),
		gofakes3.WithLogger(fakesLog{s.log}),
	).Server()
	s.handler = s.conds.Middleware(http.HandlerFunc(s.serveS3), faultBody)
	return s, nil
}

// AddGrant teaches the endpoint a set of vended credentials and their
// policy. A grant with the same AccessKeyID is replaced.
func (s *Server) AddGrant(g Grant) {
	g.BaseKey = strings.Trim(g.BaseKey, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants[g.AccessKeyID] = g
}

// Conditions are the shaping and faults of this endpoint, applied to every
// request before authentication, as the network would.
func (s *Server) Conditions() *netem.Conditions { return s.conds }

// lookupKey finds the secret of an access key; grant is nil for the admin.
func (s *Server) lookupKey(akid string) (secret, token string, grant *Grant, ok bool) {
	if s.adminKey != "" && akid == s.adminKey {
		return s.adminSecret, "", nil, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[akid]
	if !ok {
		return "", "", nil, false
	}
	return g.SecretAccessKey, g.SessionToken, &g, true
}

type requestKey struct{}

// requestState travels in the request context from ServeHTTP to serveS3.
type requestState struct {
	op        operation
	id        string
	principal string // access key id once authenticated, for the log
	denied    string // error code when the emulator refused the request
}

// ServeHTTP answers one S3 request: ids and region headers first, so that
// even injected faults carry them, then netem, then serveS3.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &requestState{op: classify(r), id: fmt.Sprintf("%s%08X", s.idPrefix, s.seq.Add(1))}
	h := w.Header()
	h.Set("x-amz-request-id", st.id)
	h.Set("x-amz-id-2", hostID(st.id))
	if st.op.bucket != "" {
		h.Set("x-amz-bucket-region", s.region)
	}
	body := &countingBody{ReadCloser: r.Body}
	cw := &countingWriter{w: w, status: http.StatusOK}
	r = r.WithContext(context.WithValue(r.Context(), requestKey{}, st))
	r.Body = body
	start := time.Now()
	defer func() {
		// Deferred so that aborted responses (netem faults) count too.
		s.stats.record(st.op.statsName(), body.n.Load(), cw.n, st.denied)
		s.log.Debug("s3 request", "op", st.op.name, "method", r.Method, "bucket", st.op.bucket, "key", st.op.key,
			"status", cw.status, "bytesOut", cw.n, "principal", st.principal, "duration", time.Since(start), "requestId", st.id)
	}()
	s.handler.ServeHTTP(cw, r)
}

func hostID(id string) string {
	return base64.StdEncoding.EncodeToString([]byte(id + id + id))
}

// serveS3 runs behind netem: authentication, policy, body checks, then
// gofakes3.
func (s *Server) serveS3(w http.ResponseWriter, r *http.Request) {
	st := r.Context().Value(requestKey{}).(*requestState)
	o := st.op
	noted := func(e *apiError, reason string) {
		st.denied = e.code
		s.log.Info("s3 request refused", "op", o.name, "bucket", o.bucket, "key", o.key, "code", e.code,
			"reason", reason, "principal", st.principal, "requestId", st.id)
	}
	refuse := func(e *apiError, reason string) {
		noted(e, reason)
		writeError(w, r, e)
	}

	sr, aerr := s.authenticate(r)
	if aerr != nil {
		refuse(aerr, "authentication")
		return
	}
	st.principal = "admin"
	if sr.grant != nil {
		st.principal = sr.accessKeyID
		if !sr.grant.allows(o) {
			refuse(errAccessDenied(), "policy")
			return
		}
	}
	if o.badCopySource {
		refuse(errInvalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey"), "copy source")
		return
	}
	if o.unsupported {
		refuse(errNotImplemented(), "unsupported operation")
		return
	}

	r = r.Clone(r.Context()) // the body and headers are rewritten below
	sp, aerr := readBody(r, sr)
	defer sp.Close()
	if aerr != nil {
		refuse(aerr, "request body")
		return
	}
	var delObjs []deleteObject // the keys to lock; none if gofakes3 is to refuse the body
	if o.name == "DeleteObjects" {
		objs, err := deleteObjects(r)
		if err != nil && sr.grant != nil {
			refuse(errMalformedXML(), "delete body")
			return
		}
		if sr.grant != nil && !sr.grant.deleteAllowed(o.bucket, objs) {
			refuse(errAccessDenied(), "policy")
			return
		}
		delObjs = objs
	}

	switch o.name {
	case "GetObjectAcl", "PutObjectAcl":
		s.serveObjectACL(w, r, o)
		return
	case "GetBucketLocation":
		s.serveBucketLocation(w, r, o)
		return
	case "ListBuckets":
		s.serveListBuckets(w, r)
		return
	}
	if o.name == "CompleteMultipartUpload" {
		if aerr := s.checkComplete(r, o); aerr != nil {
			refuse(aerr, "multipart completion")
			return
		}
	}
	sanitizeHeaders(r, o)
	out := &idWriter{w: w, st: st}
	switch o.name {
	case "GetObject", "HeadObject":
		s.serveRead(out, r, o, st, sr.grant, noted)
	case "ListObjects":
		s.serveListObjects(out, r, o)
	case "PutObject", "CopyObject", "DeleteObject":
		s.serveObjectWrite(out, r, o, []string{o.key})
	case "DeleteObjects":
		keys := make([]string, len(delObjs))
		for i, d := range delObjs {
			keys[i] = d.Key
		}
		s.serveObjectWrite(out, r, o, keys)
	case "CreateMultipartUpload", "UploadPart", "AbortMultipartUpload", "CompleteMultipartUpload":
		s.serveMultipart(out, r, o)
	default:
		s.fake.ServeHTTP(out, r)
	}
}

// deleteObject is one entry of a DeleteObjects body.
type deleteObject struct {
	Key       string `xml:"Key"`
	VersionID string `xml:"VersionId"`
}

// deleteObjects reads the keys of a DeleteObjects body and puts the body
// back for gofakes3.
func deleteObjects(r *http.Request) ([]deleteObject, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, fmt.Errorf("s3emu: read DeleteObjects body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	var doc struct {
		Objects []deleteObject `xml:"Object"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("s3emu: parse DeleteObjects body: %w", err)
	}
	return doc.Objects, nil
}

// keptAmzHeaders are the x-amz-* request headers gofakes3 may see. It
// stores every x-amz-* header as object metadata and returns it on GET, so
// signing, checksum and token headers must not reach it.
var keptAmzHeaders = map[string]bool{
	"x-amz-copy-source":               true,
	"x-amz-storage-class":             true,
	"x-amz-website-redirect-location": true,
	"x-amz-server-side-encryption":    true,
}

func sanitizeHeaders(r *http.Request, o operation) {
	for name := range r.Header {
		l := strings.ToLower(name)
		if strings.HasPrefix(l, "x-amz-") && !strings.HasPrefix(l, "x-amz-meta-") && !keptAmzHeaders[l] {
			r.Header.Del(name)
		}
	}
	if o.copySource != nil {
		// gofakes3 splits at the first "/" and query-unescapes the key.
		r.Header.Set("X-Amz-Copy-Source", "/"+o.copySource.bucket+"/"+url.QueryEscape(o.copySource.key))
	}
}

const (
	ownerID          = "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
	ownerDisplayName = "synfs-emulator"
	s3Namespace      = "http://s3.amazonaws.com/doc/2006-03-01/"
)

// serveObjectACL answers object ACL calls, which gofakes3 would misroute
// (a PUT ?acl would overwrite the object with the ACL document).
func (s *Server) serveObjectACL(w http.ResponseWriter, r *http.Request, o operation) {
	obj, err := s.backend.HeadObject(o.bucket, o.key)
	if err != nil {
		writeError(w, r, s.storageError(err))
		return
	}
	obj.Contents.Close()
	if o.name == "PutObjectAcl" {
		w.WriteHeader(http.StatusOK)
		return
	}
	body := xml.Header + `<AccessControlPolicy xmlns="` + s3Namespace + `"><Owner><ID>` + ownerID + `</ID><DisplayName>` + ownerDisplayName +
		`</DisplayName></Owner><AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>` +
		ownerID + `</ID><DisplayName>` + ownerDisplayName + `</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList></AccessControlPolicy>`
	writeXML(w, body)
}

// serveBucketLocation answers this endpoint's region; gofakes3 always
// answers us-east-1 (an empty constraint).
func (s *Server) serveBucketLocation(w http.ResponseWriter, r *http.Request, o operation) {
	ok, err := s.backend.BucketExists(o.bucket)
	if err != nil {
		writeError(w, r, s.storageError(err))
		return
	}
	if !ok {
		writeError(w, r, errNoSuchBucket())
		return
	}
	constraint := s.region
	if constraint == "us-east-1" {
		constraint = ""
	}
	writeXML(w, xml.Header+`<LocationConstraint xmlns="`+s3Namespace+`">`+constraint+`</LocationConstraint>`)
}

// serveListBuckets sorts by name, as S3 does; gofakes3's memory backend
// answers in map order.
func (s *Server) serveListBuckets(w http.ResponseWriter, r *http.Request) {
	buckets, err := s.backend.ListBuckets()
	if err != nil {
		writeError(w, r, s.storageError(err))
		return
	}
	slices.SortFunc(buckets, func(a, b gofakes3.BucketInfo) int { return strings.Compare(a.Name, b.Name) })
	b, err := xml.Marshal(gofakes3.Storage{Xmlns: s3Namespace, Buckets: buckets,
		Owner: &gofakes3.UserInfo{ID: ownerID, DisplayName: ownerDisplayName}})
	if err != nil {
		writeError(w, r, s.storageError(err))
		return
	}
	writeXML(w, xml.Header+string(b))
}

func writeXML(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
}

// storageError maps a backend error to an answer.
func (s *Server) storageError(err error) *apiError {
	switch {
	case gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket):
		return errNoSuchBucket()
	case gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey):
		return errNoSuchKey()
	}
	s.log.Error("s3 backend", "err", err)
	return errInternal()
}

// idWriter puts the emulator's request id back on gofakes3's answers:
// gofakes3 numbers requests itself.
type idWriter struct {
	w    http.ResponseWriter
	st   *requestState
	done bool
}

func (iw *idWriter) fix() {
	if !iw.done {
		iw.done = true
		iw.w.Header().Set("x-amz-request-id", iw.st.id)
		iw.w.Header().Set("x-amz-id-2", hostID(iw.st.id))
	}
}

func (iw *idWriter) Header() http.Header { return iw.w.Header() }
func (iw *idWriter) WriteHeader(code int) {
	iw.fix()
	iw.w.WriteHeader(code)
}

func (iw *idWriter) Write(p []byte) (int, error) {
	iw.fix()
	return iw.w.Write(p)
}
func (iw *idWriter) Flush()                      { iw.fix(); _ = http.NewResponseController(iw.w).Flush() }
func (iw *idWriter) Unwrap() http.ResponseWriter { return iw.w }

// countingBody counts request body bytes as the handler reads them.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// countingWriter counts response body bytes the connection accepted.
type countingWriter struct {
	w      http.ResponseWriter
	n      int64
	status int
	wrote  bool
}

func (c *countingWriter) Header() http.Header { return c.w.Header() }
func (c *countingWriter) WriteHeader(code int) {
	if !c.wrote && code >= 200 {
		c.status, c.wrote = code, true
	}
	c.w.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.wrote = true
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
func (c *countingWriter) Flush()                      { _ = http.NewResponseController(c.w).Flush() }
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.w }

// clock adapts Options.Now to gofakes3, which dates objects with it.
type clock struct{ now func() time.Time }

func (c clock) Now() time.Time                  { return c.now() }
func (c clock) Since(t time.Time) time.Duration { return c.now().Sub(t) }

// fakesLog sends gofakes3's chatter to slog.
type fakesLog struct{ log *slog.Logger }

func (f fakesLog) Print(level gofakes3.LogLevel, v ...any) {
	msg := fmt.Sprint(v...)
	switch level {
	case gofakes3.LogErr:
		f.log.Error("gofakes3: " + msg)
	case gofakes3.LogWarn:
		f.log.Warn("gofakes3: " + msg)
	default:
		f.log.Debug("gofakes3: " + msg)
	}
}

// CreateBucket creates a bucket if it does not exist.
func (s *Server) CreateBucket(name string) error {
	if err := gofakes3.ValidateBucketName(name); err != nil {
		return fmt.Errorf("s3emu: create bucket %q: %w", name, err)
	}
	ok, err := s.backend.BucketExists(name)
	if err != nil {
		return fmt.Errorf("s3emu: create bucket %q: %w", name, err)
	}
	if ok {
		return nil
	}
	if err := s.backend.CreateBucket(name); err != nil && !gofakes3.IsAlreadyExists(err) {
		return fmt.Errorf("s3emu: create bucket %q: %w", name, err)
	}
	return nil
}

// PutObject stores size bytes of body under bucket/key, bypassing HTTP,
// auth and policy: for imported data and for owner.txt.
func (s *Server) PutObject(ctx context.Context, bucket, key string, body io.Reader, size int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3emu: put %s/%s: %w", bucket, key, err)
	}
	if size < 0 {
		return fmt.Errorf("s3emu: put %s/%s: negative size %d", bucket, key, size)
	}
	meta := map[string]string{
		"Content-Type":  "binary/octet-stream",
		"Last-Modified": s.now().UTC().Format(http.TimeFormat),
	}
	defer s.keyLocks.lock(bucket, key)()
	_, err := s.backend.PutObject(bucket, key, meta, ctxReader{ctx, body}, size, nil)
	if err != nil {
		return fmt.Errorf("s3emu: put %s/%s: %w", bucket, key, s.sentinel(err))
	}
	s.mpETags.forget(objectRef{bucket, key})
	return nil
}

// HeadObject returns the size and ETag (quoted, as S3 sends it: not the
// content MD5 for an object assembled from parts) of bucket/key; the error
// wraps ErrNoSuchKey when it is missing.
func (s *Server) HeadObject(ctx context.Context, bucket, key string) (size int64, etag string, err error) {
	if err := ctx.Err(); err != nil {
		return 0, "", fmt.Errorf("s3emu: head %s/%s: %w", bucket, key, err)
	}
	obj, err := s.backend.HeadObject(bucket, key)
	if err != nil {
		return 0, "", fmt.Errorf("s3emu: head %s/%s: %w", bucket, key, s.sentinel(err))
	}
	obj.Contents.Close()
	return obj.Size, s.mpETags.etag(objectRef{bucket, key}, `"`+hex.EncodeToString(obj.Hash)+`"`), nil
}

// GetObject reads a whole (small) object, such as owner.txt.
func (s *Server) GetObject(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3emu: get %s/%s: %w", bucket, key, err)
	}
	obj, err := s.backend.GetObject(bucket, key, nil)
	if err != nil {
		return nil, fmt.Errorf("s3emu: get %s/%s: %w", bucket, key, s.sentinel(err))
	}
	defer obj.Contents.Close()
	b, err := io.ReadAll(ctxReader{ctx, obj.Contents})
	if err != nil {
		return nil, fmt.Errorf("s3emu: get %s/%s: %w", bucket, key, err)
	}
	return b, nil
}

// sentinel turns gofakes3's not-found errors into this package's.
func (s *Server) sentinel(err error) error {
	switch {
	case gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchKey):
		return fmt.Errorf("%w: %w", ErrNoSuchKey, err)
	case gofakes3.HasErrorCode(err, gofakes3.ErrNoSuchBucket):
		return fmt.Errorf("%w: %w", ErrNoSuchBucket, err)
	}
	return err
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
