package actions

import (
	"errors"
	"fmt"
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
