package engine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/testkit"
)

// batchRig is an engine over testdata/batch: a batchable test.block whose vendor refuses the
// host "refused", under step claims and a journal, its batches timed by a test clock.
type batchRig struct {
	eng     *engine.Engine
	clock   *testkit.Clock
	batcher *actions.Batcher
	journal *memJournal
	locker  *memLocker
	block   *fakeAction
}

var errRefused = errors.New("block hosts: host refused")

func newBatchRig(t *testing.T) *batchRig {
	t.Helper()
	r := &batchRig{clock: testkit.NewClock(t0), journal: newMemJournal()}
	r.locker = newMemLocker(r.journal)
	log := &callLog{}
	r.block = &fakeAction{log: log, spec: actions.Spec{Name: "test.block", Vendor: "test",
		Inputs: []actions.Input{{Name: "targets", Type: actions.StringList, Required: true}, {Name: "reason", Type: actions.String}},
		Batch: &actions.Batch{Input: "targets", Share: func(out actions.Output, err error, targets []string) (actions.Output, error) {
			if err != nil && !errors.Is(err, errRefused) {
				return nil, err
			}
			if slices.Contains(targets, "refused") {
				return nil, actions.Permanent(fmt.Errorf("block hosts %v: host refused", targets))
			}
			return actions.Output{"targets": targets, "call": out["call"]}, nil
		}}}}
	r.block.script(func(_ context.Context, call int, in actions.Inputs) (actions.Output, error) {
		if slices.Contains(in.StringList("targets"), "refused") {
			return nil, actions.Permanent(actions.WithReason(actions.ReasonClient, errRefused)) // the whole call, as GravityZone answers
		}
		return actions.Output{"call": call}, nil
	})
	notify := &fakeAction{log: log, spec: actions.Spec{Name: "test.notify", Vendor: "test",
		Inputs: []actions.Input{{Name: "text", Type: actions.String, Required: true}}}}
	reg, err := actions.NewRegistry(r.block, notify)
	if err != nil {
		t.Fatal(err)
	}
	pbs, err := playbook.LoadDir("testdata/batch", reg)
	if err != nil {
		t.Fatal(err)
	}
	d := actions.NewDispatcher(zap.NewNop(), actions.WithJitterSource(func() float64 { return 0 }))
	r.batcher = actions.NewBatcher(d, zap.NewNop(), actions.WithTimers(r.clock.AfterFunc))
	r.eng = engine.New(pbs, reg, d, r.journal, engine.Options{Worker: "host-1", Now: r.clock.Now, Log: zap.NewNop(),
		Locker: r.locker, Batcher: r.batcher})
	return r
}

func stormAlert(id string, hosts ...any) engine.Alert {
	return engine.Alert{ID: id, Subject: "soar.alerts.storm.edr", Deliveries: 1, Body: map[string]any{"hosts": hosts}}
}

// processAll runs alerts at once, as a worker's slots do, and returns their results in order;
// once all wait in batches, max_wait passes.
func (r *batchRig) processAll(t *testing.T, alerts ...engine.Alert) []engine.Result {
	t.Helper()
	res := make([]engine.Result, len(alerts))
	var wg sync.WaitGroup
	for i, a := range alerts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res[i] = r.eng.Process(ctx, a)
		})
	}
	testkit.Eventually(t, 5*time.Second, "every alert's step in a batch", func() bool { return r.batcher.Waiting() == len(alerts) })
	r.clock.Advance(time.Second)
	wg.Wait()
	return res
}

// Concurrent alerts share one call; each outcome has its own targets, each step its own journal
// record under its own claim, and a redelivery reuses it without calling the vendor again.
func TestBatchEngineOneCallEachItsOwnOutcome(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t)
	res := r.processAll(t, stormAlert("a1", "h1"), stormAlert("a2", "h2", "h3"), stormAlert("a3", "h1", "h4"))
	if n := r.block.callCount(); n != 1 {
		t.Fatalf("%d calls for 3 alerts", n)
	}
	if got := r.block.inputs()[0].StringList("targets"); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"h1", "h2", "h3", "h4"}) {
		t.Errorf("the call sent %v; want every alert's hosts once", got)
	}
	want := map[string][]string{"a1": {"h1"}, "a2": {"h2", "h3"}, "a3": {"h1", "h4"}}
	for _, rs := range res {
		out := only(t, rs)
		if out.Status != engine.StatusSucceeded || rs.Retry {
			t.Fatalf("%s: %s, retry %t: %+v", out.AlertID, out.Status, rs.Retry, out.Steps)
		}
		got := out.Steps[0].Output.(map[string]any)["targets"]
		if fmt.Sprint(got) != fmt.Sprint(want[out.AlertID]) {
			t.Errorf("%s: output targets %v, want its own %v", out.AlertID, got, want[out.AlertID])
		}
		if text := fmt.Sprint(out.Steps[1].Output); out.Steps[1].Status != engine.StatusSucceeded {
			t.Errorf("%s: the next step %s %s", out.AlertID, out.Steps[1].Status, text)
		}
	}
	if n := r.journal.len(); n != 6 { // block and notify, for each alert
		t.Errorf("%d journal records, want 6", n)
	}
	claims := 0
	for _, n := range r.locker.names() {
		if len(n) > 5 && n[:5] == "step\x00" {
			claims++
		}
	}
	if claims != 6 {
		t.Errorf("%d step claims taken, want one per step of each alert", claims)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	again := only(t, r.eng.Process(ctx, stormAlert("a2", "h2", "h3")))
	if !again.Steps[0].Replayed || r.block.callCount() != 1 || r.batcher.Waiting() != 0 {
		t.Errorf("redelivery: replayed %t, %d calls", again.Steps[0].Replayed, r.block.callCount())
	}
}

// The vendor refuses one alert's host: the call is split until that alert is alone; only its
// outcome fails, for good, and the others go on to their next step.
func TestBatchEngineRefusalFailsOnlyItsAlert(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t)
	res := r.processAll(t, stormAlert("a1", "h1"), stormAlert("a2", "refused"), stormAlert("a3", "h3"), stormAlert("a4", "h4"))
	for _, rs := range res {
		out := only(t, rs)
		switch out.AlertID {
		case "a2":
			if out.Status != engine.StatusFailed || rs.Retry || out.Steps[0].Error != "block hosts [refused]: host refused" || out.Steps[1].Status != engine.StatusSkipped {
				t.Errorf("a2: %s, retry %t, steps %+v", out.Status, rs.Retry, out.Steps)
			}
		default:
			if out.Status != engine.StatusSucceeded {
				t.Errorf("%s: %s %+v", out.AlertID, out.Status, out.Steps)
			}
		}
	}
	if n := r.journal.len(); n != 6 {
		t.Errorf("%d journal records, want 6: the refused step has none", n)
	}
	if n := r.block.callCount(); n < 3 || n > 5 {
		t.Errorf("%d calls; want the whole, then halves down to the refused alert", n)
	}
}

// A lone alert's batch leaves at max_wait: a step with batch: waits no longer than that.
func TestBatchEngineLoneAlertWaitsMaxWait(t *testing.T) {
	t.Parallel()
	r := newBatchRig(t)
	done := make(chan engine.Result, 1)
	go func() { done <- r.eng.Process(context.Background(), stormAlert("lone", "h9")) }()
	testkit.Eventually(t, 5*time.Second, "the step waiting in its batch", func() bool { return r.batcher.Waiting() == 1 })
	r.clock.Advance(999 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the batch left before max_wait")
	default:
	}
	r.clock.Advance(time.Millisecond)
	out := only(t, <-done)
	if out.Status != engine.StatusSucceeded || out.Steps[0].DurationMS != 1000 {
		t.Errorf("%s, duration %d ms; want succeeded after the 1 s wait", out.Status, out.Steps[0].DurationMS)
	}
}
