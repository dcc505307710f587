package actiontest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

// The shared classifier is the reference: StatusClasses must accept what it produces.
func TestStatusClassesAcceptsClassifyHTTP(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	StatusClasses(t, func(status int, retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return actions.ClassifyHTTP("do a thing on vendor", status, h, "vendor says no", now)
	})
}

func TestStatusClassesAcceptsPermanent401(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	StatusClasses(t, func(status int, retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		err := actions.ClassifyHTTP("do a thing on vendor", status, h, "", now)
		var unauth *actions.UnauthorizedError
		if errors.As(err, &unauth) {
			// What a client does when a renewed credential is refused as well.
			return actions.Permanent(unauth.Err)
		}
		return err
	})
}

func TestNoSecretsPassesCleanErrors(t *testing.T) {
	t.Parallel()
	NoSecrets(t, nil, "key")
	NoSecrets(t, errors.New("get token: HTTP 401: bad credentials"), "s3cr3t", "", "tok-123")
}
