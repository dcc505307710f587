package actions

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

type class int

const (
	classPermanent class = iota
	classRetryable       // plain retryable: not permanent, no Retry-After, not 401
	classRetryAfter
	classUnauthorized
)

func (c class) String() string {
	return [...]string{"permanent", "retryable", "retry-after", "unauthorized"}[c]
}

func classOf(err error) class {
	var ra *RetryAfterError
	var ua *UnauthorizedError
	switch {
	case IsPermanent(err):
		return classPermanent
	case errors.As(err, &ua):
		return classUnauthorized
	case errors.As(err, &ra):
		return classRetryAfter
	default:
		return classRetryable
	}
}

func TestClassifyHTTP(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }

	tests := []struct {
		name       string
		status     int
		retryAfter string // Retry-After header; "" means none
		want       class
		wantAfter  time.Duration
	}{
		{"400 bad request", 400, "", classPermanent, 0},
		{"403 forbidden", 403, "", classPermanent, 0},
		{"404 not found", 404, "", classPermanent, 0},
		{"405 method not allowed", 405, "", classPermanent, 0},
		{"409 conflict", 409, "", classPermanent, 0},
		{"413 too large", 413, "", classPermanent, 0},
		{"422 unprocessable", 422, "", classPermanent, 0},
		{"400 ignores Retry-After", 400, "5", classPermanent, 0},
		{"302 not followed", 302, "", classPermanent, 0},
		{"401 unauthorized", 401, "", classUnauthorized, 0},
		{"401 ignores Retry-After", 401, "5", classUnauthorized, 0},
		{"408 request timeout", 408, "", classRetryable, 0},
		{"429 without Retry-After", 429, "", classRetryable, 0},
		{"429 Retry-After seconds", 429, "7", classRetryAfter, 7 * time.Second},
		{"429 Retry-After zero", 429, "0", classRetryAfter, 0},
		{"429 Retry-After padded", 429, " 3 ", classRetryAfter, 3 * time.Second},
		{"429 Retry-After HTTP-date", 429, date(90 * time.Second), classRetryAfter, 90 * time.Second},
		{"429 Retry-After HTTP-date in the past", 429, date(-time.Minute), classRetryAfter, 0},
		{"429 Retry-After negative", 429, "-5", classRetryable, 0},
		{"429 Retry-After garbage", 429, "soon", classRetryable, 0},
		{"500 internal error", 500, "", classRetryable, 0},
		{"500 ignores Retry-After", 500, "5", classRetryable, 0},
		{"502 bad gateway", 502, "", classRetryable, 0},
		{"503 without Retry-After", 503, "", classRetryable, 0},
		{"503 Retry-After seconds", 503, "120", classRetryAfter, 2 * time.Minute},
		{"503 Retry-After HTTP-date", 503, date(30 * time.Second), classRetryAfter, 30 * time.Second},
		{"504 gateway timeout", 504, "", classRetryable, 0},
		{"599", 599, "", classRetryable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			const op = "quarantine entities [a1 b2] on HEC"
			const vendorMsg = "Entity not found"
			err := ClassifyHTTP(op, tt.status, h, vendorMsg, now)
			if err == nil {
				t.Fatalf("ClassifyHTTP(%d) = nil", tt.status)
			}
			if got := classOf(err); got != tt.want {
				t.Errorf("ClassifyHTTP(%d, Retry-After %q) class = %v; want %v (%T: %v)", tt.status, tt.retryAfter, got, tt.want, err, err)
			}
			if tt.want != classPermanent && IsPermanent(err) {
				t.Errorf("ClassifyHTTP(%d) is permanent; want not", tt.status)
			}
			var ra *RetryAfterError
			if errors.As(err, &ra) && ra.After != tt.wantAfter {
				t.Errorf("ClassifyHTTP(%d, Retry-After %q).After = %v; want %v", tt.status, tt.retryAfter, ra.After, tt.wantAfter)
			}

			var hs *HTTPStatusError
			if !errors.As(err, &hs) {
				t.Fatalf("ClassifyHTTP(%d) = %T; want it to wrap *HTTPStatusError", tt.status, err)
			}
			if hs.Status != tt.status || hs.Op != op || hs.Message != vendorMsg {
				t.Errorf("HTTPStatusError = %+v", hs)
			}
			msg := err.Error()
			for _, want := range []string{op, strconv.Itoa(tt.status), vendorMsg} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestClassifyHTTPNilHeader(t *testing.T) {
	t.Parallel()
	err := ClassifyHTTP("get event e1 on HEC", 429, nil, "slow down", time.Now())
	if classOf(err) != classRetryable {
		t.Errorf("429 with a nil header: class %v; want retryable", classOf(err))
	}
}

func TestHTTPStatusErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  HTTPStatusError
		want string
	}{
		{HTTPStatusError{Op: "close event 7 on PVWA", Status: 404, Message: "PTA event was not found"},
			"close event 7 on PVWA: HTTP 404: PTA event was not found"},
		{HTTPStatusError{Op: "addToBlocklist on GravityZone", Status: 503},
			"addToBlocklist on GravityZone: HTTP 503: Service Unavailable"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q; want %q", got, tt.want)
		}
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	vendor := &HTTPStatusError{Op: "op", Status: 422, Message: "bad"}
	err := fmt.Errorf("step quarantine: %w", Permanent(vendor))
	if !IsPermanent(err) {
		t.Error("IsPermanent(wrapped Permanent) = false")
	}
	var hs *HTTPStatusError
	if !errors.As(err, &hs) || hs != vendor {
		t.Error("errors.As through Permanent does not reach the vendor error")
	}
	if err.Error() != "step quarantine: op: HTTP 422: bad" {
		t.Errorf("Error() = %q; Permanent must not change the message", err)
	}
	for _, e := range []error{
		nil,
		errors.New("plain"),
		&RetryAfterError{Err: errors.New("x"), After: time.Second},
		&UnauthorizedError{Err: errors.New("x")},
	} {
		if IsPermanent(e) {
			t.Errorf("IsPermanent(%v) = true", e)
		}
	}
}

func TestErrorWrappersUnwrap(t *testing.T) {
	t.Parallel()
	base := errors.New("vendor said no")
	for _, err := range []error{
		&RetryAfterError{Err: base, After: time.Second},
		&UnauthorizedError{Err: base},
		Permanent(base),
	} {
		if !errors.Is(err, base) {
			t.Errorf("%T does not unwrap to its cause", err)
		}
		if err.Error() != base.Error() {
			t.Errorf("%T.Error() = %q; want the cause's message", err, err)
		}
	}
}

func TestSnippet(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 500)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, ""},
		{"trimmed", []byte("  \n{\"error\":\"nope\"}\n"), `{"error":"nope"}`},
		{"exactly 200", []byte(long[:200]), long[:200]},
		{"long", []byte(long), long[:200] + "…"},
	}
	for _, tt := range tests {
		if got := Snippet(tt.in); got != tt.want {
			t.Errorf("Snippet(%s) = %q; want %q", tt.name, got, tt.want)
		}
	}
}

// Snippet cuts at a byte offset, so a body of multi-byte characters can come out as invalid
// UTF-8 in an error (and as U+FFFD in the outcome's JSON).
func TestSnippetKeepsUTF8Valid(t *testing.T) {
	t.Parallel()
	// "x" then 150 two-byte runes: byte 200 falls in the middle of an "é".
	body := append([]byte("x"), strings.Repeat("é", 150)...)
	got := Snippet(body)
	if !utf8.ValidString(got) {
		t.Errorf("Snippet(%d bytes) = invalid UTF-8 %q; it must cut on a rune boundary", len(body), got)
	}
	if !strings.HasSuffix(got, "…") || len(got) > 200+len("…") {
		t.Errorf("Snippet(%d bytes) = %q; want at most 200 bytes then an ellipsis", len(body), got)
	}
}
