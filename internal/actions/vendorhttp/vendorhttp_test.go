package vendorhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReadBodyBounds(t *testing.T) {
	t.Parallel()
	if b, err := ReadBody(strings.NewReader("12345"), 5); err != nil || string(b) != "12345" {
		t.Errorf("at the limit: %q, %v", b, err)
	}
	if _, err := ReadBody(strings.NewReader("123456"), 5); err == nil || !strings.Contains(err.Error(), "larger than 5 bytes") {
		t.Errorf("over the limit: %v", err)
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	var v map[string]any
	if err := DecodeJSON([]byte(`{"id": 12345678901234567890}`), &v); err != nil {
		t.Fatal(err)
	}
	if n, ok := v["id"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("id = %#v, want the exact json.Number", v["id"])
	}
	for _, bad := range []string{`{"a":1} {"b":2}`, `{"a":1}x`, `{`, ``} {
		if err := DecodeJSON([]byte(bad), &v); err == nil {
			t.Errorf("DecodeJSON(%q) accepted it", bad)
		}
	}
	var s struct {
		A int `json:"a"`
	}
	if err := DecodeJSON([]byte(`{"a":1,"b":2}`), &s); err != nil {
		t.Errorf("lenient decode refused an unknown field: %v", err)
	}
	if err := DecodeJSONStrict([]byte(`{"a":1,"b":2}`), &s); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("strict decode: %v, want it to name the unknown field", err)
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		raw, want, wantErr string
	}{
		{"https://cloud.gravityzone.bitdefender.com/api/", "https://cloud.gravityzone.bitdefender.com/api", ""},
		{" http://127.0.0.1:8080 ", "http://127.0.0.1:8080", ""},
		{"", "", "is empty"},
		{"cloud.gravityzone.bitdefender.com", "", "absolute http or https"},
		{"ftp://host", "", "absolute http or https"},
		{"https://host/?a=b", "", "query or fragment"},
		{"https://admin:s3cret@host", "", "must not carry credentials"},
		{"https://host/%zz", "", "not a valid URL"},
	}
	for _, tc := range cases {
		got, err := BaseURL("access URL (X_URL)", tc.raw)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("BaseURL(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "access URL (X_URL)") {
			t.Errorf("BaseURL(%q) error = %v, want one naming the setting and containing %q", tc.raw, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("BaseURL error leaks the password: %v", err)
		}
	}
}

func TestPathSegment(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"ev-1", "6bb51619b0bb", "a.b", "x_y"} {
		if err := PathSegment(ok); err != nil {
			t.Errorf("PathSegment(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", " ", "a/b", "a b", "a\tb", ".", "..", `a\b`, "a\x00"} {
		if err := PathSegment(bad); err == nil {
			t.Errorf("PathSegment(%q) accepted it", bad)
		}
	}
	if err := IDs([]string{"a", ""}); err == nil || !strings.Contains(err.Error(), "item 1") {
		t.Errorf("IDs error = %v, want it to name item 1", err)
	}
}

func TestClientSetsUserAgentAndBoundsTheBody(t *testing.T) {
	t.Parallel()
	var gotUA string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUA = r.Header.Get("User-Agent")
		_, _ = w.Write([]byte(strings.Repeat("x", MaxResponseBytes+1)))
	}))
	t.Cleanup(srv.Close)
	c := NewClient(nil, "riposte/1.2.3")
	req, err := NewJSONRequest(http.MethodPost, srv.URL, map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Accept") != "application/json" {
		t.Errorf("headers %v", req.Header)
	}
	_, err = c.Do(context.Background(), "read things", req)
	if err == nil || !strings.HasPrefix(err.Error(), "read things: read HTTP 200 response: response larger than") {
		t.Errorf("error = %v", err)
	}
	if gotUA != "riposte/1.2.3" {
		t.Errorf("User-Agent %q", gotUA)
	}
}

func TestFailureScript(t *testing.T) {
	t.Parallel()
	var s FailureScript
	s.Inject("/action/entity", 2, Failure{Status: 503})
	s.Inject("isolate", -1, Failure{Status: 500})
	for i := range 2 {
		if f, ok := s.Take("/app/hec-api/v1.0/action/entity"); !ok || f.Status != 503 {
			t.Errorf("take %d: %v %v", i, f, ok)
		}
	}
	if _, ok := s.Take("/app/hec-api/v1.0/action/entity"); ok {
		t.Error("a third failure was given for n=2")
	}
	for range 5 {
		if f, ok := s.Take("createIsolateEndpointTask"); ok {
			t.Errorf("matched %v on a key that does not contain the match", f)
		}
		if _, ok := s.Take("isolate"); !ok {
			t.Error("a failure until cleared stopped early")
		}
	}
	s.ClearFailures()
	if _, ok := s.Take("isolate"); ok {
		t.Error("failure given after ClearFailures")
	}
}

func TestFailureHold(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (Failure{Delay: time.Hour}).Hold(ctx) {
		t.Error("Hold waited out a gone client")
	}
	if !(Failure{}).Hold(ctx) {
		t.Error("Hold without a delay refused to answer")
	}
}

func TestRateGate(t *testing.T) {
	t.Parallel()
	var g RateGate
	g.SetRateLimit(3)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	admitted := []bool{
		g.Admit(t0), g.Admit(t0.Add(100 * time.Millisecond)), g.Admit(t0.Add(200 * time.Millisecond)),
		g.Admit(t0.Add(300 * time.Millisecond)), // a fourth within the second: refused
		g.Admit(t0.Add(time.Second)),            // the first has left the window
	}
	want := []bool{true, true, true, false, true}
	for i := range want {
		if admitted[i] != want[i] {
			t.Errorf("request %d admitted %t, want %t", i, admitted[i], want[i])
		}
	}
	if g.PeakRate() != 3 || g.RateLimited() != 1 {
		t.Errorf("peak %d, refused %d; want 3 and 1", g.PeakRate(), g.RateLimited())
	}
}

func TestEffectCounter(t *testing.T) {
	t.Parallel()
	var e EffectCounter
	e.AddEffect("isolate", "ep1")
	e.AddEffect("isolate", "ep1")
	e.AddEffect("isolate", "ep2")
	if e.Effects("isolate", "ep1") != 2 || e.Effects("restore", "ep1") != 0 || e.EffectTotal("isolate") != 3 {
		t.Errorf("counts: %d %d %d", e.Effects("isolate", "ep1"), e.Effects("restore", "ep1"), e.EffectTotal("isolate"))
	}
}

// A fake serving --simulate keeps the last requests only, and still refuses a recent request
// id sent again.
func TestHistoryIsBounded(t *testing.T) {
	t.Parallel()
	var l RequestLog
	r := httptest.NewRequest(http.MethodPost, "/p", nil)
	for i := range 5 {
		l.Record(r, fmt.Sprint(i), nil, time.Time{})
	}
	if n := len(l.Requests()); n != 5 {
		t.Fatalf("unbounded log holds %d of 5", n)
	}
	l.KeepLast(3)
	for i := 5; i < 20; i++ {
		l.Record(r, fmt.Sprint(i), nil, time.Time{})
		if n := len(l.reqs); n > 6 {
			t.Fatalf("after %d requests the log holds %d, want at most twice the 3 kept", i+1, n)
		}
	}
	held := len(l.reqs)
	got := l.Requests()
	if len(got) != 3 || got[0].Key != "17" || got[2].Key != "19" {
		t.Errorf("kept %v, want the last three (17, 18, 19)", got)
	}
	if len(l.reqs) != held {
		t.Errorf("reading the log trimmed it from %d to %d", held, len(l.reqs))
	}

	var u UsedIDs
	u.Bound(3)
	for i := range 100 {
		if !u.Use(fmt.Sprint(i)) {
			t.Fatalf("id %d refused as used", i)
		}
		if u.Use(fmt.Sprint(i)) {
			t.Fatalf("id %d accepted twice in a row", i)
		}
		if len(u.seen) > 6 {
			t.Fatalf("after %d ids %d remembered, want at most 6", i+1, len(u.seen))
		}
	}
	if u.Use("97") || u.Use("99") {
		t.Error("a recent id was accepted again")
	}
}

func TestListForError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ids  []string
		want string
	}{
		{nil, "[]"},
		{[]string{"a1"}, "[a1]"},
		{[]string{"a", "b", "c", "d", "e"}, "[a b c d e]"},
		{[]string{"a", "b", "c", "d", "e", "f", "g"}, "[a b c d e]… (7 in all)"},
	} {
		if got := ListForError(tt.ids); got != tt.want {
			t.Errorf("ListForError(%q) = %q, want %q", tt.ids, got, tt.want)
		}
	}
}
