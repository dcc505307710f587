package actions

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// recordingObserver keeps what a Dispatcher reported.
type recordingObserver struct {
	mu       sync.Mutex
	attempts []string // "action result"
	finished []string // action names
}

func (r *recordingObserver) ActionAttempted(action, result, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, strings.TrimSpace(action+" "+result+" "+reason))
}

func (r *recordingObserver) BreakerChanged(string, string, string) {}

func (r *recordingObserver) ActionFinished(action string, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		action += " (negative duration)"
	}
	r.finished = append(r.finished, action)
}

func TestDispatcherObserverHearsEachAttemptAndRun(t *testing.T) {
	t.Parallel()
	const name = "checkpoint.quarantine_entity"
	tests := []struct {
		name         string
		script       []step
		in           Inputs
		wantAttempts []string
	}{
		{"retried then ok", []step{fail(vendorErr(503, "busy")), succeed(Output{})}, validInputs,
			[]string{name + " retryable server", name + " ok"}},
		{"permanent", []step{fail(Permanent(vendorErr(422, "Entity not found")))}, validInputs,
			[]string{name + " permanent client"}},
		{"retries run out", []step{fail(vendorErr(503, "busy"))}, validInputs,
			[]string{name + " retryable server", name + " retryable server"}},
		{"invalid inputs: no attempt", nil, Inputs{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			obs := &recordingObserver{}
			d := NewDispatcher(zap.NewNop(), WithJitterSource(zeroJitter), WithObserver(obs))
			d.Run(context.Background(), newFake(tc.script...), tc.in, fastPolicy(2))
			if !reflect.DeepEqual(obs.attempts, tc.wantAttempts) {
				t.Errorf("attempts = %q, want %q", obs.attempts, tc.wantAttempts)
			}
			if want := []string{name}; !reflect.DeepEqual(obs.finished, want) {
				t.Errorf("finished = %q, want %q: one per Run", obs.finished, want)
			}
		})
	}
}

func TestDispatcherNilObserver(t *testing.T) {
	t.Parallel()
	d := NewDispatcher(zap.NewNop(), WithObserver(nil))
	if r := d.Run(context.Background(), newFake(), validInputs, fastPolicy(1)); r.Err != nil {
		t.Fatal(r.Err)
	}
}
