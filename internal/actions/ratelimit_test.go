package actions

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// pacedAction records when each of its requests would leave: the first is the attempt itself,
// the rest go through Pace as a client's further requests (a next page) do.
type pacedAction struct {
	requestsPerAttempt int
	mu                 sync.Mutex
	sent               []time.Time
}

func (p *pacedAction) Spec() Spec {
	return Spec{Name: "gravityzone.get_blocklist_items", Vendor: "gravityzone"}
}

func (p *pacedAction) Run(ctx context.Context, _ Inputs) (Output, error) {
	for range p.requestsPerAttempt {
		if err := Pace(ctx); err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.sent = append(p.sent, time.Now())
		p.mu.Unlock()
	}
	return Output{}, nil
}

// Every request counts against the vendor's limit, the extra ones of an attempt included, and
// the limit is shared by concurrent dispatches.
func TestRateLimitSpacesEveryRequest(t *testing.T) {
	t.Parallel()
	const perSecond = 50
	a := &pacedAction{requestsPerAttempt: 3}
	d := NewDispatcher(zap.NewNop(), WithRateLimit("gravityzone", perSecond))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := d.Run(context.Background(), a, Inputs{}, fastPolicy(1)); r.Err != nil {
				t.Error(r.Err)
			}
		}()
	}
	wg.Wait()
	if len(a.sent) != 12 {
		t.Fatalf("%d requests, want 12", len(a.sent))
	}
	// A burst of one: 12 requests take at least 11 intervals.
	if took, min := a.sent[11].Sub(a.sent[0]), 11*time.Second/perSecond; took < min-time.Millisecond {
		t.Errorf("12 requests in %v, want at least %v at %d/s", took, min, perSecond)
	}
}

func TestRateLimitOnlyForItsVendor(t *testing.T) {
	t.Parallel()
	a := &pacedAction{requestsPerAttempt: 20}
	d := NewDispatcher(zap.NewNop(), WithRateLimit("checkpoint", 1), WithRateLimit("gravityzone", 0))
	began := time.Now()
	if r := d.Run(context.Background(), a, Inputs{}, fastPolicy(1)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("an unlimited vendor waited %v", took)
	}
	if err := Pace(context.Background()); err != nil {
		t.Errorf("Pace outside a dispatch: %v", err)
	}
}

// Waiting for the limit honours the context and is no attempt.
func TestRateLimitWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	a := &pacedAction{requestsPerAttempt: 1}
	d := NewDispatcher(zap.NewNop(), WithRateLimit("gravityzone", 0.01))
	if r := d.Run(context.Background(), a, Inputs{}, fastPolicy(1)); r.Err != nil {
		t.Fatal(r.Err) // takes the one token there is
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r := d.Run(ctx, a, Inputs{}, fastPolicy(3))
	if r.Err == nil || r.Attempts != 0 || !r.Retryable {
		t.Errorf("result %+v, want a retryable error after no attempt", r)
	}
	if r.Err != nil && !strings.Contains(r.Err.Error(), "waiting for the gravityzone rate limit") {
		t.Errorf("error %q does not say it was waiting for the rate limit", r.Err)
	}
	if len(a.sent) != 1 {
		t.Errorf("%d requests sent, want only the first dispatch's", len(a.sent))
	}
}

// A failure that says what the vendor did do keeps that output in the result, and its class.
func TestPartialFailureKeepsItsOutput(t *testing.T) {
	t.Parallel()
	partial := WithOutput(Output{"tasks": []any{"a1 done", "b2 refused"}}, Permanent(errors.New("HEC did not act on b2")))
	d := NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter))
	r := d.Run(context.Background(), newFake(fail(partial)), validInputs, fastPolicy(3))
	if r.Err == nil || r.Retryable || r.Attempts != 1 {
		t.Fatalf("result %+v, want one permanent failure", r)
	}
	if tasks, _ := r.Output["tasks"].([]any); len(tasks) != 2 {
		t.Errorf("output %v, want the partial output", r.Output)
	}
	if WithOutput(Output{}, nil) != nil {
		t.Error("WithOutput of no error is an error")
	}
}
