package actions

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/testkit"
)

func newStepClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
}

// vendorDown is an action whose vendor is down until up is set; it counts the requests it got.
type vendorDown struct {
	up    atomic.Bool
	calls atomic.Int64
}

func (v *vendorDown) Spec() Spec {
	return Spec{Name: "checkpoint.quarantine_entity", Vendor: "checkpoint", Inputs: []Input{{Name: "entityIds", Type: StringList, Required: true}}}
}

func (v *vendorDown) Run(context.Context, Inputs) (Output, error) {
	v.calls.Add(1)
	if v.up.Load() {
		return Output{"ok": true}, nil
	}
	return nil, vendorErr(503, "service unavailable")
}

type breakerLog struct {
	mu      sync.Mutex
	changes []string
}

func (b *breakerLog) ActionAttempted(string, string, string) {}
func (b *breakerLog) ActionFinished(string, time.Duration)   {}
func (b *breakerLog) BreakerChanged(vendor, from, to string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.changes = append(b.changes, vendor+":"+from+">"+to)
}

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	t.Parallel()
	clk := newStepClock()
	obs := &breakerLog{}
	d := NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter), WithObserver(obs), WithClock(clk.Now),
		WithGuard("checkpoint", GuardSettings{Failures: 3, OpenFor: 10 * time.Second, MaxOpenFor: 25 * time.Second}))
	v := &vendorDown{}
	run := func() Result { return d.Run(context.Background(), v, validInputs, fastPolicy(1)) }

	for i := range 3 {
		if r := run(); r.HeldBack || !r.Retryable {
			t.Fatalf("failure %d: %+v, want a retryable vendor failure", i+1, r)
		}
	}
	if d.BreakerState("checkpoint") != BreakerOpen {
		t.Fatalf("state %s after 3 failures, want open", d.BreakerState("checkpoint"))
	}
	// Open: no request, the alert is told when the vendor will be tried again.
	r := run()
	if !r.HeldBack || !r.Retryable || r.Attempts != 0 || r.RetryAfter != 10*time.Second || v.calls.Load() != 3 {
		t.Fatalf("while open: %+v, %d calls; want held back for 10s with no request", r, v.calls.Load())
	}
	var held *HeldBackError
	if !errors.As(r.Err, &held) || held.Last == nil {
		t.Errorf("error %v does not carry the failure that opened the breaker", r.Err)
	}
	clk.Advance(4 * time.Second)
	if r := run(); r.RetryAfter != 6*time.Second {
		t.Errorf("4s later: retry after %v, want 6s", r.RetryAfter)
	}

	// The probe fails: open twice as long. The alert that carried the probe waits like the
	// others, its failure not held against it.
	clk.Advance(6 * time.Second)
	if r := run(); !r.HeldBack || r.Attempts != 1 || r.RetryAfter != 20*time.Second || v.calls.Load() != 4 {
		t.Fatalf("probe: %+v, %d calls; want one request, then held back for the doubled 20s", r, v.calls.Load())
	}
	if r := run(); !r.HeldBack || r.RetryAfter != 20*time.Second {
		t.Errorf("after a failed probe: %+v, want held back 20s", r)
	}
	// Capped at MaxOpenFor.
	clk.Advance(20 * time.Second)
	run()
	if r := run(); r.RetryAfter != 25*time.Second {
		t.Errorf("after a second failed probe: retry after %v, want the 25s cap", r.RetryAfter)
	}

	// The vendor is back: the probe succeeds and closes the breaker.
	v.up.Store(true)
	clk.Advance(25 * time.Second)
	if r := run(); r.Err != nil {
		t.Fatalf("probe after recovery: %v", r.Err)
	}
	if r := run(); r.Err != nil || d.BreakerState("checkpoint") != BreakerClosed {
		t.Errorf("after recovery: %v, state %s", r.Err, d.BreakerState("checkpoint"))
	}
	want := []string{"checkpoint:closed>open", "checkpoint:open>half_open", "checkpoint:half_open>open",
		"checkpoint:open>half_open", "checkpoint:half_open>open", "checkpoint:open>half_open", "checkpoint:half_open>closed"}
	if len(obs.changes) != len(want) {
		t.Fatalf("changes %v, want %v", obs.changes, want)
	}
	for i := range want {
		if obs.changes[i] != want[i] {
			t.Errorf("change %d = %s, want %s", i, obs.changes[i], want[i])
		}
	}
}

// While the probe is out, the others make no request.
func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	t.Parallel()
	clk := newStepClock()
	d := NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter), WithClock(clk.Now),
		WithGuard("checkpoint", GuardSettings{Failures: 1, OpenFor: time.Second}))
	release := make(chan struct{})
	probing := make(chan struct{})
	var calls atomic.Int64
	a := newFake(fail(vendorErr(503, "down")), func(context.Context) (Output, error) {
		calls.Add(1)
		close(probing)
		<-release
		return Output{}, nil
	})
	d.Run(context.Background(), a, validInputs, fastPolicy(1)) // opens it
	clk.Advance(time.Second)
	done := make(chan Result)
	go func() { done <- d.Run(context.Background(), a, validInputs, fastPolicy(1)) }()
	<-probing
	for range 5 {
		if r := d.Run(context.Background(), a, validInputs, fastPolicy(1)); !r.HeldBack {
			t.Errorf("a second call went through during the probe: %+v", r)
		}
	}
	close(release)
	if r := <-done; r.Err != nil {
		t.Errorf("probe: %v", r.Err)
	}
	if a.calls.Load() != 2 {
		t.Errorf("%d requests, want the failure and the probe", a.calls.Load())
	}
}

// Permanent errors mean the vendor answered: they never open the breaker, nor do shutdowns.
func TestBreakerIgnoresAnswersAndShutdowns(t *testing.T) {
	t.Parallel()
	d := NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter), WithGuard("checkpoint", GuardSettings{Failures: 2, OpenFor: time.Hour}))
	for range 5 {
		d.Run(context.Background(), newFake(fail(Permanent(vendorErr(422, "Entity not found")))), validInputs, fastPolicy(1))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		d.Run(ctx, newFake(blockOnCtx(nil)), validInputs, fastPolicy(1))
	}
	if s := d.BreakerState("checkpoint"); s != BreakerClosed {
		t.Errorf("state %s, want closed", s)
	}
}

// A vendor that hangs may hold at most MaxCalls calls; the rest are handed back at once instead
// of waiting on it, while a healthy vendor's calls are never limited.
func TestBulkheadHoldsBackCallsToAStrugglingVendor(t *testing.T) {
	t.Parallel()
	clk := newStepClock()
	d := NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter), WithClock(clk.Now),
		WithGuard("checkpoint", GuardSettings{Failures: 100, OpenFor: time.Minute, SlowAfter: 5 * time.Second, MaxCalls: 2}))
	hang := make(chan struct{})
	entered := make(chan struct{}, 8)
	a := newFake(func(ctx context.Context) (Output, error) {
		entered <- struct{}{}
		<-hang
		return Output{}, nil
	})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(context.Background(), a, validInputs, fastPolicy(1)) }()
	}
	for range 3 {
		<-entered // healthy so far: all three are let through, over MaxCalls
	}
	clk.Advance(6 * time.Second) // now they are slow: the vendor is struggling
	r := d.Run(context.Background(), a, validInputs, fastPolicy(1))
	if !r.HeldBack || r.Attempts != 0 {
		t.Errorf("a fourth call to a hanging vendor: %+v, want it held back", r)
	}
	close(hang)
	wg.Wait()
	if r := d.Run(context.Background(), a, validInputs, fastPolicy(1)); r.Err != nil {
		t.Errorf("after the vendor answered: %v", r.Err)
	}
}
