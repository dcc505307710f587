package cyberark

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// rawDo sends one request to a fake with plain HTTP and decodes the answer.
func rawDo(t *testing.T, method, url string, headers map[string]string, body string) (int, any) {
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
	var out any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: HTTP %d with a body that is not JSON: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// rawLogon logs on to a fake with plain HTTP and returns the session token.
func rawLogon(t *testing.T, base string) string {
	t.Helper()
	status, body := rawDo(t, http.MethodPost, base+"/PasswordVault/API/auth/CyberArk/Logon",
		map[string]string{"Content-Type": "application/json"},
		`{"username": "`+testUser+`", "password": "`+testPassword+`"}`)
	tok, _ := body.(string)
	if status != http.StatusOK || len(tok) != 180 {
		t.Fatalf("logon: HTTP %d: %v", status, body)
	}
	return tok
}

// pvwaError reads an error answer's ErrorCode and ErrorMessage.
func pvwaError(t *testing.T, body any) (code, msg string) {
	t.Helper()
	m, ok := body.(map[string]any)
	if !ok {
		t.Fatalf("error answer %v is not an object", body)
	}
	code, _ = m["ErrorCode"].(string)
	msg, _ = m["ErrorMessage"].(string)
	if code == "" || msg == "" {
		t.Errorf("error answer %v lacks ErrorCode or ErrorMessage", body)
	}
	return code, msg
}

func TestFakeRejectsBadUpdates(t *testing.T) {
	t.Parallel()
	const events = "/PasswordVault/API/pta/API/Events/"
	cases := []struct {
		name    string
		method  string
		path    string
		headers func(tok string) map[string]string // nil: valid headers
		body    string
		status  int
		want    string // part of ErrorMessage, for errors
	}{
		{name: "valid", status: 200},
		{name: "lower-case path, as IIS allows", path: "/passwordvault/api/pta/api/events/ev.1/", status: 200},
		{name: "status in lower case", body: `{"mStatus": "closed"}`, status: 200},
		{name: "status in mixed case", body: `{"mStatus": "Open"}`, status: 200},
		{name: "id without a dot needs no slash", path: events + "ev1", status: 200},
		{name: "id with a dot needs the slash", path: events + "ev.1", status: 404, want: "needs a trailing /"},
		{name: "space", path: events + "ev%201/", status: 400, want: "%-encoding"},
		{name: "percent", path: events + "ev%2E1/", status: 400, want: "%-encoding"},
		{name: "plus", path: events + "ev+1/", status: 400, want: "+ or &"},
		{name: "ampersand", path: events + "ev&1/", status: 400, want: "+ or &"},
		{name: "no id", path: events, status: 404, want: "no such endpoint"},
		{name: "nested path", path: events + "ev.1/audits/", status: 404, want: "no such endpoint"},
		{name: "unknown event", path: events + "ev.2/", status: 404, want: "The event was not found"},
		{name: "PUT", method: http.MethodPut, status: 405, want: "use PATCH"},
		{name: "Bearer prefix", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
		}, status: 401, want: "without a scheme"},
		{name: "no Authorization", headers: func(string) map[string]string {
			return map[string]string{"Content-Type": "application/json"}
		}, status: 401, want: "missing Authorization"},
		{name: "unknown session", headers: func(string) map[string]string {
			return map[string]string{"Authorization": "0123abcd", "Content-Type": "application/json"}
		}, status: 401, want: "invalid or expired"},
		{name: "no Content-Type", headers: func(tok string) map[string]string {
			return map[string]string{"Authorization": tok}
		}, status: 415, want: "Content-Type"},
		{name: "not JSON", body: `mStatus=closed`, status: 400, want: "JSON object"},
		{name: "empty object", body: `{}`, status: 400, want: "missing mStatus"},
		{name: "extra field", body: `{"mStatus": "closed", "reason": "fp"}`, status: 400, want: `unknown field "reason"`},
		{name: "key in another case", body: `{"MStatus": "closed"}`, status: 400, want: `unknown field "MStatus"`},
		{name: "unknown status", body: `{"mStatus": "resolved"}`, status: 400, want: `"resolved" is not a valid value`},
		{name: "status as a number", body: `{"mStatus": 1}`, status: 400, want: "must be a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.AddEvent(sampleEvent("ev.1"))
			f.AddEvent(sampleEvent("ev1"))
			tok := rawLogon(t, base)
			headers := map[string]string{"Authorization": tok, "Content-Type": "application/json"}
			if tc.headers != nil {
				headers = tc.headers(tok)
			}
			method, path, body := tc.method, tc.path, tc.body
			if method == "" {
				method = http.MethodPatch
			}
			if path == "" {
				path = events + "ev.1/"
			}
			if body == "" {
				body = `{"mStatus": "CLOSED"}`
			}
			status, out := rawDo(t, method, base+path, headers, body)
			if status != tc.status {
				t.Fatalf("HTTP %d, want %d: %v", status, tc.status, out)
			}
			if status == 200 {
				if ev, _ := out.(map[string]any); ev["mStatus"] != "CLOSED" && ev["mStatus"] != "OPEN" {
					t.Errorf("answer = %v, want the event with mStatus in upper case", out)
				}
				return
			}
			if _, msg := pvwaError(t, out); !strings.Contains(msg, tc.want) {
				t.Errorf("ErrorMessage %q does not contain %q", msg, tc.want)
			}
			if f.EffectTotal("close")+f.EffectTotal("reopen") != 0 || f.EventStatus("ev.1") != "OPEN" {
				t.Error("a refused request changed an event")
			}
		})
	}
}

func TestFakeLogon(t *testing.T) {
	t.Parallel()
	const valid = `{"username": "` + testUser + `", "password": "` + testPassword + `"}`
	cases := []struct {
		name   string
		method string
		path   string
		ct     string
		body   string
		status int
		code   string
	}{
		{"valid", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/json", valid, 200, ""},
		{"LDAP", http.MethodPost, "/PasswordVault/API/auth/LDAP/Logon", "application/json", valid, 200, ""},
		{"RADIUS", http.MethodPost, "/PasswordVault/API/auth/RADIUS/Logon", "application/json", valid, 200, ""},
		{"Windows", http.MethodPost, "/PasswordVault/API/auth/Windows/Logon", "application/json", valid, 200, ""},
		{"method and path in any case", http.MethodPost, "/passwordvault/api/Auth/cyberark/logon", "application/json", valid, 200, ""},
		{"final slash", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon/", "application/json", valid, 200, ""},
		{"unknown method", http.MethodPost, "/PasswordVault/API/auth/SAML/Logon", "application/json", valid, 404, fakeCodeNotFound},
		{"wrong password", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/json",
			`{"username": "` + testUser + `", "password": "nope"}`, 401, fakeCodeAuthFailed},
		{"wrong user", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/json",
			`{"username": "someone", "password": "` + testPassword + `"}`, 401, fakeCodeAuthFailed},
		{"extra field", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/json",
			`{"username": "` + testUser + `", "password": "` + testPassword + `", "concurrentSession": true}`, 400, fakeCodeBadRequest},
		{"missing password", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/json", `{"username": "` + testUser + `"}`, 400, fakeCodeBadRequest},
		{"password not a string", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/json", `{"username": "u", "password": 1}`, 400, fakeCodeBadRequest},
		{"form", http.MethodPost, "/PasswordVault/API/auth/CyberArk/Logon", "application/x-www-form-urlencoded", "username=u&password=p", 415, fakeCodeBadMedia},
		{"GET", http.MethodGet, "/PasswordVault/API/auth/CyberArk/Logon", "", "", 405, fakeCodeMethod},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			h := map[string]string{}
			if tc.ct != "" {
				h["Content-Type"] = tc.ct
			}
			status, out := rawDo(t, tc.method, base+tc.path, h, tc.body)
			if status != tc.status {
				t.Fatalf("HTTP %d %v, want %d", status, out, tc.status)
			}
			if tc.status == 200 {
				if tok, ok := out.(string); !ok || len(tok) != 180 || f.LiveSessions() != 1 {
					t.Errorf("answer %v, live sessions %d: want a quoted 180-character token", out, f.LiveSessions())
				}
				return
			}
			if code, _ := pvwaError(t, out); code != tc.code {
				t.Errorf("ErrorCode = %q, want %q", code, tc.code)
			}
			if f.LiveSessions() != 0 {
				t.Error("a refused logon opened a session")
			}
		})
	}
	t.Run("classic answer shape", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.SetLegacyLogonAnswer(true)
		_, out := rawDo(t, http.MethodPost, base+"/PasswordVault/API/auth/CyberArk/Logon", map[string]string{"Content-Type": "application/json"}, valid)
		if m, _ := out.(map[string]any); m == nil || len(m["CyberArkLogonResult"].(string)) != 180 {
			t.Errorf("answer = %v", out)
		}
	})
	t.Run("wrong credentials say whose", func(t *testing.T) {
		t.Parallel()
		_, base := startFake(t)
		_, out := rawDo(t, http.MethodPost, base+"/PasswordVault/API/auth/CyberArk/Logon", map[string]string{"Content-Type": "application/json"},
			`{"username": "alice", "password": "nope"}`)
		if _, msg := pvwaError(t, out); msg != "Authentication failure for User [alice]." {
			t.Errorf("ErrorMessage = %q", msg)
		}
	})
}

func TestFakeSessions(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	patch := func(tok string) int {
		status, _ := rawDo(t, http.MethodPatch, base+"/PasswordVault/API/pta/API/Events/ev1/",
			map[string]string{"Authorization": tok, "Content-Type": "application/json"}, `{"mStatus": "closed"}`)
		return status
	}
	logoff := func(tok string) int {
		status, _ := rawDo(t, http.MethodPost, base+"/PasswordVault/API/Auth/Logoff", map[string]string{"Authorization": tok}, "")
		return status
	}
	tok := rawLogon(t, base)
	if s := patch(tok); s != 200 {
		t.Fatalf("PATCH: HTTP %d", s)
	}
	if s := logoff(tok); s != 200 {
		t.Fatalf("logoff: HTTP %d", s)
	}
	if s := patch(tok); s != 401 {
		t.Errorf("PATCH after logoff: HTTP %d, want 401", s)
	}
	if s := logoff(tok); s != 401 {
		t.Errorf("second logoff: HTTP %d, want 401", s)
	}
	tok = rawLogon(t, base)
	f.ExpireSessions()
	if s := patch(tok); s != 401 {
		t.Errorf("PATCH after ExpireSessions: HTTP %d, want 401", s)
	}
	if n, m := f.LogonCount(), f.LogoffCount(); n != 2 || m != 2 {
		t.Errorf("logons %d, logoffs %d; want 2, 2", n, m)
	}
}

func TestFakeInjectMatchesPath(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	f.AddEvent(sampleEvent("ev2"))
	c := newTestClient(t, base)
	ctx := context.Background()
	f.Inject("/Events/ev1/", 2, Failure{Status: 500, Code: "CAWS00001E", Message: "down"})
	for i := range 2 {
		if _, err := c.CloseEvent(ctx, "ev1"); err == nil || !strings.Contains(err.Error(), "HTTP 500: down (ErrorCode CAWS00001E)") {
			t.Errorf("call %d: error = %v", i, err)
		}
	}
	if _, err := c.CloseEvent(ctx, "ev2"); err != nil {
		t.Errorf("other events are untouched: %v", err)
	}
	if _, err := c.CloseEvent(ctx, "ev1"); err != nil {
		t.Errorf("after n failures: %v", err)
	}
	// Codes come from the status when none is given.
	f.Inject("/Events/", 1, Failure{Status: 409, Message: "busy"})
	if _, err := c.CloseEvent(ctx, "ev1"); err == nil || !strings.Contains(err.Error(), "HTTP 409: busy (ErrorCode PASWS409E)") {
		t.Errorf("error = %v", err)
	}
}

func TestFakeEventStore(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(map[string]any{"id": "ev1", "type": "KerberosGoldenTicket", "mStatus": "closed"})
	if got := f.EventStatus("ev1"); got != "CLOSED" {
		t.Errorf("stored mStatus = %q, want CLOSED", got)
	}
	f.AddEvent(map[string]any{"id": "ev2"})
	if got := f.EventStatus("ev2"); got != "OPEN" {
		t.Errorf("default mStatus = %q, want OPEN", got)
	}
	// The fake keeps its own copy.
	ev, _ := f.Event("ev1")
	ev["mStatus"] = "tampered"
	if f.EventStatus("ev1") != "CLOSED" {
		t.Error("Event returned shared state")
	}
	if _, ok := f.Event("nope"); ok || f.EventStatus("nope") != "" {
		t.Error("an unknown event was found")
	}

	c := newTestClient(t, base)
	if _, err := c.ReopenEvent(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), "HTTP 404: The event was not found (ErrorCode PASWS167E)") {
		t.Errorf("unknown event: error = %v", err)
	}
	f.SetSynthesize(true)
	out, err := c.CloseEvent(context.Background(), "made.up")
	if err != nil {
		t.Fatal(err)
	}
	if out["id"] != "made.up" || out["mStatus"] != "closed" || out["type"] != "SuspectedCredentialsTheft" {
		t.Errorf("synthesized event = %v", out)
	}
	if f.EventStatus("made.up") != "CLOSED" || f.Effects("close", "made.up") != 1 {
		t.Errorf("the synthesized event was not kept: %q", f.EventStatus("made.up"))
	}

	defer func() {
		if recover() == nil {
			t.Error("AddEvent without an id did not panic")
		}
	}()
	f.AddEvent(map[string]any{"type": "x"})
}
