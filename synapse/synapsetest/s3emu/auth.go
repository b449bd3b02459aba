package s3emu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	sigAlgorithm    = "AWS4-HMAC-SHA256"
	amzDateFormat   = "20060102T150405Z"
	emptySHA256     = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	// Payload hashes that announce an aws-chunked body.
	streamingSigned          = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTrailer   = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

	maxClockSkew   = 15 * time.Minute
	maxPresignLife = 7 * 24 * time.Hour
)

// signedRequest is what authentication established: who signed, and what
// a streamed body must be checked against.
type signedRequest struct {
	accessKeyID string
	grant       *Grant // nil for the admin key
	payloadHash string // the x-amz-content-sha256 the signature covers
	amzDate     string
	scope       string
	signingKey  []byte
	signature   string // seed of the chunk signature chain
}

// authenticate checks the SigV4 signature of r (Authorization header or
// presigned query) and the session token and expiry of vended keys.
func (s *Server) authenticate(r *http.Request) (*signedRequest, *apiError) {
	authz := r.Header.Get("Authorization")
	q := r.URL.Query()
	presigned := q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential")
	switch {
	case authz != "" && presigned:
		return nil, errInvalidArgument("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified")
	case authz == "" && !presigned:
		if q.Has("AWSAccessKeyId") || q.Has("Signature") {
			return nil, errInvalidRequest("The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.")
		}
		return nil, errAccessDenied() // anonymous: the buckets are private
	}

	var (
		credential, signedHeaders, signature, amzDate, payloadHash string
		expires                                                    time.Duration
	)
	if presigned {
		if q.Get("X-Amz-Algorithm") != sigAlgorithm {
			return nil, errQueryAuth("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
		}
		credential, signedHeaders = q.Get("X-Amz-Credential"), q.Get("X-Amz-SignedHeaders")
		signature, amzDate = q.Get("X-Amz-Signature"), q.Get("X-Amz-Date")
		secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
		if credential == "" || signedHeaders == "" || signature == "" || amzDate == "" || err != nil {
			return nil, errQueryAuth("Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
		}
		expires = time.Duration(secs) * time.Second
		if expires <= 0 || expires > maxPresignLife {
			return nil, errQueryAuth("X-Amz-Expires must be less than a week (in seconds) that is 604800")
		}
		payloadHash = q.Get("X-Amz-Content-Sha256")
		if payloadHash == "" {
			payloadHash = unsignedPayload
		}
	} else {
		alg, rest, _ := strings.Cut(authz, " ")
		if alg != sigAlgorithm {
			if alg == "AWS" {
				return nil, errInvalidRequest("The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.")
			}
			return nil, errInvalidArgument("Unsupported Authorization Type")
		}
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
			switch k {
			case "Credential":
				credential = v
			case "SignedHeaders":
				signedHeaders = v
			case "Signature":
				signature = v
			}
		}
		if credential == "" || signedHeaders == "" || signature == "" {
			return nil, errMalformedAuth("it must contain Credential, SignedHeaders and Signature.")
		}
		amzDate = r.Header.Get("X-Amz-Date")
		if amzDate == "" {
			if t, err := http.ParseTime(r.Header.Get("Date")); err == nil {
				amzDate = t.UTC().Format(amzDateFormat)
			}
		}
		payloadHash = r.Header.Get("X-Amz-Content-Sha256")
		if payloadHash == "" {
			return nil, errInvalidRequest("Missing required header for this request: x-amz-content-sha256")
		}
	}

	if !validPayloadHash(payloadHash) {
		return nil, errInvalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, or a valid sha256 value.")
	}
	signedAt, err := time.Parse(amzDateFormat, amzDate)
	if err != nil {
		return nil, newError(403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
	}

	parts := strings.Split(credential, "/")
	if len(parts) != 5 || parts[3] != "s3" || parts[4] != "aws4_request" {
		return nil, errMalformedAuth("the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
	}
	akid, date, region := parts[0], parts[1], parts[2]
	if date != amzDate[:8] {
		return nil, errMalformedAuth("Invalid credential date. Date is not the same as X-Amz-Date: \"" + date + "\".")
	}
	if region != s.region {
		e := errMalformedAuth("the region '" + region + "' is wrong; expecting '" + s.region + "'")
		e.region = s.region
		return nil, e
	}

	secret, token, grant, ok := s.lookupKey(akid)
	if !ok {
		return nil, errInvalidAccessKeyID()
	}

	scope := date + "/" + region + "/s3/aws4_request"
	key := signingKey(secret, date, region)
	canonical := canonicalRequest(r, signedHeaders, payloadHash, presigned)
	want := hmacHex(key, stringToSign(amzDate, scope, canonical))
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(signature))) {
		s.log.Debug("signature mismatch", "accessKeyId", akid, "canonicalRequest", redactToken(canonical))
		return nil, errSignatureDoesNotMatch()
	}

	if grant != nil {
		got := r.Header.Get("X-Amz-Security-Token")
		if presigned {
			got = q.Get("X-Amz-Security-Token")
		}
		if !hmac.Equal([]byte(got), []byte(token)) {
			return nil, errInvalidToken()
		}
		if !grant.Expiration.IsZero() && !s.now().Before(grant.Expiration) {
			return nil, errExpiredToken()
		}
	}

	// Clock checks use the wall clock, as the client's signature does;
	// Options.Now drives only credential expiry.
	wall := s.wallNow()
	if presigned {
		if wall.After(signedAt.Add(expires)) {
			return nil, newError(403, "AccessDenied", "Request has expired")
		}
	} else if d := wall.Sub(signedAt); d > maxClockSkew || d < -maxClockSkew {
		return nil, newError(403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.")
	}

	if !presigned {
		// S3 refuses x-amz-* headers the signature does not cover: they
		// could otherwise be changed in flight.
		signed := strings.Split(signedHeaders, ";")
		for name := range r.Header {
			lname := strings.ToLower(name)
			if strings.HasPrefix(lname, "x-amz-") && !slices.Contains(signed, lname) {
				return nil, newError(403, "AccessDenied", "There were headers present in the request which were not signed")
			}
		}
	}

	return &signedRequest{
		accessKeyID: akid,
		grant:       grant,
		payloadHash: payloadHash,
		amzDate:     amzDate,
		scope:       scope,
		signingKey:  key,
		signature:   strings.ToLower(signature),
	}, nil
}

func validPayloadHash(h string) bool {
	switch h {
	case unsignedPayload, streamingSigned, streamingSignedTrailer, streamingUnsignedTrailer:
		return true
	}
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func signingKey(secret, date, region string) []byte {
	k := hmacSum([]byte("AWS4"+secret), date)
	k = hmacSum(k, region)
	k = hmacSum(k, "s3")
	return hmacSum(k, "aws4_request")
}

func stringToSign(amzDate, scope, canonicalRequest string) string {
	sum := sha256.Sum256([]byte(canonicalRequest))
	return sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

func hmacSum(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func hmacHex(key []byte, data string) string { return hex.EncodeToString(hmacSum(key, data)) }

// canonicalRequest builds SigV4's canonical request the way S3 does: the
// path exactly as sent (S3 signs the once-encoded path, never re-encoded),
// the query decoded, re-encoded per RFC 3986 and sorted.
func canonicalRequest(r *http.Request, signedHeaders, payloadHash string, presigned bool) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	b.WriteString(rawPath(r))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(r.URL.RawQuery, presigned))
	b.WriteByte('\n')
	for _, name := range strings.Split(signedHeaders, ";") {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(headerValue(r, name))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(signedHeaders)
	b.WriteByte('\n')
	b.WriteString(payloadHash)
	return b.String()
}

// rawPath is the request path as the client sent it, before Go decoded it.
func rawPath(r *http.Request) string {
	p := r.RequestURI
	if p == "" || p == "*" {
		p = r.URL.EscapedPath()
	} else if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		if u, err := url.Parse(p); err == nil {
			p = u.EscapedPath()
		}
	}
	if p == "" {
		return "/"
	}
	return p
}

func canonicalQuery(raw string, presigned bool) string {
	type pair struct{ k, v string }
	var pairs []pair
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		pairs = append(pairs, pair{uriEncode(k), uriEncode(v)})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// uriEncode escapes everything but RFC 3986 unreserved characters.
func uriEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// headerValue is the canonical value of a signed header: values trimmed,
// inner whitespace collapsed, repeated headers joined with commas. Go
// moves Host, and for chunked requests Transfer-Encoding, out of Header.
func headerValue(r *http.Request, name string) string {
	switch name {
	case "host":
		return r.Host
	case "transfer-encoding":
		if len(r.TransferEncoding) > 0 {
			return strings.Join(r.TransferEncoding, ",")
		}
	case "content-length":
		if r.Header.Get("Content-Length") == "" && r.ContentLength >= 0 {
			return strconv.FormatInt(r.ContentLength, 10)
		}
	}
	vals := r.Header.Values(name)
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// redactToken hides session tokens in a canonical request before it is
// logged: they are secrets.
func redactToken(canonical string) string {
	lines := strings.Split(canonical, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "x-amz-security-token:") {
			lines[i] = "x-amz-security-token:REDACTED"
		}
		if i == 2 {
			params := strings.Split(l, "&")
			for j, p := range params {
				if strings.HasPrefix(p, "X-Amz-Security-Token=") {
					params[j] = "X-Amz-Security-Token=REDACTED"
				}
			}
			lines[i] = strings.Join(params, "&")
		}
	}
	return strings.Join(lines, "\n")
}
