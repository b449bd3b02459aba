package synapse

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a non-success HTTP answer from Synapse. Callers branch on
// StatusCode through the Is* predicates, never on Reason, whose wording the
// service changes freely.
type Error struct {
	StatusCode int
	Reason     string // server's reason, or up to 200 bytes of a non-JSON body
	ErrorCode  string // optional machine code from ErrorResponse
	Method     string
	Path       string // path and query relative to the endpoint; never a host or a token
}

func (e *Error) Error() string {
	s := fmt.Sprintf("synapse: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func hasStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == code
}

// IsNotFound: the entity is missing, in the trash, or hidden from the caller.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsForbidden: authenticated but lacking permission or token scope.
func IsForbidden(err error) bool { return hasStatus(err, http.StatusForbidden) }

// IsUnauthorized: the token is invalid or expired.
func IsUnauthorized(err error) bool { return hasStatus(err, http.StatusUnauthorized) }

// IsConflict: a sibling with that name already exists.
func IsConflict(err error) bool { return hasStatus(err, http.StatusConflict) }

// IsPreconditionFailed: the etag sent with an update is stale.
func IsPreconditionFailed(err error) bool { return hasStatus(err, http.StatusPreconditionFailed) }

// IsThrottled: Synapse refused the call for rate or concurrency, even after
// retries.
func IsThrottled(err error) bool { return hasStatus(err, http.StatusTooManyRequests) }

// IsBadRequest: Synapse rejected the arguments; for STS and storage calls
// this is how rule violations (not STS-enabled, wrong location) come back.
func IsBadRequest(err error) bool { return hasStatus(err, http.StatusBadRequest) }
