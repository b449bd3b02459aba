package s3emu

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// ErrNoSuchKey and ErrNoSuchBucket are wrapped by the direct-access methods
// when the object or bucket is missing, so the REST emulator can turn them
// into Synapse's own answers.
var (
	ErrNoSuchKey    = errors.New("s3emu: no such key")
	ErrNoSuchBucket = errors.New("s3emu: no such bucket")
)

// apiError is an S3 error answer produced by the emulator itself (as
// opposed to gofakes3's storage answers).
type apiError struct {
	status  int
	code    string
	message string
	region  string // AuthorizationHeaderMalformed names the right region
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

// The messages are S3's, so clients that match on them behave as with AWS.
func errAccessDenied() *apiError { return newError(403, "AccessDenied", "Access Denied") }

func errInvalidAccessKeyID() *apiError {
	return newError(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
}

func errSignatureDoesNotMatch() *apiError {
	return newError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
}

func errInvalidToken() *apiError {
	return newError(400, "InvalidToken", "The provided token is malformed or otherwise invalid.")
}

func errExpiredToken() *apiError {
	return newError(400, "ExpiredToken", "The provided token has expired.")
}

func errMalformedAuth(detail string) *apiError {
	return newError(400, "AuthorizationHeaderMalformed", "The authorization header is malformed; "+detail)
}

func errQueryAuth(detail string) *apiError {
	return newError(400, "AuthorizationQueryParametersError", detail)
}

func errInvalidRequest(detail string) *apiError { return newError(400, "InvalidRequest", detail) }

func errInvalidArgument(detail string) *apiError { return newError(400, "InvalidArgument", detail) }

func errNotImplemented() *apiError {
	return newError(501, "NotImplemented", "A header or query you provided implies functionality that is not implemented.")
}

func errIncompleteBody() *apiError {
	return newError(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
}

func errSHA256Mismatch() *apiError {
	return newError(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
}

func errBadDigest(algorithm string) *apiError {
	return newError(400, "BadDigest", "The "+algorithm+" you specified did not match the calculated checksum.")
}

func errNoSuchKey() *apiError {
	return newError(404, "NoSuchKey", "The specified key does not exist.")
}

func errNoSuchBucket() *apiError {
	return newError(404, "NoSuchBucket", "The specified bucket does not exist")
}

func errInvalidPart() *apiError {
	return newError(400, "InvalidPart", "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")
}

func errInvalidPartOrder() *apiError {
	return newError(400, "InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number.")
}

func errEntityTooSmall() *apiError {
	return newError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
}

func errMalformedXML() *apiError {
	return newError(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
}

func errInternal() *apiError {
	return newError(500, "InternalError", "We encountered an internal error. Please try again.")
}

type errorDoc struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string
	Message   string
	Resource  string `xml:",omitempty"`
	Region    string `xml:",omitempty"`
	RequestID string `xml:"RequestId"`
	HostID    string `xml:"HostId"`
}

func marshalError(e *apiError, resource, requestID, hostID string) []byte {
	b, err := xml.Marshal(errorDoc{Code: e.code, Message: e.message, Resource: resource, Region: e.region, RequestID: requestID, HostID: hostID})
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	return append([]byte(xml.Header), b...)
}

// maxDrain bounds how much of an unread request body is read before an
// early error answer. A client still sending when the server answers and
// closes may see a broken pipe or a reset instead of the answer. Even with
// "Expect: 100-continue" the body is read: the Go SDK builds requests
// without a protocol version, so Go's transport never waits for the 100
// and sends the body at once. A client that does wait is sent "100
// Continue" by the first read and uploads for nothing, which is cheap
// on loopback.
const maxDrain = 64 << 20

// writeError sends e in S3's XML shape (no body for HEAD).
func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	_, _ = io.CopyN(io.Discard, r.Body, maxDrain)
	h := w.Header()
	body := marshalError(e, r.URL.Path, h.Get("x-amz-request-id"), h.Get("x-amz-id-2"))
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// faultBody renders the answers netem injects. 429 keeps its status but
// carries SlowDown, the code S3 uses for throttling, so SDKs retry it as a
// throttle; real S3 never sends 429.
func faultBody(status int) (string, []byte) {
	e := errInternal()
	switch status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		e = newError(status, "SlowDown", "Please reduce your request rate.")
	case http.StatusInternalServerError:
	default:
		e = newError(status, http.StatusText(status), http.StatusText(status))
	}
	return "application/xml", marshalError(e, "", "", "")
}
