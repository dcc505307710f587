package cyberark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/actiontest"
)

const (
	testUser     = "riposte-svc"
	testPassword = "pvwa-Pa55word-7f3a9c1d"
)

// startFake runs a fake PVWA with the test credentials for the duration of the test.
func startFake(t *testing.T) (*Fake, string) {
	t.Helper()
	f := NewFake(testUser, testPassword)
	base, stop := f.Start()
	t.Cleanup(stop)
	return f, base
}

func newTestClient(t *testing.T, base string, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: base, Username: testUser, Password: testPassword}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := NewClient(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs a hand-written PVWA for answers the fake does not give; logon always works and
// answers the session token handToken.
const handToken = "hand-written-session-token-0123456789"

func serve(t *testing.T, api http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Logon") {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, "%q", handToken)
			return
		}
		api(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// capture keeps the response bodies a client received, to see what went over the wire.
type capture struct {
	mu     sync.Mutex
	bodies map[string][]string // path → bodies
}

func (c *capture) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.bodies == nil {
		c.bodies = map[string][]string{}
	}
	c.bodies[req.URL.Path] = append(c.bodies[req.URL.Path], string(body))
	c.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func (c *capture) Bodies(path string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.bodies[path]...)
}

func sampleEvent(id string) map[string]any {
	return map[string]any{
		"id": id, "type": "SuspectedCredentialsTheft", "score": 77,
		"createTime": 1795518000.5, "lastUpdateTime": 1795518000.5,
		"audits":  []any{map[string]any{"id": "a1", "type": "VAULT_LOGON", "vaultUser": "administrator"}},
		"mStatus": "OPEN",
	}
}

// byMethod keeps the recorded requests of one HTTP method.
func byMethod(reqs []Recorded, method string) []Recorded {
	var out []Recorded
	for _, r := range reqs {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func TestSetEventStatusRequests(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		id        string
		start     string
		want      Status
		wantBody  string
		wantPath  string
		wantState string
		effect    string
	}{
		{"close, id with a dot", "ev.1", "OPEN", StatusClosed, `{"mStatus":"CLOSED"}`, "/PasswordVault/API/pta/API/Events/ev.1/", "CLOSED", "close"},
		{"reopen, hex id", "5f1b2c3d4e5f6a7b8c9d0e1f", "CLOSED", StatusOpen, `{"mStatus":"OPEN"}`, "/PasswordVault/API/pta/API/Events/5f1b2c3d4e5f6a7b8c9d0e1f/", "OPEN", "reopen"},
		{"close, id with @ and :", "user@cyber.com:7", "OPEN", StatusClosed, `{"mStatus":"CLOSED"}`, "/PasswordVault/API/pta/API/Events/user@cyber.com:7/", "CLOSED", "close"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			ev := sampleEvent(tc.id)
			ev["mStatus"] = tc.start
			f.AddEvent(ev)
			wire := &capture{}
			c := newTestClient(t, base+"/", func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: wire} })

			out, err := c.SetEventStatus(context.Background(), tc.id, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if out["mStatus"] != string(tc.want) || out["id"] != tc.id || out["type"] != "SuspectedCredentialsTheft" {
				t.Errorf("output = %v", out)
			}
			if score, ok := out["score"].(json.Number); !ok || score.String() != "77" {
				t.Errorf("score = %#v, want json.Number 77", out["score"])
			}
			if audits, ok := out["audits"].([]any); !ok || len(audits) != 1 {
				t.Errorf("audits = %#v", out["audits"])
			}

			reqs := f.Requests()
			if len(reqs) != 2 {
				t.Fatalf("fake saw %d requests, want a logon and a PATCH", len(reqs))
			}
			logon, patch := reqs[0], reqs[1]
			if logon.Method != http.MethodPost || logon.Path != "/PasswordVault/API/auth/CyberArk/Logon" {
				t.Errorf("logon = %s %s", logon.Method, logon.Path)
			}
			if got, want := string(logon.Body), `{"password":"`+testPassword+`","username":"`+testUser+`"}`; got != want {
				t.Errorf("logon body = %s, want %s", got, want)
			}
			if ct := logon.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("logon Content-Type = %q", ct)
			}
			if logon.Header.Get("Authorization") != "" {
				t.Error("the logon carries an Authorization header")
			}
			if patch.Method != http.MethodPatch || patch.Path != tc.wantPath {
				t.Errorf("update = %s %s, want PATCH %s", patch.Method, patch.Path, tc.wantPath)
			}
			if string(patch.Body) != tc.wantBody {
				t.Errorf("update body = %s, want %s", patch.Body, tc.wantBody)
			}
			for h, v := range map[string]string{"Content-Type": "application/json", "Accept": "application/json"} {
				if got := patch.Header.Get(h); got != v {
					t.Errorf("update %s = %q, want %q", h, got, v)
				}
			}
			answers := wire.Bodies(logon.Path)
			if len(answers) != 1 {
				t.Fatalf("logon answers = %q", answers)
			}
			var tok string
			if err := json.Unmarshal([]byte(answers[0]), &tok); err != nil || tok == "" {
				t.Fatalf("logon answer %q is not a quoted token: %v", answers[0], err)
			}
			if got := patch.Header.Get("Authorization"); got != tok {
				t.Errorf("Authorization = %q, want the session token verbatim, without a scheme", got)
			}
			if got := f.EventStatus(tc.id); got != tc.wantState {
				t.Errorf("fake event status = %q, want %q", got, tc.wantState)
			}
			if n := f.Effects(tc.effect, tc.id); n != 1 {
				t.Errorf("effect %s on %s = %d, want 1", tc.effect, tc.id, n)
			}

			// The session is kept for the next call.
			if _, err := c.SetEventStatus(context.Background(), tc.id, tc.want); err != nil {
				t.Fatal(err)
			}
			if n := f.LogonCount(); n != 1 {
				t.Errorf("LogonCount = %d, want 1", n)
			}
		})
	}
}

func TestLogonPathPerAuthMethod(t *testing.T) {
	t.Parallel()
	cases := []struct{ given, path string }{
		{"", "/PasswordVault/API/auth/CyberArk/Logon"},
		{"cyberark", "/PasswordVault/API/auth/CyberArk/Logon"},
		{"CyberArk", "/PasswordVault/API/auth/CyberArk/Logon"},
		{"ldap", "/PasswordVault/API/auth/LDAP/Logon"},
		{"Radius", "/PasswordVault/API/auth/RADIUS/Logon"},
		{"WINDOWS", "/PasswordVault/API/auth/Windows/Logon"},
	}
	for _, tc := range cases {
		t.Run(tc.given, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.AddEvent(sampleEvent("ev1"))
			c := newTestClient(t, base, func(cfg *Config) { cfg.AuthMethod = tc.given })
			if _, err := c.CloseEvent(context.Background(), "ev1"); err != nil {
				t.Fatal(err)
			}
			if got := f.Requests()[0]; got.Method != http.MethodPost || got.Path != tc.path {
				t.Errorf("logon = %s %s, want POST %s", got.Method, got.Path, tc.path)
			}
		})
	}
}

func TestBaseURLWithPasswordVault(t *testing.T) {
	t.Parallel()
	for _, suffix := range []string{"", "/", "/PasswordVault", "/PasswordVault/", "/passwordvault"} {
		t.Run(suffix, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.AddEvent(sampleEvent("ev1"))
			if _, err := newTestClient(t, base+suffix).CloseEvent(context.Background(), "ev1"); err != nil {
				t.Fatal(err)
			}
			for _, r := range f.Requests() {
				if !strings.HasPrefix(r.Path, "/PasswordVault/API/") {
					t.Errorf("request to %s", r.Path)
				}
			}
		})
	}
	got, err := pvwaURL("https://pvwa.example.com/pvwa-proxy/PasswordVault/")
	if err != nil || got != "https://pvwa.example.com/pvwa-proxy" {
		t.Errorf("pvwaURL = %q, %v", got, err)
	}
}

func TestNewClientValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"all missing", Config{}, []string{"PVWA base URL (PVWA_BASE_URL) is empty", "PVWA_USERNAME", "PVWA_PASSWORD"}},
		{"relative URL", Config{BaseURL: "pvwa.example.com", Username: "u", Password: "p"}, []string{"absolute http or https"}},
		{"credentials in URL", Config{BaseURL: "https://admin:s3cret-in-url@pvwa.example.com", Username: "u", Password: "p"}, []string{"must not carry credentials"}},
		{"unknown method", Config{BaseURL: "https://pvwa.example.com", Username: "u", Password: "p", AuthMethod: "SAML"},
			[]string{`PVWA_AUTH_METHOD: unknown PVWA authentication method "SAML": valid methods are CyberArk (default), LDAP, RADIUS, Windows`}},
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
		actiontest.NoSecrets(t, err, "s3cret-in-url")
	}
	if _, err := NewClient(Config{BaseURL: "https://pvwa.example.com/PasswordVault", Username: "u", Password: "p", AuthMethod: "ldap"}, nil); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestStatusClasses(t *testing.T) {
	t.Parallel()
	actiontest.StatusClasses(t, func(status int, retryAfter string) error {
		f, base := startFake(t)
		f.AddEvent(sampleEvent("ev.1"))
		// Two: the first answer and the retry after the one renewal a 401 earns.
		f.Inject("/Events/", 2, Failure{Status: status, Code: "PASWS999E", Message: "injected", RetryAfter: retryAfter})
		_, err := newTestClient(t, base).CloseEvent(context.Background(), "ev.1")
		return err
	})
}

func TestVendorErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		failure   Failure
		want      string // the whole error, or a part of it with contains
		contains  bool
		permanent bool
		reason    string
		after     time.Duration
	}{
		{
			name:      "404 carries ErrorCode and ErrorMessage",
			failure:   Failure{Status: 404, Code: "PASWS167E", Message: "The event was not found"},
			want:      `close PTA event "ev.1" on PVWA: HTTP 404: The event was not found (ErrorCode PASWS167E)`,
			permanent: true, reason: actions.ReasonClient,
		},
		{
			name:      "403 is permanent",
			failure:   Failure{Status: 403, Code: "PASWS041E", Message: "You are not authorized to perform this action"},
			want:      `close PTA event "ev.1" on PVWA: HTTP 403: You are not authorized to perform this action (ErrorCode PASWS041E)`,
			permanent: true, reason: actions.ReasonAuth,
		},
		{
			name:      "ErrorCode without a message",
			failure:   Failure{Status: 400, Code: "PASWS010E"},
			want:      `close PTA event "ev.1" on PVWA: HTTP 400: ErrorCode PASWS010E`,
			permanent: true, reason: actions.ReasonClient,
		},
		{
			name:    "500 is retryable",
			failure: Failure{Status: 500, Code: "CAWS00001E", Message: "Internal error"},
			want:    `close PTA event "ev.1" on PVWA: HTTP 500: Internal error (ErrorCode CAWS00001E)`,
			reason:  actions.ReasonServer,
		},
		{
			name:    "429 honours Retry-After",
			failure: Failure{Status: 429, Code: "PASWS429E", Message: "slow down", RetryAfter: "4"},
			want:    `close PTA event "ev.1" on PVWA: HTTP 429: slow down (ErrorCode PASWS429E)`,
			reason:  actions.ReasonRateLimited, after: 4 * time.Second,
		},
		{
			name:      "an ErrorCode under HTTP 200 is permanent",
			failure:   Failure{Status: 0, Code: "PASWS167E", Message: "The event was not found"},
			want:      `close PTA event "ev.1" on PVWA: HTTP 200 with an error: The event was not found (ErrorCode PASWS167E)`,
			permanent: true, reason: actions.ReasonClient,
		},
		{
			name:    "a proxy's 502 page is retryable",
			failure: Failure{Status: 502, Malformed: true},
			want:    `close PTA event "ev.1" on PVWA: HTTP 502: <html><body><h1>502 Bad Gateway</h1></body></html>`,
			reason:  actions.ReasonServer,
		},
		{
			name:    "a malformed 200 is a retryable bad response",
			failure: Failure{Status: 200, Malformed: true},
			want:    `close PTA event "ev.1" on PVWA: HTTP 200 response is not a JSON object: <html>`, contains: true,
			reason: actions.ReasonBadResponse,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.AddEvent(sampleEvent("ev.1"))
			f.Inject("/Events/", 1, tc.failure)
			_, err := newTestClient(t, base).CloseEvent(context.Background(), "ev.1")
			if err == nil {
				t.Fatal("got no error")
			}
			if tc.contains && !strings.Contains(err.Error(), tc.want) || !tc.contains && err.Error() != tc.want {
				t.Errorf("error = %q\nwant   %q", err, tc.want)
			}
			if got := actions.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %t, want %t", got, tc.permanent)
			}
			if got := actions.ReasonOf(err); got != tc.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tc.reason)
			}
			var ra *actions.RetryAfterError
			if got := errors.As(err, &ra); got != (tc.after > 0) || got && ra.After != tc.after {
				t.Errorf("RetryAfterError = %v (%v), want %v", got, ra, tc.after)
			}
			if f.EventStatus("ev.1") != "OPEN" || f.EffectTotal("close") != 0 {
				t.Error("a refused request changed the event")
			}
		})
	}
}

func TestStatusInAnswer(t *testing.T) {
	t.Parallel()
	t.Run("upper and lower case", func(t *testing.T) {
		t.Parallel()
		for _, lower := range []bool{false, true} {
			f, base := startFake(t)
			f.SetLowerCaseStatus(lower)
			f.AddEvent(sampleEvent("ev1"))
			wire := &capture{}
			c := newTestClient(t, base, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: wire} })
			for _, want := range []Status{StatusClosed, StatusOpen} {
				out, err := c.SetEventStatus(context.Background(), "ev1", want)
				if err != nil {
					t.Fatalf("lower=%t: %v", lower, err)
				}
				if out["mStatus"] != string(want) {
					t.Errorf("lower=%t: mStatus = %v, want %q", lower, out["mStatus"], want)
				}
			}
			answers := wire.Bodies("/PasswordVault/API/pta/API/Events/ev1/")
			sent := `"mStatus":"CLOSED"`
			if lower {
				sent = `"mStatus":"closed"`
			}
			if len(answers) != 2 || !strings.Contains(answers[0], sent) {
				t.Errorf("lower=%t: the fake answered %q, want %s", lower, answers, sent)
			}
		}
	})
	cases := []struct {
		name   string
		answer string
		want   string
		reason string
	}{
		{"other status", `{"id": "ev1", "mStatus": "OPEN"}`,
			`close PTA event "ev1" on PVWA: PVWA answered the event with mStatus "open", not "closed": the change was not made`, actions.ReasonServer},
		{"no status", `{"id": "ev1"}`, `close PTA event "ev1" on PVWA: the answer is not the event: no mStatus`, actions.ReasonBadResponse},
		{"unknown status", `{"id": "ev1", "mStatus": "PENDING"}`, `close PTA event "ev1" on PVWA: the answer is not the event: unknown mStatus "PENDING"`, actions.ReasonBadResponse},
		{"status not a string", `{"id": "ev1", "mStatus": 2}`, `close PTA event "ev1" on PVWA: the answer is not the event: mStatus is json.Number, not a string`, actions.ReasonBadResponse},
		{"not an object", `["ev1"]`, `close PTA event "ev1" on PVWA: HTTP 200 response is not a JSON object: ["ev1"]`, actions.ReasonBadResponse},
		{"null", `null`, `close PTA event "ev1" on PVWA: HTTP 200 response is not a JSON object: null`, actions.ReasonBadResponse},
		{"empty", ``, `close PTA event "ev1" on PVWA: HTTP 200 response is not a JSON object: an empty body`, actions.ReasonBadResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, tc.answer)
			})
			_, err := newTestClient(t, base).CloseEvent(context.Background(), "ev1")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v\nwant    %s", err, tc.want)
			}
			// The vendor may have changed nothing, or something in between answered: both
			// deserve another try of a call that is safe to repeat.
			if actions.IsPermanent(err) || actions.ReasonOf(err) != tc.reason {
				t.Errorf("permanent = %t, reason = %q; want retryable, %q", actions.IsPermanent(err), actions.ReasonOf(err), tc.reason)
			}
		})
	}
}

func TestSessionRenewedOnceOn401(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	c := newTestClient(t, base)
	ctx := context.Background()
	if _, err := c.CloseEvent(ctx, "ev1"); err != nil {
		t.Fatal(err)
	}
	f.ExpireSessions()
	if _, err := c.ReopenEvent(ctx, "ev1"); err != nil {
		t.Fatalf("after a 401 the client should log on again and retry: %v", err)
	}
	if n := f.LogonCount(); n != 2 {
		t.Errorf("LogonCount = %d, want 2", n)
	}
	patches := byMethod(f.Requests(), http.MethodPatch)
	if len(patches) != 3 {
		t.Fatalf("fake saw %d PATCHes, want 3", len(patches))
	}
	if a, b := patches[1].Header.Get("Authorization"), patches[2].Header.Get("Authorization"); a == b {
		t.Error("the retry after a 401 reused the refused session")
	}
	if f.EventStatus("ev1") != "OPEN" || f.Effects("reopen", "ev1") != 1 {
		t.Errorf("event %q, reopen effects %d", f.EventStatus("ev1"), f.Effects("reopen", "ev1"))
	}
}

func TestPersistent401Stops(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	f.Inject("/Events/", -1, Failure{Status: 401, Code: "PASWS006E", Message: "session revoked"})
	_, err := newTestClient(t, base).CloseEvent(context.Background(), "ev1")
	if err == nil {
		t.Fatal("got no error")
	}
	var unauth *actions.UnauthorizedError
	if !errors.As(err, &unauth) || !actions.IsPermanent(err) {
		t.Errorf("error %q: want an UnauthorizedError marked permanent", err)
	}
	for _, w := range []string{"HTTP 401: session revoked (ErrorCode PASWS006E)", "a freshly issued PVWA session token was refused too", credentialsHint} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if n, m := f.LogonCount(), len(byMethod(f.Requests(), http.MethodPatch)); n != 2 || m != 2 {
		t.Errorf("logons = %d, PATCHes = %d; want one renewal and one retry", n, m)
	}
}

func TestConcurrentCallersShareOneSession(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.SetSynthesize(true)
	c := newTestClient(t, base)
	burst := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				_, err := c.CloseEvent(context.Background(), fmt.Sprintf("ev%d", i))
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}
	burst()
	if n := f.LogonCount(); n != 1 {
		t.Errorf("after the first burst: LogonCount = %d, want 1", n)
	}
	// Every caller is refused at once: one of them logs on again, for all.
	f.ExpireSessions()
	burst()
	if n := f.LogonCount(); n != 2 {
		t.Errorf("after the renewal burst: LogonCount = %d, want 2", n)
	}
	if n := f.LiveSessions(); n != 1 {
		t.Errorf("LiveSessions = %d, want 1", n)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	c := newTestClient(t, base)
	f.Inject("/Events/", 1, Failure{Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := c.CloseEvent(ctx, "ev1")
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %v: the deadline was not honoured", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonTimeout {
		t.Errorf("error = %v (reason %q), want a retryable timeout", err, actions.ReasonOf(err))
	}
	if !strings.HasPrefix(err.Error(), `close PTA event "ev1" on PVWA: `) {
		t.Errorf("error %q does not say what was being done", err)
	}
}

func TestRefusedConnection(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = newTestClient(t, "http://"+addr).CloseEvent(context.Background(), "ev1")
	if err == nil || actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonNetwork {
		t.Fatalf("error = %v (reason %q), want a retryable network error", err, actions.ReasonOf(err))
	}
	if !strings.HasPrefix(err.Error(), `close PTA event "ev1" on PVWA: log on to PVWA as "riposte-svc" (CyberArk authentication): `) {
		t.Errorf("error %q does not say what was being done", err)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestClient(t, base).CloseEvent(ctx, "ev1")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestLogonAnswerShapes(t *testing.T) {
	t.Parallel()
	t.Run("fake: quoted string and classic object", func(t *testing.T) {
		t.Parallel()
		for _, legacy := range []bool{false, true} {
			f, base := startFake(t)
			f.SetLegacyLogonAnswer(legacy)
			f.AddEvent(sampleEvent("ev1"))
			if _, err := newTestClient(t, base).CloseEvent(context.Background(), "ev1"); err != nil {
				t.Errorf("legacy=%t: %v", legacy, err)
			}
		}
	})
	const tok = "c2Vzc2lvbi10b2tlbi1mcm9tLWEtaGFuZC13cml0dGVuLXB2d2E"
	cases := []struct {
		name      string
		status    int
		answer    string
		want      string // "" means success
		permanent bool
		reason    string
	}{
		{name: "quoted string", answer: `"` + tok + `"`},
		{name: "CyberArkLogonResult", answer: `{"CyberArkLogonResult": "` + tok + `"}`},
		{name: "LogonResult", answer: `{"LogonResult": "` + tok + `"}`},
		{name: "unquoted", answer: tok, want: "the logon answer is not a session token (a quoted JSON string)", reason: actions.ReasonBadResponse},
		{name: "broken string", answer: `"` + tok, want: "invalid JSON in the logon answer", reason: actions.ReasonBadResponse},
		{name: "empty string", answer: `""`, want: "the logon answer is an empty session token", reason: actions.ReasonBadResponse},
		{name: "object without token", answer: `{"UserName": "riposte-svc"}`, want: "the logon answer holds no session token", reason: actions.ReasonBadResponse},
		{name: "token with a line break", answer: `"` + tok + `\r\nX-Evil: 1"`, want: "characters an Authorization header cannot carry", reason: actions.ReasonBadResponse},
		{name: "ErrorCode under 200", answer: `{"ErrorCode": "ITATS542I", "ErrorMessage": "Authentication failure for User [riposte-svc]."}`,
			want: "refused: Authentication failure for User [riposte-svc]. (ErrorCode ITATS542I) (" + credentialsHint + ")", permanent: true, reason: actions.ReasonAuth},
		{name: "401", status: 401, answer: `{"ErrorCode": "ITATS542I", "ErrorMessage": "Authentication failure for User [riposte-svc]."}`,
			want: "HTTP 401: Authentication failure for User [riposte-svc]. (ErrorCode ITATS542I) (" + credentialsHint + ")", permanent: true, reason: actions.ReasonAuth},
		{name: "403", status: 403, answer: `{"ErrorCode": "ITATS526E", "ErrorMessage": "User is suspended"}`,
			want: "HTTP 403: User is suspended (ErrorCode ITATS526E) (" + credentialsHint + ")", permanent: true, reason: actions.ReasonAuth},
		{name: "404", status: 404, answer: `<html><body>Not Found</body></html>`,
			want: "HTTP 404: <html><body>Not Found</body></html> (check PVWA_BASE_URL and PVWA_AUTH_METHOD)", permanent: true, reason: actions.ReasonClient},
		{name: "503", status: 503, answer: `{"ErrorCode": "PASWS503E", "ErrorMessage": "Vault unavailable"}`,
			want: "HTTP 503: Vault unavailable (ErrorCode PASWS503E)", reason: actions.ReasonServer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var auths []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/Logon") {
					w.Header().Set("Content-Type", "application/json")
					if tc.status != 0 {
						w.WriteHeader(tc.status)
					}
					fmt.Fprint(w, tc.answer)
					return
				}
				mu.Lock()
				auths = append(auths, r.Header.Get("Authorization"))
				mu.Unlock()
				fmt.Fprint(w, `{"id": "ev1", "mStatus": "CLOSED"}`)
			}))
			t.Cleanup(srv.Close)
			_, err := newTestClient(t, srv.URL).CloseEvent(context.Background(), "ev1")
			mu.Lock()
			defer mu.Unlock()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(auths) != 1 || auths[0] != tok {
					t.Errorf("Authorization = %q, want %q", auths, tok)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), `close PTA event "ev1" on PVWA: log on to PVWA as "riposte-svc" (CyberArk authentication): `) {
				t.Errorf("error %q does not say what was being done", err)
			}
			if actions.IsPermanent(err) != tc.permanent || actions.ReasonOf(err) != tc.reason {
				t.Errorf("permanent = %t, reason = %q; want %t, %q", actions.IsPermanent(err), actions.ReasonOf(err), tc.permanent, tc.reason)
			}
			var unauth *actions.UnauthorizedError
			if errors.As(err, &unauth) {
				t.Error("a refused logon must not look like a session to renew")
			}
			if len(auths) != 0 {
				t.Error("an API call went out without a session")
			}
			actiontest.NoSecrets(t, err, tok, testPassword)
		})
	}
}

func TestLogonFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		password  string
		failure   *Failure
		want      string
		permanent bool
		reason    string
	}{
		{name: "wrong password", password: "not-the-password-42",
			want:      `HTTP 401: Authentication failure for User [riposte-svc]. (ErrorCode ITATS542I) (check PVWA_USERNAME / PVWA_PASSWORD / PVWA_AUTH_METHOD)`,
			permanent: true, reason: actions.ReasonAuth},
		{name: "ErrorCode under 200", failure: &Failure{Status: 0, Code: "ITATS542I", Message: "Authentication failure for User [riposte-svc]."},
			want: `refused: Authentication failure for User [riposte-svc]. (ErrorCode ITATS542I) (check PVWA_USERNAME`, permanent: true, reason: actions.ReasonAuth},
		{name: "a proxy's 502", failure: &Failure{Status: 502, Malformed: true}, want: "HTTP 502: <html>", reason: actions.ReasonServer},
		{name: "429", failure: &Failure{Status: 429, Message: "busy", RetryAfter: "2"}, want: "HTTP 429: busy", reason: actions.ReasonRateLimited},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.AddEvent(sampleEvent("ev1"))
			if tc.failure != nil {
				f.Inject("/Logon", 1, *tc.failure)
			}
			c := newTestClient(t, base, func(cfg *Config) {
				if tc.password != "" {
					cfg.Password = tc.password
				}
			})
			_, err := c.CloseEvent(context.Background(), "ev1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if actions.IsPermanent(err) != tc.permanent || actions.ReasonOf(err) != tc.reason {
				t.Errorf("permanent = %t, reason = %q; want %t, %q", actions.IsPermanent(err), actions.ReasonOf(err), tc.permanent, tc.reason)
			}
			actiontest.NoSecrets(t, err, testPassword, tc.password)
			if n := len(byMethod(f.Requests(), http.MethodPatch)); n != 0 {
				t.Errorf("%d PATCHes went out without a session", n)
			}
			if n := f.LogonCount(); n != 1 {
				t.Errorf("LogonCount = %d, want 1: a refused logon is not retried by the client", n)
			}
		})
	}
}

func TestLogoff(t *testing.T) {
	t.Parallel()
	t.Run("ends the session once", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.AddEvent(sampleEvent("ev1"))
		c := newTestClient(t, base)
		ctx := context.Background()
		if _, err := c.CloseEvent(ctx, "ev1"); err != nil {
			t.Fatal(err)
		}
		session := f.Requests()[1].Header.Get("Authorization")
		if err := c.Logoff(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Logoff(ctx); err != nil {
			t.Fatal(err)
		}
		if n, live := f.LogoffCount(), f.LiveSessions(); n != 1 || live != 0 {
			t.Errorf("logoffs = %d, live sessions = %d; want 1, 0", n, live)
		}
		last := f.Requests()[2]
		if last.Method != http.MethodPost || last.Path != "/PasswordVault/API/Auth/Logoff" || last.Header.Get("Authorization") != session {
			t.Errorf("logoff = %s %s with Authorization %q", last.Method, last.Path, last.Header.Get("Authorization"))
		}
		// A call after the logoff opens a new session.
		if _, err := c.ReopenEvent(ctx, "ev1"); err != nil {
			t.Fatal(err)
		}
		if n := f.LogonCount(); n != 2 {
			t.Errorf("LogonCount = %d, want 2", n)
		}
	})
	t.Run("nothing to end", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		if err := newTestClient(t, base).Logoff(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(f.Requests()); n != 0 {
			t.Errorf("fake saw %d requests, want none", n)
		}
	})
	t.Run("a session PVWA already ended", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.AddEvent(sampleEvent("ev1"))
		c := newTestClient(t, base)
		if _, err := c.CloseEvent(context.Background(), "ev1"); err != nil {
			t.Fatal(err)
		}
		f.ExpireSessions()
		if err := c.Logoff(context.Background()); err != nil {
			t.Errorf("Logoff = %v, want nil for a session already over", err)
		}
		if n := f.LogoffCount(); n != 1 {
			t.Errorf("LogoffCount = %d", n)
		}
	})
	t.Run("a failing logoff names the status, not the token", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.AddEvent(sampleEvent("ev1"))
		c := newTestClient(t, base)
		if _, err := c.CloseEvent(context.Background(), "ev1"); err != nil {
			t.Fatal(err)
		}
		session := f.Requests()[1].Header.Get("Authorization")
		f.Inject("/Logoff", 1, Failure{Status: 500, Code: "CAWS00001E", Message: "cannot end session " + session})
		err := c.Logoff(context.Background())
		if err == nil || !strings.Contains(err.Error(), "log off from PVWA: HTTP 500: cannot end session [redacted] (ErrorCode CAWS00001E)") {
			t.Errorf("error = %v", err)
		}
		actiontest.NoSecrets(t, err, session)
	})
}

func TestInvalidEventIDMakesNoRequest(t *testing.T) {
	t.Parallel()
	cases := []struct{ id, want string }{
		{"", "invalid eventId: must not be empty"},
		{"ev 1", `invalid eventId: "ev 1" must not contain spaces`},
		{"ev\t1", `must not contain spaces`},
		{"ev+1", `"ev+1" must not contain '+': PVWA does not support + & % in URL values`},
		{"ev&1", `must not contain '&'`},
		{"ev%201", `must not contain '%'`},
		{"a/b", `"a/b" must not contain '/'`},
		{`a\b`, `must not contain '\\'`},
		{"ev\x001", "must not contain control characters"},
		{"ev?x=1", `must not contain '?': PVWA takes no %-encoding`},
		{"ev#1", `must not contain '#'`},
		{"évènement", `must not contain 'é'`},
		{"..", "is not a usable path segment"},
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			_, err := newTestClient(t, base).CloseEvent(context.Background(), tc.id)
			if err == nil || !actions.IsPermanent(err) || actions.ReasonOf(err) != actions.ReasonInvalidInput || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v (reason %q), want invalid input containing %q", err, actions.ReasonOf(err), tc.want)
			}
			if n := len(f.Requests()); n != 0 {
				t.Errorf("fake saw %d requests, want none", n)
			}
		})
	}
}

func TestNoSecretsInErrors(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(sampleEvent("ev1"))
	c := newTestClient(t, base)
	ctx := context.Background()
	if _, err := c.CloseEvent(ctx, "ev1"); err != nil {
		t.Fatal(err)
	}
	token := byMethod(f.Requests(), http.MethodPatch)[0].Header.Get("Authorization")
	// A vendor that echoes the request must not carry the secrets into riposte's errors.
	echo := "bad request: Authorization " + token + " password " + testPassword
	var errs []error
	for _, fl := range []Failure{
		{Status: 400, Code: "PASWS010E", Message: echo},
		{Status: 401, Code: "PASWS006E", Message: echo},
		{Status: 0, Code: "PASWS010E", Message: echo},
		{Status: 500, Message: echo},
		{Status: 404, Code: echo},
	} {
		f.Inject("/Events/", 2, fl)
		_, err := c.CloseEvent(ctx, "ev1")
		errs = append(errs, err)
		f.ClearFailures()
	}
	f.ExpireSessions()
	f.Inject("/Logon", 1, Failure{Status: 401, Code: "ITATS542I", Message: "bad password " + testPassword})
	_, err := c.CloseEvent(ctx, "ev1")
	errs = append(errs, err)
	f.Inject("/Logon", 1, Failure{Status: 500, Message: "cannot check " + testPassword})
	_, err = c.CloseEvent(ctx, "ev1")
	errs = append(errs, err)

	secrets := []string{testPassword}
	for _, r := range byMethod(f.Requests(), http.MethodPatch) {
		secrets = append(secrets, r.Header.Get("Authorization"))
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: got no error", i)
			continue
		}
		actiontest.NoSecrets(t, err, secrets...)
	}
}

// Every line the client and the dispatcher log, at every level, is free of the password and of
// the session tokens, failures and renewals included.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	f, base := startFake(t)
	f.SetSynthesize(true)
	c, err := NewClient(Config{BaseURL: base, Username: testUser, Password: testPassword}, log)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := actions.NewRegistry(actions.Bind(c, defs())...)
	if err != nil {
		t.Fatal(err)
	}
	closeEvent, _ := reg.Lookup("cyberark.close_event")
	d := actions.NewDispatcher(log, actions.WithJitterSource(func() float64 { return 0 }))
	policy := actions.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}
	ctx := context.Background()

	if res := d.Run(ctx, closeEvent, actions.Inputs{"eventId": "ev1"}, policy); res.Err != nil {
		t.Fatal(res.Err)
	}
	token := byMethod(f.Requests(), http.MethodPatch)[0].Header.Get("Authorization")
	echo := "echo " + token + " / " + testPassword
	f.Inject("/Events/", 2, Failure{Status: 503, Code: "PASWS503E", Message: echo})
	if res := d.Run(ctx, closeEvent, actions.Inputs{"eventId": "ev2"}, policy); res.Err != nil {
		t.Fatalf("503 twice then success: %v", res.Err)
	}
	f.ExpireSessions()
	f.Inject("/Logon", 1, Failure{Status: 502, Message: echo})
	if res := d.Run(ctx, closeEvent, actions.Inputs{"eventId": "ev3"}, policy); res.Err != nil {
		t.Fatalf("a failed renewal then success: %v", res.Err)
	}
	f.Inject("/Events/", -1, Failure{Status: 500, Message: echo})
	if res := d.Run(ctx, closeEvent, actions.Inputs{"eventId": "ev4"}, policy); res.Err == nil {
		t.Fatal("persistent 500: got no error")
	}
	f.ClearFailures()
	if err := c.Logoff(ctx); err != nil {
		t.Fatal(err)
	}

	secrets := []string{testPassword}
	for _, r := range byMethod(f.Requests(), http.MethodPatch) {
		secrets = append(secrets, r.Header.Get("Authorization"))
	}
	entries := logs.All()
	if len(entries) < 4 {
		t.Fatalf("only %d log lines: the test does not exercise the logging", len(entries))
	}
	for _, e := range entries {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		for i, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log line leaks secret #%d: %s", i+1, strings.ReplaceAll(line, s, "[SECRET]"))
			}
		}
	}
}
