package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/testkit"
)

const (
	aliceToken = "alice-console-token-0123456789"
	bobToken   = "bob-console-token-9876543210ab"
)

// writeFile writes a test file and returns its path.
func writeFile(t *testing.T, name, text string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// consoleTokens is a tokens file for alice and bob.
func consoleTokens(t *testing.T) string {
	return writeFile(t, "tokens", "# operators of the console\nalice "+aliceToken+"\n\nbob   "+bobToken+"\n", 0o600)
}

// withTokenConsole is withConsole signing operators in with consoleTokens' tokens.
func withTokenConsole(t *testing.T) func(*settings) {
	tokens := consoleTokens(t)
	return withConsole(t, func(c *consoleSettings) { c.tokensFile = tokens })
}

// withConsole turns the console on for a stack, on a free loopback port, as --console would:
// tweak sets its other flags before they are checked.
func withConsole(t *testing.T, tweak func(*consoleSettings)) func(*settings) {
	return func(s *settings) {
		t.Helper()
		s.httpAddr = "127.0.0.1:0"
		s.console.enabled = true
		if tweak != nil {
			tweak(&s.console)
		}
		if _, err := s.console.finish(s.httpAddr); err != nil {
			t.Fatal(err)
		}
	}
}

// browserless is an HTTP client of the console with a cookie jar, as a browser without
// JavaScript would use it. follow says whether it follows redirects.
type browserless struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newBrowserless(t *testing.T, base string, follow bool, tlsConfig *tls.Config) *browserless {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &browserless{t: t, base: base, client: c}
}

func (b *browserless) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browserless) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(req)
}

// post sends a form; headers (Origin, Sec-Fetch-Site) as a browser would add them.
func (b *browserless) post(path string, form url.Values, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the forms on a page.
func (b *browserless) csrf(page string) string {
	b.t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// signIn signs in through the form: a token, or on an unauthenticated console a name.
func (b *browserless) signIn(field, value string) string {
	b.t.Helper()
	resp, body := b.post("/console/login", url.Values{field: {value}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<h1>Approvals</h1>") {
		b.t.Fatalf("sign in: %d\n%s", resp.StatusCode, body)
	}
	return body
}

// flash is the message a page shows after a redirect.
var flashRE = regexp.MustCompile(`(?s)<p class="flash (\w+)" id="flash" role="status">(.*?)</p>`)

func flashOf(t *testing.T, page string) (kind, text string) {
	t.Helper()
	m := flashRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no flash on the page:\n%s", page)
	}
	return m[1], m[2]
}

// Off a loopback address the console needs operators to authenticate: start-up refuses, with
// every other problem, before anything listens; and no problem quotes a tokens file's line.
func TestConsoleRefusesUnauthenticatedOffLoopback(t *testing.T) {
	t.Parallel()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	tokens := writeFile(t, "tokens", "carol short-secret\n", 0o600)
	for _, tt := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no authentication", map[string]string{"RIPOSTE_CONSOLE": "true", "RIPOSTE_HTTP_ADDR": "0.0.0.0:" + port},
			[]string{`--console on --http-addr "0.0.0.0:` + port + `", which is not a loopback address, needs operators to authenticate`}},
		{"every interface, and a bad tokens file", map[string]string{"RIPOSTE_CONSOLE": "on", "RIPOSTE_HTTP_ADDR": ":" + port,
			"RIPOSTE_CONSOLE_TOKENS": tokens, "RIPOSTE_HTTP_TLS_CERT": "/nonexistent/cert.pem", "RIPOSTE_MAX_DELIVER": "0"},
			[]string{tokens + `:1: the token of "carol" is shorter than 16 characters`, "--http-tls-cert and --http-tls-key go together",
				"--max-deliver must be at least 1"}},
		{"console without a listener", map[string]string{"RIPOSTE_CONSOLE": "true", "RIPOSTE_HTTP_ADDR": ""},
			[]string{"--console needs --http-addr"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"RIPOSTE_PLAYBOOKS": approvalPlaybooks, "RIPOSTE_SIMULATE": "true", "RIPOSTE_NATS_LISTEN": freeAddr(t)}
			for k, v := range tt.env {
				env[k] = v
			}
			var out bytes.Buffer
			if code := dispatch(context.Background(), []string{"run"}, mapEnv(env), nil, io.Discard, &out); code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out.String())
			}
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "short-secret") {
				t.Errorf("the output quotes a token:\n%s", out.String())
			}
		})
	}
	if ln, err := net.Listen("tcp", "127.0.0.1:"+port); err != nil {
		t.Errorf("something listened on the console's port despite the refusal: %v", err)
	} else {
		ln.Close()
	}
}

func TestConsoleSettings(t *testing.T) {
	t.Parallel()
	good := consoleTokens(t)
	open := writeFile(t, "tokens", "alice "+aliceToken+"\n", 0o644)
	cert, key, _ := writeTestPKI(t)
	for _, tt := range []struct {
		name     string
		c        consoleSettings
		addr     string
		wantErr  []string
		wantWarn string
		auth     string
	}{
		{name: "loopback without authentication", c: consoleSettings{enabled: true}, addr: "127.0.0.1:9464", auth: "none: a name typed on a loopback address"},
		{name: "ipv6 loopback", c: consoleSettings{enabled: true}, addr: "[::1]:9464", auth: "none: a name typed on a loopback address"},
		{name: "localhost", c: consoleSettings{enabled: true}, addr: "localhost:9464", auth: "none: a name typed on a loopback address"},
		{name: "every interface", c: consoleSettings{enabled: true}, addr: ":9464", wantErr: []string{"needs operators to authenticate"}},
		{name: "a host name", c: consoleSettings{enabled: true}, addr: "worker.example.com:9464", wantErr: []string{"needs operators to authenticate"}},
		{name: "tokens in clear", c: consoleSettings{enabled: true, tokensFile: good}, addr: "0.0.0.0:9464", auth: "tokens",
			wantWarn: "console tokens cross the network in clear"},
		{name: "tokens over TLS", c: consoleSettings{enabled: true, tokensFile: good, tlsCert: cert, tlsKey: key}, addr: "0.0.0.0:9464", auth: "tokens"},
		{name: "client certificates", c: consoleSettings{enabled: true, tlsCert: cert, tlsKey: key, clientCA: cert}, addr: ":9464", auth: "client certificates"},
		{name: "a client CA without TLS", c: consoleSettings{enabled: true, clientCA: cert}, addr: "127.0.0.1:9464",
			wantErr: []string{"--http-client-ca needs --http-tls-cert and --http-tls-key"}},
		{name: "a key that is not a key", c: consoleSettings{tlsCert: cert, tlsKey: cert}, addr: ":9464", wantErr: []string{"--http-tls-cert"}},
		{name: "a world-readable tokens file", c: consoleSettings{enabled: true, tokensFile: open}, addr: "127.0.0.1:9464", auth: "tokens",
			wantWarn: "can be read by every user of the host (mode 0644): chmod 600 it"},
		{name: "tokens without the console", c: consoleSettings{tokensFile: good}, addr: ":9464", wantWarn: "the console is off"},
		{name: "a missing tokens file", c: consoleSettings{enabled: true, tokensFile: "/nonexistent/tokens"}, addr: "127.0.0.1:9464",
			wantErr: []string{"--console-tokens: open /nonexistent/tokens"}},
		{name: "a bad tokens file", addr: "127.0.0.1:9464", c: consoleSettings{enabled: true, tokensFile: writeFile(t, "bad",
			"alice "+aliceToken+"\nAlice other-token-0123456789\nbob "+aliceToken+"\njust-one-secret-field-here\ncarol two words-of-secret-token\n", 0o600)},
			wantErr: []string{`bad:2: "Alice" is named twice`, `bad:3: the token of "bob" is another operator's too`,
				`bad:4: want "name token", got 1 fields`, `bad:5: want "name token", got 3 fields`}},
		{name: "an empty tokens file", c: consoleSettings{enabled: true, tokensFile: writeFile(t, "empty", "# nobody\n", 0o600)}, addr: "127.0.0.1:9464",
			wantErr: []string{"no operator in it"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			warnings, err := c.finish(tt.addr)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error = %v, want %q", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("error = %v", err)
			}
			if err != nil {
				for _, secret := range []string{aliceToken, "other-token", "just-one-secret", "words-of-secret"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error quotes a token: %v", err)
					}
				}
			}
			if got := strings.Join(warnings, "\n"); tt.wantWarn != "" && !strings.Contains(got, tt.wantWarn) || tt.wantWarn == "" && got != "" {
				t.Errorf("warnings = %q, want %q", got, tt.wantWarn)
			}
			if tt.auth != "" && c.authName() != tt.auth {
				t.Errorf("auth = %q, want %q", c.authName(), tt.auth)
			}
		})
	}
}

// Signing in with a token: a wrong one is 401, a right one a session whose forms carry a CSRF
// token, and a form without it, or from another site, is 403. No token reaches the log.
func TestConsoleTokenSignInAndCSRF(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	s := startStackLogged(t, approvalPlaybooks, withTokenConsole(t), zap.New(core))
	b := newBrowserless(t, s.httpURL, false, nil)

	resp, _ := b.get("/console")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login" {
		t.Fatalf("GET /console signed out: %d %s, want a redirect to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := b.get("/console/login")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) || strings.Contains(body, "Unauthenticated console") {
		t.Fatalf("sign-in page: %d\n%s", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp, body := b.post("/console/login", url.Values{"token": {"alice-console-token-wrong"}}); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(body, "not one of the console") {
		t.Errorf("a wrong token: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := b.post("/console/login", url.Values{"token": {aliceToken}}, "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a sign-in from another site: %d, want 403", resp.StatusCode)
	}
	resp, _ = b.post("/console/login", url.Values{"token": {aliceToken}}, "Origin", s.httpURL)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	ck := resp.Cookies()
	if len(ck) != 1 || ck[0].Name != sessionCookie || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/console" {
		t.Errorf("session cookie = %+v", ck)
	}
	if strings.Contains(ck[0].Value, aliceToken) {
		t.Error("the session cookie holds the token")
	}
	resp, page := b.get("/console")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<span id="operator">alice</span> <span class="how">(token)</span>`) ||
		!strings.Contains(page, "Nothing waits for a decision") {
		t.Fatalf("approvals page: %d\n%s", resp.StatusCode, page)
	}
	csrf := b.csrf(page)
	const id = "0123456789abcdef01234567"
	for _, tt := range []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no CSRF token", url.Values{}, nil},
		{"a wrong CSRF token", url.Values{"csrf": {csrf + "x"}}, nil},
		{"from another site", url.Values{"csrf": {csrf}}, []string{"Origin", "https://evil.example"}},
		{"cross-site by fetch metadata", url.Values{"csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		if resp, body := b.post("/console/approvals/"+id+"/approve", tt.form, tt.headers...); resp.StatusCode != http.StatusForbidden ||
			!strings.Contains(body, "CSRF token") {
			t.Errorf("%s: %d, want 403\n%s", tt.name, resp.StatusCode, body)
		}
	}
	// Another operator's session, or a cookie signed with a token that is not the operator's,
	// is nobody: a page sends them to sign in, and a form is refused.
	forger := &console{}
	forger.users.Store(&[]consoleUser{{name: "alice", token: bobToken}})
	forged := forger.newSession("alice")
	stranger := newBrowserless(t, s.httpURL, false, nil)
	u, _ := url.Parse(s.httpURL + "/console")
	stranger.client.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: forged, Path: "/console"}})
	if resp, _ := stranger.get("/console"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a forged session: %d, want a redirect to sign in", resp.StatusCode)
	}
	if resp, _ := stranger.post("/console/approvals/"+id+"/approve", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a form without a session: %d, want 401", resp.StatusCode)
	}
	// With the token, the form goes through, and the decision names the operator.
	resp, _ = b.post("/console/approvals/"+id+"/approve", url.Values{"csrf": {csrf}}, "Origin", s.httpURL)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console" {
		t.Fatalf("approve: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page = b.get("/console")
	if kind, text := flashOf(t, page); kind != "error" || !strings.Contains(text, `no approval has this id: &#34;`+id) {
		t.Errorf("flash = %s %q", kind, text)
	}
	if resp, _ := b.post("/console/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign out: %d", resp.StatusCode)
	}
	if resp, _ := b.get("/console"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after signing out: %d, want a redirect to sign in", resp.StatusCode)
	}

	saw := false
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		saw = saw || e.Message == "console sign-in refused: unknown token"
		for _, secret := range []string{aliceToken, bobToken, "alice-console-token-wrong", ck[0].Value, csrf} {
			if strings.Contains(line, secret) {
				t.Errorf("log line carries a token or session: %q", line)
			}
		}
	}
	if !saw {
		t.Error("the refused sign-in was not logged")
	}
}

// On a loopback console without authentication the operator gives a name and the page says it
// is unauthenticated; approve and deny go through queue.Approvals.Send, a second decision and
// an unknown id are shown as errors; the outcome and the dead letters are on their pages, and
// replay does what `worker dlq replay SEQ` does.
func TestConsoleDecisionsOutcomesAndReplay(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, withConsole(t, nil))
	b := newBrowserless(t, s.httpURL, true, nil)
	if resp, body := b.post("/console/login", url.Values{"name": {" "}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Give your name") {
		t.Errorf("an empty name: %d\n%s", resp.StatusCode, body)
	}
	page := b.signIn("name", "alice")
	if !strings.Contains(page, `id="unauthenticated"`) || !strings.Contains(page, "(unauthenticated)") {
		t.Errorf("the page does not say it is unauthenticated:\n%s", page)
	}

	s.publish("soar.alerts.approval.one", "", gateAlert("console-1", "ep-c1"), nil)
	s.publish("soar.alerts.approval.one", "", gateAlert("console-2", "ep-c2"), nil)
	one, two := s.awaitRequest("isolate-approved", "console-1"), s.awaitRequest("isolate-approved", "console-2")
	_, page = b.get("/console")
	for _, want := range []string{"Isolate web-ep-c1 (ep-c1) for event ev-1?", "isolate-approved", "<dd>isolate</dd>", "console-1",
		`&#34;endpointId&#34;: &#34;ep-c1&#34;`, "0 of 1", "then deny", one.ID, two.ID} {
		if !strings.Contains(page, want) {
			t.Errorf("approvals page lacks %q", want)
		}
	}
	csrf := b.csrf(page)
	decide := func(id, decision, reason string) (kind, text string) {
		t.Helper()
		resp, page := b.post("/console/approvals/"+id+"/"+decision, url.Values{"csrf": {csrf}, "reason": {reason}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d\n%s", decision, id, resp.StatusCode, page)
		}
		return flashOf(t, page)
	}
	if kind, text := decide(two.ID, "deny", ""); kind != "error" || !strings.Contains(text, "A deny needs a reason") {
		t.Errorf("deny without a reason: %s %q", kind, text)
	}
	if kind, text := decide(one.ID, "approve", "owner agrees"); kind != "ok" || !strings.Contains(text, "approve sent for "+one.ID) ||
		!strings.Contains(text, "decided: approve by alice") {
		t.Errorf("approve: %s %q", kind, text)
	}
	if kind, text := decide(two.ID, "deny", "production database"); kind != "ok" || !strings.Contains(text, "decided: deny by alice") {
		t.Errorf("deny: %s %q", kind, text)
	}
	if kind, text := decide(one.ID, "deny", "too late"); kind != "error" || !strings.Contains(text, "already decided: approve by alice") {
		t.Errorf("a second decision: %s %q", kind, text)
	}
	if kind, text := decide("0123456789abcdef01234567", "approve", ""); kind != "error" || !strings.Contains(text, "no approval has this id") {
		t.Errorf("an unknown id: %s %q", kind, text)
	}
	if resp, _ := b.post("/console/approvals/"+one.ID+"/maybe", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("decision maybe: %d, want 404", resp.StatusCode)
	}

	approved, denied := s.outcomeFor("isolate-approved", "console-1"), s.outcomeFor("isolate-approved", "console-2")
	if approved["status"] != "succeeded" || denied["status"] != "failed" {
		t.Fatalf("outcomes: %v, %v", approved, denied)
	}
	if s.vendors.gz.Effects("isolate", "ep-c1") != 1 || s.vendors.gz.Effects("isolate", "ep-c2") != 0 {
		t.Error("want ep-c1 isolated once, ep-c2 never")
	}
	_, page = b.get("/console")
	if !strings.Contains(page, "Nothing waits for a decision") {
		t.Errorf("approvals still listed after the decisions:\n%s", page)
	}
	_, page = b.get("/console/outcomes")
	for _, want := range []string{"console-1", "console-2", `badge s-succeeded">succeeded`, `badge s-denied">denied`,
		"approved by alice at", "“owner agrees”", "denied by alice at", "“production database”", "(from the journal)"} {
		if !strings.Contains(page, want) {
			t.Errorf("outcomes page lacks %q", want)
		}
	}
	_, page = b.get("/console/outcomes?alert_id=console-2")
	if strings.Contains(page, "console-1") || !strings.Contains(page, "console-2") {
		t.Error("the alert id filter does not select")
	}
	if resp, page := b.get("/console/outcomes?status=bogus"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `status &#34;bogus&#34;: the statuses are`) {
		t.Errorf("a bad status: %d", resp.StatusCode)
	}

	s.publish("soar.alerts.approval.one", "", "not json {", map[string]string{"X-Producer": "siem-3"})
	dl := s.await("SOAR_DLQ", "soar.dlq.invalid")
	s.settled()
	_, page = b.get("/console/dlq")
	for _, want := range []string{fmt.Sprintf(`id="dl-%d"`, dl.Sequence), `badge r-invalid">invalid`, "soar.alerts.approval.one", "Replay"} {
		if !strings.Contains(page, want) {
			t.Errorf("dead letters page lacks %q", want)
		}
	}
	resp, page := b.post(fmt.Sprintf("/console/dlq/%d/replay", dl.Sequence), url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/console/dlq" {
		t.Fatalf("replay: %d %s", resp.StatusCode, resp.Request.URL)
	}
	if kind, text := flashOf(t, page); kind != "ok" || !strings.HasPrefix(text, fmt.Sprintf("%d  replayed to soar.alerts.approval.one as SOAR_ALERTS sequence", dl.Sequence)) ||
		!strings.HasSuffix(text, "dead letter removed") {
		t.Errorf("replay: %s %q", kind, text)
	}
	again := s.awaitReplayDeadLetter(dl.Sequence)
	if string(again.Data) != "not json {" || again.Header.Get("X-Producer") != "siem-3" {
		t.Errorf("the replay's dead letter: %q %v", again.Data, again.Header)
	}
	if _, page := b.post(fmt.Sprintf("/console/dlq/%d/replay", dl.Sequence), url.Values{"csrf": {csrf}}); !strings.Contains(page,
		fmt.Sprintf("%d  not replayed: no dead letter at sequence %d", dl.Sequence, dl.Sequence)) {
		t.Errorf("a replay of a removed dead letter:\n%s", page)
	}
	s.settled()
}

// With TLS and client certificates, the certificate's CN is the operator; /healthz, /readyz,
// /metrics and `worker healthcheck` work over HTTPS without one, and the console refuses a
// request without one.
func TestConsoleClientCertificatesAndHealthcheckOverTLS(t *testing.T) {
	t.Parallel()
	cert, key, pki := writeTestPKI(t)
	s := startStack(t, approvalPlaybooks, withConsole(t, func(c *consoleSettings) {
		c.tlsCert, c.tlsKey, c.clientCA = cert, key, pki.caFile
	}))
	if !strings.HasPrefix(s.httpURL, "https://") {
		t.Fatalf("http URL %s", s.httpURL)
	}
	anon := newBrowserless(t, s.httpURL, false, &tls.Config{RootCAs: pki.pool})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, body := anon.get(path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s over TLS without a client certificate: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := anon.get("/console"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "needs a client certificate") {
		t.Errorf("console without a client certificate: %d\n%s", resp.StatusCode, body)
	}
	addr := strings.TrimPrefix(s.httpURL, "https://")
	var out, errOut bytes.Buffer
	env := mapEnv(map[string]string{"RIPOSTE_HTTP_ADDR": addr, "RIPOSTE_HTTP_TLS_CERT": cert})
	if code := dispatch(context.Background(), []string{"healthcheck"}, env, nil, &out, &errOut); code != 0 || strings.TrimSpace(out.String()) != "ready" {
		t.Errorf("healthcheck over TLS: exit %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	env = mapEnv(map[string]string{"RIPOSTE_HTTP_ADDR": addr, "RIPOSTE_HTTP_TLS_CERT": pki.caFile})
	if code := dispatch(context.Background(), []string{"healthcheck"}, env, nil, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "not the one in --http-tls-cert") {
		t.Errorf("healthcheck pinned to another certificate: exit %d, %q", code, errOut.String())
	}
	if code := dispatch(context.Background(), []string{"healthcheck", "--http-addr", addr}, mapEnv(nil), nil, io.Discard, io.Discard); code == 0 {
		t.Error("healthcheck over plain HTTP to an HTTPS listener said ready")
	}

	carol := newBrowserless(t, s.httpURL, true, &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}})
	resp, page := carol.get("/console")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `<span id="operator">carol</span> <span class="how">(client certificate)</span>`) ||
		strings.Contains(page, "sign out") {
		t.Fatalf("console with carol's certificate: %d\n%s", resp.StatusCode, page)
	}
	s.publish("soar.alerts.approval.one", "", gateAlert("console-tls", "ep-t"), nil)
	req := s.awaitRequest("isolate-approved", "console-tls")
	_, page = carol.get("/console")
	resp, page = carol.post("/console/approvals/"+req.ID+"/deny", url.Values{"csrf": {carol.csrf(page)}, "reason": {"not now"}})
	if kind, text := flashOf(t, page); resp.StatusCode != http.StatusOK || kind != "ok" || !strings.Contains(text, "decided: deny by carol") {
		t.Errorf("deny with a client certificate: %d %s %q", resp.StatusCode, kind, text)
	}
	o := s.outcomeFor("isolate-approved", "console-tls")
	if ap, _ := stepOf(t, o, "isolate")["approval"].(map[string]any); fmt.Sprint(ap["by"]) != "[carol]" {
		t.Errorf("outcome approval = %v, want by carol", ap)
	}
}

// A worker started as `worker run` with the console and a tokens file: nothing it logs, from
// the start-up line to a sign-in and a decision, carries a token.
func TestConsoleNoTokenInLogs(t *testing.T) {
	t.Parallel()
	emb, err := queue.StartEmbedded(queue.EmbeddedConfig{Listen: freeAddr(t), StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	tokens := consoleTokens(t)
	httpAddr := freeAddr(t)
	env := startFakeVendors(t).with(map[string]string{
		"NATS_URL": emb.URL(), "RIPOSTE_PLAYBOOKS": approvalPlaybooks, "RIPOSTE_HTTP_ADDR": httpAddr,
		"RIPOSTE_CONSOLE": "true", "RIPOSTE_CONSOLE_TOKENS": tokens, "RIPOSTE_LOG_LEVEL": "debug",
	})
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- dispatch(ctx, []string{"run"}, mapEnv(env), nil, io.Discard, &stderr) }()
	b := newBrowserless(t, "http://"+httpAddr, true, nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := b.client.Get(b.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not get ready:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.post("/console/login", url.Values{"token": {bobToken + "-not"}})
	page := b.signIn("token", bobToken)
	_, page = b.post("/console/approvals/0123456789abcdef01234567/approve", url.Values{"csrf": {b.csrf(page)}})
	if kind, _ := flashOf(t, page); kind != "error" {
		t.Errorf("decision on an unknown id: %s", kind)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("worker run exited %d", code)
	}
	logs := stderr.String()
	for _, want := range []string{`"console":true`, `"console_auth":"tokens"`, `"msg":"console sign-in refused: unknown token"`,
		`"msg":"console sign-in","operator":"bob"`, `"msg":"console decision refused"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	for _, secret := range []string{aliceToken, bobToken} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log carries a token:\n%s", strings.ReplaceAll(logs, secret, "[TOKEN]"))
		}
	}
}

// testPKI is a CA, a server certificate for 127.0.0.1 signed by it, and carol's client
// certificate.
type testPKI struct {
	caFile string
	pool   *x509.CertPool
	client tls.Certificate
}

// writeTestPKI writes the server's certificate and key and the CA's certificate to files.
func writeTestPKI(t *testing.T) (certFile, keyFile string, p testPKI) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "riposte test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, IPAddresses: ips,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	pemOf := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	keyPEM := func(k *ecdsa.PrivateKey) string {
		b, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("EC PRIVATE KEY", b)
	}
	srvDER, srvKey := issue(2, "worker", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	cliDER, cliKey := issue(3, "carol", x509.ExtKeyUsageClientAuth, nil)
	client, err := tls.X509KeyPair([]byte(pemOf("CERTIFICATE", cliDER)), []byte(keyPEM(cliKey)))
	if err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	p.caFile = writeFile(t, "ca.pem", pemOf("CERTIFICATE", caDER), 0o600)
	p.client = client
	return writeFile(t, "server.pem", pemOf("CERTIFICATE", srvDER), 0o600), writeFile(t, "server-key.pem", keyPEM(srvKey), 0o600), p
}

// Each address may get a few tokens wrong, then one more every signInEvery; another address is
// not held back by it.
func TestSignInGate(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g := newSignInGate(clock.Now)
	for i := range signInBurst {
		if w := g.wait("192.0.2.1"); w != 0 {
			t.Fatalf("after %d failures: wait %s, want none", i, w)
		}
		g.failed("192.0.2.1")
	}
	if w := g.wait("192.0.2.1"); w != signInEvery {
		t.Fatalf("after %d failures: wait %s, want %s", signInBurst, w, signInEvery)
	}
	if w := g.wait("192.0.2.2"); w != 0 {
		t.Errorf("another address waits %s", w)
	}
	clock.Advance(signInEvery / 3)
	if w := g.wait("192.0.2.1"); w != signInEvery*2/3 {
		t.Errorf("a third of the way: wait %s, want %s", w, signInEvery*2/3)
	}
	clock.Advance(signInEvery * 2 / 3)
	if w := g.wait("192.0.2.1"); w != 0 {
		t.Fatalf("after signInEvery: wait %s, want one more try", w)
	}
	g.failed("192.0.2.1")
	if w := g.wait("192.0.2.1"); w != signInEvery {
		t.Errorf("that try wrong too: wait %s, want %s", w, signInEvery)
	}
}

// The gate remembers a bounded number of addresses: once full, those whose allowance has refilled
// are forgotten to make room, and one still held back is kept.
func TestSignInGateForgetsRefilledAddresses(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g := newSignInGate(clock.Now)
	for i := range signInAddrs - 1 {
		g.failed(fmt.Sprintf("198.51.100.%d", i))
	}
	clock.Advance(signInBurst*signInEvery + time.Second)
	for range signInBurst {
		g.failed("192.0.2.9") // held back, and recent
	}
	g.failed("192.0.2.10") // the map is full: the refilled ones go
	if n := len(g.addrs); n != 2 {
		t.Errorf("%d addresses remembered, want the 2 recent ones", n)
	}
	if w := g.wait("192.0.2.9"); w == 0 {
		t.Error("the held-back address was forgotten")
	}
}

// A map full of addresses still held back stays at its bound: none of them is forgotten to make
// room, a new address goes uncounted, and once one refills there is room again.
func TestSignInGateFullOfHeldBackAddresses(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	g := newSignInGate(clock.Now)
	held := func(i int) string { return fmt.Sprintf("198.51.%d.%d", i/256, i%256) }
	for i := range signInAddrs {
		for range signInBurst {
			g.failed(held(i))
		}
	}
	for i := range 3 * signInBurst {
		g.failed(fmt.Sprintf("192.0.2.%d", i%3))
		clock.Advance(time.Second)
	}
	if n := len(g.addrs); n != signInAddrs {
		t.Fatalf("%d addresses remembered, want the bound, %d", n, signInAddrs)
	}
	for i := range signInAddrs {
		if g.wait(held(i)) == 0 {
			t.Fatalf("held-back address %s was forgotten", held(i))
		}
	}
	if w := g.wait("192.0.2.0"); w != 0 {
		t.Errorf("an address that did not fit waits %s", w)
	}
	clock.Advance(signInBurst * signInEvery)
	g.failed("192.0.2.0") // every held-back address has refilled: they go
	if n := len(g.addrs); n != 1 {
		t.Errorf("%d addresses remembered after they refilled, want the new one", n)
	}
}

// Through the console: after signInBurst wrong tokens, the right one is refused too, with 429
// and a Retry-After, and the refusal is logged.
func TestConsoleSlowsDownTokenGuessing(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	s := startStackLogged(t, approvalPlaybooks, withTokenConsole(t), zap.New(core))
	b := newBrowserless(t, s.httpURL, false, nil)
	for i := range signInBurst {
		if resp, _ := b.post("/console/login", url.Values{"token": {fmt.Sprintf("guess-%d-of-the-console-token", i)}}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i, resp.StatusCode)
		}
	}
	resp, body := b.post("/console/login", url.Values{"token": {aliceToken}})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many wrong tokens") {
		t.Fatalf("the right token after %d wrong ones: %d, Retry-After %q\n%s", signInBurst, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("a refused sign-in set cookies: %v", resp.Cookies())
	}
	if n := len(logs.FilterMessageSnippet("too many wrong tokens").All()); n != 1 {
		t.Errorf("%d log lines for the refusal, want 1", n)
	}
}

// A reload reads the tokens file again: a removed operator's token and open session stop
// working, a new operator signs in, and a file that no longer reads keeps the last operators.
func TestConsoleTokensReload(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	tokens := consoleTokens(t)
	s := startStackLogged(t, approvalPlaybooks, withConsole(t, func(c *consoleSettings) { c.tokensFile = tokens }), zap.New(core))
	bob := newBrowserless(t, s.httpURL, true, nil)
	bob.signIn("token", bobToken)

	const carolToken = "carol-console-token-0123456789"
	if err := os.WriteFile(tokens, []byte("alice "+aliceToken+"\ncarol "+carolToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := func() {
		t.Helper()
		resp, err := http.Post(s.httpURL+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /-/reload: %d", resp.StatusCode)
		}
	}
	reload()
	if resp, body := bob.get("/console"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Errorf("bob's session after bob was removed: %d, want the sign-in page\n%s", resp.StatusCode, body)
	}
	if resp, _ := newBrowserless(t, s.httpURL, false, nil).post("/console/login", url.Values{"token": {bobToken}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob's token after bob was removed: %d, want 401", resp.StatusCode)
	}
	newBrowserless(t, s.httpURL, true, nil).signIn("token", carolToken)

	if err := os.WriteFile(tokens, []byte("carol tiny-x9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload()
	newBrowserless(t, s.httpURL, true, nil).signIn("token", carolToken)
	refused := logs.FilterMessageSnippet("console tokens not reloaded").All()
	if len(refused) != 1 || strings.Contains(fmt.Sprint(refused[0].ContextMap()), "tiny-x9") {
		t.Errorf("the broken tokens file: %d log lines %v, want one that quotes no line", len(refused), refused)
	}
}
