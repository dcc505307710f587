// Package checkpoint is riposte's Check Point Harmony Email & Collaboration (HEC) integration:
// the Smart API client (token, envelope, error classes), its catalogue entries, and a strict fake
// of the service for tests, `worker demo` and `--simulate`.
package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
)

const (
	authPath  = "/auth/external"
	apiPrefix = "/app/hec-api/v1.0"

	// maxResponseBytes bounds what we read from the vendor; an event is a few kilobytes.
	maxResponseBytes = 10 << 20
	defaultTimeout   = 30 * time.Second
	// defaultTokenLifetime applies when the auth answer states no usable lifetime; a 401 still
	// triggers a renewal, so guessing short costs one extra auth call at worst.
	defaultTokenLifetime = 5 * time.Minute
	credentialsHint      = "check HEC_CLIENT_ID / HEC_ACCESS_KEY"
	maxRemembered        = 4
)

// GatewayURL returns the HEC gateway of a region (US, EU, CA, AP, UK, ME, IN; "" means US).
func GatewayURL(region string) (string, error) {
	switch r := strings.ToUpper(strings.TrimSpace(region)); r {
	case "", "US":
		return "https://cloudinfra-gw-us.portal.checkpoint.com", nil
	case "EU":
		return "https://cloudinfra-gw.portal.checkpoint.com", nil
	case "CA", "AP", "UK", "ME", "IN":
		return "https://cloudinfra-gw." + strings.ToLower(r) + ".portal.checkpoint.com", nil
	}
	return "", fmt.Errorf("unknown HEC region %q: valid regions are US (default), EU, CA, AP, UK, ME, IN", region)
}

// Config is what a Client needs. Nil HTTPClient, Now and NewRequestID get defaults (a client
// with a 30s timeout, time.Now, uuid.NewString); tests replace them.
type Config struct {
	BaseURL      string // the gateway, e.g. from GatewayURL; a trailing slash is tolerated
	ClientID     string
	AccessKey    string
	HTTPClient   *http.Client
	Now          func() time.Time
	NewRequestID func() string
}

// Task is the vendor's receipt for an action on one entity.
type Task struct {
	EntityID string
	TaskID   string // the service documents an integer and samples a string; kept as text
}

// Client talks to the HEC Smart API. It is safe for concurrent use; callers share one token.
type Client struct {
	base      string
	clientID  string
	accessKey string
	http      *http.Client
	now       func() time.Time
	newID     func() string
	log       *zap.Logger

	mu       sync.Mutex
	tok      accessToken
	inflight *tokenFetch
	// refused remembers tokens the service turned down, so a vendor message echoing one is scrubbed.
	refused []string
}

type accessToken struct {
	value   string
	renewAt time.Time
}

type tokenFetch struct {
	done chan struct{}
	tok  accessToken
	err  error
	// abandoned says the fetching caller's context ended: its error is no answer for the others.
	abandoned bool
}

// NewClient checks cfg and returns a client; it makes no request until the first call.
func NewClient(cfg Config, log *zap.Logger) (*Client, error) {
	var errs []error
	base, err := checkBaseURL(cfg.BaseURL)
	if err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(cfg.ClientID) == "" {
		errs = append(errs, errors.New("HEC client id is empty (HEC_CLIENT_ID)"))
	}
	if strings.TrimSpace(cfg.AccessKey) == "" {
		errs = append(errs, errors.New("HEC access key is empty (HEC_ACCESS_KEY)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &Client{
		base:      base,
		clientID:  cfg.ClientID,
		accessKey: cfg.AccessKey,
		http:      cfg.HTTPClient,
		now:       cfg.Now,
		newID:     cfg.NewRequestID,
		log:       log,
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: defaultTimeout}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.newID == nil {
		c.newID = uuid.NewString
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c, nil
}

func checkBaseURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("HEC base URL is empty (HEC_BASE_URL or HEC_REGION)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the input, which may hold a password.
		return "", errors.New("HEC base URL is not a valid URL")
	}
	if u.User != nil {
		// Never echo it: the userinfo may hold a password.
		return "", fmt.Errorf("HEC base URL %q must not carry credentials", u.Redacted())
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("HEC base URL %q must be an absolute http or https URL", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("HEC base URL %q must not have a query or fragment", raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// EntityAction runs one action (quarantine, restore, …) on entities: POST /action/entity.
// Repeated ids are sent once, as the service wants them unique.
func (c *Client) EntityAction(ctx context.Context, entityIDs []string, actionName, actionParam string) ([]Task, error) {
	op := fmt.Sprintf("%s entities %s on HEC", actionName, listForError(entityIDs))
	if err := checkEntityIDs(entityIDs); err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: invalid entityIds: %w", op, err))
	}
	if err := checkActionName(actionName); err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: invalid entityActionName: %w", op, err))
	}
	ids := dedupe(entityIDs)
	body, err := json.Marshal(map[string]any{
		"requestData": map[string]any{
			"entityIds":         ids,
			"entityActionName":  []string{actionName},
			"entityActionParam": []string{actionParam},
		},
	})
	if err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: encode request: %w", op, err))
	}
	data, err := c.do(ctx, op, http.MethodPost, "/action/entity", body)
	if err != nil {
		return nil, err
	}
	tasks, err := decodeTasks(data)
	if err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %w", op, err))
	}
	return tasks, nil
}

// GetEvent fetches one security event: GET /event/{eventId}.
func (c *Client) GetEvent(ctx context.Context, eventID string) (map[string]any, error) {
	op := fmt.Sprintf("get event %q from HEC", eventID)
	if err := checkPathValue(eventID); err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: invalid eventId: %w", op, err))
	}
	data, err := c.do(ctx, op, http.MethodGet, "/event/"+url.PathEscape(eventID), nil)
	if err != nil {
		return nil, err
	}
	// Documented as an array of events, sampled as one object: take either.
	switch firstByte(data) {
	case '{':
		var ev map[string]any
		if err := decodeJSON(data, &ev); err != nil {
			return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %w", op, err))
		}
		return ev, nil
	case '[':
		var evs []map[string]any
		if err := decodeJSON(data, &evs); err != nil {
			return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %w", op, err))
		}
		if len(evs) == 0 || evs[0] == nil {
			return nil, actions.Permanent(fmt.Errorf("event %q not found on HEC", eventID))
		}
		return evs[0], nil
	case 0, 'n':
		return nil, actions.Permanent(fmt.Errorf("event %q not found on HEC", eventID))
	}
	return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %s", op, actions.Snippet(data)))
}

// GetExceptions lists one exception list (e.g. whitelist, blacklist): GET /exceptions/{excType}.
func (c *Client) GetExceptions(ctx context.Context, excType string) ([]map[string]any, error) {
	op := fmt.Sprintf("get %q exceptions from HEC", excType)
	if err := checkExcType(excType); err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: invalid excType: %w", op, err))
	}
	data, err := c.do(ctx, op, http.MethodGet, "/exceptions/"+url.PathEscape(excType), nil)
	if err != nil {
		return nil, err
	}
	switch firstByte(data) {
	case 0, 'n':
		return []map[string]any{}, nil
	case '[':
		var list []map[string]any
		if err := decodeJSON(data, &list); err != nil {
			return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %w", op, err))
		}
		return list, nil
	}
	return nil, actions.Permanent(fmt.Errorf("%s: responseData is not a list: %s", op, actions.Snippet(data)))
}

// do sends one API call and returns its responseData. A refused token is renewed once and the
// call repeated once, with a fresh request id.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte) (json.RawMessage, error) {
	tok, err := c.token(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	data, err := c.send(ctx, op, method, path, body, tok)
	var unauth *actions.UnauthorizedError
	if !errors.As(err, &unauth) {
		return data, err
	}
	c.log.Info("HEC refused the access token, renewing it", zap.String("op", op))
	tok, err = c.token(ctx, tok)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	data, err = c.send(ctx, op, method, path, body, tok)
	if errors.As(err, &unauth) {
		c.forget(tok)
		// A token issued a moment ago was refused: retrying will not change that.
		return nil, actions.Permanent(fmt.Errorf("%w (a freshly issued token was refused too; check the API key's permissions and the region)", err))
	}
	return data, err
}

func (c *Client) send(ctx context.Context, op, method, path string, body []byte, tok string) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+apiPrefix+path, rd)
	if err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: build request: %w", op, err))
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("x-av-req-id", c.newID())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := readBody(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: read HTTP %d response: %w", op, resp.StatusCode, err)
	}
	return c.result(op, resp, raw)
}

// result turns one API answer into responseData or a classed error.
func (c *Client) result(op string, resp *http.Response, body []byte) (json.RawMessage, error) {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, actions.ClassifyHTTP(op, resp.StatusCode, resp.Header, c.scrub(vendorMessage(body)), c.now())
	}
	if firstByte(body) == '[' {
		// The exceptions document's "Response Structure" is a bare array; its sample is an envelope.
		if !json.Valid(body) {
			return nil, fmt.Errorf("%s: invalid JSON in HTTP %d response: %s", op, resp.StatusCode, c.scrub(actions.Snippet(body)))
		}
		return body, nil
	}
	var r struct {
		Envelope map[string]any  `json:"responseEnvelope"`
		Data     json.RawMessage `json:"responseData"`
	}
	if err := decodeJSON(body, &r); err != nil {
		// Something between us and the service answered (a proxy page, a cut body): try again later.
		return nil, fmt.Errorf("%s: invalid JSON in HTTP %d response (%v): %s", op, resp.StatusCode, err, c.scrub(actions.Snippet(body)))
	}
	if r.Envelope == nil {
		return nil, fmt.Errorf("%s: HTTP %d response has no responseEnvelope: %s", op, resp.StatusCode, c.scrub(actions.Snippet(body)))
	}
	code, err := responseCode(r.Envelope["responseCode"])
	if err != nil {
		return nil, actions.Permanent(fmt.Errorf("%s: %w", op, err))
	}
	if code == 0 || (code >= 200 && code <= 299) {
		return r.Data, nil
	}
	msg := c.scrub(envelopeMessage(r.Envelope))
	if code >= 400 && code <= 599 {
		return nil, actions.ClassifyHTTP(op, int(code), resp.Header, msg, c.now())
	}
	return nil, actions.Permanent(fmt.Errorf("%s: HEC response code %d: %s", op, code, msg))
}

// token returns a usable access token. refused, when set, is a token the service just turned
// down: it is not handed out again. Concurrent callers share one fetch; the fetch runs under the
// context of the caller that started it, and if that context ends first the others try again
// under their own rather than inherit its cancellation.
func (c *Client) token(ctx context.Context, refused string) (string, error) {
	for {
		c.mu.Lock()
		if refused != "" && !slices.Contains(c.refused, refused) {
			// A few are enough: a token the service refused is not handed out again anyway.
			c.refused = append(c.refused[max(0, len(c.refused)-(maxRemembered-1)):], refused)
		}
		if c.tok.value != "" && c.tok.value != refused && c.now().Before(c.tok.renewAt) {
			v := c.tok.value
			c.mu.Unlock()
			return v, nil
		}
		if f := c.inflight; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", fmt.Errorf("wait for HEC access token: %w", ctx.Err())
			}
			if f.abandoned {
				continue
			}
			if f.err != nil {
				return "", f.err
			}
			return f.tok.value, nil
		}
		f := &tokenFetch{done: make(chan struct{})}
		c.inflight = f
		c.mu.Unlock()

		f.tok, f.err = c.requestToken(ctx)
		f.abandoned = f.err != nil && ctx.Err() != nil
		c.mu.Lock()
		if f.err == nil {
			c.tok = f.tok
		}
		c.inflight = nil
		c.mu.Unlock()
		close(f.done)
		if f.err != nil {
			return "", f.err
		}
		return f.tok.value, nil
	}
}

func (c *Client) requestToken(ctx context.Context) (accessToken, error) {
	const op = "get HEC access token"
	body, err := json.Marshal(map[string]string{"clientId": c.clientID, "accessKey": c.accessKey})
	if err != nil {
		return accessToken{}, actions.Permanent(fmt.Errorf("%s: encode request: %w", op, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+authPath, bytes.NewReader(body))
	if err != nil {
		return accessToken{}, actions.Permanent(fmt.Errorf("%s: build request: %w", op, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	issued := c.now()
	resp, err := c.http.Do(req)
	if err != nil {
		return accessToken{}, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := readBody(resp.Body)
	if err != nil {
		return accessToken{}, fmt.Errorf("%s: read HTTP %d response: %w", op, resp.StatusCode, err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		msg := c.scrub(vendorMessage(raw))
		return accessToken{}, actions.Permanent(&actions.HTTPStatusError{
			Op: op, Status: resp.StatusCode, Message: strings.TrimSpace(msg + " (" + credentialsHint + ")"),
		})
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return accessToken{}, actions.ClassifyHTTP(op, resp.StatusCode, resp.Header, c.scrub(vendorMessage(raw)), c.now())
	}
	var r struct {
		Success bool   `json:"success"`
		Message string `json:"message"`
		Data    struct {
			Token     string `json:"token"`
			Expires   any    `json:"expires"`
			ExpiresIn any    `json:"expiresIn"`
		} `json:"data"`
	}
	if err := decodeJSON(raw, &r); err != nil {
		// Not the JSON of the body: it may hold the token.
		return accessToken{}, fmt.Errorf("%s: invalid JSON in HTTP %d response: %v", op, resp.StatusCode, jsonErrorKind(err))
	}
	if !r.Success {
		msg := c.scrub(r.Message)
		if msg == "" {
			msg = "success is false"
		}
		return accessToken{}, actions.Permanent(fmt.Errorf("%s: refused: %s (%s)", op, msg, credentialsHint))
	}
	if r.Data.Token == "" {
		return accessToken{}, fmt.Errorf("%s: HTTP %d response has no token", op, resp.StatusCode)
	}
	lifetime := tokenLifetime(r.Data.ExpiresIn, r.Data.Expires, issued)
	// Renew a little early so a call never carries a token that dies in flight.
	margin := min(time.Minute, lifetime/10)
	c.log.Debug("HEC access token issued", zap.Duration("lifetime", lifetime))
	return accessToken{value: r.Data.Token, renewAt: issued.Add(lifetime - margin)}, nil
}

// tokenLifetime reads expiresIn (seconds, a number or a numeric string), else expires (a time or
// a Unix timestamp), else falls back to a short default.
func tokenLifetime(expiresIn, expires any, issued time.Time) time.Duration {
	if secs, ok := number(expiresIn); ok && secs > 0 {
		return time.Duration(secs * float64(time.Second))
	}
	if secs, ok := number(expires); ok && secs > 0 {
		at := time.Unix(int64(secs), 0)
		if secs > 1e12 {
			at = time.UnixMilli(int64(secs))
		}
		if d := at.Sub(issued); d > 0 {
			return d
		}
	}
	if s, ok := expires.(string); ok {
		if at, err := time.Parse(time.RFC3339, s); err == nil && at.After(issued) {
			return at.Sub(issued)
		}
	}
	return defaultTokenLifetime
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}

// forget drops a token the service refused even fresh, so the next call fetches another.
func (c *Client) forget(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok.value == tok {
		c.tok = accessToken{}
	}
}

// scrub removes the access key and any token we hold from text the vendor sent back: a message
// that echoes the request must not carry a secret into logs or outcomes.
func (c *Client) scrub(s string) string {
	c.mu.Lock()
	secrets := append([]string{c.accessKey, c.tok.value}, c.refused...)
	c.mu.Unlock()
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

func readBody(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxResponseBytes {
		return nil, fmt.Errorf("response larger than %d bytes", maxResponseBytes)
	}
	return raw, nil
}

// vendorMessage extracts the service's own words from an error body: the envelope's text, an
// auth-style message, or else a short excerpt.
func vendorMessage(body []byte) string {
	var r struct {
		Envelope map[string]any `json:"responseEnvelope"`
		Message  any            `json:"message"`
		Error    any            `json:"error"`
	}
	if firstByte(body) == '{' && decodeJSON(body, &r) == nil {
		if r.Envelope != nil {
			if msg := envelopeMessage(r.Envelope); msg != "" {
				return msg
			}
		}
		for _, v := range []any{r.Message, r.Error} {
			if s, ok := v.(string); ok && strings.TrimSpace(s) != "" {
				return strings.TrimSpace(s)
			}
		}
	}
	return actions.Snippet(body)
}

// envelopeMessage reads the envelope's text under either spelling the documents use.
func envelopeMessage(env map[string]any) string {
	var msg string
	for _, k := range []string{"responseText", "responseTest"} {
		if s, ok := env[k].(string); ok && strings.TrimSpace(s) != "" {
			msg = strings.TrimSpace(s)
			break
		}
	}
	if extra, ok := env["additionalText"].(string); ok && strings.TrimSpace(extra) != "" {
		if msg == "" {
			return strings.TrimSpace(extra)
		}
		msg += " (" + strings.TrimSpace(extra) + ")"
	}
	return msg
}

func responseCode(v any) (int64, error) {
	switch c := v.(type) {
	case nil:
		// An envelope without a code under HTTP 2xx: nothing says it failed.
		return 0, nil
	case json.Number:
		if n, err := c.Int64(); err == nil {
			return n, nil
		}
		if f, err := c.Float64(); err == nil && f == float64(int64(f)) {
			return int64(f), nil
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(c), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("unexpected responseCode %v in the response envelope", v)
}

func decodeTasks(data json.RawMessage) ([]Task, error) {
	var items []struct {
		EntityID json.RawMessage `json:"entityId"`
		TaskID   json.RawMessage `json:"taskId"`
	}
	switch firstByte(data) {
	case 0, 'n':
		return []Task{}, nil
	case '{':
		data = append(append([]byte{'['}, data...), ']')
	}
	if err := json.Unmarshal(data, &items); err != nil {
		return nil, err
	}
	tasks := make([]Task, 0, len(items))
	for i, it := range items {
		eid, err := idText(it.EntityID)
		if err != nil {
			return nil, fmt.Errorf("item %d: entityId: %w", i, err)
		}
		tid, err := idText(it.TaskID)
		if err != nil {
			return nil, fmt.Errorf("item %d: taskId: %w", i, err)
		}
		tasks = append(tasks, Task{EntityID: eid, TaskID: tid})
	}
	return tasks, nil
}

// idText renders an id sent as a JSON string or number as text, digit for digit: a float64
// round trip would turn 123445311234 into 1.23445311234e+11 and lose digits past 2^53.
func idText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch firstByte(raw) {
	case 0, 'n':
		return "", nil
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	lit := string(raw)
	if !json.Valid(raw) {
		return "", fmt.Errorf("not JSON: %s", actions.Snippet(raw))
	}
	if _, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return lit, nil
	}
	f, ok := new(big.Float).SetPrec(512).SetString(lit)
	if !ok {
		return "", fmt.Errorf("neither a string nor a number: %s", actions.Snippet(raw))
	}
	if f.IsInt() {
		return f.Text('f', 0), nil
	}
	return lit, nil
}

func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// jsonErrorKind describes a decoding error without quoting the input it failed on.
func jsonErrorKind(err error) string {
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

func firstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func checkEntityIDs(ids []string) error {
	if len(ids) == 0 {
		return errors.New("must not be empty")
	}
	for i, id := range ids {
		if err := checkID(id); err != nil {
			return fmt.Errorf("item %d: %w", i+1, err)
		}
	}
	return nil
}

// checkID rejects values that are surely a rendering mistake rather than a vendor id.
func checkID(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return errors.New("must not be empty")
	case strings.ContainsRune(id, '/'):
		return fmt.Errorf("%q must not contain '/'", id)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%q must not contain whitespace or control characters", id)
	}
	return nil
}

// checkPathValue is checkID for a value that becomes a path segment.
func checkPathValue(v string) error {
	if err := checkID(v); err != nil {
		return err
	}
	if v == "." || v == ".." || strings.ContainsRune(v, '\\') {
		return fmt.Errorf("%q is not a usable path segment", v)
	}
	return nil
}

func checkActionName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("must not be empty")
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%q must not have leading or trailing whitespace", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%q must not contain control characters", name)
	}
	return nil
}

func checkExcType(t string) error {
	if t == "" {
		return errors.New("must not be empty")
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("%q may hold only letters, digits, '_' and '-'", t)
		}
	}
	return nil
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// listForError shows the ids as [a1 b2], shortened when a playbook sends many.
func listForError(ids []string) string {
	const show = 5
	if len(ids) <= show {
		return fmt.Sprint(ids)
	}
	return fmt.Sprintf("%v… (%d in all)", ids[:show], len(ids))
}
