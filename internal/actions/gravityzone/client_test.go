package gravityzone

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/actiontest"
)

const (
	testAPIKey  = "gz-key-3f9c2a7b1d8e4f60a5b9c7d2e1f0"
	testEndpt   = "5b680f6fb1a43d860a7b23c1"
	testMD5     = "f696282aa4cd4f614aa995190cf442fe"
	testMD5b    = "098f6bcd4621d373cade4e832627b4f6"
	testSHA256  = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	testIncID   = "6245af36b6503a00d07a4e53"
	testRuleSrc = `{"status": 0, "severity": 1, "target": "connection", "criteriaList": [
		{"field": "Connection.DestinationPort", "relation": "is", "value": ["25691"]},
		{"field": "Connection.Process.Name", "relation": "contains", "value": "./network1"},
		{"field": "Connection.SourcePort", "relation": "any", "value": ["22", "23", "24"]}]}`
)

func basicValue(key string) string { return base64.StdEncoding.EncodeToString([]byte(key + ":")) }

// startFake runs a fake for the duration of the test, without its rate gate: tests that make
// calls back to back are not about the gate.
func startFake(t *testing.T) (*Fake, string) {
	t.Helper()
	f := NewFake(testAPIKey)
	f.SetRateLimit(0)
	base, stop := f.Start()
	t.Cleanup(stop)
	return f, base
}

func newTestClient(t *testing.T, base string, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: base, APIKey: testAPIKey, UserAgent: "riposte/test"}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := NewClient(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handWritten is a GravityZone that answers every call with body(id), for answers the fake
// does not give; id is the request's JSON-RPC id. It counts the requests.
type handWritten struct {
	mu    sync.Mutex
	calls int
}

func (h *handWritten) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func serve(t *testing.T, body func(id string, params map[string]any) string) (string, *handWritten) {
	t.Helper()
	h := &handWritten{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID     string         `json:"id"`
			Params map[string]any `json:"params"`
		}
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &req)
		h.mu.Lock()
		h.calls++
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body(req.ID, req.Params))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api", h
}

// sentEnvelope decodes a recorded request's body.
type sentEnvelope struct {
	ID      string          `json:"id"`
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

func envelopeOf(t *testing.T, r Recorded) sentEnvelope {
	t.Helper()
	var all map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &all); err != nil {
		t.Fatalf("request body is not a JSON object: %s", r.Body)
	}
	for k := range all {
		if k != "id" && k != "jsonrpc" && k != "method" && k != "params" {
			t.Errorf("request body has member %q", k)
		}
	}
	var env sentEnvelope
	if err := json.Unmarshal(r.Body, &env); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestRequestEnvelope(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base+"/") // a trailing slash is tolerated
	ctx := context.Background()
	for range 3 {
		if err := c.IsolateEndpoint(ctx, testEndpt); err != nil {
			t.Fatal(err)
		}
	}
	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("fake saw %d requests, want 3", len(reqs))
	}
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "/api/v1.0/jsonrpc/incidents" {
			t.Errorf("request = %s %s, want POST /api/v1.0/jsonrpc/incidents", r.Method, r.Path)
		}
		for h, want := range map[string]string{
			"Authorization": "Basic " + basicValue(testAPIKey),
			"Content-Type":  "application/json",
			"Accept":        "application/json",
			"User-Agent":    "riposte/test",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		env := envelopeOf(t, r)
		if env.JSONRPC != "2.0" || env.Method != "createIsolateEndpointTask" || string(env.Params) != `{"endpointId":"`+testEndpt+`"}` {
			t.Errorf("envelope = %+v, params %s", env, env.Params)
		}
		if u, err := uuid.Parse(env.ID); err != nil || u.String() != env.ID {
			t.Errorf("id %q is not a canonical UUID", env.ID)
		}
		if seen[env.ID] {
			t.Errorf("id %q sent twice", env.ID)
		}
		seen[env.ID] = true
	}
}

func TestRPCErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code      int64
		message   string
		details   string
		want      string
		permanent bool
		reason    string
	}{
		{-32601, "Method not found", "", `isolate endpoint "` + testEndpt + `" on GravityZone: JSON-RPC error -32601: Method not found`, true, actions.ReasonClient},
		{-32602, "Invalid params", "endpointId", `isolate endpoint "` + testEndpt + `" on GravityZone: JSON-RPC error -32602: Invalid params: endpointId`, true, actions.ReasonClient},
		{-32000, "Server error", "The endpoint is busy", "JSON-RPC error -32000: Server error: The endpoint is busy", false, actions.ReasonServer},
		{-32099, "Server error", "try later", "JSON-RPC error -32099: Server error: try later", false, actions.ReasonServer},
		{-32603, "Internal error", "database unavailable", "JSON-RPC error -32603: Internal error: database unavailable", false, actions.ReasonServer},
		{-32001, "Unauthorized", "", "JSON-RPC error -32001: Unauthorized", false, actions.ReasonServer},
		{-32100, "Application error", "outside the server range", "JSON-RPC error -32100: Application error: outside the server range", true, actions.ReasonClient},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.Inject("createIsolateEndpointTask", 1, Failure{Code: tc.code, Message: tc.message, Details: tc.details})
			err := newTestClient(t, base).IsolateEndpoint(context.Background(), testEndpt)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), `isolate endpoint "`+testEndpt+`" on GravityZone: `) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			var rpc *actions.RPCError
			if !errors.As(err, &rpc) || rpc.Code != tc.code || rpc.Message != tc.message || rpc.Details != tc.details {
				t.Errorf("error %q: want an *actions.RPCError with code %d, message %q, details %q", err, tc.code, tc.message, tc.details)
			}
			if got := actions.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %t, want %t", got, tc.permanent)
			}
			if got := actions.ReasonOf(err); got != tc.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tc.reason)
			}
			if f.Isolated(testEndpt) {
				t.Error("a failed call isolated the endpoint")
			}
		})
	}
}

func TestStatusClasses(t *testing.T) {
	t.Parallel()
	actiontest.StatusClasses(t, func(status int, retryAfter string) error {
		f, base := startFake(t)
		f.Inject("changeIncidentStatus", -1, Failure{Status: status, Message: "injected", RetryAfter: retryAfter})
		return newTestClient(t, base).ChangeIncidentStatus(context.Background(), IncidentsType, testIncID, 3)
	})
}

func TestAuthRefusalIsPermanent(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	const wrong = "gz-wrong-key-00000000000000000000"
	err := newTestClient(t, base, func(c *Config) { c.APIKey = wrong }).IsolateEndpoint(context.Background(), testEndpt)
	if err == nil || !actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonAuth {
		t.Fatalf("error = %v, want permanent with reason auth", err)
	}
	for _, want := range []string{"HTTP 401", "invalid API key", "check GZ_API_KEY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	actiontest.NoSecrets(t, err, wrong, basicValue(wrong), testAPIKey)
}

func TestRateLimitedAnswerCarriesRetryAfter(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.SetRateLimit(1)
	c := newTestClient(t, base)
	ctx := context.Background()
	if err := c.IsolateEndpoint(ctx, testEndpt); err != nil {
		t.Fatal(err)
	}
	err := c.RestoreEndpoint(ctx, testEndpt)
	var ra *actions.RetryAfterError
	if !errors.As(err, &ra) || ra.After != time.Second || actions.IsPermanent(err) {
		t.Fatalf("error = %v, want a retryable *actions.RetryAfterError of 1s", err)
	}
	if actions.ReasonOf(err) != actions.ReasonRateLimited || !strings.Contains(err.Error(), "HTTP 429") {
		t.Errorf("error %q: reason %q", err, actions.ReasonOf(err))
	}
	if n := f.RateLimited(); n != 1 {
		t.Errorf("RateLimited = %d, want 1", n)
	}
}

func TestSlowService(t *testing.T) {
	t.Parallel()
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.Inject("createIsolateEndpointTask", 1, Failure{Delay: 10 * time.Second})
		c := newTestClient(t, base, func(c *Config) { c.HTTPClient = &http.Client{Timeout: 100 * time.Millisecond} })
		began := time.Now()
		err := c.IsolateEndpoint(context.Background(), testEndpt)
		if err == nil || actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonTimeout {
			t.Fatalf("error = %v (reason %q), want retryable with reason timeout", err, actions.ReasonOf(err))
		}
		if !strings.HasPrefix(err.Error(), `isolate endpoint "`+testEndpt+`" on GravityZone: `) {
			t.Errorf("error %q does not say what was being done", err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("took %v", took)
		}
		if f.Isolated(testEndpt) {
			t.Error("the abandoned call isolated the endpoint")
		}
	})
	t.Run("latency only", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.Inject("createIsolateEndpointTask", 1, Failure{Delay: 50 * time.Millisecond})
		began := time.Now()
		if err := newTestClient(t, base).IsolateEndpoint(context.Background(), testEndpt); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(began); took < 50*time.Millisecond {
			t.Errorf("answered in %v, before the injected delay", took)
		}
		if !f.Isolated(testEndpt) {
			t.Error("the slow call was not served")
		}
	})
}

func TestRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = newTestClient(t, "http://"+addr+"/api").IsolateEndpoint(context.Background(), testEndpt)
	if err == nil || actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonNetwork {
		t.Fatalf("error = %v (reason %q), want retryable with reason network", err, actions.ReasonOf(err))
	}
}

func TestMalformedAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		body      func(id string) string
		want      string
		permanent bool
		reason    string
	}{
		{"proxy page", func(string) string { return "<html><body>502 Bad Gateway</body></html>" }, "answer is not JSON-RPC", false, actions.ReasonBadResponse},
		{"empty body", func(string) string { return "" }, "answer is not JSON-RPC", false, actions.ReasonBadResponse},
		{"cut body", func(id string) string { return `{"id": "` + id + `", "jsonrpc": "2.0", "res` }, "answer is not JSON-RPC", false, actions.ReasonBadResponse},
		{"trailing data", func(id string) string { return `{"id": "` + id + `", "result": true} {"x": 1}` }, "answer is not JSON-RPC", false, actions.ReasonBadResponse},
		{"neither result nor error", func(id string) string { return `{"id": "` + id + `", "jsonrpc": "2.0"}` }, "neither result nor error", false, actions.ReasonBadResponse},
		{"wrong id", func(string) string {
			return `{"id": "0df7568c-59c1-48e0-a31b-18d83e6d9810", "jsonrpc": "2.0", "result": true}`
		}, "answers another request", false, actions.ReasonBadResponse},
		{"wrong id on an error", func(string) string {
			return `{"id": "0df7568c-59c1-48e0-a31b-18d83e6d9810", "jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params"}}`
		}, "answers another request", false, actions.ReasonBadResponse},
		{"no id", func(string) string { return `{"jsonrpc": "2.0", "result": true}` }, "answers another request", false, actions.ReasonBadResponse},
		{"numeric id", func(string) string { return `{"id": 1, "jsonrpc": "2.0", "result": true}` }, "answers another request", false, actions.ReasonBadResponse},
		{"bare result outside createCustomRule", func(id string) string {
			return `{"id": "` + id + `", "jsonrpc": "2.0", "result": 6372b7a3897aaa77ee021642}`
		}, "answer is not JSON-RPC", false, actions.ReasonBadResponse},
		{"error code not a number", func(id string) string {
			return `{"id": "` + id + `", "error": {"code": "E42", "message": "bad"}}`
		}, "answer is not JSON-RPC", false, actions.ReasonBadResponse},
		{"false", func(id string) string { return `{"id": "` + id + `", "jsonrpc": "2.0", "result": false}` }, "GravityZone answered false", true, actions.ReasonClient},
		{"null result", func(id string) string { return `{"id": "` + id + `", "jsonrpc": "2.0", "result": null}` }, "unexpected result null", true, actions.ReasonBadResponse},
		{"object result", func(id string) string { return `{"id": "` + id + `", "jsonrpc": "2.0", "result": {"ok": 1}}` }, "unexpected result", true, actions.ReasonBadResponse},
		{"error with null id", func(string) string {
			return `{"id": null, "jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error", "data": {"details": "line 1"}}}`
		}, "JSON-RPC error -32700: Parse error: line 1", true, actions.ReasonClient},
		{"details not text", func(id string) string {
			return `{"id": "` + id + `", "error": {"code": -32602, "message": "Invalid params", "data": {"details": {"endpointId": "unknown"}}}}`
		}, `Invalid params: {"endpointId":"unknown"}`, true, actions.ReasonClient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, _ := serve(t, func(id string, _ map[string]any) string { return tc.body(id) })
			err := newTestClient(t, base).IsolateEndpoint(context.Background(), testEndpt)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), `isolate endpoint "`+testEndpt+`" on GravityZone: `) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if got := actions.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %t, want %t", got, tc.permanent)
			}
			if got := actions.ReasonOf(err); got != tc.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tc.reason)
			}
		})
	}
	t.Run("fake's malformed answers", func(t *testing.T) {
		t.Parallel()
		for _, fl := range []Failure{{Malformed: true}, {Status: 502, Malformed: true}} {
			f, base := startFake(t)
			f.Inject("changeIncidentStatus", 1, fl)
			err := newTestClient(t, base).ChangeIncidentStatus(context.Background(), IncidentsType, testIncID, 2)
			if err == nil || actions.IsPermanent(err) {
				t.Errorf("%+v: error = %v, want retryable", fl, err)
			}
			want := actions.ReasonBadResponse
			if fl.Status == 502 {
				want = actions.ReasonServer
			}
			if got := actions.ReasonOf(err); got != want {
				t.Errorf("%+v: ReasonOf = %q, want %q", fl, got, want)
			}
		}
	})
}

func ruleSettings(t *testing.T) map[string]any {
	t.Helper()
	var s map[string]any
	if err := json.Unmarshal([]byte(testRuleSrc), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateCustomRuleResultShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		shape    RuleIDShape
		returnID bool
		want     string
	}{
		{"the document's bare id", RuleIDBare, true, "6372b7a3897aaa77ee021642"},
		{"a quoted id", RuleIDQuoted, true, "6372b7a3897aaa77ee021642"},
		{"true despite returnRuleId", RuleIDTrue, true, ""},
		{"true for returnRuleId false", RuleIDBare, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.SetRuleIDShape(tc.shape)
			id, err := newTestClient(t, base).CreateCustomRule(context.Background(), CustomRule{
				Type: RuleDetection, Name: "Detection Rule via API", Settings: ruleSettings(t), ReturnRuleID: tc.returnID,
			})
			if err != nil {
				t.Fatal(err)
			}
			if id != tc.want {
				t.Errorf("id = %q, want %q", id, tc.want)
			}
			if rules := f.CustomRules(); len(rules) != 1 || rules[0]["id"] != "6372b7a3897aaa77ee021642" {
				t.Errorf("rules = %v", rules)
			}
			env := envelopeOf(t, f.Requests()[0])
			if want := fmt.Sprintf(`"returnRuleId":%t`, tc.returnID); !strings.Contains(string(env.Params), want) {
				t.Errorf("params %s lack %s", env.Params, want)
			}
		})
	}
	hand := []struct {
		name string
		body func(id string) string
		want string // "" with wantErr: an error
		err  string
	}{
		{"id of digits stays exact", func(id string) string {
			return `{"id": "` + id + `", "jsonrpc": "2.0", "result": 637212345678901234567890}`
		}, "637212345678901234567890", ""},
		{"bare id with a leading zero", func(id string) string {
			return `{"id": "` + id + `", "result": 0372b7a3897aaa77ee021642, "jsonrpc": "2.0"}`
		}, "0372b7a3897aaa77ee021642", ""},
		{"bare id is not a licence for other junk", func(id string) string { return `{"id": "` + id + `", "jsonrpc": "2.0", "result": 6372b7a3 897aaa77}` }, "", "answer is not JSON-RPC"},
		{"two bare values", func(id string) string { return `{"id": "` + id + `", "result": abc, "extra": def}` }, "", "answer is not JSON-RPC"},
		{"bare id of the wrong request", func(string) string {
			return `{"id": "0df7568c-59c1-48e0-a31b-18d83e6d9810", "jsonrpc": "2.0", "result": 6372b7a3897aaa77ee021642}`
		}, "", "answers another request"},
		{"empty string", func(id string) string { return `{"id": "` + id + `", "result": ""}` }, "", "unexpected result"},
		{"false", func(id string) string { return `{"id": "` + id + `", "result": false}` }, "", "GravityZone answered false"},
	}
	for _, tc := range hand {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, _ := serve(t, func(id string, _ map[string]any) string { return tc.body(id) })
			id, err := newTestClient(t, base).CreateCustomRule(context.Background(), CustomRule{Name: "r", Settings: ruleSettings(t), ReturnRuleID: true})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || id != tc.want {
				t.Errorf("id, err = %q, %v; want %q", id, err, tc.want)
			}
		})
	}
}

func pagesAsked(t *testing.T, reqs []Recorded) []string {
	t.Helper()
	var out []string
	for _, r := range reqs {
		out = append(out, string(envelopeOf(t, r).Params))
	}
	return out
}

func TestListPaging(t *testing.T) {
	t.Parallel()
	t.Run("blocklist, every page", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		for i := range 75 {
			f.AddBlocklistItem(HashMD5, fmt.Sprintf("%032x", i), "", "seed")
		}
		c := newTestClient(t, base)
		p, err := c.GetBlocklistItems(context.Background(), ListQuery{PerPage: 30, All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 75 || p.Page != 1 || p.PagesCount != 3 || p.PerPage != 30 || p.Total != 75 {
			t.Errorf("page = %d items, page %d, pagesCount %d, perPage %d, total %d", len(p.Items), p.Page, p.PagesCount, p.PerPage, p.Total)
		}
		for i, it := range p.Items {
			if it["hash"] != fmt.Sprintf("%032x", i) {
				t.Fatalf("item %d = %v: out of order or repeated", i, it)
			}
		}
		want := []string{`{"page":1,"perPage":30}`, `{"page":2,"perPage":30}`, `{"page":3,"perPage":30}`}
		if got := pagesAsked(t, f.Requests()); !reflect.DeepEqual(got, want) {
			t.Errorf("requests = %v, want %v", got, want)
		}
	})
	t.Run("blocklist, from page 2", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		for i := range 75 {
			f.AddBlocklistItem(HashMD5, fmt.Sprintf("%032x", i), "", "seed")
		}
		p, err := newTestClient(t, base).GetBlocklistItems(context.Background(), ListQuery{Page: 2, PerPage: 30, All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 45 || p.Page != 2 || p.Items[0]["hash"] != fmt.Sprintf("%032x", 30) {
			t.Errorf("%d items from page %d", len(p.Items), p.Page)
		}
		if n := len(f.Requests()); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
	})
	t.Run("one page only", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		for i := range 75 {
			f.AddBlocklistItem(HashMD5, fmt.Sprintf("%032x", i), "", "seed")
		}
		p, err := newTestClient(t, base).GetBlocklistItems(context.Background(), ListQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 30 || p.PagesCount != 3 || p.Total != 75 || len(f.Requests()) != 1 {
			t.Errorf("%d items, pagesCount %d, total %d, %d requests", len(p.Items), p.PagesCount, p.Total, len(f.Requests()))
		}
	})
	t.Run("custom rules of one type, every page", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		c := newTestClient(t, base)
		ctx := context.Background()
		for i := range 7 {
			typ := int64(RuleDetection)
			settings := ruleSettings(t)
			if i%3 == 2 {
				typ = RuleExclusion
				delete(settings, "severity")
			}
			if _, err := c.CreateCustomRule(ctx, CustomRule{Type: typ, Name: fmt.Sprintf("rule %d", i), Settings: settings}); err != nil {
				t.Fatal(err)
			}
		}
		before := len(f.Requests())
		p, err := c.GetCustomRules(ctx, ListQuery{Type: RuleDetection, PerPage: 2, All: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != 5 || p.Total != 5 || p.PagesCount != 3 {
			t.Errorf("%d items, total %d, pagesCount %d", len(p.Items), p.Total, p.PagesCount)
		}
		want := []string{`{"page":1,"perPage":2,"type":1}`, `{"page":2,"perPage":2,"type":1}`, `{"page":3,"perPage":2,"type":1}`}
		if got := pagesAsked(t, f.Requests()[before:]); !reflect.DeepEqual(got, want) {
			t.Errorf("requests = %v, want %v", got, want)
		}
	})
	t.Run("too many pages fail at the first", func(t *testing.T) {
		t.Parallel()
		base, h := serve(t, func(id string, _ map[string]any) string {
			return `{"id": "` + id + `", "jsonrpc": "2.0", "result": {"items": [{"id": "a"}], "page": 1, "pagesCount": 500, "perPage": 1, "total": 500}}`
		})
		_, err := newTestClient(t, base).GetBlocklistItems(context.Background(), ListQuery{PerPage: 1, All: true})
		if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), "500 pages") {
			t.Errorf("error = %v", err)
		}
		if h.count() != 1 {
			t.Errorf("%d requests, want 1", h.count())
		}
	})
	t.Run("an empty page ends the list", func(t *testing.T) {
		t.Parallel()
		base, h := serve(t, func(id string, params map[string]any) string {
			items := `[{"id": "a"}]`
			if params["page"] != float64(1) {
				items = `[]`
			}
			return `{"id": "` + id + `", "jsonrpc": "2.0", "result": {"items": ` + items + `, "page": 1, "pagesCount": 5, "perPage": 1, "total": 5}}`
		})
		p, err := newTestClient(t, base).GetBlocklistItems(context.Background(), ListQuery{PerPage: 1, All: true})
		if err != nil || len(p.Items) != 1 || h.count() != 2 {
			t.Errorf("items %v, err %v, %d requests", p, err, h.count())
		}
	})
	t.Run("answers without counts", func(t *testing.T) {
		t.Parallel()
		base, h := serve(t, func(id string, _ map[string]any) string {
			return `{"id": "` + id + `", "jsonrpc": "2.0", "result": {"items": [{"id": "a"}]}}`
		})
		p, err := newTestClient(t, base).GetCustomRules(context.Background(), ListQuery{All: true})
		if err != nil || len(p.Items) != 1 || p.PagesCount != -1 || p.Total != -1 || h.count() != 1 {
			t.Errorf("page %+v, err %v, %d requests", p, err, h.count())
		}
	})
	t.Run("answer without items", func(t *testing.T) {
		t.Parallel()
		base, _ := serve(t, func(id string, _ map[string]any) string {
			return `{"id": "` + id + `", "jsonrpc": "2.0", "result": {"page": 1}}`
		})
		_, err := newTestClient(t, base).GetCustomRules(context.Background(), ListQuery{})
		if err == nil || !actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonBadResponse {
			t.Errorf("error = %v", err)
		}
	})
}

func TestUpdateIncidentNoteAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		result string
		want   string
		err    string
	}{
		{`{"success": true, "data": {"lastUpdated": "2022-04-04T11:53:21+03:00"}}`, "2022-04-04T11:53:21+03:00", ""},
		{`true`, "", ""},
		{`{"data": {}}`, "", ""},
		{`{"success": false}`, "", "GravityZone answered false"},
		{`"ok"`, "", "unexpected result"},
	}
	for _, tc := range cases {
		t.Run(tc.result, func(t *testing.T) {
			t.Parallel()
			base, _ := serve(t, func(id string, _ map[string]any) string {
				return `{"id": "` + id + `", "jsonrpc": "2.0", "result": ` + tc.result + `}`
			})
			got, err := newTestClient(t, base).UpdateIncidentNote(context.Background(), IncidentsType, testIncID, "n")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("lastUpdated, err = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestClientRejectsBadArgumentsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		call func(c *Client) error
		want string
	}{
		{"md5 of sha256 length", func(c *Client) error {
			return c.AddToBlocklist(context.Background(), HashMD5, []string{testSHA256}, "", "x")
		}, "item 0 \"" + testSHA256 + "\" has 64 hex digits; a md5 hash has 32"},
		{"the document's own sample hash", func(c *Client) error {
			return c.AddToBlocklist(context.Background(), HashMD5, []string{"5b7ac19bb1a43dfb107b23c6", testMD5}, "", "x")
		}, "has 24 hex digits"},
		{"not hex", func(c *Client) error {
			return c.AddToBlocklist(context.Background(), HashMD5, []string{strings.Repeat("g", 32)}, "", "x")
		}, "is not hexadecimal"},
		{"unknown hash type", func(c *Client) error { return c.AddToBlocklist(context.Background(), 3, []string{testMD5}, "", "x") }, "hashType must be"},
		{"no source info", func(c *Client) error {
			return c.AddToBlocklist(context.Background(), HashMD5, []string{testMD5}, "", " ")
		}, "sourceInfo must not be empty"},
		{"perPage over 100", func(c *Client) error {
			_, err := c.GetBlocklistItems(context.Background(), ListQuery{PerPage: 101})
			return err
		}, "perPage must be between 1 and 100"},
		{"page 0 after defaults is 1, page -1 is not", func(c *Client) error {
			_, err := c.GetCustomRules(context.Background(), ListQuery{Page: -1})
			return err
		}, "page must be at least 1"},
		{"endpoint id with a slash", func(c *Client) error { return c.IsolateEndpoint(context.Background(), "a/b") }, "must not contain '/'"},
		{"empty endpoint id", func(c *Client) error { return c.RestoreEndpoint(context.Background(), "") }, "endpointId: must not be empty"},
		{"incident type", func(c *Client) error { return c.ChangeIncidentStatus(context.Background(), "alerts", testIncID, 1) }, "type must be incidents or extendedIncidents"},
		{"status 5", func(c *Client) error {
			return c.ChangeIncidentStatus(context.Background(), IncidentsType, testIncID, 5)
		}, "status must be 1 (open) to 4"},
		{"note too long", func(c *Client) error {
			_, err := c.UpdateIncidentNote(context.Background(), IncidentsType, testIncID, strings.Repeat("é", MaxNoteLen+1))
			return err
		}, "at most 50000 characters, got 50001"},
		{"rule without settings", func(c *Client) error {
			_, err := c.CreateCustomRule(context.Background(), CustomRule{Name: "r"})
			return err
		}, "invalid settings"},
		{"exclusion on the registry", func(c *Client) error {
			_, err := c.CreateCustomRule(context.Background(), CustomRule{Type: RuleExclusion, Name: "r", Settings: map[string]any{
				"target": "registry", "criteriaList": []any{map[string]any{"field": "Registry.Key", "relation": "is", "value": "HKLM"}},
			}})
			return err
		}, "registry is for detection rules only"},
		{"delete without type", func(c *Client) error { return c.DeleteCustomRule(context.Background(), 0, "r1") }, "type must be 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			err := tc.call(newTestClient(t, base))
			if err == nil || !actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonInvalidInput || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want invalid input containing %q", err, tc.want)
			}
			if n := len(f.Requests()); n != 0 {
				t.Errorf("fake saw %d requests, want none", n)
			}
		})
	}
}

func TestNoSecretsInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := NewClient(Config{BaseURL: base, APIKey: testAPIKey}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	header := "Basic " + basicValue(testAPIKey)
	// A service that echoes the request back must not carry the key into our errors or logs.
	echo := "refused: Authorization " + header + " key " + testAPIKey
	ctx := context.Background()
	var errs []error
	for _, fl := range []Failure{
		{Code: -32602, Message: echo, Details: echo},
		{Code: -32000, Message: "Server error", Details: echo},
		{Status: 400, Message: echo, Details: echo},
		{Status: 401, Message: echo},
		{Status: 403, Message: echo},
		{Status: 500, Message: echo, Details: echo},
		{Status: 429, Message: echo, RetryAfter: "2"},
	} {
		f.Inject("createIsolateEndpointTask", 1, fl)
		errs = append(errs, c.IsolateEndpoint(ctx, testEndpt))
	}
	echoBase, _ := serve(t, func(id string, _ map[string]any) string {
		return "<html>" + echo + "</html>"
	})
	echoClient, err := NewClient(Config{BaseURL: echoBase, APIKey: testAPIKey}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	errs = append(errs, echoClient.IsolateEndpoint(ctx, testEndpt))
	wrongBase, _ := serve(t, func(string, map[string]any) string {
		return `{"id": "` + testAPIKey + `", "jsonrpc": "2.0", "result": true}`
	})
	wrongClient, _ := NewClient(Config{BaseURL: wrongBase, APIKey: testAPIKey}, zap.New(core))
	errs = append(errs, wrongClient.IsolateEndpoint(ctx, testEndpt))

	resultBase, _ := serve(t, func(id string, _ map[string]any) string {
		return `{"id": "` + id + `", "jsonrpc": "2.0", "result": {"items": "` + testAPIKey + `"}}`
	})
	resultClient, _ := NewClient(Config{BaseURL: resultBase, APIKey: testAPIKey}, zap.New(core))
	errs = append(errs, resultClient.IsolateEndpoint(ctx, testEndpt))
	_, err = resultClient.GetBlocklistItems(ctx, ListQuery{})
	errs = append(errs, err)

	secrets := []string{testAPIKey, basicValue(testAPIKey), header}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: got no error", i)
			continue
		}
		actiontest.NoSecrets(t, err, secrets...)
	}
	if logs.Len() == 0 {
		t.Fatal("the client logged nothing: the log check would prove nothing")
	}
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for i, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line %q leaks secret #%d", e.Message, i+1)
			}
		}
	}
}

func TestNewClientValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"all missing", Config{}, []string{"GZ_BASE_URL", "is empty", "API key (GZ_API_KEY) is empty"}},
		{"relative URL", Config{BaseURL: "cloud.gravityzone.bitdefender.com/api", APIKey: "k"}, []string{"absolute http or https"}},
		{"query", Config{BaseURL: "https://host/api?x=1", APIKey: "k"}, []string{"query"}},
		{"credentials in URL", Config{BaseURL: "https://user:pa55word@host/api", APIKey: "k"}, []string{"must not carry credentials"}},
		{"key with a line break", Config{BaseURL: "https://host/api", APIKey: "abc\ndef"}, []string{"whitespace or control characters"}},
	}
	for _, tc := range cases {
		_, err := NewClient(tc.cfg, nil)
		if err == nil {
			t.Errorf("%s: got no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
		actiontest.NoSecrets(t, err, "pa55word", "abc\ndef")
	}
	if _, err := NewClient(Config{BaseURL: "https://cloud.gravityzone.bitdefender.com/api/", APIKey: "k"}, nil); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := newTestClient(t, base).IsolateEndpoint(ctx, testEndpt)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}
