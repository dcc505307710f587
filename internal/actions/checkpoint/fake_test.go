package checkpoint

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// rawToken logs in to a fake with plain HTTP.
func rawToken(t *testing.T, base string) string {
	t.Helper()
	status, body := rawDo(t, http.MethodPost, base+authPath,
		map[string]string{"Content-Type": "application/json"},
		`{"clientId": "`+testClientID+`", "accessKey": "`+testAccessKey+`"}`)
	if status != http.StatusOK {
		t.Fatalf("auth: HTTP %d: %v", status, body)
	}
	data, _ := body["data"].(map[string]any)
	tok, _ := data["token"].(string)
	if tok == "" || body["success"] != true {
		t.Fatalf("auth answer = %v", body)
	}
	if _, ok := data["expiresIn"].(float64); !ok {
		t.Errorf("expiresIn = %#v, want a number of seconds", data["expiresIn"])
	}
	return tok
}

func rawDo(t *testing.T, method, url string, headers map[string]string, body string) (int, map[string]any) {
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
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: HTTP %d with a body that is not a JSON object: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func envelopeOf(t *testing.T, body map[string]any) (code float64, text string) {
	t.Helper()
	env, ok := body["responseEnvelope"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no responseEnvelope: %v", body)
	}
	code, _ = env["responseCode"].(float64)
	text, _ = env["responseText"].(string)
	if text == "" {
		text, _ = env["responseTest"].(string)
	}
	return code, text
}

func TestFakeRejectsBadRequests(t *testing.T) {
	t.Parallel()
	const validBody = `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine"], "entityActionParam": [""]}}`
	cases := []struct {
		name    string
		method  string
		path    string
		headers func(tok string) map[string]string // nil: valid headers
		body    string
		status  int
		want    string
	}{
		{name: "valid", body: validBody, status: 200, want: "success"},
		{name: "param may be omitted", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["restore"]}}`, status: 200},
		{name: "many entities", body: `{"requestData": {"entityIds": ["a1", "b2", "c3"], "entityActionName": ["dismiss"], "entityActionParam": [""]}}`, status: 200},
		{name: "missing x-av-req-id", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
		}, body: validBody, status: 400, want: "missing x-av-req-id"},
		{name: "x-av-req-id with the document's broken quoting", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json", "x-av-req-id": "d290f1ee-6c54-4b01-90e6-d701748f085 1"}
		}, body: validBody, status: 400, want: "is not a UUID"},
		{name: "x-av-req-id not canonical", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json", "x-av-req-id": "{" + uuid.NewString() + "}"}
		}, body: validBody, status: 400, want: "is not a UUID"},
		{name: "missing Authorization", headers: func(string) map[string]string {
			return map[string]string{"Content-Type": "application/json", "x-av-req-id": uuid.NewString()}
		}, body: validBody, status: 401, want: "missing Authorization"},
		{name: "unknown token", headers: func(string) map[string]string {
			return map[string]string{"Authorization": "Bearer 2462b23346ab0642", "Content-Type": "application/json", "x-av-req-id": uuid.NewString()}
		}, body: validBody, status: 401, want: "invalid or expired"},
		{name: "token without Bearer", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": tok, "Content-Type": "application/json", "x-av-req-id": uuid.NewString()}
		}, body: validBody, status: 401, want: "Bearer"},
		{name: "no Content-Type", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "x-av-req-id": uuid.NewString()}
		}, body: validBody, status: 415, want: "Content-Type"},
		{name: "form Content-Type", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/x-www-form-urlencoded", "x-av-req-id": uuid.NewString()}
		}, body: validBody, status: 415, want: "not application/json"},
		{name: "Accept without JSON", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json", "Accept": "text/html", "x-av-req-id": uuid.NewString()}
		}, body: validBody, status: 406, want: "application/json"},
		{name: "not JSON", body: `requestData=1`, status: 400, want: "not a JSON object"},
		{name: "no requestData", body: `{}`, status: 400, want: "missing requestData"},
		{name: "unknown top-level field", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine"]}, "x": 1}`, status: 400, want: `unknown field "x"`},
		{name: "requestData not an object", body: `{"requestData": ["a1"]}`, status: 400, want: "must be an object"},
		{name: "parameter table names", body: `{"requestData": {"entityIds": ["a1"], "eventActionName": "quarantine"}}`, status: 400, want: "eventActionName"},
		{name: "unknown requestData field", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine"], "reason": "x"}}`, status: 400, want: "requestData.reason"},
		{name: "action name as a plain string", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": "quarantine", "entityActionParam": [""]}}`, status: 400, want: "entityActionName must be an array"},
		{name: "param as a plain string", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine"], "entityActionParam": ""}}`, status: 400, want: "entityActionParam must be an array"},
		{name: "entity ids as a plain string", body: `{"requestData": {"entityIds": "a1", "entityActionName": ["quarantine"]}}`, status: 400, want: "entityIds must be an array"},
		{name: "no entity ids", body: `{"requestData": {"entityIds": [], "entityActionName": ["quarantine"]}}`, status: 400, want: "must not be empty"},
		{name: "missing entity ids", body: `{"requestData": {"entityActionName": ["quarantine"]}}`, status: 400, want: "missing requestData.entityIds"},
		{name: "empty entity id", body: `{"requestData": {"entityIds": ["a1", ""], "entityActionName": ["quarantine"]}}`, status: 400, want: "entityIds[1] is empty"},
		{name: "number entity id", body: `{"requestData": {"entityIds": [12], "entityActionName": ["quarantine"]}}`, status: 400, want: "entityIds[0] must be a string"},
		{name: "duplicate entity id", body: `{"requestData": {"entityIds": ["a1", "a1"], "entityActionName": ["quarantine"]}}`, status: 400, want: "must be unique"},
		{name: "two action names", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine", "restore"]}}`, status: 400, want: "exactly one"},
		{name: "no action name", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": []}}`, status: 400, want: "exactly one"},
		{name: "unknown action", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["delete"]}}`, status: 400, want: `unknown entityActionName "delete"`},
		{name: "two params", body: `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine"], "entityActionParam": ["a", "b"]}}`, status: 400, want: "at most one"},
		{name: "GET on the action", method: http.MethodGet, status: 405, want: "use POST"},
		{name: "unknown endpoint", method: http.MethodGet, path: "/app/hec-api/v1.0/search/query", status: 404, want: "no such endpoint"},
		{name: "event without id", method: http.MethodGet, path: "/app/hec-api/v1.0/event/", status: 404, want: "no such endpoint"},
		{name: "POST on an event", method: http.MethodPost, path: "/app/hec-api/v1.0/event/ev1", body: "{}", status: 405, want: "use GET"},
		{name: "unknown event", method: http.MethodGet, path: "/app/hec-api/v1.0/event/ev1", status: 404, want: "event not found"},
		{name: "unknown exception type", method: http.MethodGet, path: "/app/hec-api/v1.0/exceptions/greylist", status: 404, want: "blacklist, whitelist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			tok := rawToken(t, base)
			headers := map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json", "Accept": "application/json", "x-av-req-id": uuid.NewString()}
			if tc.headers != nil {
				headers = tc.headers(tok)
			}
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = apiPrefix + "/action/entity"
			}
			status, body := rawDo(t, method, base+path, headers, tc.body)
			if status != tc.status {
				t.Fatalf("HTTP %d, want %d: %v", status, tc.status, body)
			}
			code, text := envelopeOf(t, body)
			wantCode := float64(tc.status)
			if tc.status == 200 {
				wantCode = 0
			}
			if code != wantCode {
				t.Errorf("responseCode = %v, want %v", code, wantCode)
			}
			if !strings.Contains(text, tc.want) {
				t.Errorf("message %q does not contain %q", text, tc.want)
			}
			if tc.status != 200 && len(f.Tasks()) != 0 {
				t.Errorf("a rejected request created tasks: %+v", f.Tasks())
			}
		})
	}
}

func TestFakeRejectsReusedRequestID(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	tok := rawToken(t, base)
	id := uuid.NewString()
	h := map[string]string{"Authorization": "Bearer " + tok, "x-av-req-id": id}
	if status, body := rawDo(t, http.MethodGet, base+apiPrefix+"/exceptions/whitelist", h, ""); status != 200 {
		t.Fatalf("first use: HTTP %d: %v", status, body)
	}
	status, body := rawDo(t, http.MethodGet, base+apiPrefix+"/exceptions/whitelist", h, "")
	if _, text := envelopeOf(t, body); status != 400 || !strings.Contains(text, "already used") {
		t.Errorf("reuse: HTTP %d %q, want 400 already used", status, text)
	}
	// Even a request refused for its token spends its id.
	h2 := map[string]string{"Authorization": "Bearer nope", "x-av-req-id": uuid.NewString()}
	rawDo(t, http.MethodGet, base+apiPrefix+"/exceptions/whitelist", h2, "")
	h2["Authorization"] = "Bearer " + tok
	if status, _ := rawDo(t, http.MethodGet, base+apiPrefix+"/exceptions/whitelist", h2, ""); status != 400 {
		t.Errorf("reuse after a 401: HTTP %d, want 400", status)
	}
}

func TestFakeAuth(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		method  string
		ct      string
		body    string
		status  int
		success bool
	}{
		{"valid", http.MethodPost, "application/json", `{"clientId": "` + testClientID + `", "accessKey": "` + testAccessKey + `"}`, 200, true},
		{"wrong key", http.MethodPost, "application/json", `{"clientId": "` + testClientID + `", "accessKey": "nope"}`, 401, false},
		{"wrong client", http.MethodPost, "application/json", `{"clientId": "other", "accessKey": "` + testAccessKey + `"}`, 401, false},
		{"missing key", http.MethodPost, "application/json", `{"clientId": "` + testClientID + `"}`, 400, false},
		{"unknown field", http.MethodPost, "application/json", `{"clientId": "a", "accessKey": "b", "secret": "c"}`, 400, false},
		{"not JSON", http.MethodPost, "application/json", `clientId=a`, 400, false},
		{"form", http.MethodPost, "application/x-www-form-urlencoded", `clientId=a&accessKey=b`, 415, false},
		{"GET", http.MethodGet, "", "", 405, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			h := map[string]string{}
			if tc.ct != "" {
				h["Content-Type"] = tc.ct
			}
			status, body := rawDo(t, tc.method, base+authPath, h, tc.body)
			if status != tc.status || body["success"] != tc.success {
				t.Errorf("HTTP %d %v, want %d success=%t", status, body, tc.status, tc.success)
			}
			if !tc.success {
				if msg, _ := body["message"].(string); msg == "" {
					t.Errorf("refusal without a message: %v", body)
				}
			}
			if f.AuthCount() != 1 {
				t.Errorf("AuthCount = %d", f.AuthCount())
			}
		})
	}
}

func TestFakeTokenExpiry(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	clk := newClock()
	f.SetClock(clk.Now)
	f.SetTokenLifetime(time.Minute)
	tok := rawToken(t, base)
	get := func() int {
		status, _ := rawDo(t, http.MethodGet, base+apiPrefix+"/exceptions/whitelist",
			map[string]string{"Authorization": "Bearer " + tok, "x-av-req-id": uuid.NewString()}, "")
		return status
	}
	clk.Advance(59 * time.Second)
	if s := get(); s != 200 {
		t.Errorf("before expiry: HTTP %d", s)
	}
	clk.Advance(time.Second)
	if s := get(); s != 401 {
		t.Errorf("at expiry: HTTP %d, want 401", s)
	}
	tok = rawToken(t, base)
	f.ExpireTokens()
	if s := get(); s != 401 {
		t.Errorf("after ExpireTokens: HTTP %d, want 401", s)
	}
}

func TestFakeFailNextMatchesPathPart(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.SetSynthesize(true)
	c := newTestClient(t, base)
	ctx := context.Background()
	f.FailNext(apiPrefix+"/event/", 2, 500, "down")
	for i := range 2 {
		if _, err := c.GetEvent(ctx, "ev1"); err == nil || !strings.Contains(err.Error(), "HTTP 500: down") {
			t.Errorf("call %d: error = %v", i, err)
		}
	}
	if _, err := c.GetExceptions(ctx, "whitelist"); err != nil {
		t.Errorf("other paths are untouched: %v", err)
	}
	if _, err := c.GetEvent(ctx, "ev1"); err != nil {
		t.Errorf("after n failures: %v", err)
	}
}

func TestFakeEntityActionsUpdateEvents(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(map[string]any{"eventId": "ev1", "entityId": "ent1", "severity": "Low"})
	c := newTestClient(t, base)
	ctx := context.Background()
	if _, err := c.EntityAction(ctx, []string{"ent1"}, "quarantine", "phishing"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EntityAction(ctx, []string{"ent1"}, "severityChange", "High"); err != nil {
		t.Fatal(err)
	}
	ev, err := c.GetEvent(ctx, "ev1")
	if err != nil {
		t.Fatal(err)
	}
	if ev["state"] != "remediated" || ev["severity"] != "High" {
		t.Errorf("event = %v", ev)
	}
	taken, _ := ev["actions"].([]any)
	if len(taken) != 2 {
		t.Errorf("actions = %v", ev["actions"])
	}
	if got := f.EntityState("ent1"); got != "quarantined" {
		t.Errorf("EntityState = %q", got)
	}
	tasks := f.Tasks()
	if len(tasks) != 2 || tasks[0].ID != fakeFirstTaskID || tasks[1].ID != fakeFirstTaskID+1 || tasks[0].Param != "phishing" {
		t.Errorf("tasks = %+v", tasks)
	}
	// The fake keeps its own copy: changing the caller's map or the returned one changes nothing.
	stored, _ := f.Event("ev1")
	stored["state"] = "tampered"
	if again, _ := f.Event("ev1"); again["state"] != "remediated" {
		t.Errorf("Event returned shared state")
	}
}

func TestFakeEnvelopesAsSampled(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(map[string]any{"eventId": "ev1"})
	tok := rawToken(t, base)
	get := func(path string) map[string]any {
		_, body := rawDo(t, http.MethodGet, base+apiPrefix+path,
			map[string]string{"Authorization": "Bearer " + tok, "x-av-req-id": uuid.NewString()}, "")
		return body
	}
	ev := get("/event/ev1")
	env := ev["responseEnvelope"].(map[string]any)
	if env["responseCode"] != float64(0) || env["responseTest"] != "Success" {
		t.Errorf("event envelope = %v", env)
	}
	if _, ok := ev["responseData"].(map[string]any); !ok {
		t.Errorf("event responseData = %#v, want an object", ev["responseData"])
	}
	f.SetEventAsArray(true)
	if list, ok := get("/event/ev1")["responseData"].([]any); !ok || len(list) != 1 {
		t.Errorf("event responseData with SetEventAsArray is not a one-element array")
	}
	exc := get("/exceptions/whitelist")
	if code, _ := envelopeOf(t, exc); code != 200 {
		t.Errorf("exceptions responseCode = %v, want 200", code)
	}
	if list, ok := exc["responseData"].([]any); !ok || len(list) != 0 {
		t.Errorf("exceptions responseData = %#v", exc["responseData"])
	}
}

func TestFakeRequestIDEchoed(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	tok := rawToken(t, base)
	id := uuid.NewString()
	const body = `{"requestData": {"entityIds": ["a1"], "entityActionName": ["quarantine"], "entityActionParam": [""]}}`
	status, out := rawDo(t, http.MethodPost, base+apiPrefix+"/action/entity",
		map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json; charset=utf-8", "x-av-req-id": id}, body)
	if status != 200 {
		t.Fatalf("HTTP %d: %v", status, out)
	}
	if env := out["responseEnvelope"].(map[string]any); env["requestId"] != id {
		t.Errorf("requestId = %v, want %s", env["requestId"], id)
	}
	data := out["responseData"].([]any)
	if task := data[0].(map[string]any); task["taskId"] != "123445311234" || task["entityId"] != "a1" {
		t.Errorf("task = %v", task)
	}
}
