package s3emu

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// The examples of AWS's SigV4 documentation for S3, replayed against the
// verifier: a pass means the canonicalization matches S3's, not merely
// itself.
const (
	exampleKey    = "AKIAIOSFODNN7EXAMPLE"
	exampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	exampleDate   = "20130524T000000Z"
	exampleScope  = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
)

var exampleTime = time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC)

// exampleServer verifies with the example key at the example's time.
func exampleServer(t *testing.T, at time.Time) *Server {
	t.Helper()
	s, err := New(Options{Backend: s3mem.New(), AdminAccessKeyID: exampleKey, AdminSecretAccessKey: exampleSecret})
	if err != nil {
		t.Fatal(err)
	}
	s.wallNow = func() time.Time { return at }
	return s
}

func exampleRequest(method, target, host string, body []byte, headers map[string]string) *http.Request {
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	r.Host = host
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func authHeader(signed, sig string) string {
	return "AWS4-HMAC-SHA256 Credential=" + exampleScope + ",SignedHeaders=" + signed + ",Signature=" + sig
}

func TestSignatureVectors(t *testing.T) {
	welcome := []byte("Welcome to Amazon S3.")
	welcomeSHA := "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
	presignQuery := "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request" +
		"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host" +
		"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
	cases := []struct {
		name string
		req  func() *http.Request
		at   time.Time
		code string
	}{
		{"GET object with range", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"Range": "bytes=0-9", "X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": authHeader("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
			})
		}, exampleTime, ""},
		{"GET object with a changed range", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"Range": "bytes=0-99", "X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": authHeader("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
			})
		}, exampleTime, "SignatureDoesNotMatch"},
		{"PUT object with an escaped key", func() *http.Request {
			return exampleRequest("PUT", "/test%24file.text", "examplebucket.s3.amazonaws.com", welcome, map[string]string{
				"Date": "Fri, 24 May 2013 00:00:00 GMT", "X-Amz-Date": exampleDate, "X-Amz-Storage-Class": "REDUCED_REDUNDANCY",
				"X-Amz-Content-Sha256": welcomeSHA,
				"Authorization":        authHeader("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class", "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
			})
		}, exampleTime, ""},
		{"list objects", func() *http.Request {
			return exampleRequest("GET", "/?max-keys=2&prefix=J", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": authHeader("host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
			})
		}, exampleTime, ""},
		{"list objects, query reordered", func() *http.Request {
			return exampleRequest("GET", "/?prefix=J&max-keys=2", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": authHeader("host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
			})
		}, exampleTime, ""},
		{"bucket lifecycle: a query key without value", func() *http.Request {
			return exampleRequest("GET", "/?lifecycle", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": authHeader("host;x-amz-content-sha256;x-amz-date", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
			})
		}, exampleTime, ""},
		{"presigned GET", func() *http.Request {
			return exampleRequest("GET", "/test.txt?"+presignQuery, "examplebucket.s3.amazonaws.com", nil, nil)
		}, exampleTime.Add(time.Hour), ""},
		{"presigned GET after its expiry", func() *http.Request {
			return exampleRequest("GET", "/test.txt?"+presignQuery, "examplebucket.s3.amazonaws.com", nil, nil)
		}, exampleTime.Add(24*time.Hour + time.Second), "AccessDenied"},
		{"presigned GET on another host", func() *http.Request {
			return exampleRequest("GET", "/test.txt?"+presignQuery, "otherbucket.s3.amazonaws.com", nil, nil)
		}, exampleTime, "SignatureDoesNotMatch"},
		{"clock skew", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"Range": "bytes=0-9", "X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": authHeader("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
			})
		}, exampleTime.Add(16 * time.Minute), "RequestTimeTooSkewed"},
		{"an unsigned x-amz header", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"Range": "bytes=0-9", "X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate, "X-Amz-Acl": "public-read",
				"Authorization": authHeader("host;range;x-amz-content-sha256;x-amz-date", "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
			})
		}, exampleTime, "AccessDenied"},
		{"no x-amz-content-sha256", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"X-Amz-Date": exampleDate, "Authorization": authHeader("host;x-amz-date", strings.Repeat("0", 64)),
			})
		}, exampleTime, "InvalidRequest"},
		{"signature version 2", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{"Authorization": "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="})
		}, exampleTime, "InvalidRequest"},
		{"malformed credential", func() *http.Request {
			return exampleRequest("GET", "/test.txt", "examplebucket.s3.amazonaws.com", nil, map[string]string{
				"X-Amz-Content-Sha256": emptySHA256, "X-Amz-Date": exampleDate,
				"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1,SignedHeaders=host,Signature=00",
			})
		}, exampleTime, "AuthorizationHeaderMalformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := exampleServer(t, tc.at)
			r := tc.req()
			sr, aerr := s.authenticate(r)
			code := ""
			if aerr != nil {
				code = aerr.code
			}
			if code != tc.code {
				t.Fatalf("code %q (%v), want %q", code, aerr, tc.code)
			}
			if code == "" && r.Method == "PUT" {
				sp, aerr := readBody(r, sr)
				if aerr != nil {
					t.Fatalf("body: %v", aerr)
				}
				defer sp.Close()
				if b, _ := io.ReadAll(r.Body); !bytes.Equal(b, welcome) {
					t.Fatalf("body %q", b)
				}
			}
		})
	}
}

// streamingRequest is AWS's example of a signed chunked upload: 66560
// bytes of 'a' in chunks of 65536 and 1024 and the final empty one.
func streamingRequest(corrupt bool) *http.Request {
	var body bytes.Buffer
	for _, c := range []struct {
		size int
		sig  string
	}{
		{65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"},
		{1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"},
		{0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"},
	} {
		data := bytes.Repeat([]byte("a"), c.size)
		if corrupt && c.size == 1024 {
			data[100] = 'b'
		}
		fmt.Fprintf(&body, "%x;chunk-signature=%s\r\n%s\r\n", c.size, c.sig, data)
	}
	return exampleRequest("PUT", "/examplebucket/chunkObject.txt", "s3.amazonaws.com", body.Bytes(), map[string]string{
		"Content-Encoding": "aws-chunked", "Content-Length": strconv.Itoa(body.Len()), "X-Amz-Content-Sha256": streamingSigned,
		"X-Amz-Date": exampleDate, "X-Amz-Decoded-Content-Length": "66560", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY",
		"Authorization": authHeader("content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
			"4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"),
	})
}

func TestSignedChunksVector(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		s := exampleServer(t, exampleTime)
		r := streamingRequest(corrupt)
		if r.ContentLength != 66824 {
			t.Fatalf("example body is %d bytes, AWS says 66824", r.ContentLength)
		}
		sr, aerr := s.authenticate(r)
		if aerr != nil {
			t.Fatalf("seed signature: %v", aerr)
		}
		sp, aerr := readBody(r, sr)
		if corrupt {
			if aerr == nil || aerr.code != "SignatureDoesNotMatch" {
				t.Fatalf("corrupted chunk: %v, want SignatureDoesNotMatch", aerr)
			}
			continue
		}
		if aerr != nil {
			t.Fatalf("chunks: %v", aerr)
		}
		b, _ := io.ReadAll(r.Body)
		sp.Close()
		if !bytes.Equal(b, bytes.Repeat([]byte("a"), 66560)) || r.ContentLength != 66560 || r.Header.Get("Content-Encoding") != "" {
			t.Fatalf("decoded %d bytes, ContentLength %d, Content-Encoding %q", len(b), r.ContentLength, r.Header.Get("Content-Encoding"))
		}
	}
}

// chunkedBody frames payload as aws-chunked in chunks of size, signing the
// chunks and the trailer when sr is not nil.
func chunkedBody(payload []byte, size int, sr *signedRequest, trailers ...string) []byte {
	var b bytes.Buffer
	prev := ""
	if sr != nil {
		prev = sr.signature
	}
	emit := func(data []byte) {
		if sr == nil {
			fmt.Fprintf(&b, "%x\r\n", len(data))
		} else {
			sum := sha256.Sum256(data)
			prev = hmacHex(sr.signingKey, "AWS4-HMAC-SHA256-PAYLOAD\n"+sr.amzDate+"\n"+sr.scope+"\n"+prev+"\n"+emptySHA256+"\n"+hex.EncodeToString(sum[:]))
			fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", len(data), prev)
		}
		b.Write(data)
		if len(data) > 0 {
			b.WriteString("\r\n")
		}
	}
	for len(payload) > 0 {
		n := min(size, len(payload))
		emit(payload[:n])
		payload = payload[n:]
	}
	emit(nil)
	var canonical string
	for _, tr := range trailers {
		b.WriteString(tr + "\r\n")
		canonical += tr + "\n"
	}
	if sr != nil && len(trailers) > 0 {
		sum := sha256.Sum256([]byte(canonical))
		sig := hmacHex(sr.signingKey, "AWS4-HMAC-SHA256-TRAILER\n"+sr.amzDate+"\n"+sr.scope+"\n"+prev+"\n"+hex.EncodeToString(sum[:]))
		b.WriteString("x-amz-trailer-signature:" + sig + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func crc32b64(b []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b)))
}

func TestChunkedBodies(t *testing.T) {
	payload := randomBytes(200_000, 5)
	good := "x-amz-checksum-crc32:" + crc32b64(payload)
	bad := "x-amz-checksum-crc32:" + crc32b64(payload[1:])
	sr := &signedRequest{amzDate: exampleDate, scope: "20130524/us-east-1/s3/aws4_request",
		signingKey: signingKey(exampleSecret, "20130524", "us-east-1"), signature: strings.Repeat("ab", 32)}
	cases := []struct {
		name    string
		mode    string
		body    []byte
		trailer string
		decoded int
		code    string
	}{
		{"unsigned with trailer", streamingUnsignedTrailer, chunkedBody(payload, 65536, nil, good), "x-amz-checksum-crc32", len(payload), ""},
		{"unsigned, one chunk (the Go SDK)", streamingUnsignedTrailer, chunkedBody(payload, len(payload), nil, good), "x-amz-checksum-crc32", len(payload), ""},
		{"unsigned, wrong checksum", streamingUnsignedTrailer, chunkedBody(payload, 65536, nil, bad), "x-amz-checksum-crc32", len(payload), "BadDigest"},
		{"unsigned, trailer announced, not sent", streamingUnsignedTrailer, chunkedBody(payload, 65536, nil), "x-amz-checksum-crc32", len(payload), "InvalidRequest"},
		{"unsigned, decoded length disagrees", streamingUnsignedTrailer, chunkedBody(payload, 65536, nil, good), "x-amz-checksum-crc32", len(payload) + 1, "IncompleteBody"},
		{"unsigned, cut short", streamingUnsignedTrailer, chunkedBody(payload, 65536, nil, good)[:100_000], "x-amz-checksum-crc32", len(payload), "IncompleteBody"},
		{"signed chunks", streamingSigned, chunkedBody(payload, 65536, sr), "", len(payload), ""},
		{"signed chunks and trailer", streamingSignedTrailer, chunkedBody(payload, 65536, sr, good), "x-amz-checksum-crc32", len(payload), ""},
		{"signed trailer, changed after signing", streamingSignedTrailer, bytes.Replace(chunkedBody(payload, 65536, sr, good), []byte(good), []byte(bad), 1), "x-amz-checksum-crc32", len(payload), "SignatureDoesNotMatch"},
		{"signed chunks sent unsigned", streamingSigned, chunkedBody(payload, 65536, nil), "", len(payload), "SignatureDoesNotMatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/b/k", bytes.NewReader(tc.body))
			r.Header.Set("Content-Encoding", "aws-chunked")
			r.Header.Set("X-Amz-Decoded-Content-Length", strconv.Itoa(tc.decoded))
			if tc.trailer != "" {
				r.Header.Set("X-Amz-Trailer", tc.trailer)
			}
			req := *sr
			req.payloadHash = tc.mode
			sp, aerr := readBody(r, &req)
			defer sp.Close()
			code := ""
			if aerr != nil {
				code = aerr.code
			}
			if code != tc.code {
				t.Fatalf("code %q (%v), want %q", code, aerr, tc.code)
			}
			if code == "" {
				if b, _ := io.ReadAll(r.Body); !bytes.Equal(b, payload) || r.Header.Get("Content-Length") != strconv.Itoa(len(payload)) {
					t.Fatalf("decoded %d bytes, Content-Length %s", len(b), r.Header.Get("Content-Length"))
				}
			}
		})
	}
}

func TestPlainBodies(t *testing.T) {
	payload := []byte("hello, world")
	sum := sha256.Sum256(payload)
	cases := []struct {
		name    string
		hash    string
		headers map[string]string
		body    []byte
		code    string
	}{
		{"sha256 matches", hex.EncodeToString(sum[:]), nil, payload, ""},
		{"sha256 differs", hex.EncodeToString(sum[:]), nil, []byte("hello, World"), "XAmzContentSHA256Mismatch"},
		{"unsigned payload", unsignedPayload, nil, payload, ""},
		{"crc32 header matches", unsignedPayload, map[string]string{"X-Amz-Checksum-Crc32": crc32b64(payload)}, payload, ""},
		{"crc32 header differs", unsignedPayload, map[string]string{"X-Amz-Checksum-Crc32": crc32b64([]byte("x"))}, payload, "BadDigest"},
		{"empty body, empty hash", emptySHA256, nil, nil, ""},
		{"empty body, other hash", hex.EncodeToString(sum[:]), nil, nil, "XAmzContentSHA256Mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/b/k", bytes.NewReader(tc.body))
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			sp, aerr := readBody(r, &signedRequest{payloadHash: tc.hash})
			defer sp.Close()
			if code := codeOf(aerr); code != tc.code {
				t.Fatalf("code %q, want %q", code, tc.code)
			}
		})
	}
}

func codeOf(e *apiError) string {
	if e == nil {
		return ""
	}
	return e.code
}

// The check values of the CRC catalogue, for the algorithms the standard
// library builds from parameters.
func TestChecksumCheckValues(t *testing.T) {
	for name, want := range map[string]string{
		"crc32":     "cbf43926",
		"crc32c":    "e3069283",
		"crc64nvme": "ae8b14860a799888",
	} {
		h := newChecksum(name)
		h.Write([]byte("123456789"))
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if newChecksum("xxhash64") != nil {
		t.Error("an unknown algorithm got a hash")
	}
}

func TestSpoolMovesToDisk(t *testing.T) {
	sp := &spool{}
	data := randomBytes(spoolMemLimit+1000, 8)
	for i := 0; i < len(data); i += 100_000 {
		if _, err := sp.Write(data[i:min(i+100_000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if sp.file == nil {
		t.Fatal("a body beyond the memory limit stayed in memory")
	}
	name := sp.file.Name()
	r, err := sp.reader()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); !bytes.Equal(b, data) {
		t.Fatal("spooled bytes differ")
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temp file left behind: %v", err)
	}
}
