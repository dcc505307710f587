package gravityzone

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

// FakeBasePath is where Start serves the API: the real access URL ends in /api too, so the
// client's joining of a base URL with a path is exercised.
const FakeBasePath = "/api"

// FakeCompanyID is the company of the fake's API key, what companyId defaults to.
const FakeCompanyID = "5b680f6fb1a43d860a7b23c8"

// fakeOwnerID owns the rules the fake creates, as the key's user would.
const fakeOwnerID = "6082afe13cf8082cab49cacb"

// fakeRateLimit is the service's allowance per key: about 10 requests a second.
const fakeRateLimit = 10

// RuleIDShape is how the fake answers createCustomRule with returnRuleId true.
type RuleIDShape int

const (
	// RuleIDBare answers as the document's sample does: the id without quotes, which is not JSON.
	RuleIDBare RuleIDShape = iota
	// RuleIDQuoted answers the id as a JSON string.
	RuleIDQuoted
	// RuleIDTrue answers true, as if returnRuleId had been false.
	RuleIDTrue
)

// Failure is an answer to inject instead of the normal one, by JSON-RPC method (Inject's match
// is a substring of the method). Status ≥ 300 answers that HTTP status with a JSON-RPC error
// body; Code (with Status 0) answers a JSON-RPC error {code, message, data: {details}} under
// HTTP 200; Malformed answers an HTML page; Delay holds the answer back and, with nothing else
// set, the request is then served normally: a slow service.
type Failure = vendorhttp.Failure

// Recorded is one request the fake received.
type Recorded = vendorhttp.Recorded

// FakeIncident is an incident's state in the fake.
type FakeIncident struct {
	Status      int64 // 1 open … 4 false positive
	Note        string
	LastUpdated time.Time
}

// Fake is an in-process GravityZone Incidents API that rejects what the document does not
// allow, answering as the service does: JSON-RPC error objects under
// HTTP 200 (-32602 naming the offending parameter), HTTP 401 for a wrong key, HTTP 429 with
// Retry-After beyond its rate limit. Unit tests, `worker demo` and `--simulate` all use it. It
// is safe for concurrent use.
type Fake struct {
	vendorhttp.FakeKit
	apiKey  string
	methods map[string]fakeMethod

	mu          sync.Mutex
	now         func() time.Time
	ruleIDShape RuleIDShape
	usedIDs     vendorhttp.UsedIDs
	nextItem    uint32
	nextRule    uint32
	blocklist   []map[string]any
	isolated    map[string]bool
	rules       []fakeRule
	incidents   map[string]*FakeIncident // by type + "/" + id
	refused     map[string]string        // lower-case hash → why addToBlocklist refuses it
}

type fakeRule struct {
	ruleType int64
	item     map[string]any
}

// NewFake returns a fake that accepts only apiKey, limits requests to 10 a second, and answers
// createCustomRule's id bare, as the document's sample does.
func NewFake(apiKey string) *Fake {
	f := &Fake{
		apiKey:    apiKey,
		now:       time.Now,
		isolated:  map[string]bool{},
		incidents: map[string]*FakeIncident{},
		// The documents' sample ids, so the first ones look familiar.
		nextItem: 0x107b23c6,
		nextRule: 0xee021642,
	}
	f.methods = fakeMethods()
	f.SetRateLimit(fakeRateLimit)
	return f
}

// KeepHistory bounds what the fake remembers of its requests to about the last n (the request
// log and the JSON-RPC ids it refuses to see again), for a fake that serves a long run; the
// state it was asked to set (isolations, the blocklist, rules, incidents) is kept whole.
func (f *Fake) KeepHistory(n int) {
	f.KeepLast(n)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.usedIDs.Bound(n)
}

// Start serves the fake on 127.0.0.1 and returns its base URL (ending in FakeBasePath) and a
// function that stops it.
func (f *Fake) Start() (baseURL string, stop func()) {
	srv := httptest.NewServer(f)
	return srv.URL + FakeBasePath, srv.Close
}

// SetClock replaces the fake's clock (lastUpdated, recorded times).
func (f *Fake) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// SetRuleIDShape chooses how createCustomRule with returnRuleId true is answered.
func (f *Fake) SetRuleIDShape(s RuleIDShape) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ruleIDShape = s
}

// AddBlocklistItem puts a hash on the blocklist as if added by hand, and returns its item id;
// companyID "" means FakeCompanyID.
func (f *Fake) AddBlocklistItem(hashType int64, hash, companyID, sourceInfo string) string {
	if companyID == "" {
		companyID = FakeCompanyID
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addItem(hashType, hash, companyID, sourceInfo)
}

// RefuseHash makes every addToBlocklist whose hashList holds hash fail as a whole, with
// JSON-RPC invalid params naming the hash and message, listing none of its hashes: the service
// answers for a request, not for each hash.
func (f *Fake) RefuseHash(hash, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused == nil {
		f.refused = map[string]string{}
	}
	f.refused[strings.ToLower(hash)] = message
}

// BlocklistItems returns copies of the blocklist's items, oldest first.
func (f *Fake) BlocklistItems() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return copyItems(f.blocklist)
}

// Isolated says whether the last task for the endpoint isolated it.
func (f *Fake) Isolated(endpointID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.isolated[endpointID]
}

// CustomRules returns copies of the rules, oldest first, as getCustomRulesList shows them.
func (f *Fake) CustomRules() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	items := make([]map[string]any, len(f.rules))
	for i, r := range f.rules {
		items[i] = r.item
	}
	return copyItems(items)
}

// Incident returns an incident's state; incidents exist from their first change on.
func (f *Fake) Incident(incidentType, incidentID string) (FakeIncident, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	inc, ok := f.incidents[incidentType+"/"+incidentID]
	if !ok {
		return FakeIncident{}, false
	}
	return *inc, true
}

// rpcFault is a JSON-RPC error object to answer.
type rpcFault struct {
	code    int64
	message string
	details string
}

func invalidParams(format string, args ...any) *rpcFault {
	return &rpcFault{code: -32602, message: "Invalid params", details: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *rpcFault {
	return &rpcFault{code: -32600, message: "Invalid Request", details: fmt.Sprintf(format, args...)}
}

// bareID is a result written without quotes, as the document samples createCustomRule's.
type bareID string

// reply is an answer computed by a handler and written after its locks are released.
type reply struct {
	status    int
	header    http.Header
	body      any
	raw       []byte // written as is when set
	malformed bool
}

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rep := f.serve(r)
	if rep == nil {
		return // the client gave up on a hanging service
	}
	switch {
	case rep.malformed:
		vendorhttp.WriteMalformed(w, rep.status)
	case rep.raw != nil:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		_, _ = w.Write(rep.raw)
	default:
		vendorhttp.WriteJSON(w, rep.status, rep.header, rep.body)
	}
}

func (f *Fake) serve(r *http.Request) *reply {
	arrived := time.Now()
	body, err := vendorhttp.ReadBody(r.Body, 1<<20)
	var probe struct {
		Method any `json:"method"`
	}
	_ = json.Unmarshal(body, &probe)
	key, _ := probe.Method.(string)
	f.Record(r, key, body, arrived)
	switch {
	case err != nil:
		return httpRefusal(http.StatusRequestEntityTooLarge, "request body unreadable or larger than 1 MiB")
	case !f.Admit(arrived):
		rep := httpRefusal(http.StatusTooManyRequests, "too many requests: an API key may make 10 requests a second")
		rep.header = http.Header{"Retry-After": {"1"}}
		return rep
	case r.URL.Path != FakeBasePath+APIPath:
		return httpRefusal(http.StatusNotFound, fmt.Sprintf("no such endpoint %q: the Incidents API is %s", r.URL.Path, FakeBasePath+APIPath))
	case r.Method != http.MethodPost:
		rep := httpRefusal(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use POST", r.Method))
		rep.header = http.Header{"Allow": {http.MethodPost}}
		return rep
	}
	if msg := f.checkAuth(r.Header.Get("Authorization")); msg != "" {
		return httpRefusal(http.StatusUnauthorized, msg)
	}
	if msg := vendorhttp.CheckJSONContentType(r); msg != "" {
		return httpRefusal(http.StatusUnsupportedMediaType, msg)
	}

	id, method, params, fault := parseEnvelope(body)
	if fault != nil {
		return rpcError(id, fault)
	}
	f.mu.Lock()
	reused := !f.usedIDs.Use(id)
	f.mu.Unlock()
	if reused {
		return rpcError(id, invalidRequest("id %q was already used: send a fresh id with every request", id))
	}

	if fl, ok := f.Take(method); ok {
		if !fl.Hold(r.Context()) {
			return nil
		}
		if rep := failureReply(id, fl); rep != nil {
			return rep
		}
	}

	m, ok := f.methods[method]
	if !ok {
		return rpcError(id, &rpcFault{code: -32601, message: "Method not found", details: fmt.Sprintf("unknown method %q", method)})
	}
	p, fault := checkParams(params, m.params)
	if fault != nil {
		return rpcError(id, fault)
	}
	f.mu.Lock()
	result, fault := m.serve(f, p)
	f.mu.Unlock()
	if fault != nil {
		return rpcError(id, fault)
	}
	if b, ok := result.(bareID); ok {
		quoted, _ := json.Marshal(id)
		return &reply{status: http.StatusOK, raw: fmt.Appendf(nil, "{\n  \"id\": %s,\n  \"jsonrpc\": \"2.0\",\n  \"result\": %s\n}\n", quoted, string(b))}
	}
	return &reply{status: http.StatusOK, body: map[string]any{"id": id, "jsonrpc": "2.0", "result": result}}
}

// checkAuth wants exactly Basic base64(<key> + ":").
func (f *Fake) checkAuth(h string) string {
	scheme, cred, ok := strings.Cut(h, " ")
	switch {
	case h == "":
		return "missing Authorization header: send Basic base64(<API key> + \":\")"
	case !ok || scheme != "Basic":
		return "Authorization must be Basic base64(<API key> + \":\")"
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "Authorization Basic credentials are not base64"
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || pass != "" {
		return "Authorization Basic credentials must be the API key followed by \":\" and no password"
	}
	if user != f.apiKey {
		return "invalid API key"
	}
	return ""
}

// parseEnvelope reads a JSON-RPC 2.0 request; the id is returned as soon as it is known, so an
// error can answer it.
func parseEnvelope(body []byte) (id, method string, params json.RawMessage, fault *rpcFault) {
	if vendorhttp.FirstByte(body) == '[' && json.Valid(body) {
		return "", "", nil, invalidRequest("batch requests are not taken: send one request per call")
	}
	var env map[string]json.RawMessage
	if err := vendorhttp.DecodeJSON(body, &env); err != nil || env == nil {
		return "", "", nil, &rpcFault{code: -32700, message: "Parse error", details: "the body is not a JSON object"}
	}
	rawID, ok := env["id"]
	if !ok || json.Unmarshal(rawID, &id) != nil || id == "" {
		return "", "", nil, invalidRequest("id must be a non-empty string")
	}
	for _, k := range sortedRawKeys(env) {
		switch k {
		case "id", "jsonrpc", "method", "params":
		default:
			return id, "", nil, invalidRequest("unknown member %q: a request holds id, jsonrpc, method and params", k)
		}
	}
	var version string
	if json.Unmarshal(env["jsonrpc"], &version) != nil || version != "2.0" {
		return id, "", nil, invalidRequest("jsonrpc must be \"2.0\"")
	}
	if json.Unmarshal(env["method"], &method) != nil || method == "" {
		return id, "", nil, invalidRequest("method must be a non-empty string")
	}
	return id, method, env["params"], nil
}

func sortedRawKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// paramKind is a parameter's type as the document gives it.
type paramKind int

const (
	pString paramKind = iota
	pInt
	pBool
	pStrings // an array of strings
	pObject
)

func (k paramKind) String() string {
	switch k {
	case pString:
		return "a string"
	case pInt:
		return "an integer number"
	case pBool:
		return "a boolean"
	case pStrings:
		return "an array of strings"
	}
	return "an object"
}

type paramSpec struct {
	name     string
	kind     paramKind
	required bool
}

type fakeMethod struct {
	params []paramSpec
	serve  func(f *Fake, p fakeParams) (any, *rpcFault)
}

// fakeMethods is the document's parameter table of every method.
func fakeMethods() map[string]fakeMethod {
	return map[string]fakeMethod{
		methodAddToBlocklist: {[]paramSpec{
			{"hashType", pInt, true}, {"hashList", pStrings, true}, {"companyId", pString, false}, {"sourceInfo", pString, true},
		}, (*Fake).addToBlocklist},
		methodGetBlocklistItems: {[]paramSpec{
			{"companyId", pString, false}, {"page", pInt, false}, {"perPage", pInt, false},
		}, (*Fake).getBlocklistItems},
		methodRemoveFromBlocklist: {[]paramSpec{{"hashItemId", pString, true}}, (*Fake).removeFromBlocklist},
		methodIsolateEndpoint:     {[]paramSpec{{"endpointId", pString, true}}, (*Fake).isolate},
		methodRestoreEndpoint:     {[]paramSpec{{"endpointId", pString, true}}, (*Fake).restore},
		methodCreateCustomRule: {[]paramSpec{
			{"type", pInt, false}, {"companyId", pString, false}, {"name", pString, true}, {"description", pString, false},
			{"tags", pStrings, false}, {"settings", pObject, true}, {"returnRuleId", pBool, false},
		}, (*Fake).createCustomRule},
		// The document's table marks all four as not optional while describing defaults for
		// three: the fake holds the client to the table where a default is not described.
		methodGetCustomRulesList: {[]paramSpec{
			{"page", pInt, true}, {"perPage", pInt, true}, {"companyId", pString, false}, {"type", pInt, false},
		}, (*Fake).getCustomRulesList},
		methodDeleteCustomRule: {[]paramSpec{{"type", pInt, true}, {"ruleId", pString, true}}, (*Fake).deleteCustomRule},
		methodChangeIncidentStatus: {[]paramSpec{
			{"type", pString, true}, {"incidentId", pString, true}, {"status", pInt, true},
		}, (*Fake).changeIncidentStatus},
		methodUpdateIncidentNote: {[]paramSpec{
			{"type", pString, true}, {"incidentId", pString, true}, {"note", pString, true},
		}, (*Fake).updateIncidentNote},
	}
}

// fakeParams are a request's params, each of its declared type.
type fakeParams map[string]any

func (p fakeParams) str(k string) string    { s, _ := p[k].(string); return s }
func (p fakeParams) num(k string) int64     { n, _ := p[k].(int64); return n }
func (p fakeParams) has(k string) bool      { _, ok := p[k]; return ok }
func (p fakeParams) list(k string) []string { l, _ := p[k].([]string); return l }
func (p fakeParams) flag(k string) bool     { b, _ := p[k].(bool); return b }
func (p fakeParams) obj(k string) map[string]any {
	m, _ := p[k].(map[string]any)
	return m
}

func checkParams(raw json.RawMessage, specs []paramSpec) (fakeParams, *rpcFault) {
	var given map[string]json.RawMessage
	if len(raw) > 0 && !isNull(raw) {
		if vendorhttp.FirstByte(raw) != '{' || vendorhttp.DecodeJSON(raw, &given) != nil {
			return nil, invalidParams("params must be an object")
		}
	}
	p := fakeParams{}
	for _, k := range sortedRawKeys(given) {
		i := slices.IndexFunc(specs, func(s paramSpec) bool { return s.name == k })
		if i < 0 {
			names := make([]string, len(specs))
			for j, s := range specs {
				names[j] = s.name
			}
			return nil, invalidParams("unknown parameter %q: this method takes %s", k, strings.Join(names, ", "))
		}
		v, ok := typedParam(given[k], specs[i].kind)
		if !ok {
			return nil, invalidParams("parameter %q must be %s", k, specs[i].kind)
		}
		p[k] = v
	}
	for _, s := range specs {
		if s.required && !p.has(s.name) {
			return nil, invalidParams("missing parameter %q", s.name)
		}
	}
	return p, nil
}

func typedParam(raw json.RawMessage, kind paramKind) (any, bool) {
	first := vendorhttp.FirstByte(raw)
	switch kind {
	case pString:
		var s string
		return s, first == '"' && json.Unmarshal(raw, &s) == nil
	case pInt:
		// A quoted number would decode into json.Number too: the service takes numbers only.
		var n json.Number
		if first != '-' && (first < '0' || first > '9') || vendorhttp.DecodeJSON(raw, &n) != nil {
			return nil, false
		}
		i, err := n.Int64()
		return i, err == nil
	case pBool:
		var b bool
		return b, (first == 't' || first == 'f') && json.Unmarshal(raw, &b) == nil
	case pStrings:
		var l []string
		return l, first == '[' && json.Unmarshal(raw, &l) == nil
	case pObject:
		var m map[string]any
		return m, first == '{' && vendorhttp.DecodeJSON(raw, &m) == nil
	}
	return nil, false
}

func (f *Fake) addToBlocklist(p fakeParams) (any, *rpcFault) {
	t := p.num("hashType")
	if t != HashSHA256 && t != HashMD5 {
		return nil, invalidParams("hashType must be 1 (SHA256) or 2 (MD5), got %d", t)
	}
	hashes := p.list("hashList")
	if len(hashes) == 0 {
		return nil, invalidParams("hashList must not be empty")
	}
	for i, h := range hashes {
		if checkHex(h) != nil || len(h) != hashLen(t) {
			return nil, invalidParams("hashList[%d] %q is not a %s hash, as hashType %d says", i, h, strings.ToUpper(hashName(t)), t)
		}
	}
	for i, h := range hashes {
		if msg, ok := f.refused[strings.ToLower(h)]; ok {
			return nil, invalidParams("hashList[%d] %q: %s", i, h, msg)
		}
	}
	company := p.str("companyId")
	if company == "" {
		company = FakeCompanyID
	}
	for _, h := range hashes {
		f.addItem(t, h, company, p.str("sourceInfo"))
		f.AddEffect("blocklist", h)
	}
	return true, nil
}

// addItem lists a hash once per company, however often it is added.
func (f *Fake) addItem(hashType int64, hash, company, sourceInfo string) string {
	for _, it := range f.blocklist {
		if it["companyId"] == company && strings.EqualFold(it["hash"].(string), hash) {
			return it["id"].(string)
		}
	}
	id := fmt.Sprintf("5b7ac19bb1a43dfb%08x", f.nextItem)
	f.nextItem++
	f.blocklist = append(f.blocklist, map[string]any{
		"id": id, "companyId": company, "hash": hash, "hashType": hashType, "source": 3, "sourceInfo": sourceInfo,
	})
	return id
}

func (f *Fake) getBlocklistItems(p fakeParams) (any, *rpcFault) {
	page, perPage, fault := paging(p)
	if fault != nil {
		return nil, fault
	}
	var items []map[string]any
	for _, it := range f.blocklist {
		if !p.has("companyId") || it["companyId"] == p.str("companyId") {
			items = append(items, it)
		}
	}
	return paginate(items, page, perPage), nil
}

func (f *Fake) removeFromBlocklist(p fakeParams) (any, *rpcFault) {
	id := p.str("hashItemId")
	i := slices.IndexFunc(f.blocklist, func(it map[string]any) bool { return it["id"] == id })
	if i < 0 {
		return nil, invalidParams("hashItemId %q: no such blocklist item", id)
	}
	f.blocklist = slices.Delete(f.blocklist, i, i+1)
	f.AddEffect("unblocklist", id)
	return true, nil
}

func (f *Fake) isolate(p fakeParams) (any, *rpcFault) {
	return f.endpointTask(p, "isolate", true)
}

func (f *Fake) restore(p fakeParams) (any, *rpcFault) {
	return f.endpointTask(p, "restore", false)
}

func (f *Fake) endpointTask(p fakeParams, effect string, isolated bool) (any, *rpcFault) {
	id := p.str("endpointId")
	if strings.TrimSpace(id) == "" {
		return nil, invalidParams("endpointId must not be empty")
	}
	f.isolated[id] = isolated
	f.AddEffect(effect, id)
	return true, nil
}

func (f *Fake) createCustomRule(p fakeParams) (any, *rpcFault) {
	t := int64(RuleDetection)
	if p.has("type") {
		t = p.num("type")
	}
	if t != RuleDetection && t != RuleExclusion {
		return nil, invalidParams("type must be 1 (Detection) or 2 (Exclusion), got %d", t)
	}
	name := p.str("name")
	if strings.TrimSpace(name) == "" {
		return nil, invalidParams("name must not be empty")
	}
	settings := p.obj("settings")
	if err := checkRuleSettings(settings, t); err != nil {
		return nil, invalidParams("settings: %v", err)
	}
	company := p.str("companyId")
	if company == "" {
		company = FakeCompanyID
	}
	tags := p.list("tags")
	if tags == nil {
		tags = []string{}
	}
	id := fmt.Sprintf("6372b7a3897aaa77%08x", f.nextRule)
	f.nextRule++
	status, _ := wholeNumber(settings["status"])
	f.rules = append(f.rules, fakeRule{ruleType: t, item: map[string]any{
		"id": id, "name": name, "ownerId": fakeOwnerID, "description": p.str("description"), "companyId": company,
		"status": status, "tags": vendorhttp.CopyJSON(tags), "settings": storedSettings(settings),
	}})
	f.AddEffect("create_rule", name)
	if !p.flag("returnRuleId") {
		return true, nil
	}
	switch f.ruleIDShape {
	case RuleIDQuoted:
		return id, nil
	case RuleIDTrue:
		return true, nil
	}
	return bareID(id), nil
}

// storedSettings is settings as getCustomRulesList's sample shows them: every value a list, and
// every criterion after the first joined with "operator": "AND".
func storedSettings(s map[string]any) map[string]any {
	out, _ := vendorhttp.CopyJSON(s).(map[string]any)
	list, _ := out["criteriaList"].([]any)
	for i, item := range list {
		c, _ := item.(map[string]any)
		if _, isList := c["value"].([]any); !isList {
			c["value"] = []any{c["value"]}
		}
		if i > 0 {
			c["operator"] = "AND"
		}
	}
	return out
}

func (f *Fake) getCustomRulesList(p fakeParams) (any, *rpcFault) {
	page, perPage, fault := paging(p)
	if fault != nil {
		return nil, fault
	}
	if p.has("type") && p.num("type") != RuleDetection && p.num("type") != RuleExclusion {
		return nil, invalidParams("type must be 1 (Detection) or 2 (Exclusion), got %d", p.num("type"))
	}
	company := p.str("companyId")
	if company == "" {
		company = FakeCompanyID
	}
	var items []map[string]any
	for _, r := range f.rules {
		if r.item["companyId"] == company && (!p.has("type") || r.ruleType == p.num("type")) {
			items = append(items, r.item)
		}
	}
	return paginate(items, page, perPage), nil
}

func (f *Fake) deleteCustomRule(p fakeParams) (any, *rpcFault) {
	t, id := p.num("type"), p.str("ruleId")
	if t != RuleDetection && t != RuleExclusion {
		return nil, invalidParams("type must be 1 (Detection) or 2 (Exclusion), got %d", t)
	}
	i := slices.IndexFunc(f.rules, func(r fakeRule) bool { return r.item["id"] == id && r.ruleType == t })
	if i < 0 {
		return nil, invalidParams("ruleId %q: no such %srule", id, ruleTypeWord(t))
	}
	f.rules = slices.Delete(f.rules, i, i+1)
	f.AddEffect("delete_rule", id)
	return true, nil
}

func (f *Fake) incident(p fakeParams) (*FakeIncident, *rpcFault) {
	t, id := p.str("type"), p.str("incidentId")
	if t != IncidentsType && t != ExtendedIncidentsType {
		return nil, invalidParams("type must be %q or %q, got %q", IncidentsType, ExtendedIncidentsType, t)
	}
	if strings.TrimSpace(id) == "" {
		return nil, invalidParams("incidentId must not be empty")
	}
	inc, ok := f.incidents[t+"/"+id]
	if !ok {
		inc = &FakeIncident{Status: 1}
		f.incidents[t+"/"+id] = inc
	}
	return inc, nil
}

func (f *Fake) changeIncidentStatus(p fakeParams) (any, *rpcFault) {
	status := p.num("status")
	if status < 1 || status > 4 {
		return nil, invalidParams("status must be 1 (open), 2 (investigating), 3 (closed) or 4 (false positive), got %d", status)
	}
	inc, fault := f.incident(p)
	if fault != nil {
		return nil, fault
	}
	// Already in that status is a success too, as the document says.
	inc.Status = status
	f.AddEffect("status", p.str("incidentId"))
	return true, nil
}

func (f *Fake) updateIncidentNote(p fakeParams) (any, *rpcFault) {
	note := p.str("note")
	if n := utf8.RuneCountInString(note); n > MaxNoteLen {
		return nil, invalidParams("note must be at most %d characters, got %d", MaxNoteLen, n)
	}
	inc, fault := f.incident(p)
	if fault != nil {
		return nil, fault
	}
	inc.Note = note
	inc.LastUpdated = f.now()
	f.AddEffect("note", p.str("incidentId"))
	return map[string]any{
		"success": true,
		"data":    map[string]any{"lastUpdated": inc.LastUpdated.Format("2006-01-02T15:04:05-07:00")},
	}, nil
}

// paging reads page and perPage with the document's defaults and limits.
func paging(p fakeParams) (page, perPage int64, fault *rpcFault) {
	page, perPage = 1, DefaultPerPage
	if p.has("page") {
		page = p.num("page")
	}
	if p.has("perPage") {
		perPage = p.num("perPage")
	}
	switch {
	case page < 1:
		return 0, 0, invalidParams("page must be at least 1, got %d", page)
	case perPage < 1 || perPage > MaxPerPage:
		return 0, 0, invalidParams("perPage must be between 1 and %d, got %d", MaxPerPage, perPage)
	}
	return page, perPage, nil
}

func paginate(items []map[string]any, page, perPage int64) map[string]any {
	total := int64(len(items))
	start := total
	if page-1 < (total+perPage-1)/perPage {
		start = (page - 1) * perPage
	}
	end := min(start+perPage, total)
	list := make([]any, 0, end-start)
	for _, it := range items[start:end] {
		list = append(list, vendorhttp.CopyJSON(it))
	}
	return map[string]any{
		"items": list, "page": page, "pagesCount": (total + perPage - 1) / perPage, "perPage": perPage, "total": total,
	}
}

func rpcError(id string, fault *rpcFault) *reply {
	var rid any
	if id != "" {
		rid = id
	}
	return &reply{status: http.StatusOK, body: map[string]any{
		"id": rid, "jsonrpc": "2.0",
		"error": map[string]any{"code": fault.code, "message": fault.message, "data": map[string]any{"details": fault.details}},
	}}
}

// httpRefusal answers what the service refuses before reading the call: an HTTP status with a
// JSON-RPC error body.
func httpRefusal(status int, details string) *reply {
	rep := rpcError("", &rpcFault{code: -32600, message: http.StatusText(status), details: details})
	rep.status = status
	return rep
}

// failureReply is an injected failure's answer, or nil when the failure is only latency.
func failureReply(id string, fl Failure) *reply {
	status := fl.Status
	if status == 0 {
		status = http.StatusOK
	}
	if fl.Malformed {
		return &reply{status: status, malformed: true}
	}
	if status == http.StatusOK && fl.Code == nil && fl.Message == "" && fl.Details == "" {
		return nil
	}
	code, msg := fl.Code, fl.Message
	if code == nil {
		code = int64(-32000)
		if status >= 400 && status < 500 {
			code = int64(-32600)
		}
	}
	if msg == "" {
		msg = http.StatusText(status)
		if status == http.StatusOK {
			msg = "Server error"
		}
	}
	rep := &reply{status: status, body: map[string]any{
		"id": id, "jsonrpc": "2.0",
		"error": map[string]any{"code": code, "message": msg, "data": map[string]any{"details": fl.Details}},
	}}
	if fl.RetryAfter != "" {
		rep.header = http.Header{"Retry-After": {fl.RetryAfter}}
	}
	return rep
}

func copyItems(items []map[string]any) []map[string]any {
	out := make([]map[string]any, len(items))
	for i, it := range items {
		out[i], _ = vendorhttp.CopyJSON(it).(map[string]any)
	}
	return out
}
