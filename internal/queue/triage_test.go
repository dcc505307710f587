package queue_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/queue"
)

// triager is a scripted queue.Triage that counts its calls by alert id.
type triager struct {
	mu     sync.Mutex
	calls  map[string]int
	answer func(a *queue.Alert) (queue.Verdict, bool)
}

func newTriager(answer func(a *queue.Alert) (queue.Verdict, bool)) *triager {
	return &triager{calls: map[string]int{}, answer: answer}
}

func (t *triager) triage(a *queue.Alert) (queue.Verdict, bool) {
	t.mu.Lock()
	t.calls[a.ID]++
	t.mu.Unlock()
	return t.answer(a)
}

func (t *triager) callsOf(id string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.calls[id]
}

// unmatched answers the alerts whose id starts with "quick" with an unmatched outcome naming
// them, and leaves the others to the handler.
func unmatched(a *queue.Alert) (queue.Verdict, bool) {
	if !strings.HasPrefix(a.ID, "quick") {
		return queue.Verdict{}, false
	}
	return queue.Verdict{Outcomes: []queue.Outcome{{JSON: fmt.Appendf(nil, `{"alert_id":%q,"status":"unmatched"}`, a.ID)}}}, true
}

// An alert that Triage answers takes no slot: while the only one is held by a long run, the
// triaged alerts behind it are stored and acked, each outcome under its alert's message id, and
// the handler never sees them.
func TestTriagedAlertsNeedNoSlot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxInFlight = 1 })
	obs := &obsRecorder{finished: map[string]int{}, dead: map[string]int{}}
	h.q.SetObserver(obs)
	tr := newTriager(unmatched)
	h.q.SetTriage(tr.triage)
	release := make(chan struct{})
	rec := newRecorder(func(ctx context.Context, a *queue.Alert, _ int) queue.Verdict {
		<-release
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"status":"succeeded"}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"slow"}`), nil)
	h.run(h.q, rec.handle)
	if a := rec.next(t); a.ID != "slow" {
		t.Fatalf("handler got %q first, want slow", a.ID)
	}
	const quick = 5
	for i := range quick {
		h.publish("soar.alerts.x.y", fmt.Appendf(nil, `{"id":"quick-%d"}`, i), nil)
	}
	outs := h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.unmatched", quick)
	eventually(t, "the triaged alerts acked while the slot is held", func() bool {
		info := h.consumerInfo()
		return info.NumPending == 0 && info.NumAckPending == 1
	})
	for i, m := range outs {
		id := fmt.Sprintf("quick-%d", i)
		if got := m.Header.Get(nats.MsgIdHdr); got != id+":" {
			t.Errorf("outcome %d has Nats-Msg-Id %q, want %q", i, got, id+":")
		}
		if got := m.Header.Get(queue.HeaderAlertID); got != id {
			t.Errorf("outcome %d has %s %q, want %q", i, queue.HeaderAlertID, got, id)
		}
		if want := fmt.Sprintf(`{"alert_id":%q,"status":"unmatched"}`, id); string(m.Data) != want {
			t.Errorf("outcome %d is %s, want %s", i, m.Data, want)
		}
		if n := tr.callsOf(id); n != 1 {
			t.Errorf("%s triaged %d times, want once", id, n)
		}
	}
	if n := len(rec.calls()); n != 1 {
		t.Errorf("handler called %d times, want only for the slow alert", n)
	}

	close(release)
	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.pb", 1)
	h.waitSettled()
	want := map[string]int{queue.ResultAcked: quick + 1}
	eventually(t, "the observer to hear every delivery end", func() bool {
		received, finished, _ := obs.snapshot()
		return received == quick+1 && maps.Equal(finished, want)
	})
}

// A triaged alert is acked only once its outcome is stored: an outcome whose PubAck does not come
// (the stream had no leader) goes to a worker, which publishes it again, and the alert is acked
// once, with one outcome, without a redelivery and without the handler.
func TestTriagedAlertNotAckedUntilOutcomeStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	lost := h.outcomesTakenNotStored()
	tr := newTriager(unmatched)
	h.q.SetTriage(tr.triage)
	rec := newRecorder(nil)
	h.publish("soar.alerts.x.y", []byte(`{"id":"quick-lost"}`), nil)
	h.run(h.q, rec.handle)
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Fatal("the outcome was never published")
	}
	if info := h.consumerInfo(); info.NumAckPending != 1 {
		t.Errorf("%d alerts unacked while the outcome is not stored, want 1", info.NumAckPending)
	}

	if _, err := h.q.Ensure(context.Background()); err != nil { // the stream is back
		t.Fatal(err)
	}
	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.unmatched", 1)
	info := h.waitSettled()
	if n := len(h.messages(h.cfg.OutcomesStream)); n != 1 {
		t.Errorf("%d outcomes stored, want 1", n)
	}
	if info.NumRedelivered != 0 {
		t.Errorf("%d redelivered: the publish should have been retried within the delivery", info.NumRedelivered)
	}
	if n := tr.callsOf("quick-lost"); n != 1 {
		t.Errorf("triaged %d times, want once", n)
	}
	if n := len(rec.calls()); n != 0 {
		t.Errorf("handler called %d times for a triaged alert", n)
	}
}

// What Triage declines goes to the handler; a redelivery goes there without being triaged, since
// its counts are read from the journal first; a Triage that panics leaves the alert to the
// handler, and the worker goes on.
func TestUntriagedAlertsGoToTheHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tr := newTriager(func(a *queue.Alert) (queue.Verdict, bool) {
		if a.ID == "quick-panics" {
			panic("triage bug")
		}
		return unmatched(a)
	})
	h.q.SetTriage(tr.triage)
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		return queue.Verdict{Retry: a.ID == "retried" && a.Deliveries == 1,
			Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	h.run(h.q, rec.handle)
	h.publish("soar.alerts.x.y", []byte(`{"id":"declined"}`), nil)
	h.publish("soar.alerts.x.y", []byte(`{"id":"retried"}`), nil)
	h.publish("soar.alerts.x.y", []byte(`{"id":"quick-panics"}`), nil)
	h.publish("soar.alerts.x.y", []byte(`{"id":"quick-after"}`), nil)

	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.pb", 3)
	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.unmatched", 1)
	h.waitSettled()
	handled := map[string][]int{}
	for _, a := range rec.calls() {
		handled[a.ID] = append(handled[a.ID], a.Deliveries)
	}
	want := map[string][]int{"declined": {1}, "retried": {1, 2}, "quick-panics": {1}}
	if fmt.Sprint(handled) != fmt.Sprint(want) {
		t.Errorf("handler got %v (alert: deliveries), want %v", handled, want)
	}
	for id, n := range map[string]int{"declined": 1, "retried": 1, "quick-panics": 1, "quick-after": 1} {
		if got := tr.callsOf(id); got != n {
			t.Errorf("%s triaged %d times, want %d", id, got, n)
		}
	}
}

// A shutdown acks every triaged alert whose outcome it stored before Run returns: the next
// replica is given none of them again, and between the two every alert has its one outcome.
func TestShutdownAcksTheTriagedAlertsItStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxInFlight = 8 })
	const n, stopAt = 400, 50
	for i := range n {
		h.publish("soar.alerts.x.y", fmt.Appendf(nil, `{"id":"quick-%d"}`, i), nil)
	}
	// What comes back after the shutdown is a redelivery, which the handler answers alike.
	handle := func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		v, _ := unmatched(a)
		return v
	}
	var calls atomic.Int64
	stopping := make(chan struct{})
	first := newTriager(func(a *queue.Alert) (queue.Verdict, bool) {
		if calls.Add(1) == stopAt {
			close(stopping)
		}
		return unmatched(a)
	})
	h.q.SetTriage(first.triage)
	obs := &obsRecorder{finished: map[string]int{}, dead: map[string]int{}}
	h.q.SetObserver(obs)
	r := h.run(h.q, newRecorder(handle).handle)
	<-stopping
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Every delivery it took ended, acked or handed back, and the observer heard each end.
	received, finished, _ := obs.snapshot()
	if ended := finished[queue.ResultAcked] + finished[queue.ResultRetried]; received == 0 || ended != received || len(finished) > 2 {
		t.Errorf("the first replica received %d deliveries and heard %v end", received, finished)
	}
	storedFirst := map[string]bool{}
	for _, m := range h.messages(h.cfg.OutcomesStream) {
		storedFirst[m.Header.Get(queue.HeaderAlertID)] = true
	}
	if len(storedFirst) < stopAt || len(storedFirst) == n {
		t.Fatalf("the first replica stored %d outcomes before it stopped; want %d to %d", len(storedFirst), stopAt, n-1)
	}

	next, err := queue.New(h.nc, h.cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := newTriager(unmatched)
	next.SetTriage(second.triage)
	rec := newRecorder(handle)
	h.run(next, rec.handle)
	h.waitSettled()
	if got := len(h.messages(h.cfg.OutcomesStream)); got != n {
		t.Errorf("%d outcomes stored for %d alerts", got, n)
	}
	again := map[string]bool{}
	for _, a := range rec.calls() {
		again[a.ID] = true
	}
	for id := range storedFirst {
		if second.callsOf(id) != 0 || again[id] {
			t.Errorf("%s was delivered again after the first replica stored its outcome and stopped", id)
		}
	}
}

// A triaged outcome the connection refuses outright (bigger than the server takes) is not lost:
// a worker tries it again, and when it cannot be stored the alert is handed back, and its
// redelivery goes to the handler.
func TestTriagedOutcomeRefusedGoesToTheHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	huge := make([]byte, h.nc.MaxPayload()+1)
	tr := newTriager(func(a *queue.Alert) (queue.Verdict, bool) {
		return queue.Verdict{Outcomes: []queue.Outcome{{JSON: huge}}}, true
	})
	h.q.SetTriage(tr.triage)
	rec := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"quick-huge"}`), nil)
	h.run(h.q, rec.handle)

	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.pb", 1)
	h.waitSettled()
	if n := tr.callsOf("quick-huge"); n != 1 {
		t.Errorf("triaged %d times, want once: a redelivery is not triaged", n)
	}
	calls := rec.calls()
	if len(calls) != 1 || calls[0].Deliveries != 2 {
		t.Errorf("handler got %d alerts (%+v), want the redelivery only", len(calls), calls)
	}
	if n := len(h.messages(h.cfg.OutcomesStream)); n != 1 {
		t.Errorf("%d outcomes stored, want the handler's one", n)
	}
}

// A triaged alert whose PubAck had not come when shutdown began is still decided: the worker it
// goes to stores its outcome and acks it before Run returns, rather than handing it back.
func TestShutdownStoresATriagedOutcomeItHadPublished(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	lost := h.outcomesTakenNotStored()
	tr := newTriager(unmatched)
	h.q.SetTriage(tr.triage)
	rec := newRecorder(nil)
	h.publish("soar.alerts.x.y", []byte(`{"id":"quick-at-shutdown"}`), nil)
	r := h.run(h.q, rec.handle)
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Fatal("the outcome was never published")
	}
	r.cancel()                                                  // shutdown begins while the PubAck is missing
	if _, err := h.q.Ensure(context.Background()); err != nil { // and the stream comes back
		t.Fatal(err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	info := h.consumerInfo()
	if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("after Run: %d pending, %d unacked, %d redelivered; want the alert acked", info.NumPending, info.NumAckPending, info.NumRedelivered)
	}
	if n := len(h.messages(h.cfg.OutcomesStream)); n != 1 {
		t.Errorf("%d outcomes stored, want 1", n)
	}
	if n := len(rec.calls()); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}
