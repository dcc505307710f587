package actions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// hangGuard bounds every wait in these tests: reaching it means the dispatcher hung.
const hangGuard = 5 * time.Second

// step is one scripted attempt of a fakeAction.
type step func(ctx context.Context) (Output, error)

func succeed(out Output) step {
	return func(context.Context) (Output, error) { return out, nil }
}

func fail(err error) step {
	return func(context.Context) (Output, error) { return nil, err }
}

// blockOnCtx waits for the attempt's context to end, as a well-behaved client stuck on a slow
// vendor does, and signals entered (if not nil) once it is waiting.
func blockOnCtx(entered chan<- struct{}) step {
	return func(ctx context.Context) (Output, error) {
		if entered != nil {
			entered <- struct{}{}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("quarantine entities [a1] on HEC: %w", ctx.Err())
		case <-time.After(hangGuard):
			return nil, errors.New("test bug: the attempt's context was never cancelled")
		}
	}
}

// fakeAction counts its calls and plays a script: call n runs script[n-1], and the last entry
// repeats once the script runs out.
type fakeAction struct {
	calls     atomic.Int64
	deadlines atomic.Int64 // calls whose context had a deadline
	script    []step
}

func newFake(script ...step) *fakeAction { return &fakeAction{script: script} }

func (f *fakeAction) Spec() Spec {
	return Spec{
		Name:   "checkpoint.quarantine_entity",
		Vendor: "checkpoint",
		Inputs: []Input{{Name: "entityIds", Type: StringList, Required: true}},
	}
}

func (f *fakeAction) Run(ctx context.Context, in Inputs) (Output, error) {
	n := int(f.calls.Add(1))
	if _, ok := ctx.Deadline(); ok {
		f.deadlines.Add(1)
	}
	if len(f.script) == 0 {
		return Output{}, nil
	}
	return f.script[min(n, len(f.script))-1](ctx)
}

var validInputs = Inputs{"entityIds": []any{"a1"}}

func zeroJitter() float64 { return 0 }

func newTestDispatcher() *Dispatcher {
	return NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter))
}

// fastPolicy retries with waits of a millisecond or less.
func fastPolicy(attempts int) RetryPolicy {
	return RetryPolicy{MaxAttempts: attempts, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}
}

func vendorErr(status int, msg string) *HTTPStatusError {
	return &HTTPStatusError{Op: "quarantine entities [a1] on HEC", Status: status, Message: msg}
}

func TestDispatcherRun(t *testing.T) {
	t.Parallel()
	out := Output{"tasks": []any{map[string]any{"entityId": "a1", "taskId": "101"}}}
	overloaded := vendorErr(503, "gateway overloaded")
	notFound := vendorErr(422, "Entity not found")

	tests := []struct {
		name          string
		script        []step
		policy        RetryPolicy
		wantAttempts  int
		wantOutput    bool
		wantErr       *HTTPStatusError // the vendor error Err must wrap; nil means success
		wantRetryable bool
	}{
		{
			name:         "success on the first try",
			script:       []step{succeed(out)},
			policy:       fastPolicy(3),
			wantAttempts: 1, wantOutput: true,
		},
		{
			name:         "retryable twice then success",
			script:       []step{fail(overloaded), fail(errors.New("read tcp: connection reset by peer")), succeed(out)},
			policy:       fastPolicy(3),
			wantAttempts: 3, wantOutput: true,
		},
		{
			name:         "retry-after then success",
			script:       []step{fail(&RetryAfterError{Err: vendorErr(429, "slow down"), After: time.Millisecond}), succeed(out)},
			policy:       fastPolicy(3),
			wantAttempts: 2, wantOutput: true,
		},
		{
			name:         "permanent fails at once",
			script:       []step{fail(Permanent(fmt.Errorf("step quarantine: %w", notFound))), succeed(out)},
			policy:       fastPolicy(5),
			wantAttempts: 1, wantErr: notFound, wantRetryable: false,
		},
		{
			name:         "permanent after a retryable",
			script:       []step{fail(overloaded), fail(Permanent(notFound)), succeed(out)},
			policy:       fastPolicy(5),
			wantAttempts: 2, wantErr: notFound, wantRetryable: false,
		},
		{
			name:         "retryable exhausted",
			script:       []step{fail(overloaded)},
			policy:       fastPolicy(4),
			wantAttempts: 4, wantErr: overloaded, wantRetryable: true,
		},
		{
			name:         "retry-after exhausted",
			script:       []step{fail(&RetryAfterError{Err: overloaded, After: time.Millisecond})},
			policy:       fastPolicy(2),
			wantAttempts: 2, wantErr: overloaded, wantRetryable: true,
		},
		{
			name:         "a single attempt allowed",
			script:       []step{fail(overloaded), succeed(out)},
			policy:       fastPolicy(1),
			wantAttempts: 1, wantErr: overloaded, wantRetryable: true,
		},
		{
			name:         "the last error is the one reported",
			script:       []step{fail(vendorErr(500, "first")), fail(vendorErr(502, "second")), fail(overloaded)},
			policy:       fastPolicy(3),
			wantAttempts: 3, wantErr: overloaded, wantRetryable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newFake(tt.script...)
			res := newTestDispatcher().Run(context.Background(), a, validInputs, tt.policy)

			if res.Attempts != tt.wantAttempts {
				t.Errorf("Attempts = %d; want %d", res.Attempts, tt.wantAttempts)
			}
			if calls := int(a.calls.Load()); calls != res.Attempts {
				t.Errorf("action called %d times; Attempts says %d", calls, res.Attempts)
			}
			if res.Retryable != tt.wantRetryable {
				t.Errorf("Retryable = %v; want %v", res.Retryable, tt.wantRetryable)
			}
			if tt.wantErr == nil {
				if res.Err != nil {
					t.Fatalf("Err = %v; want success", res.Err)
				}
				if tt.wantOutput && res.Output == nil {
					t.Errorf("Output = nil; want the action's output")
				}
				if fmt.Sprint(res.Output) != fmt.Sprint(out) {
					t.Errorf("Output = %v; want %v", res.Output, out)
				}
				return
			}
			if res.Err == nil {
				t.Fatalf("Err = nil; want %v", tt.wantErr)
			}
			var hs *HTTPStatusError
			if !errors.As(res.Err, &hs) || hs != tt.wantErr {
				t.Errorf("Err = %v; want it to wrap %v (errors.As)", res.Err, tt.wantErr)
			}
			if !strings.Contains(res.Err.Error(), tt.wantErr.Message) {
				t.Errorf("Err = %q; want the vendor's message %q", res.Err, tt.wantErr.Message)
			}
			if IsPermanent(res.Err) == tt.wantRetryable {
				t.Errorf("IsPermanent(Err) = %v with Retryable = %v", IsPermanent(res.Err), res.Retryable)
			}
			var pe *backoff.PermanentError
			if errors.As(res.Err, &pe) {
				t.Errorf("Err %v still carries a backoff.PermanentError", res.Err)
			}
			if res.Output != nil {
				t.Errorf("Output = %v on failure; want nil", res.Output)
			}
		})
	}
}

func TestDispatcherRunInvalidInputs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Inputs
		want string
	}{
		{"missing", Inputs{}, `missing required input "entityIds"`},
		{"wrong type", Inputs{"entityIds": 5}, `input "entityIds" must be a list of strings`},
		{"unknown", Inputs{"entityIds": "a1", "entityId": "a1"}, `unknown input "entityId"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newFake(succeed(Output{}))
			res := newTestDispatcher().Run(context.Background(), a, tt.in, fastPolicy(3))
			if n := a.calls.Load(); n != 0 {
				t.Errorf("action called %d times with invalid inputs; want 0", n)
			}
			if res.Attempts != 0 || res.Retryable || res.Output != nil {
				t.Errorf("Result = %+v; want no attempts, not retryable", res)
			}
			if res.Err == nil || !IsPermanent(res.Err) {
				t.Fatalf("Err = %v; want a permanent error", res.Err)
			}
			if msg := res.Err.Error(); !strings.Contains(msg, "checkpoint.quarantine_entity") || !strings.Contains(msg, tt.want) {
				t.Errorf("Err = %q; want the action's name and %q", msg, tt.want)
			}
		})
	}
}

// The one timing assertion: a Retry-After is a floor on the wait (lower bound only).
func TestDispatcherHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	const after = 30 * time.Millisecond
	a := newFake(
		fail(&RetryAfterError{Err: vendorErr(429, "rate limit exceeded"), After: after}),
		succeed(Output{"ok": true}),
	)
	p := fastPolicy(3)
	p.MaxInterval = 100 * time.Millisecond // a Retry-After beyond it is left to the queue
	start := time.Now()
	res := newTestDispatcher().Run(context.Background(), a, validInputs, p)
	elapsed := time.Since(start)
	if res.Err != nil || res.Attempts != 2 {
		t.Fatalf("Result = %+v; want success on attempt 2", res)
	}
	if elapsed < after {
		t.Errorf("Run took %v; want at least the Retry-After of %v", elapsed, after)
	}
}

// recordingTimer is a backoff.Timer that fires at once and remembers every wait asked of it.
type recordingTimer struct {
	waits []time.Duration
	c     chan time.Time
}

func newRecordingTimer() *recordingTimer { return &recordingTimer{c: make(chan time.Time, 1)} }

func (r *recordingTimer) Start(d time.Duration) {
	r.waits = append(r.waits, d)
	r.c <- time.Time{}
}
func (r *recordingTimer) Stop()               {}
func (r *recordingTimer) C() <-chan time.Time { return r.c }

func TestDispatcherWaitsAndLogs(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	d := NewDispatcher(zap.New(core), WithJitterSource(zeroJitter))
	timer := newRecordingTimer()
	d.timer = timer

	overloaded := vendorErr(503, "gateway overloaded")
	a := newFake(
		fail(overloaded),
		fail(overloaded),
		fail(&RetryAfterError{Err: vendorErr(429, "rate limit exceeded"), After: 30 * time.Millisecond}),
		fail(overloaded),
		fail(overloaded),
		fail(overloaded),
	)
	p := RetryPolicy{MaxAttempts: 6, InitialInterval: 10 * time.Millisecond, MaxInterval: 40 * time.Millisecond}
	res := d.Run(context.Background(), a, validInputs, p)

	if res.Attempts != 6 || !res.Retryable || !errors.Is(res.Err, overloaded) {
		t.Fatalf("Result = %+v; want 6 attempts, retryable, the 503", res)
	}
	// Jitter 0 waits half of each interval: 10ms, 20ms, 40ms (the Retry-After of 30ms wins),
	// then 40ms capped.
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	if fmt.Sprint(timer.waits) != fmt.Sprint(want) {
		t.Errorf("waits = %v; want %v", timer.waits, want)
	}

	entries := logs.FilterMessage("action attempt failed, retrying").AllUntimed()
	if len(entries) != len(want) {
		t.Fatalf("%d retry log entries; want %d: %v", len(entries), len(want), logs.AllUntimed())
	}
	for i, e := range entries {
		f := e.ContextMap()
		if e.Level != zapcore.WarnLevel || f["action"] != "checkpoint.quarantine_entity" ||
			f["attempt"] != int64(i+1) || f["wait"] != want[i] || f["error"] == nil {
			t.Errorf("log entry %d = %v %v; want warn with action, attempt %d, wait %v, error", i, e.Level, f, i+1, want[i])
		}
	}
}

// parkedTimer is a backoff.Timer that never fires and reports each Start, so a test knows the
// dispatcher is inside a backoff wait.
type parkedTimer struct {
	started chan time.Duration
	c       chan time.Time
}

func (p *parkedTimer) Start(d time.Duration) { p.started <- d }
func (p *parkedTimer) Stop()                 {}
func (p *parkedTimer) C() <-chan time.Time   { return p.c }

func runAsync(ctx context.Context, d *Dispatcher, a Action, p RetryPolicy) <-chan Result {
	done := make(chan Result, 1)
	go func() { done <- d.Run(ctx, a, validInputs, p) }()
	return done
}

func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("timed out after %v waiting for %s", hangGuard, what)
		panic("unreachable")
	}
}

func TestDispatcherCancelledDuringBackoff(t *testing.T) {
	t.Parallel()
	overloaded := vendorErr(503, "gateway overloaded")

	tests := []struct {
		name  string
		setup func(d *Dispatcher, a *fakeAction) (inBackoff <-chan struct{})
	}{
		{
			// Deterministic: the cancel lands while the dispatcher waits on its timer.
			name: "parked timer",
			setup: func(d *Dispatcher, a *fakeAction) <-chan struct{} {
				timer := &parkedTimer{started: make(chan time.Duration, 1), c: make(chan time.Time)}
				d.timer = timer
				a.script = []step{fail(overloaded)}
				in := make(chan struct{})
				go func() {
					if _, ok := <-timer.started; ok {
						close(in)
					}
				}()
				return in
			},
		},
		{
			// The real timer, with an hour to wait: returning at all means the cancel was heard.
			name: "real timer",
			setup: func(d *Dispatcher, a *fakeAction) <-chan struct{} {
				called := make(chan struct{})
				a.script = []step{func(context.Context) (Output, error) {
					close(called)
					return nil, overloaded
				}}
				return called
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newTestDispatcher()
			a := newFake()
			inBackoff := tt.setup(d, a)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := RetryPolicy{MaxAttempts: 5, InitialInterval: time.Hour, MaxInterval: time.Hour}

			done := runAsync(ctx, d, a, p)
			waitFor(t, inBackoff, "the first attempt to fail")
			cancel()
			res := waitFor(t, done, "Run to return after cancel")

			if res.Attempts != 1 || a.calls.Load() != 1 {
				t.Errorf("Attempts = %d, calls = %d; want 1", res.Attempts, a.calls.Load())
			}
			if !res.Retryable {
				t.Errorf("Retryable = false; want true (shutdown cut a retryable failure short)")
			}
			if res.Err == nil {
				t.Fatal("Err = nil; want the vendor's error")
			}
			if !errors.Is(res.Err, overloaded) {
				t.Errorf("Err = %v; want it to wrap the vendor error", res.Err)
			}
			if msg := res.Err.Error(); !strings.Contains(msg, "gateway overloaded") || !strings.Contains(msg, "HTTP 503") {
				t.Errorf("Err = %q; want the vendor's message, not only the context's", msg)
			}
		})
	}
}

func TestDispatcherCancelledDuringAttempt(t *testing.T) {
	t.Parallel()
	overloaded := vendorErr(503, "gateway overloaded")
	entered := make(chan struct{}, 1)
	a := newFake(fail(overloaded), blockOnCtx(entered))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	done := runAsync(ctx, newTestDispatcher(), a, fastPolicy(5))
	waitFor(t, entered, "the second attempt to start")
	cancel()
	res := waitFor(t, done, "Run to return after cancel")

	if res.Attempts != 2 {
		t.Errorf("Attempts = %d; want 2", res.Attempts)
	}
	if !res.Retryable {
		t.Errorf("Retryable = false; want true")
	}
	if !errors.Is(res.Err, overloaded) || !strings.Contains(res.Err.Error(), "gateway overloaded") {
		t.Errorf("Err = %v; want the last vendor error, not the cancelled attempt's", res.Err)
	}
}

func TestDispatcherContextAlreadyDone(t *testing.T) {
	t.Parallel()
	overloaded := vendorErr(503, "gateway overloaded")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := newFake(fail(overloaded)) // ignores ctx, as a client might
	res := newTestDispatcher().Run(ctx, a, validInputs, fastPolicy(5))
	if res.Attempts != 1 || !res.Retryable || !errors.Is(res.Err, overloaded) {
		t.Errorf("Result = %+v; want one attempt, retryable, the vendor error", res)
	}
}

func TestDispatcherAttemptTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		script       []step
		wantAttempts int
		wantErr      bool
	}{
		{"every attempt hangs", []step{blockOnCtx(nil)}, 3, true},
		{"a hang then success", []step{blockOnCtx(nil), succeed(Output{"ok": true})}, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newFake(tt.script...)
			p := fastPolicy(3)
			p.AttemptTimeout = 5 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			res := waitFor(t, runAsync(ctx, newTestDispatcher(), a, p), "Run with an attempt timeout")

			if res.Attempts != tt.wantAttempts || int(a.calls.Load()) != tt.wantAttempts {
				t.Errorf("Attempts = %d, calls = %d; want %d", res.Attempts, a.calls.Load(), tt.wantAttempts)
			}
			if got := a.deadlines.Load(); got != a.calls.Load() {
				t.Errorf("%d of %d attempts had a deadline; want all", got, a.calls.Load())
			}
			if ctx.Err() != nil {
				t.Errorf("the attempt timeout ended the caller's context")
			}
			if !tt.wantErr {
				if res.Err != nil {
					t.Errorf("Err = %v; want success", res.Err)
				}
				return
			}
			if !res.Retryable {
				t.Errorf("Retryable = false; a timed-out attempt is retryable")
			}
			if !errors.Is(res.Err, context.DeadlineExceeded) {
				t.Errorf("Err = %v; want it to wrap context.DeadlineExceeded", res.Err)
			}
		})
	}
}

func TestDispatcherNoAttemptTimeout(t *testing.T) {
	t.Parallel()
	a := newFake(succeed(Output{}))
	res := newTestDispatcher().Run(context.Background(), a, validInputs, fastPolicy(1))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if a.deadlines.Load() != 0 {
		t.Errorf("AttemptTimeout 0 still set a deadline on the attempt")
	}
}

// One dispatcher serves every step of every alert at once.
func TestDispatcherConcurrentRuns(t *testing.T) {
	t.Parallel()
	d := NewDispatcher(zap.NewNop()) // the real jitter source
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			a := newFake(fail(vendorErr(503, "busy")), succeed(Output{"n": i}))
			res := d.Run(context.Background(), a, validInputs, fastPolicy(3))
			if res.Err != nil || res.Attempts != 2 || res.Output["n"] != i {
				errs <- fmt.Errorf("run %d: %+v", i, res)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStepBackOff(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 8, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second}
	ms := time.Millisecond
	tests := []struct {
		name   string
		jitter float64
		want   []time.Duration // MaxAttempts-1 waits, then Stop
	}{
		// intervals 100, 200, 400, 800, 1000, 1000, 1000 ms
		{"no jitter waits half the interval", 0, []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 500 * ms, 500 * ms, 500 * ms}},
		{"half jitter", 0.5, []time.Duration{75 * ms, 150 * ms, 300 * ms, 600 * ms, 750 * ms, 750 * ms, 750 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &stepBackOff{policy: p, jitter: func() float64 { return tt.jitter }}
			var got []time.Duration
			for range 20 {
				w := b.NextBackOff()
				if w < 0 { // backoff.Stop
					break
				}
				got = append(got, w)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("waits = %v; want %v", got, tt.want)
			}
			b.Reset()
			if w := b.NextBackOff(); w != tt.want[0] {
				t.Errorf("after Reset, first wait = %v; want %v", w, tt.want[0])
			}
		})
	}
}

func TestStepBackOffGrowsAndCaps(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 40, InitialInterval: 3 * time.Millisecond, MaxInterval: 250 * time.Millisecond}
	almostOne := math.Nextafter(1, 0)
	for _, j := range []float64{0, 0.25, 0.5, 0.9, almostOne} {
		b := &stepBackOff{policy: p, jitter: func() float64 { return j }}
		var prev time.Duration
		n := 0
		for w := b.NextBackOff(); w >= 0; w = b.NextBackOff() {
			n++
			if w < prev {
				t.Errorf("jitter %v: wait %d = %v shrank from %v", j, n, w, prev)
			}
			if w > p.MaxInterval {
				t.Errorf("jitter %v: wait %d = %v exceeds MaxInterval %v", j, n, w, p.MaxInterval)
			}
			if w < p.InitialInterval/2 {
				t.Errorf("jitter %v: wait %d = %v below half the initial interval", j, n, w)
			}
			prev = w
		}
		if n != p.MaxAttempts-1 {
			t.Errorf("jitter %v: %d waits before Stop; want %d", j, n, p.MaxAttempts-1)
		}
		if floor := p.MaxInterval / 2; prev < floor {
			t.Errorf("jitter %v: last wait %v; want the cap reached (at least %v)", j, prev, floor)
		}
	}
}

func TestStepBackOffRetryAfterFloor(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second}
	b := &stepBackOff{policy: p, jitter: zeroJitter}

	if w := b.NextBackOff(); w != 50*time.Millisecond {
		t.Fatalf("first wait = %v", w)
	}
	b.retryAfter = 800 * time.Millisecond // longer than the backoff: the vendor's word wins
	if w := b.NextBackOff(); w != 800*time.Millisecond {
		t.Errorf("wait with Retry-After 800ms = %v; want 800ms", w)
	}
	if w := b.NextBackOff(); w != 200*time.Millisecond {
		t.Errorf("wait after the Retry-After was used = %v; want 200ms (the floor applies once)", w)
	}
	b.retryAfter = time.Millisecond // shorter than the backoff: the backoff wins
	if w := b.NextBackOff(); w != 400*time.Millisecond {
		t.Errorf("wait with a short Retry-After = %v; want 400ms", w)
	}
	if w := b.NextBackOff(); w >= 0 {
		t.Errorf("wait after MaxAttempts-1 retries = %v; want Stop", w)
	}
}

func TestStepBackOffSingleAttempt(t *testing.T) {
	t.Parallel()
	b := &stepBackOff{policy: RetryPolicy{MaxAttempts: 1, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}, jitter: zeroJitter}
	if w := b.NextBackOff(); w >= 0 {
		t.Errorf("MaxAttempts 1: NextBackOff = %v; want Stop", w)
	}
}

func TestRetryPolicyNormalised(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   RetryPolicy
		want RetryPolicy
	}{
		{"zero takes the defaults but no attempt timeout", RetryPolicy{},
			RetryPolicy{MaxAttempts: 4, InitialInterval: 500 * time.Millisecond, MaxInterval: 30 * time.Second}},
		{"negative values", RetryPolicy{MaxAttempts: -1, InitialInterval: -time.Second, MaxInterval: -time.Second, AttemptTimeout: time.Second},
			RetryPolicy{MaxAttempts: 4, InitialInterval: 500 * time.Millisecond, MaxInterval: 30 * time.Second, AttemptTimeout: time.Second}},
		{"max below initial is raised", RetryPolicy{MaxAttempts: 2, InitialInterval: time.Minute, MaxInterval: time.Second},
			RetryPolicy{MaxAttempts: 2, InitialInterval: time.Minute, MaxInterval: time.Minute}},
		{"valid is kept", fastPolicy(7), fastPolicy(7)},
	}
	for _, tt := range tests {
		if got := tt.in.normalised(); got != tt.want {
			t.Errorf("%s: normalised() = %+v; want %+v", tt.name, got, tt.want)
		}
	}
}

// A Retry-After longer than the step may wait in place ends the step's retries: the alert goes
// back to the queue, which redelivers it later, rather than holding a worker slot for an hour.
func TestDispatcherLeavesLongRetryAfterToTheQueue(t *testing.T) {
	t.Parallel()
	d := newTestDispatcher()
	timer := newRecordingTimer()
	d.timer = timer
	limited := &RetryAfterError{Err: vendorErr(429, "rate limit exceeded"), After: time.Hour}
	a := newFake(fail(limited), succeed(Output{"ok": true}))
	res := d.Run(context.Background(), a, validInputs, RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond, MaxInterval: time.Second})
	if res.Attempts != 1 || !res.Retryable || !errors.Is(res.Err, limited) || res.RetryAfter != time.Hour {
		t.Fatalf("Result = %+v; want 1 attempt, retryable, the 429 and its hour", res)
	}
	if len(timer.waits) != 0 {
		t.Errorf("waited %v in place; want no wait", timer.waits)
	}
}

// A 401 that survives the client's one renewal is permanent: wrong credentials stay wrong.
func TestDispatcherDoesNotRetryUnauthorized(t *testing.T) {
	t.Parallel()
	denied := &UnauthorizedError{Err: vendorErr(401, "invalid token")}
	a := newFake(fail(denied), succeed(Output{"ok": true}))
	res := newTestDispatcher().Run(context.Background(), a, validInputs, fastPolicy(4))
	if res.Attempts != 1 || res.Retryable || !errors.Is(res.Err, denied) {
		t.Fatalf("Result = %+v; want 1 attempt, permanent, the 401", res)
	}
}
