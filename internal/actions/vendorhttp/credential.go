package vendorhttp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

// Credential is an access token or session token and when to renew it.
type Credential struct {
	Value string
	// RenewAt is when to fetch a new one before the vendor refuses this one; zero means keep
	// it until the vendor refuses it.
	RenewAt time.Time
}

// maxRefused is how many refused credentials are remembered for scrubbing; a refused one is
// never handed out again anyway.
const maxRefused = 4

// CredentialCache holds one vendor credential for every caller of a client. Callers that find
// it missing or due share a single fetch; a caller whose context ends while it fetches leaves
// the others to try again under their own, rather than inherit its cancellation.
type CredentialCache struct {
	what  string // e.g. "HEC access token", for errors
	hint  string // what to check when a fresh credential is refused
	fetch func(ctx context.Context) (Credential, error)
	now   func() time.Time

	mu       sync.Mutex
	cur      Credential
	inflight *credentialFetch
	refused  []string
}

type credentialFetch struct {
	done chan struct{}
	cred Credential
	err  error
	// abandoned says the fetching caller's context ended: its error is no answer for others.
	abandoned bool
}

// NewCredentialCache returns a cache that obtains credentials with fetch. what names the
// credential in errors; hint says what to check when even a fresh one is refused. A nil now
// means time.Now.
func NewCredentialCache(what, hint string, fetch func(ctx context.Context) (Credential, error), now func() time.Time) *CredentialCache {
	if now == nil {
		now = time.Now
	}
	return &CredentialCache{what: what, hint: hint, fetch: fetch, now: now}
}

// Get returns a usable credential. refused, when set, is one the vendor just turned down: it is
// not handed out again, and a new one is fetched.
func (c *CredentialCache) Get(ctx context.Context, refused string) (string, error) {
	for {
		c.mu.Lock()
		if refused != "" && !slices.Contains(c.refused, refused) {
			c.refused = append(c.refused[max(0, len(c.refused)-(maxRefused-1)):], refused)
		}
		if refused != "" && c.cur.Value == refused {
			// Not to be handed to the next caller either, should the renewal fail.
			c.cur = Credential{}
		}
		if c.cur.Value != "" && c.cur.Value != refused && (c.cur.RenewAt.IsZero() || c.now().Before(c.cur.RenewAt)) {
			v := c.cur.Value
			c.mu.Unlock()
			return v, nil
		}
		if f := c.inflight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("wait for %s: %w", c.what, ctx.Err())
			}
			if f.abandoned {
				continue
			}
			if f.err != nil {
				return "", f.err
			}
			return f.cred.Value, nil
		}
		f := &credentialFetch{done: make(chan struct{})}
		c.inflight = f
		c.mu.Unlock()

		f.cred, f.err = c.fetch(ctx)
		f.abandoned = f.err != nil && ctx.Err() != nil
		c.mu.Lock()
		if f.err == nil {
			c.cur = f.cred
		}
		c.inflight = nil
		c.mu.Unlock()
		close(f.done)
		if f.err != nil {
			return "", f.err
		}
		return f.cred.Value, nil
	}
}

// Forget drops tok if it is the cached credential, so the next call fetches another.
func (c *CredentialCache) Forget(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur.Value == tok {
		c.cur = Credential{}
	}
}

// Take removes and returns the cached credential ("" when none): for ending a session at
// shutdown, after which callers fetch a new one.
func (c *CredentialCache) Take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.cur.Value
	c.cur = Credential{}
	return v
}

// Secrets lists the credentials held now and those recently refused, for Redactor.
func (c *CredentialCache) Secrets() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string{c.cur.Value}, c.refused...)
}

// WithCredential runs call with the cached credential. When the vendor refuses it
// (*actions.UnauthorizedError), the credential is renewed once and call repeated once; a
// credential refused fresh from the vendor is a permanent error naming c's hint. op says what
// the call was for, in the errors of getting a credential.
func WithCredential[T any](ctx context.Context, c *CredentialCache, op string, call func(ctx context.Context, cred string) (T, error)) (T, error) {
	var zero T
	cred, err := c.Get(ctx, "")
	if err != nil {
		return zero, fmt.Errorf("%s: %w", op, err)
	}
	v, err := call(ctx, cred)
	var unauth *actions.UnauthorizedError
	if !errors.As(err, &unauth) {
		return v, err
	}
	cred, err = c.Get(ctx, cred)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", op, err)
	}
	v, err = call(ctx, cred)
	if errors.As(err, &unauth) {
		c.Forget(cred)
		return zero, actions.Permanent(fmt.Errorf("%w (a freshly issued %s was refused too; %s)", err, c.what, c.hint))
	}
	return v, err
}

// Redactor removes secrets from text a vendor sent back or an error carries: a message that
// echoes the request must not take a key or a token into logs or outcomes.
type Redactor struct {
	static  []string
	dynamic []func() []string
}

// NewRedactor scrubs the given secrets (empty ones are ignored) and whatever each of more
// returns at the time of scrubbing (the credentials a cache holds).
func NewRedactor(secrets []string, more ...func() []string) *Redactor {
	r := &Redactor{dynamic: more}
	for _, s := range secrets {
		if s != "" {
			r.static = append(r.static, s)
		}
	}
	return r
}

// Scrub replaces every secret in s with [redacted].
func (r *Redactor) Scrub(s string) string {
	if r == nil {
		return s
	}
	secrets := slices.Clone(r.static)
	for _, f := range r.dynamic {
		secrets = append(secrets, f()...)
	}
	// Longest first, so a secret that contains another is removed whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}
