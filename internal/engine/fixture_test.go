package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/testkit"
)

// fakeAction is a scripted action: it records every call's inputs (also in a log shared by all
// the fixture's actions, to check their order) and answers with run.
type fakeAction struct {
	spec actions.Spec
	log  *callLog

	mu    sync.Mutex
	calls []actions.Inputs
	run   func(ctx context.Context, call int, in actions.Inputs) (actions.Output, error)
}

func (f *fakeAction) Spec() actions.Spec { return f.spec }

func (f *fakeAction) Run(ctx context.Context, in actions.Inputs) (actions.Output, error) {
	f.mu.Lock()
	f.calls = append(f.calls, in)
	n, run := len(f.calls), f.run
	f.mu.Unlock()
	f.log.add(f.spec.Name, in)
	if run == nil {
		return actions.Output{}, nil
	}
	return run(ctx, n, in)
}

// script replaces what the action answers.
func (f *fakeAction) script(run func(ctx context.Context, call int, in actions.Inputs) (actions.Output, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.run = run
}

func (f *fakeAction) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeAction) inputs() []actions.Inputs {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]actions.Inputs(nil), f.calls...)
}

type call struct {
	action string
	in     actions.Inputs
}

type callLog struct {
	mu    sync.Mutex
	calls []call
}

func (l *callLog) add(action string, in actions.Inputs) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, call{action, in})
}

func (l *callLog) all() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}

// memJournal is an in-memory engine.Journal that can be told to fail.
type memJournal struct {
	mu     sync.Mutex
	m      map[string][]byte
	getErr error
	putErr error
	gets   int
	puts   int
	// failing puts are refused with failingErr before any other is taken.
	failing    int
	failingErr error
}

func newMemJournal() *memJournal { return &memJournal{m: map[string][]byte{}} }

func (j *memJournal) Get(_ context.Context, key string) ([]byte, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.gets++
	if j.getErr != nil {
		return nil, false, j.getErr
	}
	v, ok := j.m[key]
	return v, ok, nil
}

func (j *memJournal) Put(_ context.Context, key string, value []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.puts++
	if j.failing > 0 {
		j.failing--
		return j.failingErr
	}
	if j.putErr != nil {
		return j.putErr
	}
	j.m[key] = append([]byte(nil), value...)
	return nil
}

func (j *memJournal) fail(get, put error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.getErr, j.putErr = get, put
}

// failPuts makes the next n puts fail with err, as a journal whose bucket has no leader does.
func (j *memJournal) failPuts(n int, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failing, j.failingErr = n, err
}

func (j *memJournal) putCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.puts
}

func (j *memJournal) len() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.m)
}

// t0 is the fixture clock's start: not UTC and finer than a millisecond, as a real clock is.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 123456789, time.FixedZone("CEST", 2*3600))

// errVendorDown is what test.flaky answers: a retryable failure with the vendor's own words.
var errVendorDown = errors.New("get verdict from vendor: HTTP 503: maintenance until 13:00")

// fixture is an engine over testdata/playbooks with fake actions, a test clock and a journal.
type fixture struct {
	eng     *engine.Engine
	clock   *testkit.Clock
	journal *memJournal
	log     *callLog

	lookup, block, notify, flaky *fakeAction
}

func newFixture(t testing.TB, adjust func(*engine.Options)) *fixture {
	t.Helper()
	return newFixtureOn(t, newMemJournal(), adjust)
}

// newFixtureOn is newFixture on a journal of the test's, which its Locker may share.
func newFixtureOn(t testing.TB, j *memJournal, adjust func(*engine.Options)) *fixture {
	t.Helper()
	f := &fixture{clock: testkit.NewClock(t0), journal: j, log: &callLog{}}
	mk := func(name string, inputs ...actions.Input) *fakeAction {
		return &fakeAction{spec: actions.Spec{Name: name, Vendor: "test", Inputs: inputs}, log: f.log}
	}
	f.lookup = mk("test.lookup", actions.Input{Name: "key", Type: actions.String, Required: true})
	f.block = mk("test.block",
		actions.Input{Name: "targets", Type: actions.StringList, Required: true},
		actions.Input{Name: "reason", Type: actions.String})
	f.notify = mk("test.notify", actions.Input{Name: "text", Type: actions.String, Required: true})
	f.flaky = mk("test.flaky")

	f.lookup.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		return actions.Output{"state": "open", "x": "e2", "key": in.String("key")}, nil
	})
	f.block.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		f.clock.Advance(1500 * time.Millisecond) // the vendor takes its time
		return actions.Output{"count": len(in.StringList("targets"))}, nil
	})
	f.notify.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return actions.Output{"sent": true}, nil
	})
	f.flaky.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		return nil, errVendorDown
	})

	reg, err := actions.NewRegistry(f.lookup, f.block, f.notify, f.flaky)
	if err != nil {
		t.Fatal(err)
	}
	pbs, err := playbook.LoadDir("testdata/playbooks", reg)
	if err != nil {
		t.Fatalf("load testdata playbooks:\n%v", err)
	}
	opts := engine.Options{Worker: "host-1", Now: f.clock.Now, Log: zap.NewNop()}
	if adjust != nil {
		adjust(&opts)
	}
	d := actions.NewDispatcher(zap.NewNop(), actions.WithJitterSource(func() float64 { return 0 }))
	f.eng = engine.New(pbs, reg, d, f.journal, opts)
	return f
}

func (f *fixture) process(t *testing.T, a engine.Alert) engine.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.eng.Process(ctx, a)
}

// phishing is an alert the quarantine playbook takes.
func phishing() engine.Alert {
	return engine.Alert{
		ID: "alert-1", Subject: "soar.alerts.hec.phishing", Deliveries: 1,
		Headers: map[string]string{"X-Source": "hec"},
		Body:    map[string]any{"type": "phishing", "eventId": "ev-1", "entityId": "e1"},
	}
}

func alertOn(subject string, body map[string]any) engine.Alert {
	if body == nil {
		body = map[string]any{}
	}
	return engine.Alert{ID: "a-" + subject, Subject: subject, Deliveries: 1, Body: body}
}

// only returns the one outcome of res, failing the test if there is not exactly one.
func only(t *testing.T, res engine.Result) engine.Outcome {
	t.Helper()
	if len(res.Outcomes) != 1 {
		t.Fatalf("%d outcomes, want 1: %+v", len(res.Outcomes), res.Outcomes)
	}
	return res.Outcomes[0]
}

// stepStatuses is "id=status" for each step, for compact comparisons.
func stepStatuses(o engine.Outcome) []string {
	var s []string
	for _, st := range o.Steps {
		s = append(s, st.ID+"="+st.Status)
	}
	return s
}
