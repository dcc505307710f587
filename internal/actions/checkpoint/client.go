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
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

const (
	authPath  = "/auth/external"
	apiPrefix = "/app/hec-api/v1.0"

	// defaultTokenLifetime applies when the auth answer states no usable lifetime; a 401 still
	// triggers a renewal, so guessing short costs one extra auth call at worst.
	defaultTokenLifetime = 5 * time.Minute
	credentialsHint      = "check HEC_CLIENT_ID / HEC_ACCESS_KEY"
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
	UserAgent    string
	Now          func() time.Time
	NewRequestID func() string
}

// Task is the vendor's answer for one entity of an action: a receipt (TaskID) when it acted,
// else its own code and message for that entity.
type Task struct {
	EntityID string
	TaskID   string // the service documents an integer and samples a string; kept as text
	Code     int64  // the entity's own response code, when the vendor gave one
	Error    string // why the vendor did not act on the entity; "" when it did
}

// EntityError is an action the vendor did not carry out on some of its entities; Tasks holds
// every entity's result, the refused and the accepted.
type EntityError struct {
	Op     string
	Action string // the entityActionName, e.g. quarantine
	Tasks  []Task
	Failed []Task
}

func (e *EntityError) Error() string {
	parts := make([]string, len(e.Failed))
	for i, t := range e.Failed {
		parts[i] = fmt.Sprintf("%s: %s", t.EntityID, t.Error)
	}
	return fmt.Sprintf("%s: HEC did not act on %d of %d entities: %s", e.Op, len(e.Failed), len(e.Tasks), strings.Join(parts, "; "))
}

// Client talks to the HEC Smart API. It is safe for concurrent use; callers share one token.
type Client struct {
	base      string
	clientID  string
	accessKey string
	http      *vendorhttp.Client
	now       func() time.Time
	newID     func() string
	log       *zap.Logger
	tokens    *vendorhttp.CredentialCache
	redact    *vendorhttp.Redactor
}

// NewClient checks cfg and returns a client; it makes no request until the first call.
func NewClient(cfg Config, log *zap.Logger) (*Client, error) {
	var errs []error
	base, err := vendorhttp.BaseURL("HEC base URL", cfg.BaseURL)
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
		http:      vendorhttp.NewClient(cfg.HTTPClient, cfg.UserAgent),
		now:       cfg.Now,
		newID:     cfg.NewRequestID,
		log:       log,
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
	c.tokens = vendorhttp.NewCredentialCache("HEC access token", "check the API key's permissions and the region", c.requestToken, c.now)
	c.redact = vendorhttp.NewRedactor([]string{c.accessKey}, c.tokens.Secrets)
	return c, nil
}

// EntityAction runs one action (quarantine, restore, …) on entities: POST /action/entity.
// Repeated ids are sent once, as the service wants them unique.
func (c *Client) EntityAction(ctx context.Context, entityIDs []string, actionName, actionParam string) ([]Task, error) {
	op := actionName + " entities " + vendorhttp.ListForError(entityIDs) + " on HEC"
	if err := vendorhttp.IDs(entityIDs); err != nil {
		return nil, actions.Invalid(fmt.Errorf("%s: invalid entityIds: %w", op, err))
	}
	if err := checkActionName(actionName); err != nil {
		return nil, actions.Invalid(fmt.Errorf("%s: invalid entityActionName: %w", op, err))
	}
	ids := vendorhttp.Dedupe(entityIDs)
	body := map[string]any{
		"requestData": map[string]any{
			"entityIds":         ids,
			"entityActionName":  []string{actionName},
			"entityActionParam": []string{actionParam},
		},
	}
	data, err := c.do(ctx, op, http.MethodPost, "/action/entity", body)
	if err != nil {
		return nil, err
	}
	tasks, err := decodeTasks(data)
	if err != nil {
		return nil, actions.Permanent(actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: unexpected responseData: %w", op, err)))
	}
	return c.entityResults(actionName, op, ids, tasks)
}

// entityResults matches the vendor's per-entity answers to the entities asked for. An entity
// with an error code or message, without a taskId, or missing from the answer was not acted
// on: the call fails with the vendor's words for each (entityError).
func (c *Client) entityResults(actionName, op string, ids []string, got []Task) ([]Task, error) {
	tasks := tasksFor(ids, got)
	for i := range tasks {
		tasks[i].Error = c.redact.Scrub(tasks[i].Error)
	}
	return tasks, entityError(actionName, op, tasks)
}

// tasksFor is the vendor's answer for each of ids, in their order; an entity missing from got
// has an error saying so.
func tasksFor(ids []string, got []Task) []Task {
	byID := make(map[string]Task, len(got))
	for _, t := range got {
		byID[t.EntityID] = t
	}
	tasks := make([]Task, 0, len(ids))
	for _, id := range ids {
		t, ok := byID[id]
		if !ok {
			t = Task{EntityID: id, Error: "no result for this entity in the answer"}
		}
		tasks = append(tasks, t)
	}
	return tasks
}

// entityError is the failure of an entity action on tasks, nil when the vendor acted on each:
// an EntityError with the vendor's words for every refused entity, retryable only when every
// refusal is.
func entityError(actionName, op string, tasks []Task) error {
	var failed []Task
	retryable := true
	for _, t := range tasks {
		if t.Error != "" {
			failed = append(failed, t)
			retryable = retryable && (t.Code >= 500 || t.Code == http.StatusTooManyRequests || t.Code == http.StatusRequestTimeout)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	err := error(&EntityError{Op: op, Action: actionName, Tasks: tasks, Failed: failed})
	if !retryable {
		err = actions.Permanent(actions.WithReason(actions.ReasonClient, err))
	} else {
		err = actions.WithReason(actions.ReasonServer, err)
	}
	return err
}

// GetEvent fetches one security event: GET /event/{eventId}.
func (c *Client) GetEvent(ctx context.Context, eventID string) (map[string]any, error) {
	op := fmt.Sprintf("get event %q from HEC", eventID)
	if err := vendorhttp.PathSegment(eventID); err != nil {
		return nil, actions.Invalid(fmt.Errorf("%s: invalid eventId: %w", op, err))
	}
	data, err := c.do(ctx, op, http.MethodGet, "/event/"+url.PathEscape(eventID), nil)
	if err != nil {
		return nil, err
	}
	// Documented as an array of events, sampled as one object: take either.
	switch vendorhttp.FirstByte(data) {
	case '{':
		var ev map[string]any
		if err := vendorhttp.DecodeJSON(data, &ev); err != nil {
			return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %w", op, err))
		}
		return ev, nil
	case '[':
		var evs []map[string]any
		if err := vendorhttp.DecodeJSON(data, &evs); err != nil {
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
		return nil, actions.Invalid(fmt.Errorf("%s: invalid excType: %w", op, err))
	}
	data, err := c.do(ctx, op, http.MethodGet, "/exceptions/"+url.PathEscape(excType), nil)
	if err != nil {
		return nil, err
	}
	switch vendorhttp.FirstByte(data) {
	case 0, 'n':
		return []map[string]any{}, nil
	case '[':
		var list []map[string]any
		if err := vendorhttp.DecodeJSON(data, &list); err != nil {
			return nil, actions.Permanent(fmt.Errorf("%s: unexpected responseData: %w", op, err))
		}
		return list, nil
	}
	return nil, actions.Permanent(fmt.Errorf("%s: responseData is not a list: %s", op, actions.Snippet(data)))
}

// do sends one API call and returns its responseData. A refused token is renewed once and the
// call repeated once, with a fresh request id.
func (c *Client) do(ctx context.Context, op, method, path string, body any) (json.RawMessage, error) {
	return vendorhttp.WithCredential(ctx, c.tokens, op, func(ctx context.Context, tok string) (json.RawMessage, error) {
		return c.send(ctx, op, method, path, body, tok)
	})
}

func (c *Client) send(ctx context.Context, op, method, path string, body any, tok string) (json.RawMessage, error) {
	req, err := vendorhttp.NewJSONRequest(method, c.base+apiPrefix+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	reqID := c.newID()
	req.Header.Set("x-av-req-id", reqID)
	resp, err := c.http.Do(ctx, op, req)
	if err != nil {
		return nil, err
	}
	data, err := c.result(op, resp)
	if err != nil {
		// HEC's support traces a call by the id it was sent with.
		return nil, withRequestID(err, reqID)
	}
	return data, nil
}

// result turns one API answer into responseData or a classed error.
func (c *Client) result(op string, resp *vendorhttp.Response) (json.RawMessage, error) {
	body := resp.Body
	if resp.Status < 200 || resp.Status > 299 {
		return nil, actions.ClassifyHTTP(op, resp.Status, resp.Header, c.redact.Scrub(vendorMessage(body)), c.now())
	}
	if vendorhttp.FirstByte(body) == '[' {
		// The exceptions document's "Response Structure" is a bare array; its sample is an envelope.
		if !json.Valid(body) {
			return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: invalid JSON in HTTP %d response: %s", op, resp.Status, c.redact.Scrub(actions.Snippet(body))))
		}
		return body, nil
	}
	var r struct {
		Envelope map[string]any  `json:"responseEnvelope"`
		Data     json.RawMessage `json:"responseData"`
	}
	if err := vendorhttp.DecodeJSON(body, &r); err != nil {
		// Something between us and the service answered (a proxy page, a cut body): try again later.
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: invalid JSON in HTTP %d response (%v): %s", op, resp.Status, err, c.redact.Scrub(actions.Snippet(body))))
	}
	if r.Envelope == nil {
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: HTTP %d response has no responseEnvelope: %s", op, resp.Status, c.redact.Scrub(actions.Snippet(body))))
	}
	code, err := responseCode(r.Envelope["responseCode"])
	if err != nil {
		return nil, actions.Permanent(actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: %w", op, err)))
	}
	if code == 0 || (code >= 200 && code <= 299) {
		return r.Data, nil
	}
	msg := c.redact.Scrub(envelopeMessage(r.Envelope))
	if code >= 400 && code <= 599 {
		return nil, actions.ClassifyHTTP(op, int(code), resp.Header, msg, c.now())
	}
	return nil, actions.Permanent(actions.WithReason(actions.ReasonClient, fmt.Errorf("%s: HEC response code %d: %s", op, code, msg)))
}

func (c *Client) requestToken(ctx context.Context) (vendorhttp.Credential, error) {
	const op = "get HEC access token"
	req, err := vendorhttp.NewJSONRequest(http.MethodPost, c.base+authPath, map[string]string{"clientId": c.clientID, "accessKey": c.accessKey})
	if err != nil {
		return vendorhttp.Credential{}, fmt.Errorf("%s: %w", op, err)
	}
	issued := c.now()
	resp, err := c.http.Do(ctx, op, req)
	if err != nil {
		return vendorhttp.Credential{}, err
	}
	if resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden {
		msg := c.redact.Scrub(vendorMessage(resp.Body))
		return vendorhttp.Credential{}, actions.Permanent(&actions.HTTPStatusError{
			Op: op, Status: resp.Status, Message: strings.TrimSpace(msg + " (" + credentialsHint + ")"),
		})
	}
	if resp.Status < 200 || resp.Status > 299 {
		return vendorhttp.Credential{}, actions.ClassifyHTTP(op, resp.Status, resp.Header, c.redact.Scrub(vendorMessage(resp.Body)), c.now())
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
	if err := vendorhttp.DecodeJSON(resp.Body, &r); err != nil {
		// Not the JSON of the body: it may hold the token.
		return vendorhttp.Credential{}, actions.WithReason(actions.ReasonBadResponse,
			fmt.Errorf("%s: invalid JSON in HTTP %d response: %v", op, resp.Status, vendorhttp.JSONErrorKind(err)))
	}
	if !r.Success {
		msg := c.redact.Scrub(r.Message)
		if msg == "" {
			msg = "success is false"
		}
		return vendorhttp.Credential{}, actions.Permanent(actions.WithReason(actions.ReasonAuth, fmt.Errorf("%s: refused: %s (%s)", op, msg, credentialsHint)))
	}
	if r.Data.Token == "" {
		return vendorhttp.Credential{}, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: HTTP %d response has no token", op, resp.Status))
	}
	lifetime := tokenLifetime(r.Data.ExpiresIn, r.Data.Expires, issued)
	// Renew a little early so a call never carries a token that dies in flight.
	margin := min(time.Minute, lifetime/10)
	c.log.Debug("HEC access token issued", zap.Duration("lifetime", lifetime))
	return vendorhttp.Credential{Value: r.Data.Token, RenewAt: issued.Add(lifetime - margin)}, nil
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

// vendorMessage extracts the service's own words from an error body: the envelope's text, an
// auth-style message, or else a short excerpt.
func vendorMessage(body []byte) string {
	var r struct {
		Envelope map[string]any `json:"responseEnvelope"`
		Message  any            `json:"message"`
		Error    any            `json:"error"`
	}
	if vendorhttp.FirstByte(body) == '{' && vendorhttp.DecodeJSON(body, &r) == nil {
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
	var items []map[string]json.RawMessage
	switch vendorhttp.FirstByte(data) {
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
		eid, err := idText(it["entityId"])
		if err != nil {
			return nil, fmt.Errorf("item %d: entityId: %w", i, err)
		}
		tid, err := idText(it["taskId"])
		if err != nil {
			return nil, fmt.Errorf("item %d: taskId: %w", i, err)
		}
		t := Task{EntityID: eid, TaskID: tid}
		code, text := entityVerdict(it)
		t.Code = code
		switch {
		case code != 0 && (code < 200 || code > 299):
			t.Error = fmt.Sprintf("response code %d", code)
			if text != "" {
				t.Error = fmt.Sprintf("%s (response code %d)", text, code)
			}
		case tid == "":
			t.Error = "no taskId for this entity"
			if text != "" && !strings.EqualFold(text, "success") {
				t.Error = text
			}
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

// entityVerdict reads one entity's own code and text, which the document promises ("a detailed
// response code for the action per each entityId") without naming their fields: the envelope's
// names (responseCode, responseText or responseTest, additionalText) are read, and a plain
// message or error too. Code 0 means none was given.
func entityVerdict(item map[string]json.RawMessage) (code int64, text string) {
	for _, k := range []string{"responseCode", "code", "statusCode"} {
		var v any
		if raw, ok := item[k]; ok && vendorhttp.DecodeJSON(raw, &v) == nil {
			if n, err := responseCode(v); err == nil {
				code = n
				break
			}
		}
	}
	env := map[string]any{}
	for _, k := range []string{"responseText", "responseTest", "additionalText"} {
		var s string
		if raw, ok := item[k]; ok && json.Unmarshal(raw, &s) == nil {
			env[k] = s
		}
	}
	text = envelopeMessage(env)
	for _, k := range []string{"message", "error"} {
		var s string
		if raw, ok := item[k]; ok && text == "" && json.Unmarshal(raw, &s) == nil {
			text = strings.TrimSpace(s)
		}
	}
	return code, text
}

// idText renders an id sent as a JSON string or number as text, digit for digit: a float64
// round trip would turn 123445311234 into 1.23445311234e+11 and lose digits past 2^53.
func idText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch vendorhttp.FirstByte(raw) {
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

// requestIDError carries the x-av-req-id of the call that failed, for HEC's support.
type requestIDError struct {
	err   error
	reqID string
}

func (e *requestIDError) Error() string { return fmt.Sprintf("%s (x-av-req-id %s)", e.err, e.reqID) }
func (e *requestIDError) Unwrap() error { return e.err }

func withRequestID(err error, reqID string) error {
	return &requestIDError{err: err, reqID: reqID}
}
