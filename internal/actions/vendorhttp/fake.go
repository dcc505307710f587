package vendorhttp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// What the vendor fakes share. Each fake embeds a FakeKit and adds its vendor's protocol.

// Failure is an answer a fake gives instead of its normal one.
type Failure struct {
	Status int // HTTP status; 0 means 200 (an error inside a successful HTTP answer)
	// Code is the vendor's own error code: HEC's envelope responseCode (0 means Status), a
	// JSON-RPC error code, PVWA's ErrorCode.
	Code       any
	Message    string
	Details    string // JSON-RPC error.data.details
	RetryAfter string // the Retry-After header, when set
	// Delay holds the answer back this long, or until the client gives up: a hanging vendor.
	Delay time.Duration
	// Malformed answers a body that is not JSON, as a proxy's error page would be.
	Malformed bool
	// AltSpelling uses the vendor's other documented spelling of the message field (HEC's
	// responseTest).
	AltSpelling bool
}

// FailureScript holds the failures a test asked a fake to inject, matched by key: a URL path
// or a JSON-RPC method, whatever the fake passes to Take.
type FailureScript struct {
	mu      sync.Mutex
	pending []*scripted
}

type scripted struct {
	match string
	left  int // < 0: until cleared
	f     Failure
}

// Inject makes the next n requests whose key contains match answer f. n < 0 means every
// request until ClearFailures; n == 0 does nothing.
func (s *FailureScript) Inject(match string, n int, f Failure) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, &scripted{match: match, left: n, f: f})
}

// ClearFailures drops every failure not yet given: the vendor is back.
func (s *FailureScript) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
}

// Take returns the failure due for a request with this key, if any, and counts it given.
func (s *FailureScript) Take(key string) (Failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if strings.Contains(key, p.match) {
			if p.left > 0 {
				p.left--
				if p.left == 0 {
					s.pending = slices.Delete(s.pending, i, i+1)
				}
			}
			return p.f, true
		}
	}
	return Failure{}, false
}

// Hold waits out f.Delay, or until the request's context ends; it reports whether the client
// is still there to answer.
func (f Failure) Hold(ctx context.Context) bool {
	if f.Delay <= 0 {
		return true
	}
	t := time.NewTimer(f.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Recorded is one request a fake received.
type Recorded struct {
	Method string
	Path   string // the URL path, unescaped
	Key    string // what the fake matched failures on (the path, or a JSON-RPC method)
	Header http.Header
	Body   []byte
	Time   time.Time
}

// RequestLog records the requests a fake received, for tests to check what was sent.
type RequestLog struct {
	mu   sync.Mutex
	reqs []Recorded
	keep int // 0: every request
}

// KeepLast makes the log keep only the last n requests (0: every one). A fake serving a
// long-running `worker run --simulate` would otherwise hold every request it was ever sent.
func (l *RequestLog) KeepLast(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keep = n
	if n > 0 && len(l.reqs) > n {
		l.reqs = slices.Clone(l.reqs[len(l.reqs)-n:])
	}
}

// AppendBounded appends v to s and, once s holds 2n, keeps a copy of only the last n (n <= 0:
// every one); dropped is what it let go, for a caller that indexes it elsewhere. Trimming at
// twice the bound costs one copy per n appends, and the copy lets the old array be freed.
func AppendBounded[T any](s []T, v T, n int) (kept, dropped []T) {
	s = append(s, v)
	if n <= 0 || len(s) < 2*n {
		return s, nil
	}
	return slices.Clone(s[len(s)-n:]), s[:len(s)-n]
}

// Record keeps one request.
func (l *RequestLog) Record(r *http.Request, key string, body []byte, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs, _ = AppendBounded(l.reqs, Recorded{
		Method: r.Method, Path: r.URL.Path, Key: key, Header: r.Header.Clone(), Body: slices.Clone(body), Time: at,
	}, l.keep)
}

// Requests returns copies of the requests received so far (the last ones, under KeepLast), in
// order.
func (l *RequestLog) Requests() []Recorded {
	l.mu.Lock()
	defer l.mu.Unlock()
	reqs := l.reqs
	if l.keep > 0 && len(reqs) > l.keep {
		reqs = reqs[len(reqs)-l.keep:] // Record trims only once the log holds twice keep
	}
	out := make([]Recorded, len(reqs))
	for i, r := range reqs {
		out[i] = r
		out[i].Header = r.Header.Clone()
		out[i].Body = slices.Clone(r.Body)
	}
	return out
}

// UsedIDs is the request ids a fake has seen, to refuse one sent twice (the vendors want a fresh
// id per request). Bounded, it remembers only the most recent: a client that reuses an id
// reuses a recent one, and a long-running simulation must not remember every request.
type UsedIDs struct {
	seen  map[string]struct{}
	order []string // oldest first, kept only when bounded
	max   int      // 0: every id
}

// Use records id and says whether it was fresh. Not safe for concurrent use: the fake's lock
// guards it.
func (u *UsedIDs) Use(id string) (fresh bool) {
	if u.seen == nil {
		u.seen = map[string]struct{}{}
	}
	if _, ok := u.seen[id]; ok {
		return false
	}
	u.seen[id] = struct{}{}
	if u.max > 0 {
		var dropped []string
		u.order, dropped = AppendBounded(u.order, id, u.max)
		for _, old := range dropped {
			delete(u.seen, old)
		}
	}
	return true
}

// Bound makes u remember at least the last n ids and at most 2n (0: every one, from now).
func (u *UsedIDs) Bound(n int) { u.max = n }

// SimulateHistory is how many requests (and request ids) a fake serving --simulate or the demo
// keeps: enough for anyone reading them back, bounded for a worker that runs for weeks.
const SimulateHistory = 10_000

// EffectCounter counts what a fake did to each target (an entity quarantined, an endpoint
// isolated), so a test can tell one vendor call from a repeated one.
type EffectCounter struct {
	mu     sync.Mutex
	counts map[string]map[string]int // effect → target → times
}

// AddEffect counts one effect on target.
func (e *EffectCounter) AddEffect(effect, target string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[string]map[string]int{}
	}
	if e.counts[effect] == nil {
		e.counts[effect] = map[string]int{}
	}
	e.counts[effect][target]++
}

// Effects is how many times effect was applied to target.
func (e *EffectCounter) Effects(effect, target string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[effect][target]
}

// EffectTotal is how many times effect was applied, to any target.
func (e *EffectCounter) EffectTotal(effect string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.counts[effect] {
		n += c
	}
	return n
}

// RateGate is a fake's own rate limit, as a vendor enforces one: at most limit requests in any
// second (a sliding window). It remembers the busiest second it saw.
//
// The window is a little shorter than a second (rateSlack): requests a client sent evenly
// spaced can arrive bunched by network and scheduling jitter (a busy machine holds one back for
// tens of milliseconds), and a vendor's limiter tolerates that too.
type RateGate struct {
	mu       sync.Mutex
	limit    int // 0: no limit
	arrivals []time.Time
	peak     int
	refused  int
}

const rateSlack = 100 * time.Millisecond

// SetRateLimit sets the requests allowed in any one second; 0 lifts the limit.
func (g *RateGate) SetRateLimit(perSecond int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = perSecond
}

// Admit records a request arriving at now and says whether it is within the limit; a refused
// request is not counted against the window.
func (g *RateGate) Admit(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	cut := 0
	for cut < len(g.arrivals) && now.Sub(g.arrivals[cut]) >= time.Second-rateSlack {
		cut++
	}
	g.arrivals = g.arrivals[cut:]
	if g.limit > 0 && len(g.arrivals) >= g.limit {
		g.refused++
		return false
	}
	g.arrivals = append(g.arrivals, now)
	g.peak = max(g.peak, len(g.arrivals))
	return true
}

// PeakRate is the most requests admitted within any one second so far.
func (g *RateGate) PeakRate() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}

// RateLimited is how many requests the gate refused.
func (g *RateGate) RateLimited() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// FakeKit is what a vendor fake embeds: failure scripting, the request log, effect counts and
// its rate gate, all safe for concurrent use.
type FakeKit struct {
	FailureScript
	RequestLog
	EffectCounter
	RateGate
}

// WriteJSON answers status with v as JSON, and the given headers.
func WriteJSON(w http.ResponseWriter, status int, header http.Header, v any) {
	for k, vs := range header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteMalformed answers status with an HTML page, as a proxy in front of the vendor would.
func WriteMalformed(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", status, http.StatusText(status))
}

// CheckJSONContentType says what is wrong with a request's Content-Type for a JSON body, or "".
func CheckJSONContentType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return "missing Content-Type: send application/json"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return fmt.Sprintf("Content-Type %q is not application/json", ct)
	}
	return ""
}

// AcceptsJSON says whether an Accept header allows a JSON answer.
func AcceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "application/json" || mt == "application/*" || mt == "*/*") {
			return true
		}
	}
	return false
}

// IsUUID accepts only the canonical 36-character form vendors document.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// RandomHex returns n random bytes as hex: tokens and ids a fake issues.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CopyJSON deep-copies a JSON-like value, so a fake's state and its callers never share maps.
func CopyJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = CopyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = CopyJSON(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = CopyJSON(e)
		}
		return out
	case []string:
		return slices.Clone(t)
	}
	return v
}
