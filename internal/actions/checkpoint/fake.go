package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

// fakeFirstTaskID is the taskId of the documents' sample, so the first task looks familiar.
const fakeFirstTaskID = 123445311234

// fakeActions are the entity actions the fake accepts: quarantine and restore from the action
// document, dismiss and severityChange from the availableEventActions of the event sample.
const fakeActions = "quarantine, restore, dismiss, severityChange"

func knownFakeAction(name string) bool {
	switch name {
	case "quarantine", "restore", "dismiss", "severityChange":
		return true
	}
	return false
}

// Fake is an in-process HEC Smart API that rejects what the vendor documents say the service
// rejects, answering as the service would: HTTP 4xx with a response envelope whose responseCode
// is the status and whose responseText says what is wrong. Unit tests, `worker demo` and
// `--simulate` all use it. It is safe for concurrent use.
type Fake struct {
	vendorhttp.FakeKit
	clientID, accessKey string

	mu             sync.Mutex
	now            func() time.Time
	tokenLifetime  time.Duration
	numericTaskIDs bool
	eventAsArray   bool
	synthesize     bool
	keepTasks      int // 0: every task

	tokens      map[string]time.Time // token → expiry
	reqIDs      vendorhttp.UsedIDs
	authCount   int
	nextTaskID  int64
	tasks       []FakeTask
	entityState map[string]string
	events      map[string]map[string]any
	exceptions  map[string][]map[string]any
	rejected    map[string]rejection
}

type rejection struct {
	code    int
	message string
}

// Recorded is one API request the fake received (auth requests are only counted: AuthCount).
type Recorded = vendorhttp.Recorded

// FakeTask is one entity action the fake accepted.
type FakeTask struct {
	ID       int64
	EntityID string
	Action   string
	Param    string
	Time     time.Time
}

// Failure is an answer to inject instead of the normal one (see FailNextWith). Code is the
// envelope's responseCode (nil means Status; set it with Status 200 for an error under HTTP
// 200); AltSpelling puts Message under "responseTest", as some of the documents spell it.
type Failure = vendorhttp.Failure

// NewFake returns a fake that accepts only the given credentials. Tokens live 30 minutes,
// taskIds are strings, events are answered as one object, and the whitelist and blacklist
// exception types exist, empty.
func NewFake(clientID, accessKey string) *Fake {
	return &Fake{
		clientID:      clientID,
		accessKey:     accessKey,
		now:           time.Now,
		tokenLifetime: 30 * time.Minute,
		tokens:        map[string]time.Time{},
		nextTaskID:    fakeFirstTaskID,
		entityState:   map[string]string{},
		events:        map[string]map[string]any{},
		exceptions:    map[string][]map[string]any{"whitelist": {}, "blacklist": {}},
		rejected:      map[string]rejection{},
	}
}

// Start serves the fake on 127.0.0.1 and returns its base URL and a function that stops it.
func (f *Fake) Start() (baseURL string, stop func()) {
	srv := httptest.NewServer(f)
	return srv.URL, srv.Close
}

// SetClock replaces the fake's clock (token expiry, recorded times, event timestamps).
func (f *Fake) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// SetTokenLifetime sets the expiresIn of tokens issued from now on (whole seconds).
func (f *Fake) SetTokenLifetime(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenLifetime = d
}

// SetNumericTaskIDs makes taskId a JSON number (as documented) instead of a string (as sampled).
func (f *Fake) SetNumericTaskIDs(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.numericTaskIDs = on
}

// SetEventAsArray answers GET /event with responseData as a one-element array (as documented)
// instead of an object (as sampled).
func (f *Fake) SetEventAsArray(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.eventAsArray = on
}

// KeepHistory bounds what the fake remembers of its requests to about the last n (the request
// log, the x-av-req-ids it refuses to see again, Tasks), for a fake that serves a long run;
// the state it was asked to set (which entity is quarantined) is kept whole.
func (f *Fake) KeepHistory(n int) {
	f.KeepLast(n)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqIDs.Bound(n)
	f.keepTasks = n
}

// SetSynthesize makes GET /event of an unknown id answer a plausible new phishing event with that
// id (kept from then on) instead of 404: `--simulate` receives alerts for events it never saw.
func (f *Fake) SetSynthesize(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synthesize = on
}

// AddEvent stores an event (a copy) under its "eventId", which must be a non-empty string (it
// panics otherwise: that is a mistake in the caller's setup). Missing "state" becomes "new" and
// missing "actions" an empty list.
func (f *Fake) AddEvent(ev map[string]any) {
	id, _ := ev["eventId"].(string)
	if id == "" {
		panic("checkpoint.Fake.AddEvent: the event has no string eventId")
	}
	cp := deepCopy(ev)
	if _, ok := cp["state"]; !ok {
		cp["state"] = "new"
	}
	if _, ok := cp["actions"]; !ok {
		cp["actions"] = []any{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events[id] = cp
}

// SetExceptions replaces (or creates) one exception list.
func (f *Fake) SetExceptions(excType string, list []map[string]any) {
	cp := make([]map[string]any, len(list))
	for i, e := range list {
		cp[i] = deepCopy(e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exceptions[excType] = cp
}

// FailNext makes the next n requests whose URL path contains path (so a suffix such as
// "/action/entity" or a prefix such as "/app/hec-api/v1.0/event/" both work) fail with status
// and an envelope carrying message. On /auth/external the answer is {"success": false,
// "message": message}. API requests still have their x-av-req-id and token checked first.
func (f *Fake) FailNext(path string, n, status int, message string) {
	f.FailNextWith(path, n, Failure{Status: status, Message: message})
}

// FailNextWith is FailNext with every detail of the answer chosen; n < 0 fails every request
// until ClearFailures.
func (f *Fake) FailNextWith(path string, n int, fl Failure) {
	f.Inject(path, n, fl)
}

// RejectEntity makes every entity action on id refused inside an otherwise successful answer:
// the entity's entry carries code and message and no taskId, and nothing is done to it.
func (f *Fake) RejectEntity(id string, code int, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejected[id] = rejection{code: code, message: message}
}

// ExpireTokens invalidates every token issued so far: the next API call gets a 401.
func (f *Fake) ExpireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

// AuthCount is the number of POST /auth/external requests received, whatever their outcome.
func (f *Fake) AuthCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.authCount
}

// Tasks returns the entity actions accepted so far, in order.
func (f *Fake) Tasks() []FakeTask {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tasks)
}

// EntityState is "quarantined" or "restored" after such an action on id, else "".
func (f *Fake) EntityState(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entityState[id]
}

// Event returns a copy of a stored event, with the actions taken on it so far.
func (f *Fake) Event(id string) (map[string]any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev, ok := f.events[id]
	if !ok {
		return nil, false
	}
	return deepCopy(ev), true
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
	var rep reply
	switch {
	case err != nil:
		rep = errorReply("", http.StatusRequestEntityTooLarge, "request body unreadable or larger than 1 MiB")
	case !f.Admit(time.Now()):
		rep = errorReply("", http.StatusTooManyRequests, "too many requests")
		rep.header = http.Header{"Retry-After": {"1"}}
	case r.URL.Path == authPath:
		rep = f.serveAuth(r, body)
	case strings.HasPrefix(r.URL.Path, apiPrefix+"/"):
		rep = f.serveAPI(r, body)
	default:
		rep = errorReply("", http.StatusNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
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

func (f *Fake) serveAuth(r *http.Request, body []byte) reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authCount++
	refuse := func(status int, msg string) reply {
		return reply{status: status, body: map[string]any{"success": false, "message": msg}}
	}
	if r.Method != http.MethodPost {
		return refuse(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; use POST", r.Method, authPath))
	}
	if fl, ok := f.Take(r.URL.Path); ok {
		rep := refuse(statusOf(fl), fl.Message)
		if fl.RetryAfter != "" {
			rep.header = http.Header{"Retry-After": {fl.RetryAfter}}
		}
		rep.hold, rep.malformed = &fl, fl.Malformed
		return rep
	}
	if msg := vendorhttp.CheckJSONContentType(r); msg != "" {
		return refuse(http.StatusUnsupportedMediaType, msg)
	}
	var creds struct {
		ClientID  *string `json:"clientId"`
		AccessKey *string `json:"accessKey"`
	}
	if err := vendorhttp.DecodeJSONStrict(body, &creds); err != nil {
		return refuse(http.StatusBadRequest, "body must be a JSON object with clientId and accessKey: "+err.Error())
	}
	if creds.ClientID == nil || creds.AccessKey == nil {
		return refuse(http.StatusBadRequest, "body must hold clientId and accessKey")
	}
	if *creds.ClientID != f.clientID || *creds.AccessKey != f.accessKey {
		return refuse(http.StatusUnauthorized, "authentication failed: unknown clientId or wrong accessKey")
	}
	now := f.now()
	token, csrf := vendorhttp.RandomHex(32), vendorhttp.RandomHex(16)
	f.tokens[token] = now.Add(f.tokenLifetime)
	return reply{status: http.StatusOK, body: map[string]any{
		"success": true,
		"data": map[string]any{
			"token":     token,
			"csrf":      csrf,
			"expires":   now.Add(f.tokenLifetime).UTC().Format(time.RFC3339),
			"expiresIn": int64(f.tokenLifetime / time.Second),
		},
	}}
}

func (f *Fake) serveAPI(r *http.Request, body []byte) reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	f.Record(r, r.URL.Path, body, now)

	reqID := r.Header.Get("x-av-req-id")
	switch {
	case reqID == "":
		return errorReply("", http.StatusBadRequest, "missing x-av-req-id header: send a fresh UUID with every request")
	case !vendorhttp.IsUUID(reqID):
		return errorReply("", http.StatusBadRequest, fmt.Sprintf("x-av-req-id %q is not a UUID", reqID))
	case !f.reqIDs.Use(reqID):
		return errorReply(reqID, http.StatusBadRequest, fmt.Sprintf("x-av-req-id %q was already used: send a fresh UUID with every request", reqID))
	}

	if msg := f.checkBearer(r.Header.Get("Authorization"), now); msg != "" {
		return errorReply(reqID, http.StatusUnauthorized, msg)
	}
	if fl, ok := f.Take(r.URL.Path); ok {
		return failureReply(reqID, &fl)
	}
	if a := r.Header.Get("Accept"); a != "" && !vendorhttp.AcceptsJSON(a) {
		return errorReply(reqID, http.StatusNotAcceptable, fmt.Sprintf("Accept %q does not allow application/json", a))
	}

	rest := strings.TrimPrefix(r.URL.Path, apiPrefix)
	switch {
	case rest == "/action/entity":
		if r.Method != http.MethodPost {
			return methodNotAllowed(reqID, r.Method, http.MethodPost)
		}
		return f.entityAction(r, reqID, body, now)
	case strings.HasPrefix(rest, "/event/"):
		id := strings.TrimPrefix(rest, "/event/")
		if id == "" || strings.Contains(id, "/") {
			return errorReply(reqID, http.StatusNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
		}
		if r.Method != http.MethodGet {
			return methodNotAllowed(reqID, r.Method, http.MethodGet)
		}
		if len(body) > 0 {
			return errorReply(reqID, http.StatusBadRequest, "GET takes no request body")
		}
		return f.getEvent(reqID, id, now)
	case strings.HasPrefix(rest, "/exceptions/"):
		t := strings.TrimPrefix(rest, "/exceptions/")
		if t == "" || strings.Contains(t, "/") {
			return errorReply(reqID, http.StatusNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
		}
		if r.Method != http.MethodGet {
			return methodNotAllowed(reqID, r.Method, http.MethodGet)
		}
		if len(body) > 0 {
			return errorReply(reqID, http.StatusBadRequest, "GET takes no request body")
		}
		return f.getExceptions(reqID, t)
	}
	return errorReply(reqID, http.StatusNotFound, fmt.Sprintf("no such endpoint %q", r.URL.Path))
}

func (f *Fake) checkBearer(h string, now time.Time) string {
	scheme, token, ok := strings.Cut(h, " ")
	switch {
	case h == "":
		return "missing Authorization header: send Bearer <API access token>"
	case !ok || !strings.EqualFold(scheme, "Bearer") || token == "":
		return "Authorization must be Bearer <API access token>"
	}
	exp, known := f.tokens[token]
	if !known || !now.Before(exp) {
		return "invalid or expired access token"
	}
	return ""
}

// entityAction checks the body field by field, as the document's body (not its parameter table,
// which names eventActionName/eventActionParam) describes it.
func (f *Fake) entityAction(r *http.Request, reqID string, body []byte, now time.Time) reply {
	bad := func(format string, args ...any) reply {
		return errorReply(reqID, http.StatusBadRequest, fmt.Sprintf(format, args...))
	}
	if msg := vendorhttp.CheckJSONContentType(r); msg != "" {
		return errorReply(reqID, http.StatusUnsupportedMediaType, msg)
	}
	var top map[string]json.RawMessage
	if err := vendorhttp.DecodeJSON(body, &top); err != nil {
		return bad("body is not a JSON object: %v", err)
	}
	for k := range top {
		if k != "requestData" {
			return bad("unknown field %q: the body holds only requestData", k)
		}
	}
	raw, ok := top["requestData"]
	if !ok {
		return bad("missing requestData")
	}
	var rd map[string]json.RawMessage
	if err := vendorhttp.DecodeJSON(raw, &rd); err != nil || rd == nil {
		return bad("requestData must be an object")
	}
	for k := range rd {
		switch k {
		case "entityIds", "entityActionName", "entityActionParam":
		case "eventActionName", "eventActionParam":
			return bad("unknown field requestData.%s: send entity%s as a one-element array", k, strings.TrimPrefix(k, "event"))
		default:
			return bad("unknown field requestData.%s", k)
		}
	}
	ids, msg := stringArray(rd, "entityIds", true)
	if msg != "" {
		return bad("%s", msg)
	}
	if len(ids) == 0 {
		return bad("requestData.entityIds must not be empty")
	}
	seen := map[string]bool{}
	for i, id := range ids {
		if id == "" {
			return bad("requestData.entityIds[%d] is empty", i)
		}
		if seen[id] {
			return bad("requestData.entityIds holds %q twice: entity ids must be unique", id)
		}
		seen[id] = true
	}
	names, msg := stringArray(rd, "entityActionName", true)
	if msg != "" {
		return bad("%s", msg)
	}
	if len(names) != 1 {
		return bad("requestData.entityActionName must hold exactly one action name, got %d", len(names))
	}
	name := names[0]
	if !knownFakeAction(name) {
		return bad("unknown entityActionName %q: known actions are %s", name, fakeActions)
	}
	params, msg := stringArray(rd, "entityActionParam", false)
	if msg != "" {
		return bad("%s", msg)
	}
	if len(params) > 1 {
		return bad("requestData.entityActionParam must hold at most one parameter, got %d", len(params))
	}
	param := ""
	if len(params) == 1 {
		param = params[0]
	}

	data := make([]any, 0, len(ids))
	for _, id := range ids {
		if rej, ok := f.rejected[id]; ok {
			// The service's per-entity verdict: its own code and text, and no task.
			data = append(data, map[string]any{"entityId": id, "responseCode": rej.code, "responseText": rej.message})
			continue
		}
		t := FakeTask{ID: f.nextTaskID, EntityID: id, Action: name, Param: param, Time: now}
		f.nextTaskID++
		f.tasks, _ = vendorhttp.AppendBounded(f.tasks, t, f.keepTasks)
		f.AddEffect(name, id)
		f.apply(t)
		var taskID any = strconv.FormatInt(t.ID, 10)
		if f.numericTaskIDs {
			taskID = t.ID
		}
		data = append(data, map[string]any{"entityId": id, "taskId": taskID})
	}
	return reply{status: http.StatusOK, body: map[string]any{
		"responseEnvelope": envelope(reqID, 0, "responseText", "success", len(data)),
		"responseData":     data,
	}}
}

// apply records what an action does to the entity and to the events about it, so a later
// get_event shows it (a playbook may skip quarantine when state is already "remediated").
func (f *Fake) apply(t FakeTask) {
	switch t.Action {
	case "quarantine":
		f.entityState[t.EntityID] = "quarantined"
	case "restore":
		f.entityState[t.EntityID] = "restored"
	}
	for id, ev := range f.events {
		if ev["entityId"] != t.EntityID && id != t.EntityID {
			continue
		}
		switch t.Action {
		case "quarantine":
			ev["state"] = "remediated"
		case "dismiss":
			ev["state"] = "dismissed"
		case "severityChange":
			if t.Param != "" {
				ev["severity"] = t.Param
			}
		}
		taken, _ := ev["actions"].([]any)
		ev["actions"] = append(taken, map[string]any{
			"actionType":      t.Action,
			"createTime":      t.Time.UTC().Format(time.RFC3339Nano),
			"relatedEntityId": t.EntityID,
		})
	}
}

func (f *Fake) getEvent(reqID, id string, now time.Time) reply {
	ev, ok := f.events[id]
	if !ok {
		if !f.synthesize {
			return errorReply(reqID, http.StatusNotFound, "event not found")
		}
		ev = synthesizedEvent(id, now)
		f.events[id] = ev
	}
	var data any = deepCopy(ev)
	if f.eventAsArray {
		data = []any{data}
	}
	return reply{status: http.StatusOK, body: map[string]any{
		// The event sample spells the text responseTest; the fake does too, so clients read both.
		"responseEnvelope": envelope(reqID, 0, "responseTest", "Success", 1),
		"responseData":     data,
	}}
}

func (f *Fake) getExceptions(reqID, excType string) reply {
	list, ok := f.exceptions[excType]
	if !ok {
		known := make([]string, 0, len(f.exceptions))
		for k := range f.exceptions {
			known = append(known, k)
		}
		slices.Sort(known)
		return errorReply(reqID, http.StatusNotFound, fmt.Sprintf("unknown exception type %q: known types are %s", excType, strings.Join(known, ", ")))
	}
	data := make([]any, len(list))
	for i, e := range list {
		data[i] = deepCopy(e)
	}
	return reply{status: http.StatusOK, body: map[string]any{
		"responseEnvelope": envelope(reqID, 200, "responseText", "", len(data)),
		"responseData":     data,
	}}
}

func synthesizedEvent(id string, now time.Time) map[string]any {
	sum := sha256.Sum256([]byte(id))
	entity := hex.EncodeToString(sum[:16])
	return map[string]any{
		"eventId":             id,
		"customerId":          "us:riposte-simulation",
		"saas":                "office365_emails",
		"entityId":            entity,
		"state":               "new",
		"type":                "phishing",
		"confidenceIndicator": "malicious",
		"eventCreated":        now.UTC().Format("2006-01-02T15:04:05.000000-07:00"),
		"severity":            "High",
		"description":         fmt.Sprintf("Simulated phishing event %s", id),
		"data":                "",
		"additionalData":      map[string]any{},
		"availableEventActions": []any{
			map[string]any{"actionName": "quarantine", "actionParameter": map[string]any{}},
			map[string]any{"actionName": "dismiss", "actionParameter": map[string]any{"eventId": id}},
		},
		"actions": []any{},
	}
}

func envelope(reqID string, code any, textKey, text string, records int) map[string]any {
	return map[string]any{
		"requestId":          reqID,
		"responseCode":       code,
		textKey:              text,
		"additionalText":     "",
		"recordsNumber":      records,
		"totalRecordsNumber": records,
		"scrollId":           "",
	}
}

func errorReply(reqID string, status int, msg string) reply {
	return reply{status: status, body: map[string]any{
		"responseEnvelope": envelope(reqID, status, "responseText", msg, 0),
		"responseData":     []any{},
	}}
}

func failureReply(reqID string, fl *Failure) reply {
	status := statusOf(*fl)
	var code any = fl.Code
	if code == nil {
		code = status
	}
	key := "responseText"
	if fl.AltSpelling {
		key = "responseTest"
	}
	rep := reply{status: status, body: map[string]any{
		"responseEnvelope": envelope(reqID, code, key, fl.Message, 0),
		"responseData":     []any{},
	}, hold: fl, malformed: fl.Malformed}
	if fl.RetryAfter != "" {
		rep.header = http.Header{"Retry-After": {fl.RetryAfter}}
	}
	return rep
}

func statusOf(fl Failure) int {
	if fl.Status == 0 {
		return http.StatusOK
	}
	return fl.Status
}

func methodNotAllowed(reqID, got, want string) reply {
	rep := errorReply(reqID, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use %s", got, want))
	rep.header = http.Header{"Allow": {want}}
	return rep
}

// stringArray reads requestData[key] as an array of strings; a plain string is refused, as the
// service takes arrays.
func stringArray(rd map[string]json.RawMessage, key string, required bool) ([]string, string) {
	raw, ok := rd[key]
	if !ok {
		if required {
			return nil, fmt.Sprintf("missing requestData.%s", key)
		}
		return nil, ""
	}
	var items []any
	if err := vendorhttp.DecodeJSON(raw, &items); err != nil || items == nil {
		return nil, fmt.Sprintf("requestData.%s must be an array of strings, got %s", key, strings.TrimSpace(string(raw)))
	}
	out := make([]string, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, fmt.Sprintf("requestData.%s[%d] must be a string", key, i)
		}
		out[i] = s
	}
	return out, ""
}

// deepCopy copies an event or an exception so callers and handlers never share maps.
func deepCopy(m map[string]any) map[string]any {
	out, _ := vendorhttp.CopyJSON(m).(map[string]any)
	return out
}
