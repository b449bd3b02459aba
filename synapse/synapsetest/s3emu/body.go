package s3emu

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Request bodies are read, decoded and verified in full before gofakes3
// sees them, because:
//   - gofakes3 cannot store aws-chunked bodies (the SDK's default
//     STREAMING-UNSIGNED-PAYLOAD-TRAILER over TLS, signed chunks from other
//     clients): it would store the framing;
//   - S3 checks x-amz-content-sha256, chunk signatures and x-amz-checksum-*
//     and stores nothing when they fail, while a gofakes3 backend may keep
//     a partial object when its reader fails half way.
// The spool lives in memory up to spoolMemLimit, in a temp file beyond.

const spoolMemLimit = 8 << 20

// errSpool marks failures of the local disk, as opposed to the client's.
var errSpool = errors.New("s3emu: spool request body")

// spool holds a decoded request body.
type spool struct {
	buf  bytes.Buffer
	file *os.File
	size int64
}

func (sp *spool) Write(p []byte) (int, error) {
	if sp.file == nil && sp.buf.Len()+len(p) > spoolMemLimit {
		f, err := os.CreateTemp("", "s3emu-body-*")
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		if _, err := f.Write(sp.buf.Bytes()); err != nil {
			f.Close()
			os.Remove(f.Name())
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		sp.file = f
		sp.buf = bytes.Buffer{}
	}
	var n int
	var err error
	if sp.file != nil {
		n, err = sp.file.Write(p)
		if err != nil {
			err = fmt.Errorf("%w: %w", errSpool, err)
		}
	} else {
		n, _ = sp.buf.Write(p)
	}
	sp.size += int64(n)
	return n, err
}

// reader rewinds the spool and reads it from the start.
func (sp *spool) reader() (io.Reader, error) {
	if sp.file == nil {
		return bytes.NewReader(sp.buf.Bytes()), nil
	}
	if _, err := sp.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("s3emu: rewind spooled body: %w", err)
	}
	return sp.file, nil
}

// Close removes the temp file, if any.
func (sp *spool) Close() error {
	if sp == nil || sp.file == nil {
		return nil
	}
	name := sp.file.Name()
	err := sp.file.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}

// crc64NVME is the reversed NVMe polynomial, as crc64.MakeTable wants it.
const crc64NVME = 0x9a6c9329ac4bc9b5

// newChecksum returns the hash behind an x-amz-checksum-<name> header, or
// nil for algorithms the standard library lacks (the xxhash family): their
// values are accepted unchecked.
func newChecksum(name string) hash.Hash {
	switch name {
	case "crc32":
		return crc32.NewIEEE()
	case "crc32c":
		return crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "crc64nvme":
		return crc64.New(crc64.MakeTable(crc64NVME))
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	case "md5":
		return md5.New()
	}
	return nil
}

// checksum is one x-amz-checksum-* value to verify.
type checksum struct {
	name string // "crc32", ...
	h    hash.Hash
	want string // base64; from the header, or from the trailer when sent last
}

// bodyDecoder reads one request body into a spool, checking everything
// the request promised about it.
type bodyDecoder struct {
	sr        *signedRequest
	sha       hash.Hash // set when x-amz-content-sha256 is a digest
	checksums []*checksum
	// trailer is the x-amz-checksum-* header announced in x-amz-trailer.
	trailer string
}

// readBody replaces r.Body with its decoded, verified bytes and fixes the
// headers gofakes3 reads (Content-Length, Content-Encoding). The caller
// closes the returned spool after the request.
func readBody(r *http.Request, sr *signedRequest) (*spool, *apiError) {
	d := &bodyDecoder{sr: sr}
	if sum, err := hex.DecodeString(sr.payloadHash); err == nil && len(sum) == sha256.Size {
		d.sha = sha256.New()
	}
	for name, vals := range r.Header {
		lname := strings.ToLower(name)
		algo, ok := strings.CutPrefix(lname, "x-amz-checksum-")
		if !ok || algo == "algorithm" || algo == "type" || algo == "mode" {
			continue
		}
		if h := newChecksum(algo); h != nil {
			d.checksums = append(d.checksums, &checksum{name: algo, h: h, want: vals[0]})
		}
	}
	chunked := strings.HasPrefix(sr.payloadHash, "STREAMING-") || slices.Contains(contentEncodings(r), "aws-chunked")
	if chunked {
		d.trailer = strings.ToLower(strings.TrimSpace(r.Header.Get("X-Amz-Trailer")))
		if algo, ok := strings.CutPrefix(d.trailer, "x-amz-checksum-"); ok {
			if h := newChecksum(algo); h != nil {
				d.checksums = append(d.checksums, &checksum{name: algo, h: h})
			}
		}
	} else if r.ContentLength == 0 {
		if d.sha != nil && sr.payloadHash != emptySHA256 {
			return nil, errSHA256Mismatch()
		}
		return nil, nil
	}

	sp := &spool{}
	sinks := []io.Writer{sp}
	if d.sha != nil {
		sinks = append(sinks, d.sha)
	}
	for _, c := range d.checksums {
		sinks = append(sinks, c.h)
	}
	dst := io.MultiWriter(sinks...)

	var aerr *apiError
	if chunked {
		decoded, err := strconv.ParseInt(r.Header.Get("X-Amz-Decoded-Content-Length"), 10, 64)
		if err != nil || decoded < 0 {
			sp.Close()
			return nil, newError(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
		}
		aerr = d.decodeChunked(bufio.NewReaderSize(r.Body, 64<<10), dst)
		if aerr == nil && sp.size != decoded {
			aerr = errIncompleteBody()
		}
	} else if _, err := io.Copy(dst, r.Body); err != nil {
		aerr = errIncompleteBody()
		if errors.Is(err, errSpool) {
			aerr = errInternal()
		}
	}
	if aerr == nil {
		aerr = d.verify()
	}
	if aerr != nil {
		sp.Close()
		return nil, aerr
	}

	body, err := sp.reader()
	if err != nil {
		sp.Close()
		return nil, errInternal()
	}
	r.Body = io.NopCloser(body)
	r.ContentLength = sp.size
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.FormatInt(sp.size, 10))
	if chunked {
		enc := slices.DeleteFunc(contentEncodings(r), func(e string) bool { return e == "aws-chunked" })
		if len(enc) == 0 {
			r.Header.Del("Content-Encoding")
		} else {
			r.Header.Set("Content-Encoding", strings.Join(enc, ","))
		}
	}
	return sp, nil
}

func contentEncodings(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Content-Encoding") {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, strings.ToLower(e))
			}
		}
	}
	return out
}

// verify compares what was read with what the request promised.
func (d *bodyDecoder) verify() *apiError {
	if d.sha != nil && hex.EncodeToString(d.sha.Sum(nil)) != d.sr.payloadHash {
		return errSHA256Mismatch()
	}
	for _, c := range d.checksums {
		if c.want == "" {
			return errInvalidRequest("x-amz-trailer was announced but not sent: x-amz-checksum-" + c.name)
		}
		if base64.StdEncoding.EncodeToString(c.h.Sum(nil)) != c.want {
			return errBadDigest(strings.ToUpper(c.name))
		}
	}
	return nil
}

// maxChunkLine bounds a chunk header or trailer line: a size, a signature
// and a trailer fit comfortably.
const maxChunkLine = 4096

// decodeChunked copies the payload of an aws-chunked body to dst:
//
//	<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//	[<trailer>:<value>\r\n ...][x-amz-trailer-signature:<sig>\r\n]\r\n
//
// Signed chunks chain from the request signature, each over the SHA-256 of
// its data; a signed trailer is signed over its canonical lines.
func (d *bodyDecoder) decodeChunked(br *bufio.Reader, dst io.Writer) *apiError {
	signed := d.sr.payloadHash == streamingSigned || d.sr.payloadHash == streamingSignedTrailer
	prev := d.sr.signature
	for {
		line, err := readLine(br)
		if err != nil {
			return errIncompleteBody()
		}
		sizeHex, ext, _ := strings.Cut(line, ";")
		size, err := strconv.ParseInt(strings.TrimSpace(sizeHex), 16, 64)
		if err != nil || size < 0 {
			return errIncompleteBody()
		}
		chunkHash := sha256.New()
		if _, err := io.CopyN(io.MultiWriter(dst, chunkHash), br, size); err != nil {
			if errors.Is(err, errSpool) {
				return errInternal()
			}
			return errIncompleteBody()
		}
		if signed {
			sig, ok := strings.CutPrefix(strings.TrimSpace(ext), "chunk-signature=")
			want := hmacHex(d.sr.signingKey, "AWS4-HMAC-SHA256-PAYLOAD\n"+d.sr.amzDate+"\n"+d.sr.scope+"\n"+prev+"\n"+emptySHA256+"\n"+hex.EncodeToString(chunkHash.Sum(nil)))
			if !ok || !hmac.Equal([]byte(want), []byte(strings.ToLower(sig))) {
				return errSignatureDoesNotMatch()
			}
			prev = want
		}
		if size == 0 {
			break
		}
		if crlf, err := readLine(br); err != nil || crlf != "" {
			return errIncompleteBody()
		}
	}
	return d.readTrailers(br, signed, prev)
}

// readTrailers reads what follows the last chunk up to the empty line.
func (d *bodyDecoder) readTrailers(br *bufio.Reader, signed bool, prev string) *apiError {
	var canonical strings.Builder
	var trailerSig string
	for {
		line, err := readLine(br)
		if err == io.EOF && line == "" {
			break // some clients end without the final CRLF
		}
		if err != nil {
			return errIncompleteBody()
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return errIncompleteBody()
		}
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if name == "x-amz-trailer-signature" {
			trailerSig = value
			continue
		}
		canonical.WriteString(name + ":" + value + "\n")
		if name == d.trailer {
			algo := strings.TrimPrefix(name, "x-amz-checksum-")
			for _, c := range d.checksums {
				if c.name == algo && c.want == "" {
					c.want = value
				}
			}
		}
	}
	if signed && d.sr.payloadHash == streamingSignedTrailer {
		sum := sha256.Sum256([]byte(canonical.String()))
		want := hmacHex(d.sr.signingKey, "AWS4-HMAC-SHA256-TRAILER\n"+d.sr.amzDate+"\n"+d.sr.scope+"\n"+prev+"\n"+hex.EncodeToString(sum[:]))
		if !hmac.Equal([]byte(want), []byte(strings.ToLower(trailerSig))) {
			return errSignatureDoesNotMatch()
		}
	}
	return nil
}

// readLine reads one CRLF- (or LF-) terminated line without its ending.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		part, err := br.ReadSlice('\n')
		b = append(b, part...)
		if len(b) > maxChunkLine {
			return "", errors.New("s3emu: aws-chunked line too long")
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return string(b), err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
}
