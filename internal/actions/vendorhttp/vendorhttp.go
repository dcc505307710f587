// Package vendorhttp is the plumbing every vendor client and every vendor fake shares: bounded
// body reads, one strict JSON decoder, base-URL and path-segment checks, redaction of secrets,
// a single-flight credential cache, and the fakes' scripted failures, recorded requests and
// effect counts. A vendor package built on it holds only that vendor's protocol.
package vendorhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
)

const (
	// MaxResponseBytes bounds what a client reads of one answer; the largest is a page of 100
	// blocklist items or an event, far below it.
	MaxResponseBytes = 10 << 20
	// DefaultTimeout is the HTTP client's timeout when the caller gives no client.
	DefaultTimeout = 30 * time.Second
	// DefaultUserAgent names riposte to the vendor when the caller gives no version.
	DefaultUserAgent = "riposte"
)

// ReadBody reads at most limit bytes of r; a longer body is an error rather than a silently
// cut one.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return raw, nil
}

// DecodeJSON decodes exactly one JSON value from data into v, numbers as json.Number so that
// ids and counts stay exact. Anything after the value is an error.
func DecodeJSON(data []byte, v any) error {
	return decode(data, v, false)
}

// DecodeJSONStrict is DecodeJSON that also refuses object fields v does not declare: what a
// fake uses to reject a request the vendor would reject.
func DecodeJSONStrict(data []byte, v any) error {
	return decode(data, v, true)
}

func decode(data []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// JSONErrorKind describes a decoding error without quoting the input it failed on, for bodies
// that may hold a secret (a token answer).
func JSONErrorKind(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	}
	return "malformed"
}

// FirstByte is the first non-space byte of b, 0 when there is none: enough to tell an object
// from an array, a string or null.
func FirstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// Response is one vendor answer, its body read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Client sends vendor requests: it paces them by the vendor's rate limit (actions.Pace), names
// riposte in User-Agent and reads the answer within MaxResponseBytes.
type Client struct {
	HTTP      *http.Client
	UserAgent string
}

// NewClient returns a client over hc, or over a client with DefaultTimeout when hc is nil.
func NewClient(hc *http.Client, userAgent string) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	if userAgent == "" {
		userAgent = DefaultUserAgent
	}
	return &Client{HTTP: hc, UserAgent: userAgent}
}

// Do sends req and reads its answer. op says what was being done, for the errors: a network
// failure is returned wrapped and unclassed (retryable), a request that cannot be built is
// permanent.
func (c *Client) Do(ctx context.Context, op string, req *http.Request) (*Response, error) {
	if err := actions.Pace(ctx); err != nil {
		return nil, fmt.Errorf("%s: waiting for the rate limit: %w", op, err)
	}
	req = req.WithContext(ctx)
	req.Header.Set("User-Agent", c.UserAgent)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := ReadBody(resp.Body, MaxResponseBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: read HTTP %d response: %w", op, resp.StatusCode, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// NewJSONRequest builds a request whose body, when not nil, is body marshalled as JSON.
func NewJSONRequest(method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, actions.Permanent(fmt.Errorf("encode request: %w", err))
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, actions.Permanent(fmt.Errorf("build request: %w", err))
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}
