package s3io

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Sentinels that errors from a Store wrap; test with errors.Is. The fs
// layer maps them to ENOENT, EACCES and EIO.
var (
	// ErrNotFound: no such object (NoSuchKey, or 404 on HEAD).
	ErrNotFound = errors.New("s3io: object not found")
	// ErrAccessDenied: the credentials do not reach the key (AccessDenied,
	// 403), e.g. a key outside the STS prefix.
	ErrAccessDenied = errors.New("s3io: access denied")
	// ErrChanged: the object is no longer the version the caller knew (its
	// ETag differs), so its bytes must not be mixed with cached ones.
	ErrChanged = errors.New("s3io: object changed")
	// ErrReadOnly: a write on a Store opened without Options.Write; nothing
	// was sent. The fs layer maps it to EROFS.
	ErrReadOnly = errors.New("s3io: store holds read-only credentials")
)

// classify wraps err in the sentinel its answer matches, keeping err
// itself reachable for errors.As.
func classify(err error, what string) error {
	var sentinel error
	switch code, status := errorCode(err), httpStatus(err); {
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		sentinel = ErrNotFound
	case code == "AccessDenied" || status == http.StatusForbidden:
		sentinel = ErrAccessDenied
	case code == "PreconditionFailed" || status == http.StatusPreconditionFailed:
		sentinel = ErrChanged
	}
	if sentinel != nil {
		return fmt.Errorf("%s: %w: %w", what, sentinel, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func errorMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return ""
}

func httpResponse(err error) *smithyhttp.Response {
	var re interface{ HTTPResponse() *smithyhttp.Response }
	if errors.As(err, &re) {
		return re.HTTPResponse()
	}
	return nil
}

func httpStatus(err error) int {
	if r := httpResponse(err); r != nil && r.Response != nil {
		return r.StatusCode
	}
	return 0
}

// isExpired says whether S3 refused the request because the session token
// expired. A HEAD answer has no body and so no error code: its 400 is taken
// as expiry too, since a well-formed HEAD has no other reason to get one
// and the one refresh it costs is cheap.
func isExpired(err error, bodiless bool) bool {
	switch errorCode(err) {
	case "ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired":
		return true
	}
	return bodiless && httpStatus(err) == http.StatusBadRequest
}

// isRangeNotSatisfiable: the range starts at or past the end of the object.
func isRangeNotSatisfiable(err error) bool {
	return errorCode(err) == "InvalidRange" || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable
}

// bucketRegion is the region an error answer says the bucket lives in.
func bucketRegion(err error) string {
	if r := httpResponse(err); r != nil && r.Response != nil {
		return strings.TrimSpace(r.Header.Get("X-Amz-Bucket-Region"))
	}
	return ""
}
