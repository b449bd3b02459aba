package s3emu

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// gofakes3 stores an object assembled by CompleteMultipartUpload like any
// other, so GET, HEAD and ListObjects would give it its content MD5 as
// ETag. S3 gives it "<md5 of the parts' binary MD5s>-<parts>" everywhere,
// and a client that takes an ETag for the content MD5 breaks on exactly
// those objects; the emulator must show that form for the mistake to show.
// mpETags remembers the ETag each completion answered, next to the content
// MD5 of the object it assembled: an entry applies only while the stored
// object still has that MD5, so a write the emulator did not see (a
// PostObject, a peer writing into an s3afero directory) drops it too.
type mpETags struct {
	mu sync.Mutex
	m  map[objectRef]mpETag
}

type mpETag struct {
	contentMD5 string // hex, as gofakes3 computes it
	etag       string // quoted, as CompleteMultipartUpload answered it
}

func (t *mpETags) set(ref objectRef, e mpETag) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[objectRef]mpETag{}
	}
	t.m[ref] = e
}

func (t *mpETags) forget(ref objectRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, ref)
}

func (t *mpETags) empty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m) == 0
}

// etag is the ETag S3 would send for ref, given the one gofakes3 sends
// (the content MD5, quoted or not).
func (t *mpETags) etag(ref objectRef, gofakes3ETag string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.m[ref]; ok && e.contentMD5 == strings.Trim(gofakes3ETag, `"`) {
		return e.etag
	}
	return gofakes3ETag
}

// keyLocks serialise the writes to a key with the mpETags update that goes
// with them, so that a completion never pairs its ETag with the MD5 of a
// PUT that overtook it. Keys share 64 stripes; locking several keys takes
// their stripes in order, so DeleteObjects cannot deadlock with another.
type keyLocks [64]sync.Mutex

func (k *keyLocks) lock(bucket string, keys ...string) (unlock func()) {
	var idx []int
	for _, key := range keys {
		h := fnv.New32a()
		h.Write([]byte(bucket))
		h.Write([]byte{0})
		h.Write([]byte(key))
		idx = append(idx, int(h.Sum32()%uint32(len(k))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		k[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			k[i].Unlock()
		}
	}
}

// hookWriter calls hook with the status once, before anything of the
// answer leaves: the emulator's own state must be up to date by the time
// the client can act on the answer. The caller calls fire(http.StatusOK)
// after gofakes3 returns, for answers that wrote nothing.
type hookWriter struct {
	w     http.ResponseWriter
	hook  func(status int)
	fired bool
}

func (h *hookWriter) fire(code int) {
	if !h.fired {
		h.fired = true
		h.hook(code)
	}
}

func (h *hookWriter) Header() http.Header { return h.w.Header() }

func (h *hookWriter) WriteHeader(code int) {
	h.fire(code)
	h.w.WriteHeader(code)
}

func (h *hookWriter) Write(b []byte) (int, error) {
	h.fire(http.StatusOK)
	return h.w.Write(b)
}

func (h *hookWriter) Flush() {
	h.fire(http.StatusOK)
	_ = http.NewResponseController(h.w).Flush()
}

func (h *hookWriter) Unwrap() http.ResponseWriter { return h.w }

// bufferedWriter holds back gofakes3's status and body (headers go
// through) for answers the emulator reads or rewrites before sending:
// small XML documents.
type bufferedWriter struct {
	w      http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.w.Header() }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

func (b *bufferedWriter) code() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

// send passes the answer on, with body in place of what gofakes3 wrote.
func (b *bufferedWriter) send(body []byte) {
	b.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	b.w.WriteHeader(b.code())
	_, _ = b.w.Write(body)
}

// serveListObjects gives multipart objects their S3 ETag in listings.
func (s *Server) serveListObjects(w http.ResponseWriter, r *http.Request, o operation) {
	if s.mpETags.empty() {
		s.fake.ServeHTTP(w, r) // nothing to rewrite: keep the listing streamed
		return
	}
	bw := &bufferedWriter{w: w}
	s.fake.ServeHTTP(bw, r)
	body := bw.body.Bytes()
	if bw.code() == http.StatusOK {
		if fixed, err := s.fixListETags(o.bucket, body); err == nil {
			body = fixed
		} else {
			s.log.Error("s3emu: rewrite listing ETags", "err", err)
		}
	}
	bw.send(body)
}

// fixListETags replaces the ETag of each <Contents> of a ListObjects
// answer by the one GET would send, leaving every other byte as gofakes3
// wrote it.
func (s *Server) fixListETags(bucket string, doc []byte) ([]byte, error) {
	type span struct {
		start, end int64
		key, etag  string
	}
	var (
		spans      []span
		inContents bool
		cur        span
		elem       string
		textStart  int64
	)
	dec := xml.NewDecoder(bytes.NewReader(doc))
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			elem = t.Name.Local
			textStart = dec.InputOffset()
			if elem == "Contents" {
				inContents, cur = true, span{}
			}
		case xml.CharData:
			if inContents && elem == "Key" {
				cur.key += string(t)
			}
			if inContents && elem == "ETag" {
				cur.etag += string(t)
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "ETag":
				if inContents {
					cur.start, cur.end = textStart, before
				}
			case "Contents":
				inContents = false
				if cur.end > cur.start {
					spans = append(spans, cur)
				}
			}
			elem = ""
		}
	}
	var out bytes.Buffer
	var done int64
	for _, sp := range spans {
		etag := s.mpETags.etag(objectRef{bucket, sp.key}, sp.etag)
		if etag == sp.etag {
			continue
		}
		out.Write(doc[done:sp.start])
		if err := xml.EscapeText(&out, []byte(etag)); err != nil {
			return nil, err
		}
		done = sp.end
	}
	if done == 0 {
		return doc, nil
	}
	out.Write(doc[done:])
	return out.Bytes(), nil
}

// readWriter stands between gofakes3 and the client on GetObject and
// HeadObject, and settles the answer on gofakes3's status, before any of
// it leaves:
//   - a multipart object gets its S3 ETag;
//   - If-Match and If-None-Match are applied to that ETag (gofakes3
//     ignores the first and compares the second with the content MD5);
//     synfs guards reads of external buckets with If-Match, so an
//     overwritten object must fail;
//   - a missing key is AccessDenied, not NoSuchKey, to a grant that S3
//     would not tell (see Grant.seesMissingKeys).
//
// Deciding on what gofakes3 answers (not on a HEAD made beforehand) makes
// the checks atomic with the read.
type readWriter struct {
	s                    *Server
	w                    http.ResponseWriter
	r                    *http.Request
	o                    operation
	st                   *requestState
	grant                *Grant
	ifMatch, ifNoneMatch string
	refused              func(e *apiError, reason string) // notes a refusal in the log and stats
	decided              bool
	replaced             bool // gofakes3's answer goes nowhere
}

// keptOnError are the headers an error answer keeps from the object's.
var keptOnError = map[string]bool{"X-Amz-Request-Id": true, "X-Amz-Id-2": true, "X-Amz-Bucket-Region": true}

func (p *readWriter) decide(code int) {
	if p.decided {
		return
	}
	p.decided = true
	h := p.w.Header()
	switch {
	case code == http.StatusOK || code == http.StatusPartialContent:
		etag := p.s.mpETags.etag(objectRef{p.o.bucket, p.o.key}, h.Get("ETag"))
		h.Set("ETag", etag)
		switch {
		case p.ifMatch != "" && !etagMatches(p.ifMatch, etag):
			p.replace(newError(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"))
		case p.ifNoneMatch != "" && etagMatches(p.ifNoneMatch, etag):
			p.replaced = true
			for k := range h {
				if !keptOnError[k] && k != "Etag" && k != "Last-Modified" {
					h.Del(k)
				}
			}
			p.w.WriteHeader(http.StatusNotModified)
		}
	case code == http.StatusNotFound && p.grant != nil && !p.grant.seesMissingKeys(p.o.bucket):
		// 404 is NoSuchKey or NoSuchBucket; S3 tells anyone that a
		// bucket does not exist.
		if ok, err := p.s.backend.BucketExists(p.o.bucket); err == nil && ok {
			e := errAccessDenied()
			p.refused(e, "missing key, no s3:ListBucket")
			p.replace(e)
		}
	}
}

// replace answers e instead of what gofakes3 is about to send.
func (p *readWriter) replace(e *apiError) {
	p.replaced = true
	h := p.w.Header()
	for k := range h {
		if !keptOnError[k] {
			h.Del(k)
		}
	}
	h.Set("x-amz-request-id", p.st.id) // gofakes3 set its own
	h.Set("x-amz-id-2", hostID(p.st.id))
	writeError(p.w, p.r, e)
}

func (p *readWriter) Header() http.Header { return p.w.Header() }

func (p *readWriter) WriteHeader(code int) {
	p.decide(code)
	if !p.replaced {
		p.w.WriteHeader(code)
	}
}

func (p *readWriter) Write(b []byte) (int, error) {
	p.decide(http.StatusOK)
	if p.replaced {
		return len(b), nil // the object's bytes go nowhere
	}
	return p.w.Write(b)
}

func (p *readWriter) Flush() {
	p.decide(http.StatusOK)
	if !p.replaced {
		_ = http.NewResponseController(p.w).Flush()
	}
}

func (p *readWriter) Unwrap() http.ResponseWriter { return p.w }

// etagMatches applies an If-Match or If-None-Match list ("*" or quoted
// tags, commas between) with S3's strong comparison.
func etagMatches(list, etag string) bool {
	etag = strings.Trim(etag, `"`)
	for _, want := range strings.Split(list, ",") {
		want = strings.TrimSpace(want)
		if want == "*" || strings.Trim(want, `"`) == etag {
			return true
		}
	}
	return false
}

// serveRead answers GetObject and HeadObject through a readWriter.
func (s *Server) serveRead(w http.ResponseWriter, r *http.Request, o operation, st *requestState, grant *Grant, refused func(*apiError, string)) {
	rw := &readWriter{s: s, w: w, r: r, o: o, st: st, grant: grant, refused: refused,
		ifMatch: r.Header.Get("If-Match"), ifNoneMatch: r.Header.Get("If-None-Match")}
	r.Header.Del("If-None-Match") // applied here, to the S3 ETag
	s.fake.ServeHTTP(rw, r)
	rw.decide(http.StatusOK) // a HEAD answered 200 without writing
}

// serveObjectWrite runs a PutObject, CopyObject, DeleteObject or
// DeleteObjects that succeeds or fails as gofakes3 decides, and drops the
// multipart ETags of the keys it replaced or deleted.
func (s *Server) serveObjectWrite(w http.ResponseWriter, r *http.Request, o operation, keys []string) {
	defer s.keyLocks.lock(o.bucket, keys...)()
	hw := &hookWriter{w: w, hook: func(code int) {
		if code/100 != 2 {
			return
		}
		for _, k := range keys {
			if o.name == "DeleteObjects" {
				// Some keys of a batch may have failed and still be there.
				obj, err := s.backend.HeadObject(o.bucket, k)
				if err == nil {
					obj.Contents.Close()
					continue
				}
			}
			s.mpETags.forget(objectRef{o.bucket, k})
		}
	}}
	s.fake.ServeHTTP(hw, r)
	hw.fire(http.StatusOK)
}

// contentMD5 is the MD5 gofakes3 sends as ETag for bucket/key, "" if the
// object cannot be read.
func (s *Server) contentMD5(bucket, key string) string {
	obj, err := s.backend.HeadObject(bucket, key)
	if err != nil {
		return ""
	}
	obj.Contents.Close()
	return hex.EncodeToString(obj.Hash)
}
