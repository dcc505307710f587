// Package actiontest holds the checks every vendor package's tests run against its client, so
// that all vendors class HTTP answers alike and none leaks a secret into an error. Import it from
// tests only.
package actiontest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

// StatusClasses checks how a client classes each HTTP status a vendor may answer.
//
// call must make one client call against a server that answers every request of that call (the
// auth renewal after a 401 and the retry included) with status, and with a Retry-After header
// of retryAfter when it is not empty; it returns the client's error. Cases run one after the
// other, so call may share a server between them.
//
// Expectations: 408, 429 and 5xx are retryable; 429 and 503 with Retry-After are a
// *actions.RetryAfterError; other 4xx are permanent. A 401 that persists after the client's one
// renewal must be an *actions.UnauthorizedError or permanent: either way the dispatcher's budget
// bounds it, and nothing loops.
func StatusClasses(t *testing.T, call func(status int, retryAfter string) error) {
	t.Helper()
	cases := []struct {
		status     int
		retryAfter string
		permanent  bool
		after      time.Duration // > 0: a *RetryAfterError with this wait is expected
	}{
		{status: 400, permanent: true},
		{status: 401},
		{status: 403, permanent: true},
		{status: 404, permanent: true},
		{status: 408},
		{status: 409, permanent: true},
		{status: 422, permanent: true},
		{status: 429, retryAfter: "3", after: 3 * time.Second},
		{status: 429},
		{status: 500},
		{status: 502},
		{status: 503},
		{status: 503, retryAfter: "7", after: 7 * time.Second},
		{status: 504},
	}
	for _, tc := range cases {
		name := strconv.Itoa(tc.status)
		if tc.retryAfter != "" {
			name += "/Retry-After=" + tc.retryAfter
		}
		t.Run(name, func(t *testing.T) {
			err := call(tc.status, tc.retryAfter)
			if err == nil {
				t.Fatalf("HTTP %d: got no error", tc.status)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(tc.status)) {
				t.Errorf("HTTP %d: error %q does not mention the status", tc.status, err)
			}
			if tc.status == 401 {
				var unauth *actions.UnauthorizedError
				if !errors.As(err, &unauth) && !actions.IsPermanent(err) {
					t.Errorf("HTTP 401 after renewal: error %q is neither an *actions.UnauthorizedError nor permanent", err)
				}
				return
			}
			if got := actions.IsPermanent(err); got != tc.permanent {
				t.Errorf("HTTP %d: IsPermanent = %t, want %t (error %q)", tc.status, got, tc.permanent, err)
			}
			var ra *actions.RetryAfterError
			hasRA := errors.As(err, &ra)
			switch {
			case tc.after > 0 && !hasRA:
				t.Errorf("HTTP %d with Retry-After %q: error %q is not an *actions.RetryAfterError", tc.status, tc.retryAfter, err)
			case tc.after > 0 && ra.After != tc.after:
				t.Errorf("HTTP %d with Retry-After %q: After = %v, want %v", tc.status, tc.retryAfter, ra.After, tc.after)
			case tc.after == 0 && hasRA:
				t.Errorf("HTTP %d without Retry-After: unexpected *actions.RetryAfterError %q", tc.status, err)
			}
		})
	}
}

// NoSecrets fails the test if err's message contains any of the secrets. Empty secrets are
// ignored; a nil error has nothing to leak.
func NoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for i, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			// Say which, not what: the test log is no place for the secret either.
			t.Errorf("error message leaks secret #%d (%d characters): %s", i+1, len(s), strings.ReplaceAll(msg, s, "[SECRET]"))
		}
	}
}
