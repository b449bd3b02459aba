package s3emu

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// minPartSize is the least S3 accepts for any part of a multipart upload
// but the last.
const minPartSize = 5 << 20

// gofakes3 v1.2.0 completes a multipart upload whatever the size of its
// parts, and its part order check sorts the list before checking it. S3
// refuses both, and a client that cuts parts too small or lists them out
// of order works against gofakes3 and fails against S3. So the emulator
// keeps, for each upload gofakes3 knows, the size and ETag of its parts,
// and checks a completion the way S3 does before gofakes3 sees it.
type uploads struct {
	mu sync.Mutex
	m  map[string]*upload // by upload id; gofakes3's ids are unique per server
}

type upload struct {
	bucket, key string
	parts       map[int]part
}

type part struct {
	size int64
	etag string // unquoted
}

func (u *uploads) add(id, bucket, key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]*upload{}
	}
	u.m[id] = &upload{bucket: bucket, key: key, parts: map[int]part{}}
}

// addPart records a part gofakes3 stored, replacing one with its number.
func (u *uploads) addPart(id, bucket, key string, number int, p part) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.m[id]; ok && up.bucket == bucket && up.key == key {
		up.parts[number] = p
	}
}

func (u *uploads) remove(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, id)
}

// completedPart is one <Part> of a CompleteMultipartUpload body.
type completedPart struct {
	PartNumber int    `xml:"PartNumber"`
	ETag       string `xml:"ETag"`
}

// checkComplete refuses a CompleteMultipartUpload as S3 would: no parts,
// parts not in strictly ascending order, a part not uploaded or with
// another ETag, a part other than the last under 5 MiB. An upload the
// emulator does not know, or a body it cannot read, is left to gofakes3
// (NoSuchUpload, MalformedXML). The body is put back for gofakes3.
func (s *Server) checkComplete(r *http.Request, o operation) *apiError {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return errIncompleteBody()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var doc struct {
		Parts []completedPart `xml:"Part"`
	}
	if xml.Unmarshal(body, &doc) != nil {
		return nil
	}

	s.uploads.mu.Lock()
	defer s.uploads.mu.Unlock()
	up, ok := s.uploads.m[r.URL.Query().Get("uploadId")]
	if !ok || up.bucket != o.bucket || up.key != o.key {
		return nil
	}
	if len(doc.Parts) == 0 {
		return errMalformedXML()
	}
	for i := 1; i < len(doc.Parts); i++ {
		if doc.Parts[i].PartNumber <= doc.Parts[i-1].PartNumber {
			return errInvalidPartOrder()
		}
	}
	for _, c := range doc.Parts {
		if p, ok := up.parts[c.PartNumber]; !ok || p.etag != strings.Trim(c.ETag, `"`) {
			return errInvalidPart()
		}
	}
	for _, c := range doc.Parts[:len(doc.Parts)-1] {
		if up.parts[c.PartNumber].size < minPartSize {
			return errEntityTooSmall()
		}
	}
	return nil
}

// serveMultipart runs CreateMultipartUpload, UploadPart,
// AbortMultipartUpload and CompleteMultipartUpload through gofakes3 and
// keeps uploads, and for a completion mpETags, in step with it.
func (s *Server) serveMultipart(w http.ResponseWriter, r *http.Request, o operation) {
	id := r.URL.Query().Get("uploadId")
	switch o.name {
	case "CreateMultipartUpload":
		bw := &bufferedWriter{w: w}
		s.fake.ServeHTTP(bw, r)
		var res struct {
			UploadID string `xml:"UploadId"`
		}
		if bw.code() == http.StatusOK && xml.Unmarshal(bw.body.Bytes(), &res) == nil && res.UploadID != "" {
			s.uploads.add(res.UploadID, o.bucket, o.key)
		}
		bw.send(bw.body.Bytes())

	case "UploadPart":
		number, _ := strconv.Atoi(r.URL.Query().Get("partNumber"))
		size := r.ContentLength // the decoded body, see readBody
		hw := &hookWriter{w: w, hook: func(code int) {
			if etag := w.Header().Get("ETag"); code == http.StatusOK && etag != "" {
				s.uploads.addPart(id, o.bucket, o.key, number, part{size: size, etag: strings.Trim(etag, `"`)})
			}
		}}
		s.fake.ServeHTTP(hw, r)
		hw.fire(http.StatusOK)

	case "AbortMultipartUpload":
		hw := &hookWriter{w: w, hook: func(code int) {
			if code/100 == 2 {
				s.uploads.remove(id)
			}
		}}
		s.fake.ServeHTTP(hw, r)
		hw.fire(http.StatusOK)

	case "CompleteMultipartUpload":
		defer s.keyLocks.lock(o.bucket, o.key)()
		bw := &bufferedWriter{w: w}
		s.fake.ServeHTTP(bw, r)
		if bw.code() == http.StatusOK {
			ref := objectRef{o.bucket, o.key}
			s.mpETags.forget(ref)
			var res struct {
				ETag string `xml:"ETag"`
			}
			if xml.Unmarshal(bw.body.Bytes(), &res) == nil && res.ETag != "" {
				if md5 := s.contentMD5(o.bucket, o.key); md5 != "" {
					s.mpETags.set(ref, mpETag{contentMD5: md5, etag: res.ETag})
				}
			}
			s.uploads.remove(id)
		}
		bw.send(bw.body.Bytes())
	}
}
