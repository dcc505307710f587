package engine_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
)

// memLocker is the engine's view of the queue's leases, in memory: names held, and a way to
// take one away as a lapse would. Its step claims keep their records in journal, as the
// queue's keep them in the journal bucket.
type memLocker struct {
	journal *memJournal
	mu      sync.Mutex
	held    map[string]context.CancelFunc
	taken   []string
}

func newMemLocker(j *memJournal) *memLocker {
	return &memLocker{journal: j, held: map[string]context.CancelFunc{}}
}

func (l *memLocker) Lock(ctx context.Context, name string) (context.Context, func(), time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.held[name]; busy {
		return nil, nil, 30 * time.Second, nil
	}
	held, cancel := context.WithCancel(ctx)
	l.held[name] = cancel
	l.taken = append(l.taken, name)
	return held, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		cancel()
		delete(l.held, name)
	}, 0, nil
}

func (l *memLocker) ClaimStep(ctx context.Context, key string, usable func([]byte) bool) (context.Context,
	func(context.Context, []byte) error, func(), bool, time.Duration, error) {
	if b, ok, err := l.journal.Get(ctx, key); err != nil {
		return nil, nil, nil, false, 0, err
	} else if ok && usable(b) {
		return nil, nil, nil, true, 0, nil
	}
	held, release, wait, err := l.Lock(ctx, "step\x00"+key)
	if held == nil {
		return nil, nil, nil, false, wait, err
	}
	return held, func(ctx context.Context, b []byte) error { return l.journal.Put(ctx, key, b) }, release, false, 0, nil
}

// names are the leases taken so far, in order.
func (l *memLocker) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.taken...)
}

// While another delivery of the alert runs a step, this one does not call the vendor: it waits,
// held back, and once the other is done it reuses the result.
func TestClaimedStepIsNotRunTwice(t *testing.T) {
	t.Parallel()
	j := newMemJournal()
	locker := newMemLocker(j)
	f := newFixtureOn(t, j, func(o *engine.Options) { o.Locker = locker })
	entered, release := make(chan struct{}), make(chan struct{})
	f.lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		close(entered)
		<-release
		return actions.Output{"state": "open", "x": "e2"}, nil
	})
	first := make(chan engine.Result)
	go func() { first <- f.process(t, phishing()) }()
	<-entered
	res := f.process(t, phishing()) // the same alert, delivered again meanwhile
	if !res.Retry || !res.HeldBack || res.RetryAfter <= 0 || res.RetryAfter > 2*time.Second {
		t.Errorf("second delivery: %+v, want held back for at most 2 s", res)
	}
	if n := f.lookup.callCount(); n != 1 {
		t.Errorf("lookup called %d times while the first delivery ran it", n)
	}
	close(release)
	if out := only(t, <-first); out.Status != engine.StatusSucceeded {
		t.Fatalf("first delivery: %s", out.Status)
	}
	out := only(t, f.process(t, phishing()))
	if out.Status != engine.StatusSucceeded || !out.Steps[0].Replayed || f.lookup.callCount() != 1 {
		t.Errorf("after it: %s, replayed %t, lookup calls %d", out.Status, out.Steps[0].Replayed, f.lookup.callCount())
	}
	for _, n := range locker.names() {
		if !strings.HasPrefix(n, "step\x00") {
			t.Errorf("lease %q, want step claims only", n)
		}
	}
}

// A claim lost while the step runs (the replica cut off from NATS) stops the step's vendor call
// and hands the alert back, held back, rather than count a vendor failure.
func TestLostClaimHandsTheAlertBack(t *testing.T) {
	t.Parallel()
	j := newMemJournal()
	locker := newMemLocker(j)
	f := newFixtureOn(t, j, func(o *engine.Options) { o.Locker = locker })
	f.lookup.script(func(ctx context.Context, _ int, _ actions.Inputs) (actions.Output, error) {
		locker.mu.Lock()
		for _, lose := range locker.held {
			lose()
		}
		locker.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	res := f.process(t, phishing())
	if !res.Retry || !res.HeldBack {
		t.Errorf("result %+v, want held back", res)
	}
	if f.journal.len() != 0 {
		t.Error("a step whose claim was lost was journaled")
	}
}

// Runs of a playbook with a concurrency key never overlap for one key; other keys run.
func TestConcurrencyKeySerialisesRuns(t *testing.T) {
	t.Parallel()
	j := newMemJournal()
	locker := newMemLocker(j)
	f := newFixtureOn(t, j, func(o *engine.Options) { o.Locker = locker })
	entered, release := make(chan struct{}, 4), make(chan struct{})
	f.notify.script(func(_ context.Context, _ int, in actions.Inputs) (actions.Output, error) {
		if in.String("text") == "mailbox ceo" {
			entered <- struct{}{}
			<-release
		}
		return actions.Output{"sent": true}, nil
	})
	alert := func(id, mailbox string) engine.Alert {
		return engine.Alert{ID: id, Subject: "soar.alerts.serial.mail", Body: map[string]any{"mailbox": mailbox}, Deliveries: 1}
	}
	first := make(chan engine.Result)
	go func() { first <- f.process(t, alert("a-1", "ceo")) }()
	<-entered
	res := f.process(t, alert("a-2", "ceo"))
	if !res.Retry || !res.HeldBack {
		t.Errorf("a second run for the same key: %+v, want held back", res)
	}
	if o := only(t, f.process(t, alert("a-3", "cfo"))); o.Status != engine.StatusSucceeded {
		t.Errorf("another key: %s", o.Status)
	}
	close(release)
	<-first
	if o := only(t, f.process(t, alert("a-2", "ceo"))); o.Status != engine.StatusSucceeded {
		t.Errorf("the same key once free: %s", o.Status)
	}
}

// A reload mid-run does not touch the alerts already running: they finish on the set they
// started with, and the next alert sees the new one.
func TestSetPlaybooksLeavesRunningAlertsAlone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	f.lookup.script(func(context.Context, int, actions.Inputs) (actions.Output, error) {
		close(entered)
		<-release
		return actions.Output{"state": "open", "x": "e2"}, nil
	})
	done := make(chan engine.Result)
	go func() { done <- f.process(t, phishing()) }()
	<-entered
	f.eng.SetPlaybooks(nil)
	close(release)
	if out := only(t, <-done); out.Playbook != "quarantine" || out.Status != engine.StatusSucceeded {
		t.Errorf("the running alert: %s %s, want it finished on the old set", out.Playbook, out.Status)
	}
	if out := only(t, f.process(t, phishing())); out.Status != engine.StatusUnmatched {
		t.Errorf("the next alert: %s, want unmatched under the new (empty) set", out.Status)
	}
}
