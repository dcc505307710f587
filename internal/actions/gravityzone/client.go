// Package gravityzone is riposte's Bitdefender GravityZone integration: the Incidents API client
// (JSON-RPC 2.0 with a static API key), its catalogue entries, and a strict fake of the service
// for tests, `worker demo` and `--simulate`.
package gravityzone

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

const (
	// APIPath is the Incidents API under the Control Center API access URL.
	APIPath = "/v1.0/jsonrpc/incidents"
	// MaxPerPage is the service's upper limit on perPage.
	MaxPerPage = 100
	// DefaultPerPage is the service's perPage when none is sent.
	DefaultPerPage = 30
	// MaxNoteLen caps an incident note, in characters.
	MaxNoteLen = 50000
	// maxAllPages bounds `all: true`: a list longer than this would make an outcome too big to
	// publish, and a playbook that needs it should narrow the list (companyId, type) instead.
	maxAllPages = 100

	keyHint = "check GZ_API_KEY and that the key may use the Incidents API"
)

// The JSON-RPC methods of the Incidents API, spelled as the document spells them.
const (
	methodAddToBlocklist       = "addToBlocklist"
	methodGetBlocklistItems    = "getBlocklistItems"
	methodRemoveFromBlocklist  = "removeFromBlocklist"
	methodIsolateEndpoint      = "createIsolateEndpointTask"
	methodRestoreEndpoint      = "createRestoreEndpointFromIsolationTask"
	methodCreateCustomRule     = "createCustomRule"
	methodGetCustomRulesList   = "getCustomRulesList"
	methodDeleteCustomRule     = "deleteCustomRule"
	methodChangeIncidentStatus = "changeIncidentStatus"
	methodUpdateIncidentNote   = "updateIncidentNote"
)

// Hash types, rule types and incident types as the service numbers and names them.
const (
	HashSHA256 = 1
	HashMD5    = 2

	RuleDetection = 1
	RuleExclusion = 2

	IncidentsType         = "incidents"
	ExtendedIncidentsType = "extendedIncidents"
)

// Config is what a Client needs. Nil HTTPClient, Now and NewRequestID get defaults (a client
// with a 30 s timeout, time.Now, uuid.NewString); tests replace them.
type Config struct {
	// BaseURL is the Control Center API access URL, e.g.
	// https://cloud.gravityzone.bitdefender.com/api; a trailing slash is tolerated.
	BaseURL      string
	APIKey       string
	HTTPClient   *http.Client
	UserAgent    string
	Now          func() time.Time
	NewRequestID func() string
}

// Client talks to the GravityZone Incidents API. It is safe for concurrent use.
type Client struct {
	endpoint string
	auth     string // the Authorization header's value
	http     *vendorhttp.Client
	now      func() time.Time
	newID    func() string
	log      *zap.Logger
	redact   *vendorhttp.Redactor
}

// NewClient checks cfg and returns a client; it makes no request until the first call.
func NewClient(cfg Config, log *zap.Logger) (*Client, error) {
	var errs []error
	base, err := vendorhttp.BaseURL("GravityZone access URL (GZ_BASE_URL)", cfg.BaseURL)
	if err != nil {
		errs = append(errs, err)
	}
	if err := checkAPIKey(cfg.APIKey); err != nil {
		errs = append(errs, fmt.Errorf("GravityZone API key (GZ_API_KEY) %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	token := base64.StdEncoding.EncodeToString([]byte(cfg.APIKey + ":"))
	c := &Client{
		endpoint: base + APIPath,
		auth:     "Basic " + token,
		http:     vendorhttp.NewClient(cfg.HTTPClient, cfg.UserAgent),
		now:      cfg.Now,
		newID:    cfg.NewRequestID,
		log:      log,
		// The key, and the header that carries it, are what a vendor page echoing the request
		// could hand back to us.
		redact: vendorhttp.NewRedactor([]string{cfg.APIKey, token}),
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

// checkAPIKey says what is wrong with a key, without quoting it.
func checkAPIKey(key string) error {
	switch {
	case strings.TrimSpace(key) == "":
		return errors.New("is empty")
	case strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("holds whitespace or control characters (a line break pasted with it?)")
	}
	return nil
}

// AddToBlocklist adds hashes, all of hashType, to the blocklist in one call. companyID may be
// empty (the key's own company).
func (c *Client) AddToBlocklist(ctx context.Context, hashType int64, hashes []string, companyID, sourceInfo string) error {
	op := "add " + hashName(hashType) + " hashes " + vendorhttp.ListForError(hashes) + " to the GravityZone blocklist"
	if err := checkHashes(hashType, hashes); err != nil {
		return actions.Invalid(fmt.Errorf("%s: invalid hashList: %w", op, err))
	}
	if err := optionalID(companyID); err != nil {
		return actions.Invalid(fmt.Errorf("%s: invalid companyId: %w", op, err))
	}
	if strings.TrimSpace(sourceInfo) == "" {
		return actions.Invalid(fmt.Errorf("%s: sourceInfo must not be empty", op))
	}
	params := map[string]any{"hashType": hashType, "hashList": hashes, "sourceInfo": sourceInfo}
	if companyID != "" {
		params["companyId"] = companyID
	}
	return c.callTrue(ctx, op, methodAddToBlocklist, params)
}

// ListQuery selects one page of a list, or every page from Page on.
type ListQuery struct {
	CompanyID string // "" lists what the service lists by default
	Type      int64  // custom rules only: RuleDetection, RuleExclusion, or 0 for both
	Page      int64  // 0 means 1
	PerPage   int64  // 0 means DefaultPerPage
	All       bool   // follow pagesCount to the last page
}

// Page is a list answer; with ListQuery.All, Items holds every page's items and Page the first
// page read. PagesCount and Total are -1 when the service did not send them.
type Page struct {
	Items      []map[string]any
	Page       int64
	PagesCount int64
	PerPage    int64
	Total      int64
}

// GetBlocklistItems lists blocklist items.
func (c *Client) GetBlocklistItems(ctx context.Context, q ListQuery) (*Page, error) {
	return c.list(ctx, "list GravityZone blocklist items", methodGetBlocklistItems, q, false)
}

// GetCustomRules lists custom rules.
func (c *Client) GetCustomRules(ctx context.Context, q ListQuery) (*Page, error) {
	return c.list(ctx, "list GravityZone custom rules", methodGetCustomRulesList, q, true)
}

func (c *Client) list(ctx context.Context, what, method string, q ListQuery, typed bool) (*Page, error) {
	if q.Page == 0 {
		q.Page = 1
	}
	if q.PerPage == 0 {
		q.PerPage = DefaultPerPage
	}
	switch {
	case q.Page < 1:
		return nil, actions.Invalid(fmt.Errorf("%s: page must be at least 1, got %d", what, q.Page))
	case q.PerPage < 1 || q.PerPage > MaxPerPage:
		return nil, actions.Invalid(fmt.Errorf("%s: perPage must be between 1 and %d, got %d", what, MaxPerPage, q.PerPage))
	case typed && q.Type != 0 && q.Type != RuleDetection && q.Type != RuleExclusion:
		return nil, actions.Invalid(fmt.Errorf("%s: type must be 1 (detection) or 2 (exclusion), got %d", what, q.Type))
	}
	if err := optionalID(q.CompanyID); err != nil {
		return nil, actions.Invalid(fmt.Errorf("%s: invalid companyId: %w", what, err))
	}
	if q.CompanyID != "" {
		what += fmt.Sprintf(" of company %q", q.CompanyID)
	}
	out := &Page{Items: []map[string]any{}, Page: q.Page, PerPage: q.PerPage, PagesCount: -1, Total: -1}
	for page := q.Page; ; page++ {
		op := fmt.Sprintf("%s (page %d)", what, page)
		// The document marks getCustomRulesList's page and perPage as not optional: always
		// send both, for either list.
		params := map[string]any{"page": page, "perPage": q.PerPage}
		if q.CompanyID != "" {
			params["companyId"] = q.CompanyID
		}
		if typed && q.Type != 0 {
			params["type"] = q.Type
		}
		raw, err := c.call(ctx, op, method, params)
		if err != nil {
			return nil, err
		}
		p, err := decodePage(raw)
		if err != nil {
			return nil, actions.Permanent(actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: unexpected result: %s", op, c.redact.Scrub(err.Error()))))
		}
		out.Items = append(out.Items, p.Items...)
		out.PagesCount, out.Total = p.PagesCount, p.Total
		if page == q.Page && p.PerPage > 0 {
			out.PerPage = p.PerPage
		}
		if !q.All || len(p.Items) == 0 || p.PagesCount < 0 || page >= p.PagesCount {
			return out, nil
		}
		if p.PagesCount-q.Page+1 > maxAllPages {
			return nil, actions.Permanent(actions.WithReason(actions.ReasonClient, fmt.Errorf("%s: the list has %d pages of %d from page %d on; all reads at most %d: narrow it (companyId, type) or read it page by page",
				what, p.PagesCount, q.PerPage, q.Page, maxAllPages)))
		}
	}
}

func decodePage(raw json.RawMessage) (*Page, error) {
	var r struct {
		Items      *[]map[string]any `json:"items"`
		Page       *json.Number      `json:"page"`
		PagesCount *json.Number      `json:"pagesCount"`
		PerPage    *json.Number      `json:"perPage"`
		Total      *json.Number      `json:"total"`
	}
	if vendorhttp.FirstByte(raw) != '{' {
		return nil, fmt.Errorf("not an object: %s", actions.Snippet(raw))
	}
	if err := vendorhttp.DecodeJSON(raw, &r); err != nil {
		return nil, err
	}
	if r.Items == nil {
		return nil, errors.New("no items")
	}
	p := &Page{Items: *r.Items, Page: -1, PagesCount: -1, PerPage: -1, Total: -1}
	for _, f := range []struct {
		name string
		n    *json.Number
		dst  *int64
	}{{"page", r.Page, &p.Page}, {"pagesCount", r.PagesCount, &p.PagesCount}, {"perPage", r.PerPage, &p.PerPage}, {"total", r.Total, &p.Total}} {
		if f.n == nil {
			continue
		}
		v, err := f.n.Int64()
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s %s is not a count", f.name, f.n)
		}
		*f.dst = v
	}
	return p, nil
}

// RemoveFromBlocklist removes one blocklist item by its id.
func (c *Client) RemoveFromBlocklist(ctx context.Context, hashItemID string) error {
	op := fmt.Sprintf("remove blocklist item %q from GravityZone", hashItemID)
	if err := vendorhttp.ID(hashItemID); err != nil {
		return actions.Invalid(fmt.Errorf("%s: invalid hashItemId: %w", op, err))
	}
	return c.callTrue(ctx, op, methodRemoveFromBlocklist, map[string]any{"hashItemId": hashItemID})
}

// IsolateEndpoint creates a task that isolates the endpoint.
func (c *Client) IsolateEndpoint(ctx context.Context, endpointID string) error {
	return c.endpointTask(ctx, fmt.Sprintf("isolate endpoint %q on GravityZone", endpointID), methodIsolateEndpoint, endpointID)
}

// RestoreEndpoint creates a task that restores the endpoint from isolation.
func (c *Client) RestoreEndpoint(ctx context.Context, endpointID string) error {
	return c.endpointTask(ctx, fmt.Sprintf("restore endpoint %q from isolation on GravityZone", endpointID), methodRestoreEndpoint, endpointID)
}

func (c *Client) endpointTask(ctx context.Context, op, method, endpointID string) error {
	if err := vendorhttp.ID(endpointID); err != nil {
		return actions.Invalid(fmt.Errorf("%s: invalid endpointId: %w", op, err))
	}
	return c.callTrue(ctx, op, method, map[string]any{"endpointId": endpointID})
}

// CustomRule is a rule to create. Type 0 sends none (the service then picks its default).
type CustomRule struct {
	Type         int64
	CompanyID    string
	Name         string
	Description  string
	Tags         []string
	Settings     map[string]any
	ReturnRuleID bool
}

// CreateCustomRule creates a rule and returns its id, or "" when the service answered true
// instead (as it does when ReturnRuleID is false).
func (c *Client) CreateCustomRule(ctx context.Context, r CustomRule) (string, error) {
	op := fmt.Sprintf("create custom %srule %q on GravityZone", ruleTypeWord(r.Type), r.Name)
	if r.Type != 0 && r.Type != RuleDetection && r.Type != RuleExclusion {
		return "", actions.Invalid(fmt.Errorf("%s: type must be 1 (detection) or 2 (exclusion), got %d", op, r.Type))
	}
	if strings.TrimSpace(r.Name) == "" {
		return "", actions.Invalid(fmt.Errorf("%s: name must not be empty", op))
	}
	if err := optionalID(r.CompanyID); err != nil {
		return "", actions.Invalid(fmt.Errorf("%s: invalid companyId: %w", op, err))
	}
	if err := checkRuleSettings(r.Settings, r.Type); err != nil {
		return "", actions.Invalid(fmt.Errorf("%s: invalid settings: %w", op, err))
	}
	params := map[string]any{"name": r.Name, "settings": r.Settings, "returnRuleId": r.ReturnRuleID}
	if r.Type != 0 {
		params["type"] = r.Type
	}
	if r.CompanyID != "" {
		params["companyId"] = r.CompanyID
	}
	if r.Description != "" {
		params["description"] = r.Description
	}
	if len(r.Tags) > 0 {
		params["tags"] = r.Tags
	}
	raw, err := c.call(ctx, op, methodCreateCustomRule, params)
	if err != nil {
		return "", err
	}
	switch b := vendorhttp.FirstByte(raw); {
	case b == '"':
		var id string
		if err := json.Unmarshal(raw, &id); err != nil || strings.TrimSpace(id) == "" {
			return "", c.unexpected(op, raw)
		}
		return id, nil
	case b >= '0' && b <= '9':
		// An id of digits only is a valid JSON number; keep it digit for digit.
		var n json.Number
		if err := vendorhttp.DecodeJSON(raw, &n); err != nil || strings.Trim(n.String(), "0123456789") != "" {
			return "", c.unexpected(op, raw)
		}
		return n.String(), nil
	}
	if err := c.isTrue(op, raw); err != nil {
		return "", err
	}
	return "", nil
}

// DeleteCustomRule deletes one rule of ruleType.
func (c *Client) DeleteCustomRule(ctx context.Context, ruleType int64, ruleID string) error {
	op := fmt.Sprintf("delete custom %srule %q on GravityZone", ruleTypeWord(ruleType), ruleID)
	if ruleType != RuleDetection && ruleType != RuleExclusion {
		return actions.Invalid(fmt.Errorf("%s: type must be 1 (detection) or 2 (exclusion), got %d", op, ruleType))
	}
	if err := vendorhttp.ID(ruleID); err != nil {
		return actions.Invalid(fmt.Errorf("%s: invalid ruleId: %w", op, err))
	}
	return c.callTrue(ctx, op, methodDeleteCustomRule, map[string]any{"type": ruleType, "ruleId": ruleID})
}

// ChangeIncidentStatus sets an incident's status (1 open … 4 false positive). The service
// answers true when the incident already had it.
func (c *Client) ChangeIncidentStatus(ctx context.Context, incidentType, incidentID string, status int64) error {
	op := fmt.Sprintf("set the status of %s %q to %s on GravityZone", incidentNoun(incidentType), incidentID, statusName(status))
	if err := checkIncident(incidentType, incidentID); err != nil {
		return actions.Invalid(fmt.Errorf("%s: %w", op, err))
	}
	if status < 1 || status > 4 {
		return actions.Invalid(fmt.Errorf("%s: status must be 1 (open) to 4 (false positive), got %d", op, status))
	}
	return c.callTrue(ctx, op, methodChangeIncidentStatus, map[string]any{"type": incidentType, "incidentId": incidentID, "status": status})
}

// UpdateIncidentNote replaces an incident's note and returns the service's lastUpdated, ""
// when it sent none.
func (c *Client) UpdateIncidentNote(ctx context.Context, incidentType, incidentID, note string) (string, error) {
	op := fmt.Sprintf("update the note of %s %q on GravityZone", incidentNoun(incidentType), incidentID)
	if err := checkIncident(incidentType, incidentID); err != nil {
		return "", actions.Invalid(fmt.Errorf("%s: %w", op, err))
	}
	if n := utf8.RuneCountInString(note); n > MaxNoteLen {
		return "", actions.Invalid(fmt.Errorf("%s: note must be at most %d characters, got %d", op, MaxNoteLen, n))
	}
	raw, err := c.call(ctx, op, methodUpdateIncidentNote, map[string]any{"type": incidentType, "incidentId": incidentID, "note": note})
	if err != nil {
		return "", err
	}
	if vendorhttp.FirstByte(raw) != '{' {
		// The document says "a Boolean … and the following object"; a bare true is taken too.
		return "", c.isTrue(op, raw)
	}
	var r struct {
		Success *bool `json:"success"`
		Data    struct {
			LastUpdated any `json:"lastUpdated"`
		} `json:"data"`
	}
	if err := vendorhttp.DecodeJSON(raw, &r); err != nil {
		return "", c.unexpected(op, raw)
	}
	if r.Success != nil && !*r.Success {
		return "", answeredFalse(op)
	}
	switch v := r.Data.LastUpdated.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	return "", nil
}

func checkIncident(incidentType, incidentID string) error {
	if incidentType != IncidentsType && incidentType != ExtendedIncidentsType {
		return fmt.Errorf("type must be %s or %s, got %q", IncidentsType, ExtendedIncidentsType, incidentType)
	}
	if err := vendorhttp.ID(incidentID); err != nil {
		return fmt.Errorf("invalid incidentId: %w", err)
	}
	return nil
}

// callTrue makes a call whose result is documented as a Boolean true on success.
func (c *Client) callTrue(ctx context.Context, op, method string, params map[string]any) error {
	raw, err := c.call(ctx, op, method, params)
	if err != nil {
		return err
	}
	return c.isTrue(op, raw)
}

func (c *Client) isTrue(op string, raw json.RawMessage) error {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return nil
	case "false":
		return answeredFalse(op)
	}
	return c.unexpected(op, raw)
}

// answeredFalse: the service said the operation did not succeed, without saying why; asking
// again would get the same answer.
func answeredFalse(op string) error {
	return actions.Permanent(actions.WithReason(actions.ReasonClient, fmt.Errorf("%s: GravityZone answered false: the operation was not done", op)))
}

// unexpected: a well-formed JSON-RPC answer from the service whose result is not what the
// document describes; the same call would get the same answer.
func (c *Client) unexpected(op string, raw json.RawMessage) error {
	return actions.Permanent(actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: unexpected result %s", op, c.redact.Scrub(actions.Snippet(raw)))))
}

type rpcRequest struct {
	ID      string         `json:"id"`
	JSONRPC string         `json:"jsonrpc"`
	Method  string         `json:"method"`
	Params  map[string]any `json:"params"`
}

type rpcAnswer struct {
	ID      json.RawMessage `json:"id"`
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *rpcErrorObject `json:"error"`
}

type rpcErrorObject struct {
	Code    json.Number     `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// call makes one JSON-RPC call and returns its result, or a classed error.
func (c *Client) call(ctx context.Context, op, method string, params map[string]any) (json.RawMessage, error) {
	id := c.newID()
	req, err := vendorhttp.NewJSONRequest(http.MethodPost, c.endpoint, rpcRequest{ID: id, JSONRPC: "2.0", Method: method, Params: params})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", c.auth)
	began := c.now()
	resp, err := c.http.Do(ctx, op, req)
	if err == nil {
		var raw json.RawMessage
		if raw, err = c.result(op, method, id, resp); err == nil {
			c.log.Debug("GravityZone call done", zap.String("method", method), zap.String("id", id), zap.Duration("took", c.now().Sub(began)))
			return raw, nil
		}
	}
	c.log.Debug("GravityZone call failed", zap.String("method", method), zap.String("id", id),
		zap.String("reason", actions.ReasonOf(err)), zap.Error(err))
	return nil, err
}

func (c *Client) result(op, method, id string, resp *vendorhttp.Response) (json.RawMessage, error) {
	if resp.Status < 200 || resp.Status > 299 {
		msg := c.redact.Scrub(c.errorText(resp.Body))
		if resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden {
			// A static key has nothing to renew: a refusal stays a refusal.
			return nil, actions.Permanent(&actions.HTTPStatusError{Op: op, Status: resp.Status, Message: strings.TrimSpace(msg + " (" + keyHint + ")")})
		}
		return nil, actions.ClassifyHTTP(op, resp.Status, resp.Header, msg, c.now())
	}
	ans, err := decodeAnswer(resp.Body, method == methodCreateCustomRule)
	if err != nil {
		// Something between us and the service answered (a proxy page, a cut body): try again later.
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: HTTP %d answer is not JSON-RPC (%s): %s",
			op, resp.Status, vendorhttp.JSONErrorKind(err), c.redact.Scrub(actions.Snippet(resp.Body))))
	}
	var gotID string
	idMatches := json.Unmarshal(ans.ID, &gotID) == nil && gotID == id
	if ans.Error != nil && (idMatches || isNull(ans.ID)) {
		// JSON-RPC answers a request whose id it could not read with a null id.
		return nil, c.rpcError(op, ans.Error)
	}
	if !idMatches {
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: the answer's id is %s, not the request's %q: it answers another request",
			op, c.redact.Scrub(actions.Snippet(ans.ID)), id))
	}
	if ans.Result == nil {
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: HTTP %d answer has neither result nor error: %s",
			op, resp.Status, c.redact.Scrub(actions.Snippet(resp.Body))))
	}
	return ans.Result, nil
}

func (c *Client) rpcError(op string, e *rpcErrorObject) error {
	code, err := e.Code.Int64()
	if err != nil {
		return actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: JSON-RPC error with code %s: %s", op, c.redact.Scrub(strconv.Quote(e.Code.String())), c.redact.Scrub(e.Message)))
	}
	return actions.ClassifyJSONRPC(&actions.RPCError{
		Op: op, Code: code, Message: c.redact.Scrub(strings.TrimSpace(e.Message)), Details: c.redact.Scrub(details(e.Data)),
	})
}

// details reads error.data.details, which the service sends as text; anything else is shown as
// compact JSON rather than lost.
func details(data json.RawMessage) string {
	if len(data) == 0 || isNull(data) {
		return ""
	}
	var d struct {
		Details json.RawMessage `json:"details"`
	}
	if vendorhttp.FirstByte(data) == '{' && json.Unmarshal(data, &d) == nil {
		if d.Details == nil {
			return compact(data)
		}
		data = d.Details
	}
	var s string
	if json.Unmarshal(data, &s) == nil {
		return strings.TrimSpace(s)
	}
	if isNull(data) {
		return ""
	}
	return compact(data)
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return actions.Snippet(raw)
	}
	return actions.Snippet(b.Bytes())
}

// errorText is the service's own words in a non-2xx answer: a JSON-RPC error's message and
// details when it sent one, else a short excerpt.
func (c *Client) errorText(body []byte) string {
	var ans rpcAnswer
	if vendorhttp.FirstByte(body) == '{' && vendorhttp.DecodeJSON(body, &ans) == nil && ans.Error != nil {
		msg := strings.TrimSpace(ans.Error.Message)
		if d := details(ans.Error.Data); d != "" && d != msg {
			msg = strings.TrimSpace(msg + ": " + d)
		}
		if msg != "" {
			return msg
		}
	}
	return actions.Snippet(body)
}

// bareResult is the document's createCustomRule answer, whose result is an id without quotes
// (`"result": 6372b7a3897aaa77ee021642`): not JSON, so it is quoted before decoding.
var bareResult = regexp.MustCompile(`("result"\s*:\s*)([0-9A-Za-z]+)(\s*[,}])`)

// decodeAnswer decodes a JSON-RPC answer. With bare set, an answer that is not JSON only
// because its result is a bare id is taken as if the id were quoted; nothing else is loosened.
func decodeAnswer(body []byte, bare bool) (*rpcAnswer, error) {
	var ans rpcAnswer
	err := vendorhttp.DecodeJSON(body, &ans)
	if err == nil || !bare {
		return &ans, err
	}
	m := bareResult.FindAllSubmatchIndex(body, -1)
	if len(m) != 1 {
		return nil, err
	}
	tok := string(body[m[0][4]:m[0][5]])
	if tok == "true" || tok == "false" || tok == "null" {
		return nil, err
	}
	fixed := make([]byte, 0, len(body)+2)
	fixed = append(fixed, body[:m[0][4]]...)
	fixed = strconv.AppendQuote(fixed, tok)
	fixed = append(fixed, body[m[0][5]:]...)
	var again rpcAnswer
	if vendorhttp.DecodeJSON(fixed, &again) != nil {
		return nil, err
	}
	var got string
	if json.Unmarshal(again.Result, &got) != nil || got != tok {
		return nil, err // the match was not the answer's own result
	}
	return &again, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func optionalID(id string) error {
	if id == "" {
		return nil
	}
	return vendorhttp.ID(id)
}

// hashLen is how many hex digits a hash of hashType has.
func hashLen(hashType int64) int {
	switch hashType {
	case HashSHA256:
		return 64
	case HashMD5:
		return 32
	}
	return 0
}

func hashName(hashType int64) string {
	switch hashType {
	case HashSHA256:
		return "sha256"
	case HashMD5:
		return "md5"
	}
	return fmt.Sprintf("type-%d", hashType)
}

// checkHex rejects what cannot be a hash of any type.
func checkHex(h string) error {
	if h == "" {
		return errors.New("is empty")
	}
	for _, r := range h {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return fmt.Errorf("%q is not hexadecimal", h)
		}
	}
	return nil
}

// checkHashes checks every hash is hex of the length hashType implies.
func checkHashes(hashType int64, hashes []string) error {
	want := hashLen(hashType)
	if want == 0 {
		return fmt.Errorf("hashType must be 1 (sha256) or 2 (md5), got %d", hashType)
	}
	if len(hashes) == 0 {
		return errors.New("must not be empty")
	}
	for i, h := range hashes {
		if err := checkHex(h); err != nil {
			return fmt.Errorf("item %d %w", i, err)
		}
		if len(h) != want {
			return fmt.Errorf("item %d %q has %d hex digits; a %s hash has %d", i, h, len(h), hashName(hashType), want)
		}
	}
	return nil
}

// ruleTypeWord is "detection ", "exclusion " or "", for an op's text.
func ruleTypeWord(t int64) string {
	switch t {
	case RuleDetection:
		return "detection "
	case RuleExclusion:
		return "exclusion "
	}
	return ""
}

func incidentNoun(t string) string {
	if t == ExtendedIncidentsType {
		return "extended incident"
	}
	return "incident"
}

func statusName(s int64) string {
	for _, c := range statusChoices() {
		if c.Value == s {
			return c.Name
		}
	}
	return strconv.FormatInt(s, 10)
}

// valueKind is the document's "Validator" column: what a criterion's values must be.
type valueKind int

const (
	textValue valueKind = iota // a string
	ipValue                    // a valid IP address
	portValue                  // an integer between 0 and 65,535 (the sample sends strings of digits)
)

// criteriaField is one row of the document's "Detections and exclusions" table.
type criteriaField struct {
	Field     string
	Target    string
	Exclusion bool // usable in exclusion rules; every field is usable in detection rules
	Kind      valueKind
}

// criteriaFields is the document's table of fields a rule's criteria may test.
func criteriaFields() []criteriaField {
	return []criteriaField{
		{"Process.Name", "process", true, textValue},
		{"Process.Path", "process", true, textValue},
		{"Process.FullPathName", "process", true, textValue},
		{"Process.CommandLine", "process", true, textValue},
		{"Process.Parent.Name", "process", true, textValue},
		{"Process.Parent.Path", "process", true, textValue},
		{"Process.Parent.FullPathName", "process", true, textValue},
		{"Process.Parent.CommandLine", "process", true, textValue},
		{"File.Name", "file", true, textValue},
		{"File.Path", "file", true, textValue},
		{"File.FullPathName", "file", true, textValue},
		{"File.CreatedBy.Name", "file", true, textValue},
		{"File.CreatedBy.Path", "file", true, textValue},
		{"File.CreatedBy.FullPathName", "file", true, textValue},
		{"File.CreatedBy.CommandLine", "file", true, textValue},
		{"Connection.SourceIP", "connection", true, ipValue},
		{"Connection.DestinationIP", "connection", true, ipValue},
		{"Connection.SourcePort", "connection", true, portValue},
		{"Connection.DestinationPort", "connection", true, portValue},
		{"Connection.Process.Name", "connection", true, textValue},
		{"Connection.Process.Path", "connection", true, textValue},
		{"Connection.Process.FullPathName", "connection", true, textValue},
		{"Connection.Process.CommandLine", "connection", true, textValue},
		{"Registry.Key", "registry", false, textValue},
		{"Registry.Value", "registry", false, textValue},
		{"Registry.CreatedBy.Name", "registry", false, textValue},
		{"Registry.CreatedBy.Path", "registry", false, textValue},
		{"Registry.CreatedBy.FullPathName", "registry", false, textValue},
		{"Registry.CreatedBy.CommandLine", "registry", false, textValue},
	}
}

// ruleTargets are the targets of the table, in its order.
func ruleTargets() []string { return []string{"process", "file", "connection", "registry"} }

// ruleSettingKeys are the settings the document lists.
func ruleSettingKeys() []string { return []string{"status", "severity", "target", "criteriaList"} }

// criterionKeys are what each criterion holds.
func criterionKeys() []string { return []string{"field", "relation", "value"} }

func ruleRelations() []string { return []string{"is", "contains", "any"} }

// checkRuleSettings checks a rule's settings against the document's table. ruleType 0 means
// not known: what depends on it is left to checkRuleType.
func checkRuleSettings(s map[string]any, ruleType int64) error {
	if s == nil {
		return errors.New("must be an object with target and criteriaList")
	}
	for _, k := range sortedKeys(s) {
		if !slices.Contains(ruleSettingKeys(), k) {
			return fmt.Errorf("unknown setting %q: settings are %s", k, strings.Join(ruleSettingKeys(), ", "))
		}
	}
	for _, k := range []string{"status", "severity"} {
		if v, ok := s[k]; ok {
			if n, ok := wholeNumber(v); !ok || n < 0 {
				return fmt.Errorf("%s must be a whole number, at least 0, got %s", k, show(v))
			}
		}
	}
	target, ok := s["target"].(string)
	if !ok {
		if _, present := s["target"]; !present {
			return fmt.Errorf("missing target: one of %s", strings.Join(ruleTargets(), ", "))
		}
		return fmt.Errorf("target must be one of %s, got %s", strings.Join(ruleTargets(), ", "), show(s["target"]))
	}
	if !slices.Contains(ruleTargets(), target) {
		return fmt.Errorf("target must be one of %s, got %q", strings.Join(ruleTargets(), ", "), target)
	}
	list, ok := s["criteriaList"].([]any)
	if !ok {
		if ms, isMaps := s["criteriaList"].([]map[string]any); isMaps {
			list = make([]any, len(ms))
			for i, m := range ms {
				list[i] = m
			}
		} else {
			return errors.New("criteriaList must be a list of {field, relation, value}")
		}
	}
	if len(list) == 0 {
		return errors.New("criteriaList must not be empty")
	}
	for i, item := range list {
		if err := checkCriterion(item, target); err != nil {
			return fmt.Errorf("criteriaList[%d]: %w", i, err)
		}
	}
	if ruleType != 0 {
		return checkRuleType(s, ruleType)
	}
	return nil
}

// checkRuleType checks what the table allows each rule type: registry criteria only in
// detection rules, severity only for them too. ruleType 0 (not sent) is refused a registry
// target, as the document does not say which type the service then assumes.
func checkRuleType(s map[string]any, ruleType int64) error {
	if target, _ := s["target"].(string); target == "registry" {
		switch ruleType {
		case RuleDetection:
		case 0:
			return errors.New("settings target registry is for detection rules only: set type: detection")
		default:
			return errors.New("settings target registry is for detection rules only, not exclusions")
		}
	}
	if _, ok := s["severity"]; ok && ruleType == RuleExclusion {
		return errors.New("settings severity applies to detection rules only, not exclusions")
	}
	return nil
}

func checkCriterion(item any, target string) error {
	c, ok := item.(map[string]any)
	if !ok {
		return fmt.Errorf("must be an object {field, relation, value}, got %s", show(item))
	}
	for _, k := range sortedKeys(c) {
		if !slices.Contains(criterionKeys(), k) {
			return fmt.Errorf("unknown key %q: a criterion holds field, relation and value", k)
		}
	}
	name, ok := c["field"].(string)
	if !ok {
		return fmt.Errorf("field must be a string, got %s", show(c["field"]))
	}
	var field *criteriaField
	var ofTarget []string
	for _, f := range criteriaFields() {
		if f.Target == target {
			ofTarget = append(ofTarget, f.Field)
		}
		if f.Field == name {
			field = &f
		}
	}
	switch {
	case field == nil:
		return fmt.Errorf("unknown field %q: fields of target %s are %s", name, target, strings.Join(ofTarget, ", "))
	case field.Target != target:
		return fmt.Errorf("field %q belongs to target %s, not %s", name, field.Target, target)
	}
	rel, ok := c["relation"].(string)
	if !ok || !slices.Contains(ruleRelations(), rel) {
		return fmt.Errorf("relation must be one of %s, got %s", strings.Join(ruleRelations(), ", "), show(c["relation"]))
	}
	v, present := c["value"]
	if !present {
		return errors.New("missing value")
	}
	var values []any
	switch t := v.(type) {
	case []any:
		values = t
	case []string:
		for _, s := range t {
			values = append(values, s)
		}
	default:
		if rel == "any" {
			return fmt.Errorf("relation any takes a list of values, got %s", show(v))
		}
		values = []any{v}
	}
	if len(values) == 0 {
		return errors.New("value must not be an empty list")
	}
	for i, e := range values {
		if err := checkCriterionValue(field.Kind, e); err != nil {
			return fmt.Errorf("value[%d] for %s: %w", i, name, err)
		}
	}
	return nil
}

func checkCriterionValue(kind valueKind, v any) error {
	switch kind {
	case portValue:
		if s, ok := v.(string); ok {
			if s == "" || strings.TrimLeft(s, "0123456789") != "" {
				return fmt.Errorf("port %q is not a whole number", s)
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n > 65535 {
				return fmt.Errorf("port %q is not between 0 and 65535", s)
			}
			return nil
		}
		n, ok := wholeNumber(v)
		if !ok || n < 0 || n > 65535 {
			return fmt.Errorf("port must be a whole number between 0 and 65535, got %s", show(v))
		}
	case ipValue:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("must be an IP address, got %s", show(v))
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%q is not a valid IP address", s)
		}
	default:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("must be a string, got %s", show(v))
		}
		// An empty "contains" matches everything: in an exclusion, that silences the EDR.
		if strings.TrimSpace(s) == "" {
			return errors.New("must not be empty")
		}
	}
	return nil
}

// wholeNumber reads a number as YAML, JSON (with or without UseNumber) or Go code gives it,
// by the same rule the action inputs are checked with.
func wholeNumber(v any) (int64, bool) { return actions.WholeNumber(v) }

// show describes a value in an input error.
func show(v any) string {
	switch t := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(t)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
