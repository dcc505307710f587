package actions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (bad input, 4xx, JSON-RPC invalid params).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or anything it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Invalid marks err as bad input: permanent, with the reason invalid_input.
func Invalid(err error) error {
	if err == nil {
		return nil
	}
	return Permanent(WithReason(ReasonInvalidInput, err))
}

// Why an attempt failed, for metrics labels and logs. The reason never decides a retry: the
// class (Permanent, retryable, RetryAfterError) does.
const (
	ReasonAuth         = "auth"          // credentials refused (401, 403, a failed logon)
	ReasonRateLimited  = "rate_limited"  // the vendor said slow down (429)
	ReasonClient       = "client"        // the vendor refused the request (other 4xx, JSON-RPC invalid params)
	ReasonServer       = "server"        // the vendor failed (5xx, JSON-RPC server errors)
	ReasonTimeout      = "timeout"       // no answer in time (408, 504, a deadline)
	ReasonNetwork      = "network"       // no connection, a reset, a DNS failure
	ReasonInvalidInput = "invalid_input" // the step's inputs were refused before any request
	ReasonBadResponse  = "bad_response"  // an answer riposte could not read
	ReasonCanceled     = "canceled"      // shutdown cut the attempt short
	ReasonUnknown      = "unknown"
)

// Reasons lists every reason, so metrics can start each at zero.
func Reasons() []string {
	return []string{ReasonAuth, ReasonRateLimited, ReasonClient, ReasonServer, ReasonTimeout,
		ReasonNetwork, ReasonInvalidInput, ReasonBadResponse, ReasonCanceled, ReasonUnknown}
}

type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// WithReason records why err happened where the error's type cannot tell (a malformed answer,
// a refused logon under HTTP 200).
func WithReason(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &reasonError{reason: reason, err: err}
}

// ReasonOf says why err happened: the reason given with WithReason, else what its type tells
// (an HTTP status, a JSON-RPC code, a timeout, a network error).
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	var re *reasonError
	if errors.As(err, &re) {
		return re.reason
	}
	var hs *HTTPStatusError
	if errors.As(err, &hs) {
		return httpReason(hs.Status)
	}
	var rpc *RPCError
	if errors.As(err, &rpc) {
		return rpc.reason()
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.As(err, &ne):
		return ReasonNetwork
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return ReasonNetwork
	}
	return ReasonUnknown
}

func httpReason(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ReasonAuth
	case status == http.StatusTooManyRequests:
		return ReasonRateLimited
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		return ReasonTimeout
	case status >= 500:
		return ReasonServer
	case status >= 400:
		return ReasonClient
	}
	return ReasonBadResponse
}

// RPCError is a JSON-RPC 2.0 error object a vendor answered with, under any HTTP status.
type RPCError struct {
	Op      string // what was being done
	Code    int64
	Message string // the vendor's error.message
	Details string // the vendor's error.data.details, when it sent one
}

func (e *RPCError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "no message"
	}
	if e.Details != "" && e.Details != msg {
		msg += ": " + e.Details
	}
	return fmt.Sprintf("%s: JSON-RPC error %d: %s", e.Op, e.Code, msg)
}

func (e *RPCError) reason() string {
	if e.retryable() {
		return ReasonServer
	}
	return ReasonClient
}

// retryable: -32603 (internal error) and the implementation-defined server errors -32000 to
// -32099 may pass; a malformed request, an unknown method or invalid params never will, nor
// will an application error the vendor defines outside those ranges.
func (e *RPCError) retryable() bool {
	return e.Code == -32603 || (e.Code >= -32099 && e.Code <= -32000)
}

// ClassifyJSONRPC classes a JSON-RPC error: retryable for server errors, permanent otherwise.
func ClassifyJSONRPC(e *RPCError) error {
	if e.retryable() {
		return e
	}
	return Permanent(e)
}

// PartialError is a failure that still has an output worth showing: which targets of a call
// the vendor acted on and which it refused. The step fails; its outcome keeps the output.
type PartialError struct {
	Output Output
	Err    error
}

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// WithOutput attaches out to err, which keeps its class and reason.
func WithOutput(out Output, err error) error {
	if err == nil {
		return nil
	}
	return &PartialError{Output: out, Err: err}
}

// RetryAfterError is a retryable failure whose vendor said when to come back (HTTP 429/503
// Retry-After). The dispatcher waits at least After before the next attempt.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// UnauthorizedError is an HTTP 401: vendor clients renew their credentials once and retry.
type UnauthorizedError struct{ Err error }

func (e *UnauthorizedError) Error() string { return e.Err.Error() }
func (e *UnauthorizedError) Unwrap() error { return e.Err }

// HTTPStatusError is a vendor's non-2xx answer, with the vendor's own message.
type HTTPStatusError struct {
	Op      string // what was being done, e.g. "quarantine entities [a1] on HEC"
	Status  int
	Message string // the vendor's message, or a short excerpt of the body
}

func (e *HTTPStatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.Status, msg)
}

// ClassifyHTTP turns a non-2xx response into a classed error: 408, 429 and 5xx are retryable
// (429 and 503 honour Retry-After), 401 is an UnauthorizedError, every other 4xx is permanent.
// op says what was being done; message is the vendor's own words, already extracted from the body.
func ClassifyHTTP(op string, status int, header http.Header, message string, now time.Time) error {
	base := &HTTPStatusError{Op: op, Status: status, Message: message}
	switch {
	case status == http.StatusUnauthorized:
		return &UnauthorizedError{Err: base}
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		if after, ok := parseRetryAfter(header.Get("Retry-After"), now); ok {
			return &RetryAfterError{Err: base, After: after}
		}
		return base
	case status == http.StatusRequestTimeout || status >= 500:
		return base
	case status >= 400:
		return Permanent(base)
	default:
		// 1xx/3xx that reached us unfollowed: the request did not do what was asked.
		return Permanent(base)
	}
}

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// Snippet shortens a response body for an error message when the vendor gave no structured one.
func Snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	const max = 200
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
