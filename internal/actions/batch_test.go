package actions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
	"github.com/riposte-soar/riposte/internal/testkit"
)

// A batch declaration must name a list-of-strings input and say how a call is shared.
func TestCatalogueChecksBatch(t *testing.T) {
	t.Parallel()
	share := func(out actions.Output, err error, _ []string) (actions.Output, error) { return out, err }
	inputs := []actions.Input{{Name: "ids", Type: actions.StringList, Required: true}, {Name: "why", Type: actions.String}}
	tests := []struct {
		name  string
		batch *actions.Batch
		want  string
	}{
		{"a list input", &actions.Batch{Input: "ids", Share: share}, ""},
		{"no such input", &actions.Batch{Input: "idz", Share: share}, `register action "t.a": batch input "idz" is not one of its list-of-strings inputs`},
		{"not a list", &actions.Batch{Input: "why", Share: share}, `batch input "why" is not one of its list-of-strings inputs`},
		{"no share", &actions.Batch{Input: "ids"}, `register action "t.a": batch has no Share`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := actions.NewCatalogue(actions.Spec{Name: "t.a", Vendor: "t", Inputs: inputs, Batch: tt.batch})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// rig is a Batcher over a dispatcher and the strict fakes, its MaxWait timed by a test clock.
type rig struct {
	t       *testing.T
	clock   *testkit.Clock
	batcher *actions.Batcher
	hec     *checkpoint.Fake
	gz      *gravityzone.Fake
	byName  map[string]actions.Action
	// gate, when set, holds every entity action at HEC until it is closed or the request ends;
	// held counts the requests it is holding.
	gate atomic.Pointer[chan struct{}]
	held atomic.Int32
	// calls is what the batcher reported to its observer.
	calls batchCalls
}

// batchCalls keeps the steps of each call a Batcher reported.
type batchCalls struct {
	mu    sync.Mutex
	steps []int
}

func (c *batchCalls) BatchCalled(_ string, steps, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.steps = append(c.steps, steps)
}

func (c *batchCalls) heard() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.steps)
}

var fastRetry = actions.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond, AttemptTimeout: 10 * time.Second}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, clock: testkit.NewClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), byName: map[string]actions.Action{},
		hec: checkpoint.NewFake("batch-client", "batch-key"), gz: gravityzone.NewFake("batch-gz-key")}
	r.gz.SetRateLimit(0) // the bisection test makes calls in quick succession
	hecSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if g := r.gate.Load(); g != nil && strings.HasSuffix(req.URL.Path, "/action/entity") {
			// Read first: the server notices a client that hangs up only once the body is read.
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			r.held.Add(1)
			defer r.held.Add(-1)
			select {
			case <-*g:
			case <-req.Context().Done():
				return
			}
		}
		r.hec.ServeHTTP(w, req)
	}))
	hecURL, stopHEC := hecSrv.URL, hecSrv.Close
	gzURL, stopGZ := r.gz.Start()
	t.Cleanup(func() { stopHEC(); stopGZ() })
	for _, vs := range []struct {
		v actions.Vendor
		s actions.Settings
	}{
		{checkpoint.Vendor(), actions.Settings{checkpoint.EnvBaseURL: hecURL, checkpoint.EnvClientID: "batch-client", checkpoint.EnvAccessKey: "batch-key"}},
		{gravityzone.Vendor(), actions.Settings{gravityzone.EnvBaseURL: gzURL, gravityzone.EnvAPIKey: "batch-gz-key", gravityzone.EnvRateLimit: "0"}},
	} {
		inst, _, err := vs.v.Configure(vs.s, actions.Deps{Log: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range inst.Actions {
			r.byName[a.Spec().Name] = a
		}
	}
	d := actions.NewDispatcher(zap.NewNop(), actions.WithJitterSource(func() float64 { return 0 }))
	r.batcher = actions.NewBatcher(d, zap.NewNop(), actions.WithTimers(r.clock.AfterFunc), actions.WithBatchObserver(&r.calls))
	return r
}

// step is one alert's step, run through the batcher in its own goroutine.
type step struct {
	cancel context.CancelFunc
	done   chan actions.Result
}

func (r *rig) start(action string, in actions.Inputs, bp actions.BatchPolicy) *step {
	a, ok := r.byName[action]
	if !ok {
		r.t.Fatalf("no action %s", action)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	s := &step{cancel: cancel, done: make(chan actions.Result, 1)}
	go func() { s.done <- r.batcher.Run(ctx, zap.NewNop(), a, in, fastRetry, bp) }()
	return s
}

// startJoined starts a step and waits until it waits in a batch, so steps join in order.
func (r *rig) startJoined(action string, in actions.Inputs, bp actions.BatchPolicy) *step {
	before := r.batcher.Waiting()
	s := r.start(action, in, bp)
	testkit.Eventually(r.t, 5*time.Second, "the step to join its batch", func() bool { return r.batcher.Waiting() > before })
	return s
}

func (s *step) result(t *testing.T) actions.Result {
	t.Helper()
	select {
	case res := <-s.done:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("the step did not finish")
		return actions.Result{}
	}
}

// entityCalls are the entity ids of each POST /action/entity the fake HEC received.
func entityCalls(t *testing.T, hec *checkpoint.Fake) [][]string {
	t.Helper()
	var calls [][]string
	for _, rq := range hec.Requests() {
		if !strings.HasSuffix(rq.Path, "/action/entity") {
			continue
		}
		var body struct {
			RequestData struct {
				EntityIDs []string `json:"entityIds"`
			} `json:"requestData"`
		}
		if err := json.Unmarshal(rq.Body, &body); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, body.RequestData.EntityIDs)
	}
	return calls
}

// tasksOf is the (entityId, taskId) pairs of a quarantine's output.
func tasksOf(out actions.Output) [][2]string {
	var pairs [][2]string
	list, _ := out["tasks"].([]any)
	for _, item := range list {
		m := item.(map[string]any)
		pairs = append(pairs, [2]string{m["entityId"].(string), m["taskId"].(string)})
	}
	return pairs
}

var hour = actions.BatchPolicy{MaxSize: 25, MaxWait: time.Hour} // leaves by size only: the clock stays

// 50 alerts quarantining at once: two HEC calls of 25, and each step its own entity's task.
func TestBatchStormSharesCallsEachItsOwnTask(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	steps := make([]*step, 50)
	for i := range steps {
		steps[i] = r.start("checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{fmt.Sprintf("e-%02d", i)}, "entityActionParam": "storm"}, hour)
	}
	seen := map[string]bool{}
	for i, s := range steps {
		res := s.result(t)
		id := fmt.Sprintf("e-%02d", i)
		if res.Err != nil || res.Batch != 25 || res.Attempts != 1 {
			t.Fatalf("%s: err %v, batch %d, attempts %d", id, res.Err, res.Batch, res.Attempts)
		}
		got := tasksOf(res.Output)
		if len(got) != 1 || got[0][0] != id || got[0][1] == "" {
			t.Fatalf("%s: tasks %v, want its own one", id, got)
		}
		if want := taskOfFake(t, r.hec, id); got[0][1] != want {
			t.Errorf("%s: taskId %s, HEC made %s", id, got[0][1], want)
		}
		if seen[got[0][1]] {
			t.Errorf("%s: taskId %s given to two steps", id, got[0][1])
		}
		seen[got[0][1]] = true
	}
	calls := entityCalls(t, r.hec)
	if len(calls) != 2 || len(calls[0]) != 25 || len(calls[1]) != 25 {
		t.Errorf("HEC calls carried %v entities; want two of 25", lens(calls))
	}
}

func taskOfFake(t *testing.T, hec *checkpoint.Fake, entity string) string {
	t.Helper()
	for _, ft := range hec.Tasks() {
		if ft.EntityID == entity {
			return strconv.FormatInt(ft.ID, 10)
		}
	}
	t.Fatalf("HEC made no task for %s", entity)
	return ""
}

func lens(calls [][]string) []int {
	n := make([]int, len(calls))
	for i, c := range calls {
		n[i] = len(c)
	}
	return n
}

// HEC refuses one alert's entity for good and another's for now: only those two steps fail,
// each with its own entity's words and class, and the call is not sent again for them.
func TestBatchRefusedEntityFailsOnlyItsStep(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.hec.RejectEntity("e-7", http.StatusNotFound, "Entity not found")
	r.hec.RejectEntity("e-3", http.StatusServiceUnavailable, "entity store busy")
	bp := actions.BatchPolicy{MaxSize: 10, MaxWait: time.Hour}
	steps := make([]*step, 10)
	for i := range steps {
		steps[i] = r.start("checkpoint.quarantine_entity", actions.Inputs{"entityIds": fmt.Sprintf("e-%d", i)}, bp)
	}
	for i, s := range steps {
		res := s.result(t)
		switch i {
		case 7:
			if res.Err == nil || res.Retryable || !strings.Contains(res.Err.Error(), "quarantine entities [e-7] on HEC") ||
				!strings.Contains(res.Err.Error(), "Entity not found") || strings.Contains(res.Err.Error(), "e-3") {
				t.Errorf("e-7: err %v, retryable %t; want its own permanent refusal", res.Err, res.Retryable)
			}
			if tasks := res.Output["tasks"].([]any); len(tasks) != 1 || tasks[0].(map[string]any)["error"] == nil {
				t.Errorf("e-7: output %v, want its refused task", res.Output)
			}
		case 3:
			if res.Err == nil || !res.Retryable || !strings.Contains(res.Err.Error(), "entity store busy") {
				t.Errorf("e-3: err %v, retryable %t; want its own retryable refusal", res.Err, res.Retryable)
			}
		default:
			if res.Err != nil || len(tasksOf(res.Output)) != 1 {
				t.Errorf("e-%d failed with the others' refusals: %v", i, res.Err)
			}
		}
	}
	if calls := entityCalls(t, r.hec); len(calls) != 1 {
		t.Errorf("%d HEC calls, want 1: a refused entity must not send the others' again", len(calls))
	}
}

// A 503 for the whole call: it is retried once, for all, as the step's retry policy says.
func TestBatchRetriesAFailedCallForAll(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.hec.FailNext("/action/entity", 1, http.StatusServiceUnavailable, "maintenance")
	bp := actions.BatchPolicy{MaxSize: 8, MaxWait: time.Hour}
	var steps []*step
	for i := range 8 {
		steps = append(steps, r.start("checkpoint.quarantine_entity", actions.Inputs{"entityIds": fmt.Sprintf("e-%d", i)}, bp))
	}
	for i, s := range steps {
		if res := s.result(t); res.Err != nil || res.Attempts != 2 || len(tasksOf(res.Output)) != 1 {
			t.Errorf("e-%d: err %v, attempts %d, output %v", i, res.Err, res.Attempts, res.Output)
		}
	}
	calls := entityCalls(t, r.hec)
	if len(calls) != 2 || len(calls[0]) != 8 || len(calls[1]) != 8 {
		t.Errorf("HEC calls carried %v entities; want the call of 8 twice", lens(calls))
	}
}

// A batch leaves when its first step has waited max_wait, and not a moment before.
func TestBatchLeavesAtMaxWait(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	bp := actions.BatchPolicy{MaxSize: 100, MaxWait: 200 * time.Millisecond}
	var steps []*step
	for i := range 3 {
		steps = append(steps, r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": fmt.Sprintf("e-%d", i)}, bp))
	}
	r.clock.Advance(199 * time.Millisecond)
	if n := len(entityCalls(t, r.hec)); n != 0 || r.batcher.Waiting() != 3 {
		t.Fatalf("before max_wait: %d calls, %d waiting", n, r.batcher.Waiting())
	}
	r.clock.Advance(time.Millisecond)
	for _, s := range steps {
		if res := s.result(t); res.Err != nil || res.Batch != 3 {
			t.Errorf("err %v, batch %d", res.Err, res.Batch)
		}
	}
	if calls := entityCalls(t, r.hec); len(calls) != 1 || len(calls[0]) != 3 {
		t.Errorf("HEC calls carried %v entities; want one of 3", lens(calls))
	}
	// A step arriving later starts a batch, and a wait, of its own.
	late := r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-late"}, bp)
	r.clock.Advance(200 * time.Millisecond)
	if res := late.result(t); res.Err != nil || res.Batch != 1 {
		t.Errorf("late step: err %v, batch %d", res.Err, res.Batch)
	}
}

// max_size counts targets, once each: a step that would overfill a batch sends it and starts
// the next.
func TestBatchMaxSizeCountsTargets(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	bp := actions.BatchPolicy{MaxSize: 5, MaxWait: time.Second}
	q := func(ids ...any) *step {
		return r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": ids}, bp)
	}
	a, b := q("a1", "a2"), q("b1", "a1", "b2") // 4 targets: a1 is sent once
	c := r.start("checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{"c1", "c2"}}, bp)
	if res := a.result(t); res.Err != nil || res.Batch != 2 {
		t.Errorf("a: err %v, batch %d", res.Err, res.Batch)
	}
	res := b.result(t)
	var ids []string
	for _, p := range tasksOf(res.Output) {
		ids = append(ids, p[0])
	}
	if res.Err != nil || res.Batch != 2 || !slices.Equal(ids, []string{"b1", "a1", "b2"}) {
		t.Errorf("b: err %v, batch %d, tasks for %v; want its own three", res.Err, res.Batch, ids)
	}
	testkit.Eventually(t, 5*time.Second, "c waiting in the next batch", func() bool { return r.batcher.Waiting() == 1 })
	r.clock.Advance(time.Second)
	if res := c.result(t); res.Err != nil || res.Batch != 1 {
		t.Errorf("c: err %v, batch %d", res.Err, res.Batch)
	}
	calls := entityCalls(t, r.hec)
	if len(calls) != 2 || !slices.Equal(calls[0], []string{"a1", "a2", "b1", "b2"}) || !slices.Equal(calls[1], []string{"c1", "c2"}) {
		t.Errorf("HEC calls %v", calls)
	}
}

// A step whose context ends stops waiting: before the call leaves, its entity is not sent;
// while the call is at the vendor, the call goes on for the others.
func TestBatchCancelledStepLeavesTheOthersCall(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	bp := actions.BatchPolicy{MaxSize: 3, MaxWait: time.Second}
	gone := r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-gone"}, bp)
	gone.cancel()
	if res := gone.result(t); res.Err == nil || !res.Retryable || !strings.Contains(res.Err.Error(), "waited for other alerts") {
		t.Errorf("cancelled before the call: err %v, retryable %t", res.Err, res.Retryable)
	}
	if n := r.batcher.Waiting(); n != 0 {
		t.Fatalf("%d steps still waiting", n)
	}

	release := make(chan struct{})
	r.gate.Store(&release)
	steps := []*step{
		r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-0"}, bp),
		r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-1"}, bp),
		r.start("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-2"}, bp), // fills it: it leaves
	}
	testkit.Eventually(t, 5*time.Second, "the call at HEC", func() bool { return r.held.Load() == 1 })
	steps[0].cancel()
	res := steps[0].result(t)
	if res.Err == nil || !res.Retryable || !strings.Contains(res.Err.Error(), "was at the vendor") {
		t.Errorf("cancelled during the call: err %v, retryable %t", res.Err, res.Retryable)
	}
	select {
	case <-steps[1].done:
		t.Fatal("the others' call ended with the cancelled step")
	default:
	}
	if r.held.Load() != 1 {
		t.Fatal("the call was cancelled with one of its steps")
	}
	close(release)
	for i, s := range steps[1:] {
		if res := s.result(t); res.Err != nil || res.Batch != 3 || len(tasksOf(res.Output)) != 1 {
			t.Errorf("e-%d: err %v, batch %d", i+1, res.Err, res.Batch)
		}
	}
	calls := entityCalls(t, r.hec)
	if len(calls) != 1 || slices.Contains(calls[0], "e-gone") {
		t.Errorf("HEC calls %v; want one, without e-gone", calls)
	}

	// When every step of a call has gone, nobody waits for it: it is cancelled.
	hold := make(chan struct{})
	r.gate.Store(&hold)
	one := r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-x"}, bp)
	two := r.start("checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{"e-y", "e-z"}}, bp)
	testkit.Eventually(t, 5*time.Second, "the call at HEC", func() bool { return r.held.Load() == 1 })
	one.cancel()
	two.cancel()
	one.result(t)
	two.result(t)
	testkit.Eventually(t, 5*time.Second, "the abandoned call cancelled", func() bool { return r.held.Load() == 0 })
	if got := r.hec.EntityState("e-x"); got != "" {
		t.Errorf("e-x is %q: the abandoned call reached HEC's answer", got)
	}
}

// Steps share a call only when every other input agrees, as checked and normalised.
func TestBatchKeepsOtherInputsApart(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	bp := actions.BatchPolicy{MaxSize: 10, MaxWait: time.Second}
	a := r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-a", "entityActionParam": "campaign 1"}, bp)
	b := r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-b", "entityActionParam": "campaign 2"}, bp)
	c := r.startJoined("checkpoint.restore_entity", actions.Inputs{"entityIds": "e-c", "entityActionParam": "campaign 1"}, bp)
	d := r.startJoined("checkpoint.quarantine_entity", actions.Inputs{"entityIds": "e-d", "entityActionParam": "campaign 1"}, bp)
	const md5a, md5b = "5b7ac19bb1a43dfb107b23c6aa000001", "f696282aa4cd4f614aa995190cf442fe"
	g1 := r.startJoined("gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": []any{md5a}, "sourceInfo": "storm"}, bp)
	g2 := r.startJoined("gravityzone.add_to_blocklist", actions.Inputs{"hashType": 2, "hashList": []any{md5b, md5a}, "sourceInfo": "storm"}, bp)
	r.clock.Advance(time.Second)
	for name, want := range map[*step]int{a: 2, b: 1, c: 1, d: 2, g1: 2, g2: 2} {
		if res := name.result(t); res.Err != nil || res.Batch != want {
			t.Errorf("err %v, batch %d, want %d", res.Err, res.Batch, want)
		}
	}
	if calls := entityCalls(t, r.hec); len(calls) != 3 {
		t.Errorf("HEC calls %v; want 3: campaign 1 quarantines, campaign 2, the restore", calls)
	}
	var rpc []gravityzone.Recorded
	for _, rq := range r.gz.Requests() {
		if rq.Key == "addToBlocklist" {
			rpc = append(rpc, rq)
		}
	}
	if len(rpc) != 1 {
		t.Fatalf("%d addToBlocklist calls, want 1 for both steps", len(rpc))
	}
	var body struct {
		Params struct {
			HashType int64    `json:"hashType"`
			HashList []string `json:"hashList"`
		} `json:"params"`
	}
	if err := json.Unmarshal(rpc[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Params.HashType != 2 || !slices.Equal(body.Params.HashList, []string{md5a, md5b}) {
		t.Errorf("addToBlocklist sent %+v; want md5a once, then md5b", body.Params)
	}
}

// GravityZone answers for a whole call: when it refuses one, the call is sent again in halves
// until the refused hash's step is alone; only that step fails, every other hash is listed.
func TestBatchBlocklistSplitsARefusedCall(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	hash := func(i int) string { return fmt.Sprintf("%032x", 0xabc000+i) }
	r.gz.RefuseHash(hash(5), "this hash is on the allowlist")
	bp := actions.BatchPolicy{MaxSize: 16, MaxWait: time.Hour}
	steps := make([]*step, 16)
	for i := range steps {
		steps[i] = r.start("gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": hash(i), "sourceInfo": "storm"}, bp)
	}
	for i, s := range steps {
		res := s.result(t)
		if i == 5 {
			if res.Err == nil || res.Retryable || !strings.Contains(res.Err.Error(), "allowlist") || res.Batch != 1 {
				t.Errorf("hash 5: err %v, retryable %t, batch %d; want its own permanent refusal", res.Err, res.Retryable, res.Batch)
			}
			continue
		}
		if res.Err != nil || res.Output["count"] != 1 {
			t.Errorf("hash %d: err %v, output %v", i, res.Err, res.Output)
		}
	}
	calls := 0
	for _, rq := range r.gz.Requests() {
		if rq.Key == "addToBlocklist" {
			calls++
		}
	}
	if calls > 1+2*4 { // the whole, then two halves at each of 4 levels
		t.Errorf("%d addToBlocklist calls for 16 hashes with one refused; want at most 9", calls)
	}
	// The metrics count the halves too: batch_steps' _count is the calls made.
	if heard := r.calls.heard(); len(heard) != calls || !slices.Contains(heard, 16) || !slices.Contains(heard, 1) {
		t.Errorf("observer heard calls of %v steps; want the %d made, the whole 16 and the refused one alone", heard, calls)
	}
	if items := r.gz.BlocklistItems(); len(items) != 15 {
		t.Errorf("%d hashes listed, want the 15 not refused", len(items))
	}
}

// A step whose own inputs are bad fails alone, before joining, and calls no one.
func TestBatchBadInputsFailAlone(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	bad := r.start("gravityzone.add_to_blocklist", actions.Inputs{"hashType": "md5", "hashList": "not-hex", "sourceInfo": "storm"}, hour)
	if res := bad.result(t); res.Err == nil || !actions.IsPermanent(res.Err) || res.Attempts != 0 {
		t.Errorf("bad inputs: err %v, attempts %d", res.Err, res.Attempts)
	}
	if n := r.batcher.Waiting(); n != 0 || len(r.gz.Requests()) != 0 {
		t.Errorf("%d waiting, %d requests", n, len(r.gz.Requests()))
	}
}
