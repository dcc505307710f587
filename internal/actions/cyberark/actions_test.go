package cyberark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/playbook"
)

func actionByName(t *testing.T, c *Client, name string) actions.Action {
	t.Helper()
	reg, err := actions.NewRegistry(actions.Bind(c, defs())...)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := reg.Lookup(name)
	if !ok {
		t.Fatalf("no action %q; have %v", name, reg.Names())
	}
	return a
}

func TestCatalogueSpecs(t *testing.T) {
	t.Parallel()
	specs := Vendor().Specs
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
		if s.Vendor != "cyberark" || s.Doc == "" || s.Output == "" || !s.Idempotent {
			t.Errorf("%s: vendor %q, doc %q, output %q, idempotent %t", s.Name, s.Vendor, s.Doc, s.Output, s.Idempotent)
		}
		if len(s.Inputs) != 1 {
			t.Fatalf("%s: inputs %+v, want eventId only", s.Name, s.Inputs)
		}
		in := s.Inputs[0]
		if in.Name != "eventId" || in.Type != actions.String || !in.Required || in.Doc == "" || in.Verify == nil {
			t.Errorf("%s: input %+v", s.Name, in)
		}
	}
	if want := []string{"cyberark.close_event", "cyberark.reopen_event"}; !slices.Equal(names, want) {
		t.Errorf("actions = %q, want %q", names, want)
	}
	if _, err := actions.NewCatalogue(specs...); err != nil {
		t.Error(err)
	}
}

func TestStatusActions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		action   string
		start    string
		body     string
		status   string
		effect   string
		endState string
	}{
		{"cyberark.close_event", "OPEN", `{"mStatus":"CLOSED"}`, "closed", "close", "CLOSED"},
		{"cyberark.reopen_event", "CLOSED", `{"mStatus":"OPEN"}`, "open", "reopen", "OPEN"},
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			ev := sampleEvent("ev.42")
			ev["mStatus"] = tc.start
			f.AddEvent(ev)
			a := actionByName(t, newTestClient(t, base), tc.action)
			ctx := context.Background()
			out, err := actions.Invoke(ctx, a, actions.Inputs{"eventId": "ev.42"})
			if err != nil {
				t.Fatal(err)
			}
			raw, err := json.Marshal(out)
			if err != nil {
				t.Fatalf("output does not marshal: %v", err)
			}
			var got map[string]any
			_ = json.Unmarshal(raw, &got)
			if got["mStatus"] != tc.status || got["id"] != "ev.42" || got["type"] != "SuspectedCredentialsTheft" ||
				got["score"] != float64(77) || got["createTime"] != 1795518000.5 {
				t.Errorf("output = %s", raw)
			}
			if _, ok := got["lastUpdateTime"].(float64); !ok {
				t.Errorf("output lastUpdateTime = %#v", got["lastUpdateTime"])
			}

			reqs := f.Requests()
			if len(reqs) != 2 || reqs[0].Path != "/PasswordVault/API/auth/CyberArk/Logon" {
				t.Fatalf("requests = %+v", reqs)
			}
			p := reqs[1]
			if p.Method != http.MethodPatch || p.Path != "/PasswordVault/API/pta/API/Events/ev.42/" || string(p.Body) != tc.body {
				t.Errorf("update = %s %s %s", p.Method, p.Path, p.Body)
			}
			if strings.Contains(p.Header.Get("Authorization"), " ") || p.Header.Get("Authorization") == "" {
				t.Errorf("Authorization = %q, want the bare session token", p.Header.Get("Authorization"))
			}
			// Idempotent: a second run (a redelivered alert) leaves the event as one did.
			if _, err := actions.Invoke(ctx, a, actions.Inputs{"eventId": "ev.42"}); err != nil {
				t.Fatal(err)
			}
			if f.EventStatus("ev.42") != tc.endState || f.Effects(tc.effect, "ev.42") != 2 {
				t.Errorf("event %q after %d %s effects", f.EventStatus("ev.42"), f.Effects(tc.effect, "ev.42"), tc.effect)
			}
		})
	}
}

func TestActionsRejectBadInputsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		action string
		in     actions.Inputs
		want   string
	}{
		{"cyberark.close_event", actions.Inputs{}, `missing required input "eventId"`},
		{"cyberark.close_event", actions.Inputs{"eventId": nil}, `missing required input "eventId"`},
		{"cyberark.close_event", actions.Inputs{"eventId": 7}, `input "eventId" must be a string`},
		{"cyberark.close_event", actions.Inputs{"eventId": ""}, `input "eventId": must not be empty`},
		{"cyberark.close_event", actions.Inputs{"eventId": "ev 1"}, `input "eventId": "ev 1" must not contain spaces`},
		{"cyberark.reopen_event", actions.Inputs{"eventId": "a+b"}, `input "eventId": "a+b" must not contain '+'`},
		{"cyberark.reopen_event", actions.Inputs{"eventId": "a&b"}, `input "eventId": "a&b" must not contain '&'`},
		{"cyberark.reopen_event", actions.Inputs{"eventId": "100%"}, `input "eventId": "100%" must not contain '%'`},
		{"cyberark.reopen_event", actions.Inputs{"eventId": "../x"}, `input "eventId": "../x" must not contain '/'`},
		{"cyberark.reopen_event", actions.Inputs{"eventId": "a\nb"}, `input "eventId": "a\nb" must not contain spaces`},
		{"cyberark.reopen_event", actions.Inputs{"eventId": "a\x7fb"}, `input "eventId": "a\x7fb" must not contain control characters`},
		{"cyberark.close_event", actions.Inputs{"eventId": "ev1", "mStatus": "closed"}, `unknown input "mStatus"`},
	}
	for _, tc := range cases {
		t.Run(tc.action+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			_, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), tc.action), tc.in)
			if err == nil || !actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonInvalidInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want invalid input containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.action+": invalid inputs: ") {
				t.Errorf("error %q does not name the action", err)
			}
			if n := len(f.Requests()); n != 0 {
				t.Errorf("fake saw %d requests, want none", n)
			}
		})
	}
}

// A literal eventId that breaks PVWA's URL rules fails `worker validate`, with file:line and the
// input named; one rendered from the alert is checked at run time instead.
func TestPlaybookLoadChecksEventID(t *testing.T) {
	t.Parallel()
	cat, err := actions.NewCatalogue(Vendor().Specs...)
	if err != nil {
		t.Fatal(err)
	}
	const book = `name: pta-close
on: [soar.alerts.cyberark.>]
steps:
  - id: close
    action: cyberark.close_event
    with:
      eventId: %s
  - id: reopen
    action: cyberark.reopen_event
    with:
      eventId: ${{ alert.eventId }}
`
	cases := []struct {
		name, value string
		want        []string // problems as file:line: message; nil means the playbook loads
	}{
		{"plain id", "5f1b2c3d4e5f", nil},
		{"id with a dot", "ev.1", nil},
		{"space", `"ev 1"`, []string{`book.yaml:7: step "close": input "eventId": "ev 1" must not contain spaces: PVWA URLs cannot carry them`}},
		{"plus", `"ev+1"`, []string{`book.yaml:7: step "close": input "eventId": "ev+1" must not contain '+': PVWA does not support + & % in URL values`}},
		{"ampersand", `"a&b"`, []string{`book.yaml:7: step "close": input "eventId": "a&b" must not contain '&': PVWA does not support + & % in URL values`}},
		{"percent", `"a%20b"`, []string{`book.yaml:7: step "close": input "eventId": "a%20b" must not contain '%': PVWA does not support + & % in URL values`}},
		{"slash", `"a/b"`, []string{`book.yaml:7: step "close": input "eventId": "a/b" must not contain '/'`}},
		{"number", `42`, []string{`book.yaml:7: step "close": input "eventId" must be a string, got int 42`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "book.yaml"), fmt.Appendf(nil, book, tc.value), 0o600); err != nil {
				t.Fatal(err)
			}
			books, err := playbook.LoadDir(dir, cat)
			if tc.want == nil {
				if err != nil || len(books) != 1 {
					t.Fatalf("LoadDir = %d books, %v", len(books), err)
				}
				return
			}
			var probs playbook.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("LoadDir error = %v (%T), want Problems", err, err)
			}
			var got []string
			for _, p := range probs {
				got = append(got, fmt.Sprintf("%s:%d: %s", filepath.Base(p.File), p.Line, p.Msg))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Through the dispatcher: a retryable vendor failure is retried, a permanent one is not, and a
// session PVWA keeps refusing ends the step at once.
func TestActionsUnderDispatcher(t *testing.T) {
	t.Parallel()
	policy := actions.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}
	cases := []struct {
		name      string
		path      string
		failure   Failure
		n         int
		attempts  int
		succeeded bool
		want      string
	}{
		{"503 then success", "/Events/", Failure{Status: 503, Code: "PASWS503E", Message: "busy"}, 1, 2, true, ""},
		{"404 stops at once", "/Events/", Failure{Status: 404, Code: "PASWS167E", Message: "The event was not found"}, 1, 1, false, "The event was not found (ErrorCode PASWS167E)"},
		{"persistent 401 stops at once", "/Events/", Failure{Status: 401, Code: "PASWS006E", Message: "revoked"}, -1, 1, false, "revoked (ErrorCode PASWS006E)"},
		{"wrong credentials stop at once", "/Logon", Failure{Status: 401, Code: "ITATS542I", Message: "Authentication failure"}, -1, 1, false, "check PVWA_USERNAME"},
		{"a logon 502 is retried", "/Logon", Failure{Status: 502, Malformed: true}, 1, 2, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.AddEvent(sampleEvent("ev1"))
			f.Inject(tc.path, tc.n, tc.failure)
			d := actions.NewDispatcher(zaptest.NewLogger(t), actions.WithJitterSource(func() float64 { return 0 }))
			res := d.Run(context.Background(), actionByName(t, newTestClient(t, base), "cyberark.close_event"), actions.Inputs{"eventId": "ev1"}, policy)
			if res.Attempts != tc.attempts || (res.Err == nil) != tc.succeeded {
				t.Fatalf("attempts %d, err %v; want %d attempts, success %t", res.Attempts, res.Err, tc.attempts, tc.succeeded)
			}
			if tc.succeeded {
				if res.Output["mStatus"] != "closed" {
					t.Errorf("output = %v", res.Output)
				}
				return
			}
			if res.Retryable || !strings.Contains(res.Err.Error(), tc.want) {
				t.Errorf("result = %+v, want a permanent error containing %q", res, tc.want)
			}
		})
	}
}

func validSettings(base string) actions.Settings {
	return actions.Settings{EnvBaseURL: base, EnvUsername: testUser, EnvPassword: testPassword}
}

func TestVendorConfigure(t *testing.T) {
	t.Parallel()
	v := Vendor()
	if v.Name != "cyberark" || v.Title != "CyberArk Privileged Threat Analytics (PTA) through PVWA" || v.RateLimitVar != EnvRateLimit {
		t.Errorf("vendor = %q %q %q", v.Name, v.Title, v.RateLimitVar)
	}
	pw, _ := v.Var(EnvPassword)
	if !pw.Secret || !pw.Required {
		t.Errorf("PVWA_PASSWORD: %+v", pw)
	}
	if m, _ := v.Var(EnvAuthMethod); m.Default != "CyberArk" || m.Required {
		t.Errorf("PVWA_AUTH_METHOD: %+v", m)
	}
	cases := []struct {
		name  string
		s     actions.Settings
		want  []string // parts of the error; nil means success
		limit float64
	}{
		{"missing password and a bad method, together",
			actions.Settings{EnvBaseURL: "https://pvwa.example.com", EnvUsername: "u", EnvAuthMethod: "SAML"},
			[]string{"PVWA_PASSWORD not set", `PVWA_AUTH_METHOD: unknown PVWA authentication method "SAML": valid methods are CyberArk (default), LDAP, RADIUS, Windows`}, 0},
		{"everything missing", actions.Settings{}, []string{"PVWA_BASE_URL, PVWA_USERNAME, PVWA_PASSWORD not set"}, 0},
		{"bad URL and bad rate", actions.Settings{EnvBaseURL: "ftp://pvwa", EnvUsername: "u", EnvPassword: "p", EnvRateLimit: "fast"},
			[]string{"PVWA_BASE_URL: PVWA base URL (PVWA_BASE_URL) \"ftp://pvwa\" must be an absolute http or https URL", `"fast" is not a rate limit`}, 0},
		{"valid, method in another case, a rate",
			actions.Settings{EnvBaseURL: "https://pvwa.example.com/PasswordVault/", EnvUsername: "u", EnvPassword: "p", EnvAuthMethod: "ldap", EnvRateLimit: "2.5"}, nil, 2.5},
		{"valid, defaults", actions.Settings{EnvBaseURL: "https://pvwa.example.com", EnvUsername: "u", EnvPassword: "p"}, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inst, limit, err := v.Configure(tc.s, actions.Deps{})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if limit != tc.limit || len(inst.Actions) != 2 || inst.Close == nil {
					t.Errorf("limit %v, %d actions, close %v", limit, len(inst.Actions), inst.Close != nil)
				}
				return
			}
			if err == nil {
				t.Fatal("got no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// The instance logs off once at Close, and not at all when it never logged on.
func TestInstanceClose(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	ctx := context.Background()

	idle, _, err := Vendor().Configure(validSettings(base), actions.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Requests()); n != 0 {
		t.Fatalf("an unused instance sent %d requests at Close", n)
	}

	inst, _, err := Vendor().Configure(validSettings(base), actions.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := actions.NewRegistry(inst.Actions...)
	if err != nil {
		t.Fatal(err)
	}
	closeEvent, _ := reg.Lookup("cyberark.close_event")
	if _, err := actions.Invoke(ctx, closeEvent, actions.Inputs{"eventId": "ev1"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := inst.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, live := f.LogoffCount(), f.LiveSessions(); n != 1 || live != 0 {
		t.Errorf("logoffs %d, live sessions %d; want 1, 0", n, live)
	}
}

func TestSimulate(t *testing.T) {
	t.Parallel()
	v := Vendor()
	s, stop, err := v.Simulate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if !strings.HasPrefix(s[EnvBaseURL], "http://127.0.0.1:") {
		t.Errorf("simulated PVWA at %q", s[EnvBaseURL])
	}
	inst, _, err := v.Configure(s, actions.Deps{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := actions.NewRegistry(inst.Actions...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, step := range []struct{ action, status string }{
		{"cyberark.close_event", "closed"}, {"cyberark.reopen_event", "open"}, {"cyberark.close_event", "closed"},
	} {
		a, _ := reg.Lookup(step.action)
		out, err := actions.Invoke(ctx, a, actions.Inputs{"eventId": "sim.event-1"})
		if err != nil {
			t.Fatalf("%s: %v", step.action, err)
		}
		if out["mStatus"] != step.status || out["id"] != "sim.event-1" || out["type"] == nil {
			t.Errorf("%s: output = %v", step.action, out)
		}
	}
	if err := inst.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}
