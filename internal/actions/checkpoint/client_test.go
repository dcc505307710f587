package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"github.com/riposte-soar/riposte/internal/testkit"
)

const (
	testClientID  = "riposte-client-7f3a"
	testAccessKey = "hec-access-key-9c1d2e3f4a5b6c7d"
)

// newClock is a settable time source shared by a client and its fake.
func newClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
}

// startFake runs a fake with the test credentials for the duration of the test.
func startFake(t *testing.T) (*Fake, string) {
	t.Helper()
	f := NewFake(testClientID, testAccessKey)
	base, stop := f.Start()
	t.Cleanup(stop)
	return f, base
}

func newTestClient(t *testing.T, base string, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{BaseURL: base, ClientID: testClientID, AccessKey: testAccessKey}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := NewClient(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs a hand-written HEC for answers the fake does not give; /auth/external always works.
func serve(t *testing.T, api http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == authPath {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"success": true, "data": {"token": "tok-hand-written", "csrf": "c", "expires": "", "expiresIn": "3600"}}`)
			return
		}
		api(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func bearer(r Recorded) string { return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") }

func TestEntityActionRequestShape(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base+"/") // a trailing slash is tolerated
	ctx := context.Background()

	tasks, err := c.EntityAction(ctx, []string{"a1", "b2", "a1"}, "quarantine", "phishing")
	if err != nil {
		t.Fatal(err)
	}
	want := []Task{{EntityID: "a1", TaskID: "123445311234"}, {EntityID: "b2", TaskID: "123445311235"}}
	if !reflect.DeepEqual(tasks, want) {
		t.Errorf("tasks = %+v, want %+v", tasks, want)
	}
	if _, err := c.GetExceptions(ctx, "whitelist"); err != nil {
		t.Fatal(err)
	}
	f.AddEvent(map[string]any{"eventId": "ev1", "entityId": "a1"})
	if _, err := c.GetEvent(ctx, "ev1"); err != nil {
		t.Fatal(err)
	}

	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("fake saw %d API requests, want 3", len(reqs))
	}
	q := reqs[0]
	if q.Method != http.MethodPost || q.Path != "/app/hec-api/v1.0/action/entity" {
		t.Errorf("request = %s %s", q.Method, q.Path)
	}
	for h, v := range map[string]string{"Accept": "application/json", "Content-Type": "application/json"} {
		if got := q.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
	if !strings.HasPrefix(q.Header.Get("Authorization"), "Bearer ") || bearer(q) == "" {
		t.Errorf("Authorization = %q, want Bearer <token>", q.Header.Get("Authorization"))
	}
	var gotBody, wantBody any
	if err := json.Unmarshal(q.Body, &gotBody); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(`{"requestData": {"entityIds": ["a1", "b2"], "entityActionName": ["quarantine"], "entityActionParam": ["phishing"]}}`), &wantBody)
	if !reflect.DeepEqual(gotBody, wantBody) {
		t.Errorf("body = %s", q.Body)
	}
	if reqs[1].Method != http.MethodGet || reqs[1].Path != "/app/hec-api/v1.0/exceptions/whitelist" ||
		reqs[2].Path != "/app/hec-api/v1.0/event/ev1" {
		t.Errorf("requests = %s %s, %s %s", reqs[1].Method, reqs[1].Path, reqs[2].Method, reqs[2].Path)
	}
	if ct := reqs[1].Header.Get("Content-Type"); ct != "" {
		t.Errorf("GET carries Content-Type %q", ct)
	}

	seen := map[string]bool{}
	for _, r := range reqs {
		id := r.Header.Get("x-av-req-id")
		if u, err := uuid.Parse(id); err != nil || u.String() != id {
			t.Errorf("x-av-req-id %q is not a canonical UUID", id)
		}
		if seen[id] {
			t.Errorf("x-av-req-id %q sent twice", id)
		}
		seen[id] = true
		if bearer(r) != bearer(q) {
			t.Errorf("token changed between calls")
		}
	}
	if n := f.AuthCount(); n != 1 {
		t.Errorf("AuthCount = %d, want 1 (the token is cached)", n)
	}
}

func TestEntityActionParamDefaultsToEmpty(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	if _, err := c.EntityAction(context.Background(), []string{"e1"}, "restore", ""); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Requests()[0].Body); !strings.Contains(got, `"entityActionParam":[""]`) {
		t.Errorf("body = %s, want entityActionParam [\"\"]", got)
	}
	if got := f.EntityState("e1"); got != "restored" {
		t.Errorf("EntityState = %q", got)
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		lifetime time.Duration
		still    time.Duration // still cached at this age
		renewed  time.Duration // renewed at this age
	}{
		// Renewal when less than min(60s, 10% of the lifetime) remains.
		{"long token renews a minute early", 600 * time.Second, 539 * time.Second, 541 * time.Second},
		{"short token renews a tenth early", 100 * time.Second, 89 * time.Second, 91 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			clk := newClock()
			f.SetClock(clk.Now)
			f.SetTokenLifetime(tc.lifetime)
			c := newTestClient(t, base, func(cfg *Config) { cfg.Now = clk.Now })
			call := func() {
				t.Helper()
				if _, err := c.GetExceptions(context.Background(), "blacklist"); err != nil {
					t.Fatal(err)
				}
			}
			call()
			clk.Advance(tc.still)
			call()
			if n := f.AuthCount(); n != 1 {
				t.Fatalf("after %v: AuthCount = %d, want 1", tc.still, n)
			}
			clk.Advance(tc.renewed - tc.still)
			call()
			if n := f.AuthCount(); n != 2 {
				t.Fatalf("after %v: AuthCount = %d, want 2", tc.renewed, n)
			}
			reqs := f.Requests()
			if bearer(reqs[1]) == bearer(reqs[2]) {
				t.Error("the renewed token was not used")
			}
		})
	}
}

func TestTokenRenewedOnceOn401(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	if _, err := c.EntityAction(ctx, []string{"a1"}, "quarantine", ""); err != nil {
		t.Fatal(err)
	}
	f.ExpireTokens()
	tasks, err := c.EntityAction(ctx, []string{"b2"}, "quarantine", "")
	if err != nil {
		t.Fatalf("after a 401 the client should renew and retry: %v", err)
	}
	if len(tasks) != 1 || tasks[0].EntityID != "b2" {
		t.Errorf("tasks = %+v", tasks)
	}
	if n := f.AuthCount(); n != 2 {
		t.Errorf("AuthCount = %d, want 2", n)
	}
	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Fatalf("fake saw %d requests, want 3", len(reqs))
	}
	if reqs[1].Header.Get("x-av-req-id") == reqs[2].Header.Get("x-av-req-id") {
		t.Error("the retry after a 401 reused the request id")
	}
	if bearer(reqs[1]) == bearer(reqs[2]) {
		t.Error("the retry after a 401 reused the refused token")
	}
}

func TestPersistent401IsAnError(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	f.FailNext("/action/entity", 5, http.StatusUnauthorized, "token revoked")
	_, err := c.EntityAction(context.Background(), []string{"a1"}, "quarantine", "")
	if err == nil {
		t.Fatal("got no error")
	}
	var unauth *actions.UnauthorizedError
	if !errors.As(err, &unauth) || !actions.IsPermanent(err) {
		t.Errorf("error %q: want an UnauthorizedError marked permanent", err)
	}
	if !strings.Contains(err.Error(), "token revoked") {
		t.Errorf("error %q lacks the vendor's message", err)
	}
	if n, m := f.AuthCount(), len(f.Requests()); n != 2 || m != 2 {
		t.Errorf("AuthCount = %d, requests = %d; want one renewal and one retry", n, m)
	}
}

func TestVendorErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		failure   Failure
		wantMsg   string
		permanent bool
		after     time.Duration
	}{
		{
			name:      "HTTP 422 carries the op, the ids and the vendor message",
			failure:   Failure{Status: 422, Message: "Entity not found"},
			wantMsg:   "quarantine entities [a1 b2] on HEC: HTTP 422: Entity not found",
			permanent: true,
		},
		{
			name:      "HTTP 400 is permanent with the vendor message",
			failure:   Failure{Status: 400, Message: "bad entity id"},
			wantMsg:   "HTTP 400: bad entity id",
			permanent: true,
		},
		{
			name:    "HTTP 503 is retryable",
			failure: Failure{Status: 503, Message: "maintenance"},
			wantMsg: "HTTP 503: maintenance",
		},
		{
			name:    "HTTP 429 honours Retry-After",
			failure: Failure{Status: 429, Message: "slow down", RetryAfter: "3"},
			wantMsg: "HTTP 429: slow down",
			after:   3 * time.Second,
		},
		{
			name:      "envelope code under HTTP 200 spelled responseTest",
			failure:   Failure{Status: 200, Code: 422, Message: "Entity not found", AltSpelling: true},
			wantMsg:   "quarantine entities [a1 b2] on HEC: HTTP 422: Entity not found",
			permanent: true,
		},
		{
			name:    "envelope 5xx under HTTP 200 is retryable",
			failure: Failure{Status: 200, Code: 500, Message: "internal error"},
			wantMsg: "HTTP 500: internal error",
		},
		{
			name:      "envelope code outside HTTP's range is permanent",
			failure:   Failure{Status: 200, Code: 7, Message: "action not allowed"},
			wantMsg:   "HEC response code 7: action not allowed",
			permanent: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			c := newTestClient(t, base)
			f.FailNextWith("/action/entity", 1, tc.failure)
			_, err := c.EntityAction(context.Background(), []string{"a1", "b2"}, "quarantine", "")
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			if got := actions.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %t, want %t", got, tc.permanent)
			}
			var ra *actions.RetryAfterError
			if tc.after > 0 && (!errors.As(err, &ra) || ra.After != tc.after) {
				t.Errorf("error %q: want a RetryAfterError of %v", err, tc.after)
			}
			if len(f.Tasks()) != 0 {
				t.Error("a failed request created tasks")
			}
		})
	}
}

func TestEnvelope401Under200RenewsToken(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	f.FailNextWith("/event/", 1, Failure{Status: 200, Code: 401, Message: "token expired"})
	f.SetSynthesize(true)
	if _, err := c.GetEvent(context.Background(), "ev9"); err != nil {
		t.Fatal(err)
	}
	if n := f.AuthCount(); n != 2 {
		t.Errorf("AuthCount = %d, want 2", n)
	}
}

func TestStatusClasses(t *testing.T) {
	t.Parallel()
	actiontest.StatusClasses(t, func(status int, retryAfter string) error {
		f, base := startFake(t)
		c := newTestClient(t, base)
		// Two: the first answer and the retry after the one renewal a 401 earns.
		f.FailNextWith("/action/entity", 2, Failure{Status: status, Message: "injected", RetryAfter: retryAfter})
		_, err := c.EntityAction(context.Background(), []string{"a1"}, "quarantine", "")
		return err
	})
}

func TestTaskIDsAreText(t *testing.T) {
	t.Parallel()
	t.Run("fake answers strings and numbers alike", func(t *testing.T) {
		t.Parallel()
		for _, numeric := range []bool{false, true} {
			f, base := startFake(t)
			f.SetNumericTaskIDs(numeric)
			wire := &capture{}
			c := newTestClient(t, base, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: wire} })
			tasks, err := c.EntityAction(context.Background(), []string{"a1"}, "quarantine", "")
			if err != nil {
				t.Fatal(err)
			}
			if len(tasks) != 1 || tasks[0].TaskID != "123445311234" {
				t.Errorf("numeric=%t: tasks = %+v, want taskId \"123445311234\"", numeric, tasks)
			}
			if isNumber := strings.Contains(wire.Last(), `"taskId":123445311234`); isNumber != numeric {
				t.Errorf("numeric=%t: fake answered %s", numeric, wire.Last())
			}
		}
	})
	t.Run("ids past float precision keep every digit", func(t *testing.T) {
		t.Parallel()
		base := serve(t, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"responseEnvelope": {"responseCode": 0, "responseText": "success"},
				"responseData": [{"entityId": "a1", "taskId": 9007199254740993},
				                 {"entityId": "b2", "taskId": 1.23445311234e11},
				                 {"entityId": "c3", "taskId": "77"}]}`)
		})
		c := newTestClient(t, base)
		tasks, err := c.EntityAction(context.Background(), []string{"a1", "b2", "c3"}, "quarantine", "")
		if err != nil {
			t.Fatal(err)
		}
		want := []Task{{EntityID: "a1", TaskID: "9007199254740993"}, {EntityID: "b2", TaskID: "123445311234"}, {EntityID: "c3", TaskID: "77"}}
		if !reflect.DeepEqual(tasks, want) {
			t.Errorf("tasks = %+v, want %+v", tasks, want)
		}
	})
}

// capture keeps the last response body a client received, to see what went over the wire.
type capture struct {
	mu   sync.Mutex
	last []byte
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
	c.last = body
	c.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

func (c *capture) Last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.last)
}

func TestGetEventShapes(t *testing.T) {
	t.Parallel()
	event := map[string]any{"eventId": "7ded0371a3e1475c9a877e452f23a049", "state": "dismissed", "severity": "Low", "entityId": "639c"}
	for _, asArray := range []bool{false, true} {
		t.Run(fmt.Sprintf("array=%t", asArray), func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.SetEventAsArray(asArray)
			f.AddEvent(event)
			c := newTestClient(t, base)
			ev, err := c.GetEvent(context.Background(), "7ded0371a3e1475c9a877e452f23a049")
			if err != nil {
				t.Fatal(err)
			}
			if ev["state"] != "dismissed" || ev["eventId"] != "7ded0371a3e1475c9a877e452f23a049" {
				t.Errorf("event = %v", ev)
			}
		})
	}
	t.Run("empty array is not found", func(t *testing.T) {
		t.Parallel()
		base := serve(t, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"responseEnvelope": {"responseCode": 0}, "responseData": []}`)
		})
		_, err := newTestClient(t, base).GetEvent(context.Background(), "ev1")
		if err == nil || !actions.IsPermanent(err) || err.Error() != `event "ev1" not found on HEC` {
			t.Errorf("error = %v, want permanent not found", err)
		}
	})
	t.Run("unknown event is a permanent 404", func(t *testing.T) {
		t.Parallel()
		_, base := startFake(t)
		_, err := newTestClient(t, base).GetEvent(context.Background(), "nope")
		if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), `get event "nope" from HEC: HTTP 404: event not found`) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("synthesized event", func(t *testing.T) {
		t.Parallel()
		f, base := startFake(t)
		f.SetSynthesize(true)
		ev, err := newTestClient(t, base).GetEvent(context.Background(), "alert-42")
		if err != nil {
			t.Fatal(err)
		}
		if ev["state"] != "new" || ev["eventId"] != "alert-42" {
			t.Errorf("event = %v", ev)
		}
	})
	t.Run("big numbers keep their digits", func(t *testing.T) {
		t.Parallel()
		base := serve(t, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"responseEnvelope": {"responseCode": 200}, "responseData": {"eventId": "e", "scrollId": 34234345454353343}}`)
		})
		ev, err := newTestClient(t, base).GetEvent(context.Background(), "e")
		if err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(ev)
		if !strings.Contains(string(out), "34234345454353343") {
			t.Errorf("event = %s", out)
		}
	})
}

func TestGetExceptions(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.SetExceptions("whitelist", []map[string]any{{"entityId": "121775995", "senderEmail": "user@email.com", "addedBy": "5"}})
	c := newTestClient(t, base)
	list, err := c.GetExceptions(context.Background(), "whitelist")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0]["senderEmail"] != "user@email.com" {
		t.Errorf("list = %v", list)
	}
	_, err = c.GetExceptions(context.Background(), "greylist")
	if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), `get "greylist" exceptions from HEC: HTTP 404`) {
		t.Errorf("error = %v", err)
	}
}

func TestInvalidJSONIsRetryable(t *testing.T) {
	t.Parallel()
	base := serve(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html>gateway</html>`)
	})
	_, err := newTestClient(t, base).GetExceptions(context.Background(), "whitelist")
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "invalid JSON") {
		t.Errorf("error = %v, want a retryable invalid JSON error", err)
	}
}

func TestInvalidInputMakesNoRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		call func(c *Client) error
		want string
	}{
		{"no ids", func(c *Client) error {
			_, err := c.EntityAction(context.Background(), nil, "quarantine", "")
			return err
		}, "entityIds: must not be empty"},
		{"empty id", func(c *Client) error {
			_, err := c.EntityAction(context.Background(), []string{"a1", " "}, "quarantine", "")
			return err
		}, "item 1: must not be empty"},
		{"id with slash", func(c *Client) error {
			_, err := c.EntityAction(context.Background(), []string{"a/1"}, "quarantine", "")
			return err
		}, `"a/1" must not contain '/'`},
		{"empty action", func(c *Client) error {
			_, err := c.EntityAction(context.Background(), []string{"a1"}, "", "")
			return err
		}, "entityActionName: must not be empty"},
		{"event id with slash", func(c *Client) error {
			_, err := c.GetEvent(context.Background(), "../admin")
			return err
		}, "must not contain '/'"},
		{"event id dot-dot", func(c *Client) error {
			_, err := c.GetEvent(context.Background(), "..")
			return err
		}, "not a usable path segment"},
		{"empty event id", func(c *Client) error {
			_, err := c.GetEvent(context.Background(), "")
			return err
		}, "eventId: must not be empty"},
		{"bad exception type", func(c *Client) error {
			_, err := c.GetExceptions(context.Background(), "white list")
			return err
		}, "may hold only letters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			err := tc.call(newTestClient(t, base))
			if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want permanent containing %q", err, tc.want)
			}
			if n, m := len(f.Requests()), f.AuthCount(); n != 0 || m != 0 {
				t.Errorf("fake saw %d API and %d auth requests, want none", n, m)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		accessKey string
		failure   *Failure
		want      string
		permanent bool
	}{
		{name: "wrong access key", accessKey: "wrong-key-0000", want: "HTTP 401: authentication failed", permanent: true},
		{name: "403", failure: &Failure{Status: 403, Message: "forbidden"}, want: "check HEC_CLIENT_ID / HEC_ACCESS_KEY", permanent: true},
		{name: "success false under 200", failure: &Failure{Status: 200, Message: "account disabled"}, want: "refused: account disabled (check HEC_CLIENT_ID / HEC_ACCESS_KEY)", permanent: true},
		{name: "5xx is retryable", failure: &Failure{Status: 502, Message: "bad gateway"}, want: "get HEC access token: HTTP 502: bad gateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			if tc.failure != nil {
				f.FailNextWith(authPath, 1, *tc.failure)
			}
			c := newTestClient(t, base, func(cfg *Config) {
				if tc.accessKey != "" {
					cfg.AccessKey = tc.accessKey
				}
			})
			_, err := c.EntityAction(context.Background(), []string{"a1"}, "quarantine", "")
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "quarantine entities [a1] on HEC: ") {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if got := actions.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent = %t, want %t", got, tc.permanent)
			}
			var unauth *actions.UnauthorizedError
			if errors.As(err, &unauth) {
				t.Error("an auth refusal must not look like a token to renew")
			}
			actiontest.NoSecrets(t, err, testAccessKey, tc.accessKey)
			if len(f.Requests()) != 0 {
				t.Error("an API call went out without a token")
			}
		})
	}
}

func TestExpiresInAsNumberOrString(t *testing.T) {
	t.Parallel()
	for _, expiresIn := range []string{`600`, `"600"`} {
		t.Run(expiresIn, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			var mu sync.Mutex
			auths := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == authPath {
					mu.Lock()
					auths++
					mu.Unlock()
					fmt.Fprintf(w, `{"success": true, "data": {"token": "t", "csrf": "c", "expires": "x", "expiresIn": %s}}`, expiresIn)
					return
				}
				fmt.Fprint(w, `{"responseEnvelope": {"responseCode": 200}, "responseData": []}`)
			}))
			t.Cleanup(srv.Close)
			c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Now = clk.Now })
			for _, step := range []time.Duration{0, 500 * time.Second, 41 * time.Second} {
				clk.Advance(step)
				if _, err := c.GetExceptions(context.Background(), "whitelist"); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if auths != 2 {
				t.Errorf("auth requests = %d, want 2 (renewed at 541s of 600s)", auths)
			}
		})
	}
}

func TestConcurrentCallersShareOneToken(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.SetSynthesize(true)
	c := newTestClient(t, base)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.GetEvent(context.Background(), fmt.Sprintf("ev%d", i))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.AuthCount(); n != 1 {
		t.Errorf("AuthCount = %d, want 1", n)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	_, base := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestClient(t, base).GetExceptions(ctx, "whitelist")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
}

func TestNoSecretsInErrors(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	c := newTestClient(t, base)
	ctx := context.Background()
	if _, err := c.GetExceptions(ctx, "whitelist"); err != nil {
		t.Fatal(err)
	}
	token := bearer(f.Requests()[0])
	if token == "" {
		t.Fatal("no token recorded")
	}
	// A vendor that echoes the request back must not carry the secrets into our errors.
	echo := "bad request: Authorization Bearer " + token + " accessKey " + testAccessKey
	errs := []error{}
	for _, fl := range []Failure{
		{Status: 400, Message: echo},
		{Status: 401, Message: echo},
		{Status: 200, Code: 422, Message: echo, AltSpelling: true},
		{Status: 500, Message: echo},
	} {
		f.FailNextWith("/exceptions/", 2, fl)
		_, err := c.GetExceptions(ctx, "whitelist")
		errs = append(errs, err)
	}
	f.FailNextWith(authPath, 1, Failure{Status: 401, Message: "bad key " + testAccessKey})
	f.ExpireTokens()
	_, err := c.GetExceptions(ctx, "whitelist")
	errs = append(errs, err)

	wrong := newTestClient(t, base, func(cfg *Config) { cfg.AccessKey = "another-secret-key-1234" })
	_, err = wrong.GetExceptions(ctx, "whitelist")
	errs = append(errs, err)

	secrets := []string{testAccessKey, "another-secret-key-1234"}
	for _, r := range f.Requests() {
		secrets = append(secrets, bearer(r))
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: got no error", i)
			continue
		}
		actiontest.NoSecrets(t, err, secrets...)
	}
}

func TestGatewayURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		region, want string
	}{
		{"", "https://cloudinfra-gw-us.portal.checkpoint.com"},
		{"US", "https://cloudinfra-gw-us.portal.checkpoint.com"},
		{"us", "https://cloudinfra-gw-us.portal.checkpoint.com"},
		{"EU", "https://cloudinfra-gw.portal.checkpoint.com"},
		{"ca", "https://cloudinfra-gw.ca.portal.checkpoint.com"},
		{"AP", "https://cloudinfra-gw.ap.portal.checkpoint.com"},
		{"Uk", "https://cloudinfra-gw.uk.portal.checkpoint.com"},
		{"ME", "https://cloudinfra-gw.me.portal.checkpoint.com"},
		{" in ", "https://cloudinfra-gw.in.portal.checkpoint.com"},
	}
	for _, tc := range cases {
		got, err := GatewayURL(tc.region)
		if err != nil || got != tc.want {
			t.Errorf("GatewayURL(%q) = %q, %v; want %q", tc.region, got, err, tc.want)
		}
	}
	_, err := GatewayURL("mars")
	if err == nil || !strings.Contains(err.Error(), `"mars"`) || !strings.Contains(err.Error(), "US (default), EU, CA, AP, UK, ME, IN") {
		t.Errorf("GatewayURL(mars) error = %v", err)
	}
}

func TestNewClientValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"all missing", Config{}, []string{"base URL is empty", "client id is empty", "access key is empty"}},
		{"relative URL", Config{BaseURL: "cloudinfra-gw-us.portal.checkpoint.com", ClientID: "c", AccessKey: "k"}, []string{"absolute http or https"}},
		{"ftp URL", Config{BaseURL: "ftp://host", ClientID: "c", AccessKey: "k"}, []string{"absolute http or https"}},
		{"query", Config{BaseURL: "https://host/?a=b", ClientID: "c", AccessKey: "k"}, []string{"query"}},
		{"credentials in URL", Config{BaseURL: "https://user:pa55word@host", ClientID: "c", AccessKey: "k"}, []string{"must not carry credentials"}},
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
		actiontest.NoSecrets(t, err, "pa55word")
	}
	if _, err := NewClient(Config{BaseURL: "https://cloudinfra-gw-us.portal.checkpoint.com/", ClientID: "c", AccessKey: "k"}, nil); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// The failures a network and a proxy produce: each is retryable, says what was being done, and
// names no secret.
func TestTransportFailures(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close()
	cases := []struct {
		name   string
		setup  func(f *Fake)
		base   func(fakeURL string) string
		want   string
		reason string
	}{
		{"refused connection", nil, func(string) string { return deadURL }, "connection refused", actions.ReasonNetwork},
		{"no answer in time", func(f *Fake) { f.FailNextWith("/exceptions/", 1, Failure{Delay: 5 * time.Second}) }, nil, "Client.Timeout", actions.ReasonTimeout},
		{"a proxy's HTML page", func(f *Fake) { f.FailNextWith("/exceptions/", 1, Failure{Status: 502, Malformed: true}) }, nil, "HTTP 502", actions.ReasonServer},
		{"HTML under 200", func(f *Fake) { f.FailNextWith("/exceptions/", 1, Failure{Status: 200, Malformed: true}) }, nil, "invalid JSON in HTTP 200 response", actions.ReasonBadResponse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			if tc.base != nil {
				base = tc.base(base)
			}
			c := newTestClient(t, base, func(cfg *Config) { cfg.HTTPClient = &http.Client{Timeout: 300 * time.Millisecond} })
			_, err := c.GetExceptions(context.Background(), "whitelist")
			if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a retryable one containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), `get "whitelist" exceptions from HEC`) && !strings.HasPrefix(err.Error(), "get HEC access token") {
				t.Errorf("error %q does not say what was being done", err)
			}
			if got := actions.ReasonOf(err); got != tc.reason {
				t.Errorf("reason %q, want %q", got, tc.reason)
			}
			actiontest.NoSecrets(t, err, testAccessKey)
		})
	}
}

// Nothing the client logs, on success or failure, carries the access key or a token.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := NewClient(Config{BaseURL: base, ClientID: testClientID, AccessKey: testAccessKey}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.GetExceptions(ctx, "whitelist"); err != nil {
		t.Fatal(err)
	}
	f.ExpireTokens() // a renewal, which the client logs
	if _, err := c.GetExceptions(ctx, "whitelist"); err != nil {
		t.Fatal(err)
	}
	f.FailNextWith("/exceptions/", 2, Failure{Status: 401, Message: "token " + bearer(f.Requests()[0]) + " refused"})
	_, _ = c.GetExceptions(ctx, "whitelist")
	secrets := []string{testAccessKey}
	for _, r := range f.Requests() {
		secrets = append(secrets, bearer(r))
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged: the test proves nothing")
	}
	for _, e := range logs.All() {
		line := e.Message
		for _, fld := range e.Context {
			line += " " + fld.String
			if fld.Interface != nil {
				line += " " + fmt.Sprint(fld.Interface)
			}
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log line leaks a secret: %q", strings.ReplaceAll(line, s, "[SECRET]"))
			}
		}
	}
}
