package cyberark

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

// The error codes the fake answers with: ITATS542I (a refused logon) and PASWS167E (no such
// event) as riposte's PVWA contract names them, the others the fake's own, in PVWA's style.
const (
	fakeCodeAuthFailed   = "ITATS542I"
	fakeCodeNoSession    = "PASWS006E"
	fakeCodeBadRequest   = "PASWS010E"
	fakeCodeNotFound     = "PASWS001E"
	fakeCodeEventMissing = "PASWS167E"
	fakeCodeBadMedia     = "PASWS415E"
	fakeCodeMethod       = "PASWS405E"
	fakeCodeTooMany      = "PASWS429E"
)

// Fake is an in-process PVWA serving PTA's update-event call. It rejects what PVWA rejects and
// answers errors as PVWA does: an HTTP 4xx/5xx with {"ErrorCode", "ErrorMessage"}. Unit tests,
// `worker demo` and `--simulate` all use it. It is safe for concurrent use.
//
// Like PVWA on IIS it matches its fixed path parts in any case (…/api/auth/cyberark/logon
// works), and the logon method too; event ids match exactly. Everything else is strict: logon
// by POST with a JSON body of exactly username and password, API calls with the session token
// itself as Authorization (a "Bearer " prefix is refused), PATCH of exactly {"mStatus": "open"|
// "closed"} in either case, an event id free of spaces, + & % and with a trailing '/' when it
// holds a dot.
type Fake struct {
	vendorhttp.FakeKit
	username, password string

	mu          sync.Mutex
	now         func() time.Time
	synthesize  bool
	lowerStatus bool
	legacyLogon bool
	sessions    map[string]bool
	logons      int
	logoffs     int
	events      map[string]map[string]any
}

// Failure is an answer to inject instead of the normal one, with Inject(path, n, failure):
// Status (0 means 200, an error inside a successful answer), Code the ErrorCode (nil: one made
// from the status), Message the ErrorMessage, RetryAfter, Delay, Malformed.
type Failure = vendorhttp.Failure

// Recorded is one request the fake received: logons, logoffs and API calls alike.
type Recorded = vendorhttp.Recorded

// NewFake returns a fake PVWA that accepts only the given credentials, by any of the four
// logon methods. It answers mStatus in upper case, as PTA does, and knows no event until
// AddEvent (or SetSynthesize).
func NewFake(username, password string) *Fake {
	return &Fake{
		username: username,
		password: password,
		now:      time.Now,
		sessions: map[string]bool{},
		events:   map[string]map[string]any{},
	}
}

// Start serves the fake on 127.0.0.1 and returns its base URL (the PVWA server, without
// /PasswordVault) and a function that stops it.
func (f *Fake) Start() (baseURL string, stop func()) {
	srv := httptest.NewServer(f)
	return srv.URL, srv.Close
}

// SetClock replaces the fake's clock (recorded times, event timestamps).
func (f *Fake) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// SetSynthesize makes an update of an unknown event id find a plausible open event with that
// id (kept from then on) instead of a 404: `--simulate` receives alerts about events it never saw.
func (f *Fake) SetSynthesize(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synthesize = on
}

// SetLowerCaseStatus answers mStatus in lower case, as PVWA's document writes it, instead of the
// upper case PTA sends.
func (f *Fake) SetLowerCaseStatus(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lowerStatus = on
}

// SetLegacyLogonAnswer answers a logon with {"CyberArkLogonResult": token}, the classic API's
// shape, instead of the token as a JSON string.
func (f *Fake) SetLegacyLogonAnswer(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.legacyLogon = on
}

// AddEvent stores a copy of a PTA security event under its "id", which must be a non-empty
// string (it panics otherwise: that is a mistake in the caller's setup). A missing mStatus
// becomes OPEN; mStatus is kept in upper case.
func (f *Fake) AddEvent(ev map[string]any) {
	id, _ := ev["id"].(string)
	if id == "" {
		panic("cyberark.Fake.AddEvent: the event has no string id")
	}
	cp := deepCopy(ev)
	st, _ := cp["mStatus"].(string)
	if st == "" {
		st = "OPEN"
	}
	cp["mStatus"] = strings.ToUpper(st)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events[id] = cp
}

// Event returns a copy of a stored event, its mStatus in upper case.
func (f *Fake) Event(id string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev, ok := f.events[id]
	if !ok {
		return nil, false
	}
	return deepCopy(ev), true
}

// EventStatus is a stored event's mStatus (OPEN or CLOSED), "" when the fake has no such event.
func (f *Fake) EventStatus(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, _ := f.events[id]["mStatus"].(string)
	return s
}

// ExpireSessions ends every session issued so far: the next API call gets a 401.
func (f *Fake) ExpireSessions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.sessions)
}

// LogonCount is the number of logon requests received, whatever their outcome.
func (f *Fake) LogonCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logons
}

// LogoffCount is the number of logoff requests received, whatever their outcome.
func (f *Fake) LogoffCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logoffs
}

// LiveSessions is the number of sessions issued and neither logged off nor expired.
func (f *Fake) LiveSessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// reply is an answer computed under the lock and written after it.
type reply struct {
	status    int
	header    http.Header
	body      any
	hold      *Failure // an injected failure whose Delay holds the answer back
	malformed bool
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := vendorhttp.ReadBody(r.Body, 1<<20)
	f.mu.Lock()
	now := f.now()
	f.mu.Unlock()
	f.Record(r, r.URL.Path, body, now)
	lower := strings.ToLower(r.URL.Path)
	var rep reply
	switch {
	case err != nil:
		rep = errorReply(http.StatusRequestEntityTooLarge, fakeCodeBadRequest, "request body unreadable or larger than 1 MiB")
	case !f.Admit(time.Now()):
		rep = errorReply(http.StatusTooManyRequests, fakeCodeTooMany, "too many requests")
		rep.header = http.Header{"Retry-After": {"1"}}
	case strings.HasPrefix(lower, strings.ToLower(vaultPath+"/API/auth/")):
		rep = f.serveAuth(r, body, r.URL.Path[len(vaultPath+"/API/auth/"):])
	case strings.HasPrefix(lower, strings.ToLower(eventsPath)):
		rep = f.serveEvent(r, body, now)
	default:
		rep = errorReply(http.StatusNotFound, fakeCodeNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
	}
	if rep.hold != nil && !rep.hold.Hold(r.Context()) {
		return // the client gave up on a hanging vendor
	}
	if rep.malformed {
		vendorhttp.WriteMalformed(w, rep.status)
		return
	}
	vendorhttp.WriteJSON(w, rep.status, rep.header, rep.body)
}

// serveAuth answers …/API/auth/{method}/Logon and …/API/Auth/Logoff; rest is the path after
// /API/auth/. PVWA takes an optional final slash on both.
func (f *Fake) serveAuth(r *http.Request, body []byte, rest string) reply {
	rest = strings.TrimSuffix(rest, "/")
	if strings.EqualFold(rest, "Logoff") {
		return f.serveLogoff(r)
	}
	method, tail, ok := strings.Cut(rest, "/")
	if !ok || !strings.EqualFold(tail, "Logon") {
		return errorReply(http.StatusNotFound, fakeCodeNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
	}
	if !slices.ContainsFunc(authMethods(), func(m string) bool { return strings.EqualFold(m, method) }) {
		return errorReply(http.StatusNotFound, fakeCodeNotFound, fmt.Sprintf("no such endpoint %q: the logon methods are CyberArk, LDAP, RADIUS, Windows", r.URL.Path))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logons++
	if r.Method != http.MethodPost {
		return methodNotAllowed(r.Method, http.MethodPost)
	}
	if fl, ok := f.Take(r.URL.Path); ok {
		return failureReply(&fl)
	}
	if msg := vendorhttp.CheckJSONContentType(r); msg != "" {
		return errorReply(http.StatusUnsupportedMediaType, fakeCodeBadMedia, msg)
	}
	var fields map[string]json.RawMessage
	if err := vendorhttp.DecodeJSON(body, &fields); err != nil || fields == nil {
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, "the body must be a JSON object with username and password")
	}
	creds := map[string]string{}
	for k, raw := range fields {
		if k != "username" && k != "password" {
			return errorReply(http.StatusBadRequest, fakeCodeBadRequest, fmt.Sprintf("unknown field %q: the body holds username and password only", k))
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return errorReply(http.StatusBadRequest, fakeCodeBadRequest, fmt.Sprintf("%s must be a string", k))
		}
		creds[k] = s
	}
	if _, ok := creds["username"]; !ok {
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, "missing username")
	}
	if _, ok := creds["password"]; !ok {
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, "missing password")
	}
	if creds["username"] != f.username || creds["password"] != f.password {
		return errorReply(http.StatusUnauthorized, fakeCodeAuthFailed, fmt.Sprintf("Authentication failure for User [%s].", creds["username"]))
	}
	// 180 characters, the length of the tokens PVWA 10 and later issue.
	tok := vendorhttp.RandomHex(90)
	f.sessions[tok] = true
	if f.legacyLogon {
		return reply{status: http.StatusOK, body: map[string]any{"CyberArkLogonResult": tok}}
	}
	return reply{status: http.StatusOK, body: tok}
}

func (f *Fake) serveLogoff(r *http.Request) reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logoffs++
	if r.Method != http.MethodPost {
		return methodNotAllowed(r.Method, http.MethodPost)
	}
	if rep, ok := f.checkSession(r.Header.Get("Authorization")); !ok {
		return rep
	}
	if fl, ok := f.Take(r.URL.Path); ok {
		return failureReply(&fl)
	}
	delete(f.sessions, r.Header.Get("Authorization"))
	return reply{status: http.StatusOK, body: map[string]any{}}
}

// checkSession wants the session token itself as Authorization, as PVWA does.
func (f *Fake) checkSession(h string) (reply, bool) {
	switch {
	case h == "":
		return errorReply(http.StatusUnauthorized, fakeCodeNoSession, "missing Authorization header: send the session token from Logon"), false
	case strings.HasPrefix(strings.ToLower(h), "bearer "):
		return errorReply(http.StatusUnauthorized, fakeCodeNoSession, "Authorization must be the session token itself, without a scheme such as Bearer"), false
	case !f.sessions[h]:
		return errorReply(http.StatusUnauthorized, fakeCodeNoSession, "the session token is invalid or expired: log on again"), false
	}
	return reply{}, true
}

// serveEvent answers PATCH …/API/pta/API/Events/{eventId}/. The URL rules are checked on the
// path as sent, before any decoding, as IIS does.
func (f *Fake) serveEvent(r *http.Request, body []byte, now time.Time) reply {
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if !strings.HasPrefix(raw, "/") {
		// An absolute-form request target, as a proxy sends: its path as sent.
		if u, err := url.Parse(raw); err == nil {
			raw = u.EscapedPath()
		}
	}
	if !strings.HasPrefix(strings.ToLower(raw), strings.ToLower(eventsPath)) {
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, fmt.Sprintf("the URL %q holds %%-encoding, which is not supported", raw))
	}
	rest := raw[len(eventsPath):]
	slash := strings.HasSuffix(rest, "/")
	id := strings.TrimSuffix(rest, "/")
	switch {
	case id == "" || strings.Contains(id, "/"):
		return errorReply(http.StatusNotFound, fakeCodeNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
	case strings.Contains(id, "%"):
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, fmt.Sprintf("the URL value %q holds %%-encoding (spaces included), which is not supported", id))
	case strings.ContainsAny(id, "+&"):
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, fmt.Sprintf("the URL value %q holds + or &, which are not supported", id))
	case strings.Contains(id, ".") && !slash:
		return errorReply(http.StatusNotFound, fakeCodeNotFound, fmt.Sprintf("no such endpoint %q: a URL value with a dot needs a trailing /", r.URL.Path))
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Method != http.MethodPatch {
		return methodNotAllowed(r.Method, http.MethodPatch)
	}
	if rep, ok := f.checkSession(r.Header.Get("Authorization")); !ok {
		return rep
	}
	if fl, ok := f.Take(r.URL.Path); ok {
		return failureReply(&fl)
	}
	if msg := vendorhttp.CheckJSONContentType(r); msg != "" {
		return errorReply(http.StatusUnsupportedMediaType, fakeCodeBadMedia, msg)
	}
	want, msg := parseStatusBody(body)
	if msg != "" {
		return errorReply(http.StatusBadRequest, fakeCodeBadRequest, msg)
	}
	ev, ok := f.events[id]
	if !ok {
		if !f.synthesize {
			return errorReply(http.StatusNotFound, fakeCodeEventMissing, "The event was not found")
		}
		ev = synthesizedEvent(id, now)
		f.events[id] = ev
	}
	ev["mStatus"] = strings.ToUpper(string(want))
	ev["lastUpdateTime"] = seconds(now)
	f.AddEffect(want.verb(), id)
	out := deepCopy(ev)
	if f.lowerStatus {
		out["mStatus"] = strings.ToLower(string(want))
	}
	return reply{status: http.StatusOK, body: out}
}

// parseStatusBody wants exactly {"mStatus": "open"|"closed"}, in either case.
func parseStatusBody(body []byte) (Status, string) {
	var fields map[string]json.RawMessage
	if err := vendorhttp.DecodeJSON(body, &fields); err != nil || fields == nil {
		return "", `the body must be a JSON object: {"mStatus": "open"} or {"mStatus": "closed"}`
	}
	for k := range fields {
		if k != "mStatus" {
			return "", fmt.Sprintf("unknown field %q: the body holds mStatus only", k)
		}
	}
	raw, ok := fields["mStatus"]
	if !ok {
		return "", "missing mStatus"
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", "mStatus must be a string: open or closed"
	}
	st, err := eventStatus(s)
	if err != nil {
		return "", fmt.Sprintf("mStatus %q is not a valid value: open or closed", s)
	}
	return st, ""
}

func synthesizedEvent(id string, now time.Time) map[string]any {
	sum := sha256.Sum256([]byte(id))
	t := seconds(now.Add(-10 * time.Minute))
	return map[string]any{
		"id":             id,
		"type":           "SuspectedCredentialsTheft",
		"score":          50 + int(sum[0])%50,
		"createTime":     t,
		"lastUpdateTime": t,
		"audits": []any{map[string]any{
			"id":         hex.EncodeToString(sum[:12]),
			"type":       "VAULT_LOGON",
			"sensorType": "VAULT",
			"action":     "Vault logon",
			"createTime": t,
			"vaultUser":  "administrator",
			"source":     map[string]any{"mOriginalAddress": "10.0.0.5"},
		}},
		"additionalData": map[string]any{},
		"mStatus":        "OPEN",
	}
}

// seconds is a time as the document's "Double … represented in seconds".
func seconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func errorReply(status int, code, msg string) reply {
	return reply{status: status, body: map[string]any{"ErrorCode": code, "ErrorMessage": msg}}
}

func failureReply(fl *Failure) reply {
	status := fl.Status
	if status == 0 {
		status = http.StatusOK
	}
	var code any = fl.Code
	if code == nil {
		code = fmt.Sprintf("PASWS%03dE", status)
	}
	rep := reply{status: status, body: map[string]any{"ErrorCode": code, "ErrorMessage": fl.Message}, hold: fl, malformed: fl.Malformed}
	if fl.RetryAfter != "" {
		rep.header = http.Header{"Retry-After": {fl.RetryAfter}}
	}
	return rep
}

func methodNotAllowed(got, want string) reply {
	rep := errorReply(http.StatusMethodNotAllowed, fakeCodeMethod, fmt.Sprintf("method %s not allowed; use %s", got, want))
	rep.header = http.Header{"Allow": {want}}
	return rep
}

// deepCopy copies an event so callers and handlers never share maps.
func deepCopy(m map[string]any) map[string]any {
	out, _ := vendorhttp.CopyJSON(m).(map[string]any)
	return out
}
