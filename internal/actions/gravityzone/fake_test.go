package gravityzone

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// rawCall sends body to the fake with plain HTTP and returns the status and the raw answer.
func rawCall(t *testing.T, method, url string, headers map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

func validHeaders() map[string]string {
	return map[string]string{"Authorization": "Basic " + basicValue(testAPIKey), "Content-Type": "application/json"}
}

// rpcBody is a request with a fresh id.
func rpcBody(method, params string) string {
	return fmt.Sprintf(`{"id": %q, "jsonrpc": "2.0", "method": %q, "params": %s}`, uuid.NewString(), method, params)
}

type answerView struct {
	ID     any             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
		Data    struct {
			Details string `json:"details"`
		} `json:"data"`
	} `json:"error"`
}

func decodeAnswerView(t *testing.T, raw []byte) answerView {
	t.Helper()
	var a answerView
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("answer is not JSON: %s", raw)
	}
	return a
}

func TestFakeRejectsBadRequests(t *testing.T) {
	t.Parallel()
	const path = FakeBasePath + APIPath
	md5s := `["` + testMD5 + `"]`
	cases := []struct {
		name    string
		method  string
		path    string
		headers map[string]string // nil: valid
		body    string
		status  int
		code    int64 // JSON-RPC error code; 0: a result
		details string
	}{
		{name: "valid", body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 200},
		{name: "charset in Content-Type", headers: map[string]string{"Authorization": "Basic " + basicValue(testAPIKey), "Content-Type": "application/json; charset=utf-8"},
			body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 200},
		{name: "wrong path", path: "/v1.0/jsonrpc/incidents", body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 404, code: -32600, details: "no such endpoint"},
		{name: "another API", path: FakeBasePath + "/v1.0/jsonrpc/network", body: rpcBody("getEndpointsList", `{}`), status: 404, code: -32600, details: "no such endpoint"},
		{name: "GET", method: http.MethodGet, status: 405, code: -32600, details: "use POST"},
		{name: "no Authorization", headers: map[string]string{"Content-Type": "application/json"}, body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 401, details: "missing Authorization"},
		{name: "wrong key", headers: map[string]string{"Authorization": "Basic " + basicValue("other"), "Content-Type": "application/json"},
			body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 401, details: "invalid API key"},
		{name: "key without the colon", headers: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(testAPIKey)), "Content-Type": "application/json"},
			body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 401, details: "followed by"},
		{name: "key with a password", headers: map[string]string{"Authorization": "Basic " + basicValue(testAPIKey+":pw"), "Content-Type": "application/json"},
			body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 401, details: "no password"},
		{name: "Bearer", headers: map[string]string{"Authorization": "Bearer " + testAPIKey, "Content-Type": "application/json"},
			body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 401, details: "must be Basic"},
		{name: "no Content-Type", headers: map[string]string{"Authorization": "Basic " + basicValue(testAPIKey)},
			body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`), status: 415, details: "Content-Type"},
		{name: "not JSON", body: `method=addToBlocklist`, status: 200, code: -32700},
		{name: "a batch", body: "[" + rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`) + "]", status: 200, code: -32600, details: "one request per call"},
		{name: "JSON-RPC 1.0", body: `{"id": "a", "jsonrpc": "1.0", "method": "createIsolateEndpointTask", "params": {"endpointId": "e1"}}`, status: 200, code: -32600, details: `jsonrpc must be "2.0"`},
		{name: "no jsonrpc", body: `{"id": "a", "method": "createIsolateEndpointTask", "params": {"endpointId": "e1"}}`, status: 200, code: -32600, details: "jsonrpc"},
		{name: "numeric id", body: `{"id": 7, "jsonrpc": "2.0", "method": "createIsolateEndpointTask", "params": {"endpointId": "e1"}}`, status: 200, code: -32600, details: "id must be a non-empty string"},
		{name: "no id", body: `{"jsonrpc": "2.0", "method": "createIsolateEndpointTask", "params": {"endpointId": "e1"}}`, status: 200, code: -32600, details: "id must be"},
		{name: "extra member", body: `{"id": "b", "jsonrpc": "2.0", "method": "createIsolateEndpointTask", "params": {"endpointId": "e1"}, "auth": "x"}`, status: 200, code: -32600, details: `unknown member "auth"`},
		{name: "unknown method", body: rpcBody("createQuarantineTask", `{}`), status: 200, code: -32601, details: `unknown method "createQuarantineTask"`},
		{name: "params an array", body: rpcBody("createIsolateEndpointTask", `["e1"]`), status: 200, code: -32602, details: "params must be an object"},
		{name: "missing param", body: rpcBody("createIsolateEndpointTask", `{}`), status: 200, code: -32602, details: `missing parameter "endpointId"`},
		{name: "unknown param", body: rpcBody("createIsolateEndpointTask", `{"endpointId": "e1", "force": true}`), status: 200, code: -32602, details: `unknown parameter "force"`},
		{name: "param of the wrong case", body: rpcBody("createIsolateEndpointTask", `{"endpointID": "e1"}`), status: 200, code: -32602, details: `unknown parameter "endpointID"`},
		{name: "id param as a number", body: rpcBody("removeFromBlocklist", `{"hashItemId": 5}`), status: 200, code: -32602, details: `parameter "hashItemId" must be a string`},
		{name: "hashType as a string", body: rpcBody("addToBlocklist", `{"hashType": "2", "hashList": `+md5s+`, "sourceInfo": "x"}`), status: 200, code: -32602, details: `parameter "hashType" must be an integer number`},
		{name: "hashType fractional", body: rpcBody("addToBlocklist", `{"hashType": 2.5, "hashList": `+md5s+`, "sourceInfo": "x"}`), status: 200, code: -32602, details: `"hashType" must be an integer`},
		{name: "hashList a string", body: rpcBody("addToBlocklist", `{"hashType": 2, "hashList": "`+testMD5+`", "sourceInfo": "x"}`), status: 200, code: -32602, details: `parameter "hashList" must be an array of strings`},
		{name: "no sourceInfo", body: rpcBody("addToBlocklist", `{"hashType": 2, "hashList": `+md5s+`}`), status: 200, code: -32602, details: `missing parameter "sourceInfo"`},
		{name: "hash of another type", body: rpcBody("addToBlocklist", `{"hashType": 1, "hashList": `+md5s+`, "sourceInfo": "x"}`), status: 200, code: -32602, details: "is not a SHA256 hash"},
		{name: "the document's own sample hash list", body: rpcBody("addToBlocklist", `{"companyId": "5b680f6fb1a43d860a7b23c8", "hashType": 2,
			"hashList": ["5b7ac19bb1a43dfb107b23c6", "f696282aa4cd4f614aa995190cf442fe"], "sourceInfo": "Added from public API"}`), status: 200, code: -32602, details: `hashList[0] "5b7ac19bb1a43dfb107b23c6" is not a MD5 hash`},
		{name: "hashType 3", body: rpcBody("addToBlocklist", `{"hashType": 3, "hashList": `+md5s+`, "sourceInfo": "x"}`), status: 200, code: -32602, details: "hashType must be 1"},
		{name: "perPage over 100", body: rpcBody("getBlocklistItems", `{"perPage": 101}`), status: 200, code: -32602, details: "perPage must be between 1 and 100"},
		{name: "page 0", body: rpcBody("getBlocklistItems", `{"page": 0}`), status: 200, code: -32602, details: "page must be at least 1"},
		{name: "blocklist params may be omitted", body: `{"id": "c", "jsonrpc": "2.0", "method": "getBlocklistItems"}`, status: 200},
		{name: "rules list without paging", body: rpcBody("getCustomRulesList", `{"type": 1}`), status: 200, code: -32602, details: `missing parameter "page"`},
		{name: "unknown blocklist item", body: rpcBody("removeFromBlocklist", `{"hashItemId": "nope"}`), status: 200, code: -32602, details: "no such blocklist item"},
		{name: "rule without name", body: rpcBody("createCustomRule", `{"settings": `+testRuleSrc+`}`), status: 200, code: -32602, details: `missing parameter "name"`},
		{name: "rule settings as an array", body: rpcBody("createCustomRule", `{"name": "r", "settings": [`+testRuleSrc+`]}`), status: 200, code: -32602, details: `parameter "settings" must be an object`},
		{name: "rule with a bad field", body: rpcBody("createCustomRule", `{"name": "r", "settings": {"target": "file", "criteriaList": [{"field": "File.Size", "relation": "is", "value": "1"}]}}`),
			status: 200, code: -32602, details: `settings: criteriaList[0]: unknown field "File.Size"`},
		{name: "exclusion on the registry", body: rpcBody("createCustomRule", `{"type": 2, "name": "r", "settings": {"target": "registry", "criteriaList": [{"field": "Registry.Key", "relation": "is", "value": "k"}]}}`),
			status: 200, code: -32602, details: "registry is for detection rules only"},
		{name: "returnRuleId as a string", body: rpcBody("createCustomRule", `{"name": "r", "settings": `+testRuleSrc+`, "returnRuleId": "true"}`), status: 200, code: -32602, details: `parameter "returnRuleId" must be a boolean`},
		{name: "unknown rule", body: rpcBody("deleteCustomRule", `{"type": 1, "ruleId": "nope"}`), status: 200, code: -32602, details: "no such detection rule"},
		{name: "status 5", body: rpcBody("changeIncidentStatus", `{"type": "incidents", "incidentId": "i", "status": 5}`), status: 200, code: -32602, details: "status must be 1 (open)"},
		{name: "status by name", body: rpcBody("changeIncidentStatus", `{"type": "incidents", "incidentId": "i", "status": "closed"}`), status: 200, code: -32602, details: `parameter "status" must be an integer`},
		{name: "incident type", body: rpcBody("changeIncidentStatus", `{"type": "extendedIncident", "incidentId": "i", "status": 1}`), status: 200, code: -32602, details: `type must be "incidents" or "extendedIncidents"`},
		{name: "note too long", body: rpcBody("updateIncidentNote", `{"type": "incidents", "incidentId": "i", "note": "`+strings.Repeat("n", MaxNoteLen+1)+`"}`), status: 200, code: -32602, details: "note must be at most 50000"},
		{name: "note of exactly the limit", body: rpcBody("updateIncidentNote", `{"type": "incidents", "incidentId": "i", "note": "`+strings.Repeat("n", MaxNoteLen)+`"}`), status: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			method, url, headers := tc.method, strings.TrimSuffix(base, FakeBasePath)+path, validHeaders()
			if method == "" {
				method = http.MethodPost
			}
			if tc.path != "" {
				url = strings.TrimSuffix(base, FakeBasePath) + tc.path
			}
			if tc.headers != nil {
				headers = tc.headers
			}
			status, _, raw := rawCall(t, method, url, headers, tc.body)
			if status != tc.status {
				t.Fatalf("HTTP %d, want %d: %s", status, tc.status, raw)
			}
			a := decodeAnswerView(t, raw)
			switch {
			case tc.status == 200 && tc.code == 0:
				if a.Error != nil || a.Result == nil {
					t.Errorf("answer = %s, want a result", raw)
				}
			case a.Error == nil:
				t.Errorf("answer = %s, want an error", raw)
			default:
				if tc.code != 0 && a.Error.Code != tc.code {
					t.Errorf("code %d, want %d: %s", a.Error.Code, tc.code, raw)
				}
				if !strings.Contains(a.Error.Data.Details, tc.details) || a.Error.Message == "" {
					t.Errorf("details %q do not contain %q", a.Error.Data.Details, tc.details)
				}
			}
			if tc.code != 0 || tc.status != 200 {
				if f.EffectTotal("isolate")+f.EffectTotal("blocklist")+f.EffectTotal("create_rule")+f.EffectTotal("status")+f.EffectTotal("note") != 0 {
					t.Error("a refused request had an effect")
				}
			}
		})
	}
}

func TestFakeAnswersEchoTheID(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	url := base + APIPath
	body := `{"id": "0df7568c-59c1-48e0-a31b-18d83e6d9810", "jsonrpc": "2.0", "method": "changeIncidentStatus", "params": {"type": "incidents", "incidentId": "6245af36b6503a00d07a4e53", "status": 1}}`
	status, _, raw := rawCall(t, http.MethodPost, url, validHeaders(), body)
	var got, want any
	_ = json.Unmarshal(raw, &got)
	_ = json.Unmarshal([]byte(`{"id": "0df7568c-59c1-48e0-a31b-18d83e6d9810", "jsonrpc": "2.0", "result": true}`), &want)
	if status != 200 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("HTTP %d %s", status, raw)
	}
	// The same id again is refused, with the id answered.
	_, _, raw = rawCall(t, http.MethodPost, url, validHeaders(), body)
	a := decodeAnswerView(t, raw)
	if a.Error == nil || a.Error.Code != -32600 || !strings.Contains(a.Error.Data.Details, "already used") || a.ID != "0df7568c-59c1-48e0-a31b-18d83e6d9810" {
		t.Errorf("reused id: %s", raw)
	}
	// An unreadable request is answered with a null id.
	_, _, raw = rawCall(t, http.MethodPost, url, validHeaders(), `{`)
	if a := decodeAnswerView(t, raw); a.ID != nil || a.Error == nil || a.Error.Code != -32700 {
		t.Errorf("parse error: %s", raw)
	}
}

func TestFakeRuleIDShapesOnTheWire(t *testing.T) {
	t.Parallel()
	cases := []struct {
		shape    RuleIDShape
		returnID string
		want     string
		valid    bool
	}{
		{RuleIDBare, "true", `"result": 6372b7a3897aaa77ee021642`, false},
		{RuleIDQuoted, "true", `"result":"6372b7a3897aaa77ee021642"`, true},
		{RuleIDTrue, "true", `"result":true`, true},
		{RuleIDBare, "false", `"result":true`, true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d/%s", tc.shape, tc.returnID), func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.SetRuleIDShape(tc.shape)
			_, _, raw := rawCall(t, http.MethodPost, base+APIPath, validHeaders(),
				rpcBody("createCustomRule", `{"name": "r", "settings": `+testRuleSrc+`, "returnRuleId": `+tc.returnID+`}`))
			if !strings.Contains(string(raw), tc.want) || json.Valid(raw) != tc.valid {
				t.Errorf("answer %s: want %s, valid JSON %t", raw, tc.want, tc.valid)
			}
		})
	}
}

func TestFakeState(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.AddToBlocklist(ctx, HashMD5, []string{testMD5}, "", "a"))
	must(c.AddToBlocklist(ctx, HashMD5, []string{strings.ToUpper(testMD5), testMD5b}, "", "b"))
	must(c.AddToBlocklist(ctx, HashMD5, []string{testMD5}, "other-company", "c"))
	items := f.BlocklistItems()
	if len(items) != 3 || f.Effects("blocklist", testMD5) != 2 {
		t.Fatalf("blocklist = %v: a hash is listed once per company", items)
	}
	p, err := c.GetBlocklistItems(ctx, ListQuery{CompanyID: "other-company"})
	must(err)
	if len(p.Items) != 1 || p.Items[0]["sourceInfo"] != "c" {
		t.Errorf("other company's items = %v", p.Items)
	}
	must(c.RemoveFromBlocklist(ctx, items[0]["id"].(string)))
	if err := c.RemoveFromBlocklist(ctx, items[0]["id"].(string)); err == nil || !strings.Contains(err.Error(), "no such blocklist item") {
		t.Errorf("second removal: %v", err)
	}
	if n := len(f.BlocklistItems()); n != 2 {
		t.Errorf("%d items left, want 2", n)
	}

	must(c.IsolateEndpoint(ctx, "e1"))
	must(c.IsolateEndpoint(ctx, "e1"))
	if !f.Isolated("e1") || f.Effects("isolate", "e1") != 2 || f.Isolated("e2") {
		t.Error("isolation state")
	}
	must(c.RestoreEndpoint(ctx, "e1"))
	if f.Isolated("e1") {
		t.Error("restore did not restore")
	}

	for range 2 {
		must(c.ChangeIncidentStatus(ctx, ExtendedIncidentsType, testIncID, 2))
	}
	if inc, ok := f.Incident(ExtendedIncidentsType, testIncID); !ok || inc.Status != 2 || f.Effects("status", testIncID) != 2 {
		t.Errorf("incident = %+v", inc)
	}
	if _, ok := f.Incident(IncidentsType, testIncID); ok {
		t.Error("the two incident types share state")
	}
	_, err = c.UpdateIncidentNote(ctx, IncidentsType, testIncID, "first")
	must(err)
	_, err = c.UpdateIncidentNote(ctx, IncidentsType, testIncID, "second")
	must(err)
	if inc, _ := f.Incident(IncidentsType, testIncID); inc.Note != "second" || inc.Status != 1 || inc.LastUpdated.IsZero() {
		t.Errorf("note not overwritten: %+v", inc)
	}

	f.SetRuleIDShape(RuleIDQuoted)
	id, err := c.CreateCustomRule(ctx, CustomRule{Type: RuleDetection, Name: "r1", Settings: ruleSettings(t), ReturnRuleID: true})
	must(err)
	if err := c.DeleteCustomRule(ctx, RuleExclusion, id); err == nil {
		t.Error("deleted a detection rule as an exclusion")
	}
	must(c.DeleteCustomRule(ctx, RuleDetection, id))
	if len(f.CustomRules()) != 0 || f.Effects("delete_rule", id) != 1 {
		t.Error("rule not deleted")
	}
	// The fake's state is its own: changing a returned copy changes nothing.
	f.BlocklistItems()[0]["hash"] = "tampered"
	if f.BlocklistItems()[0]["hash"] == "tampered" {
		t.Error("BlocklistItems returned shared state")
	}
}

func TestFakePaginatesHonestly(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	for i := range 7 {
		f.AddBlocklistItem(HashMD5, fmt.Sprintf("%032x", i), "", "seed")
	}
	cases := []struct {
		params               string
		items                int
		page, pages, perPage int64
	}{
		{`{}`, 7, 1, 1, 30},
		{`{"perPage": 3}`, 3, 1, 3, 3},
		{`{"perPage": 3, "page": 3}`, 1, 3, 3, 3},
		{`{"perPage": 3, "page": 4}`, 0, 4, 3, 3},
		{`{"perPage": 7}`, 7, 1, 1, 7},
		{`{"perPage": 100, "page": 2147483647}`, 0, 2147483647, 1, 100},
	}
	for _, tc := range cases {
		_, _, raw := rawCall(t, http.MethodPost, base+APIPath, validHeaders(), rpcBody("getBlocklistItems", tc.params))
		var a struct {
			Result struct {
				Items                            []any
				Page, PagesCount, PerPage, Total int64
			}
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		r := a.Result
		if len(r.Items) != tc.items || r.Page != tc.page || r.PagesCount != tc.pages || r.PerPage != tc.perPage || r.Total != 7 {
			t.Errorf("%s: %s", tc.params, raw)
		}
	}
}

func TestFakeRateGate(t *testing.T) {
	t.Parallel()
	f := NewFake(testAPIKey)
	base, stop := f.Start()
	t.Cleanup(stop)
	for i := range 11 {
		status, header, raw := rawCall(t, http.MethodPost, base+APIPath, validHeaders(), rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`))
		want := http.StatusOK
		if i == 10 {
			want = http.StatusTooManyRequests
			if header.Get("Retry-After") != "1" {
				t.Errorf("429 without Retry-After: 1: %v", header)
			}
		}
		if status != want {
			t.Fatalf("request %d: HTTP %d, want %d: %s", i+1, status, want, raw)
		}
	}
	if f.RateLimited() != 1 || f.PeakRate() != 10 || f.Effects("isolate", "e1") != 10 {
		t.Errorf("RateLimited %d, PeakRate %d, effects %d", f.RateLimited(), f.PeakRate(), f.Effects("isolate", "e1"))
	}
	f.SetRateLimit(0)
	if status, _, _ := rawCall(t, http.MethodPost, base+APIPath, validHeaders(), rpcBody("createIsolateEndpointTask", `{"endpointId": "e1"}`)); status != 200 {
		t.Errorf("with the gate off: HTTP %d", status)
	}
}

func TestFakeFailuresByMethod(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	f.Inject("createIsolateEndpointTask", 2, Failure{Code: -32000, Message: "Server error", Details: "busy"})
	for i := range 2 {
		if err := c.IsolateEndpoint(ctx, "e1"); err == nil || !strings.Contains(err.Error(), "Server error: busy") {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if err := c.RestoreEndpoint(ctx, "e1"); err != nil {
		t.Errorf("another method is untouched: %v", err)
	}
	if err := c.IsolateEndpoint(ctx, "e1"); err != nil {
		t.Errorf("after n failures: %v", err)
	}
	f.Inject("Incident", -1, Failure{Status: 503, RetryAfter: "4"})
	for _, call := range []func() error{
		func() error { return c.ChangeIncidentStatus(ctx, IncidentsType, "i", 1) },
		func() error { _, err := c.UpdateIncidentNote(ctx, IncidentsType, "i", "n"); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "HTTP 503: Service Unavailable") {
			t.Errorf("a match by part of the method: %v", err)
		}
	}
	f.ClearFailures()
	if err := c.ChangeIncidentStatus(ctx, IncidentsType, "i", 1); err != nil {
		t.Errorf("after ClearFailures: %v", err)
	}
	// A held answer gives way when the client does.
	f.Inject("createIsolateEndpointTask", 1, Failure{Delay: time.Minute})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := c.IsolateEndpoint(short, "e1"); err == nil {
		t.Error("no error from a hanging service")
	}
}
