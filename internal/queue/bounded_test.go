package queue_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/queue"
)

// An alert id longer than 256 bytes, in the header or the body, makes the alert invalid; the
// dead letter carries a clipped copy, so a header of hundreds of kilobytes cannot keep it from
// being stored.
func TestOverlongAlertIDIsInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		hdr  nats.Header
		body string
	}{
		{"Nats-Msg-Id of 60 KB (JetStream takes at most 64 KB of headers)", hdr(nats.MsgIdHdr, strings.Repeat("i", 60<<10)), `{"type":"x"}`},
		{"id field of 257 bytes", nil, `{"id":"` + strings.Repeat("b", 257) + `"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			ack := h.publish("soar.alerts.x.y", []byte(tc.body), tc.hdr)
			rec := newRecorder(nil)
			h.run(h.q, rec.handle)
			dead := h.waitMessages("SOAR_DLQ", "soar.dlq.invalid", 1)[0]
			if d := dead.Header.Get(queue.HeaderDLQDetail); !strings.Contains(d, "more than the 256 allowed") {
				t.Errorf("detail %q", d)
			}
			if id := dead.Header.Get(queue.HeaderAlertID); id != "SOAR_ALERTS:"+strconv.FormatUint(ack.Sequence, 10) {
				t.Errorf("alert id header %q, want the stream position", id)
			}
			if orig := dead.Header.Get(queue.HeaderOriginalMsgID); len(orig) > queue.MaxAlertIDBytes {
				t.Errorf("original msg id copied whole: %d bytes", len(orig))
			}
			if len(rec.calls()) != 0 {
				t.Error("the handler ran an invalid alert")
			}
			h.waitSettled()
		})
	}
}

// A vendor asking to be left alone for a day does not park an alert for a day.
func TestRetryAfterIsCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxRetryAfter = 300 * time.Millisecond })
	var first time.Time
	delay := make(chan time.Duration, 1)
	rec := newRecorder(func(_ context.Context, a *queue.Alert, call int) queue.Verdict {
		if call == 1 {
			first = time.Now()
			return queue.Verdict{Retry: true, RetryAfter: 24 * time.Hour}
		}
		delay <- time.Since(first)
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{}`), nil)
	h.run(h.q, rec.handle)
	select {
	case d := <-delay:
		if d < 300*time.Millisecond {
			t.Errorf("redelivered after %v, sooner than the cap", d)
		}
	case <-time.After(waitFor):
		t.Fatal("not redelivered within the cap: the vendor's Retry-After was taken whole")
	}
}

// Outcomes no stream captures can never be stored: after max_deliver tries the alert is
// dead-lettered as unpublishable, with the outcomes, instead of nak'ed every few seconds for ever.
func TestUnpublishableOutcomesAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.OutcomesPrefix = "nowhere.outcomes" })
	// The outcomes stream exists but, as an operator left it, captures another prefix.
	s, err := h.js.Stream(context.Background(), h.cfg.OutcomesStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"elsewhere.>"}
	if _, err := h.js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{"status":"succeeded"}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "lost-1"))
	h.run(h.q, rec.handle)
	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.unpublishable", 1)[0]
	if d := dead.Header.Get(queue.HeaderDLQDetail); !strings.Contains(d, "could not be stored after 3 deliveries") {
		t.Errorf("detail %q", d)
	}
	if dead.Header.Get(queue.HeaderLastOutcome) == "" {
		t.Error("the outcomes that could not be stored are not kept with the dead letter")
	}
	if n := len(rec.calls()); n != h.cfg.MaxDeliver {
		t.Errorf("handled %d times, want max_deliver = %d", n, h.cfg.MaxDeliver)
	}
	h.waitSettled()
}

// When even the dead-letter stream cannot take it, the alert is given up after the hard cap on
// deliveries, staying in the alerts stream, instead of being offered for ever.
func TestUndeadletterableAlertStops(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.DLQPrefix = "nowhere.dlq" })
	s, err := h.js.Stream(context.Background(), h.cfg.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"elsewhere.dlq.>"}
	if _, err := h.js.UpdateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	h.publish("soar.alerts.x.y", []byte(`not json`), nil)
	h.run(h.q, newRecorder(nil).handle)
	info := h.waitSettled()
	if info.NumAckPending != 0 {
		t.Errorf("%d alerts still unacked: the alert is still offered", info.NumAckPending)
	}
	if msgs := h.messages(h.cfg.AlertsStream); len(msgs) != 1 {
		t.Errorf("alerts stream holds %d messages, want the alert kept", len(msgs))
	}
}

// An alert known only by its stream position, stored at a sequence an earlier alert had before
// the stream was re-created, is not a duplicate: its outcome is stored too.
func TestOutcomeIDsSurviveStreamRecreation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	outcome := func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{"status":"succeeded"}`)}}}
	}
	rec := newRecorder(outcome)
	first := h.publish("soar.alerts.x.y", []byte(`{"n":1}`), nil)
	r := h.run(h.q, rec.handle)
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 1)
	h.waitSettled()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := h.js.DeleteStream(ctx, h.cfg.AlertsStream); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	second := h.publish("soar.alerts.x.y", []byte(`{"n":2}`), nil)
	if second.Sequence != first.Sequence {
		t.Fatalf("the re-created stream stored the alert at %d, not at %d: the test proves nothing", second.Sequence, first.Sequence)
	}
	h.run(h.q, rec.handle)
	got := h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 2)
	if a, b := got[0].Header.Get(nats.MsgIdHdr), got[1].Header.Get(nats.MsgIdHdr); a == b {
		t.Errorf("both outcomes carry the message id %q", a)
	}
	if id := got[1].Header.Get(queue.HeaderAlertID); id != "SOAR_ALERTS:1" {
		t.Errorf("alert id header %q: the published alert id stays the stream position", id)
	}
}

// Only deliveries that ended in a vendor failure count against max_deliver: runs the worker
// could not finish (here: handed back with Requeue, as after a panic or a shutdown) do not, so
// rolling restarts cannot dead-letter an alert at its first vendor error.
func TestDeliveryBudgetCountsVendorFailuresOnly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		script      []string // per delivery: requeue, fail, ok
		wantDead    bool
		wantDetail  string
		wantHandled int
	}{
		{"four restarts, then two vendor failures, then success", []string{"requeue", "requeue", "requeue", "requeue", "fail", "fail", "ok"}, false, "", 7},
		{"vendor failures run out after restarts", []string{"requeue", "requeue", "fail", "requeue", "fail", "fail"}, true,
			"3 deliveries ended in a vendor failure (6 deliveries in all)", 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *queue.Config) { c.MaxDeliveries = 10 })
			failures := make(chan int, 16)
			rec := newRecorder(func(_ context.Context, a *queue.Alert, call int) queue.Verdict {
				failures <- a.Failures
				switch tc.script[min(call, len(tc.script))-1] {
				case "requeue":
					return queue.Verdict{Requeue: true}
				case "fail":
					return queue.Verdict{Retry: true, Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{"status":"failed"}`)}}}
				}
				return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{"status":"succeeded"}`)}}}
			})
			h.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "budget-1"))
			h.run(h.q, rec.handle)
			if tc.wantDead {
				dead := h.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)[0]
				if d := dead.Header.Get(queue.HeaderDLQDetail); !strings.Contains(d, tc.wantDetail) {
					t.Errorf("detail %q lacks %q", d, tc.wantDetail)
				}
			} else {
				o := h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 1)[0]
				if string(o.Data) != `{"status":"succeeded"}` {
					t.Errorf("outcome %s", o.Data)
				}
			}
			h.waitSettled()
			if n := len(rec.calls()); n != tc.wantHandled {
				t.Errorf("handled %d times, want %d", n, tc.wantHandled)
			}
			// Each delivery is told how many vendor failures came before it.
			want, seen := 0, []int{}
			for i := range tc.wantHandled {
				seen = append(seen, <-failures)
				if i > 0 && tc.script[i-1] == "fail" {
					want++
				}
				if seen[i] != want {
					t.Errorf("delivery %d: Failures = %d, want %d (seen %v)", i+1, seen[i], want, seen)
				}
			}
		})
	}
}

// The hard cap on deliveries still ends an alert that is never finished.
func TestHardCapOnDeliveries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxDeliveries = 4 })
	rec := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict { return queue.Verdict{Requeue: true} })
	h.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "poison-2"))
	h.run(h.q, rec.handle)
	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)[0]
	if d := dead.Header.Get(queue.HeaderDLQDetail); !strings.Contains(d, "delivered 4 times without an end") {
		t.Errorf("detail %q", d)
	}
	h.waitSettled()
	if n := len(rec.calls()); n != 4 {
		t.Errorf("handled %d times, want the cap of 4", n)
	}
}

// An alert waiting for a held-back vendor comes back when the vendor will be tried, however often,
// without using up its deliveries; past MaxHeldBack it is dead-lettered.
func TestHeldBackAlertsWaitForTheirVendor(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxDeliveries = 3 })
	var mu sync.Mutex
	var at []time.Time
	rec := newRecorder(func(_ context.Context, a *queue.Alert, call int) queue.Verdict {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		if call <= 6 {
			return queue.Verdict{Requeue: true, HeldBack: true, RetryAfter: 50 * time.Millisecond}
		}
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{"status":"succeeded"}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "held-1"))
	h.run(h.q, rec.handle)
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 1)
	h.waitSettled()
	calls := rec.calls()
	if len(calls) != 7 {
		t.Fatalf("handled %d times, want 7: six held back (over the cap of 3 deliveries) and the last", len(calls))
	}
	if calls[6].Parks != 6 {
		t.Errorf("the last delivery knows of %d parks, want 6", calls[6].Parks)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 50*time.Millisecond {
			t.Errorf("delivery %d came %v after the last, before the vendor's next try", i+1, gap)
		}
	}

	old := newHarness(t, func(c *queue.Config) { c.MaxHeldBack = 100 * time.Millisecond })
	held := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Requeue: true, HeldBack: true, RetryAfter: 60 * time.Millisecond}
	})
	old.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "held-2"))
	old.run(old.q, held.handle)
	dead := old.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)[0]
	if d := dead.Header.Get(queue.HeaderDLQDetail); !strings.Contains(d, "for a vendor that was held back") {
		t.Errorf("detail %q", d)
	}
}

// A replayed alert keeps its id, but its outcome is stored beside the first run's instead of
// being dropped as its duplicate.
func TestReplayedAlertsOutcomeIsNotADuplicate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	rec := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{}`)}}}
	})
	h.run(h.q, rec.handle)
	h.publish("soar.alerts.x.y", []byte(`{"id":"r-1"}`), nil)
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 1)
	h.publish("soar.alerts.x.y", []byte(`{"id":"r-1"}`), hdr(queue.HeaderReplayOf, "42"))
	got := h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 2)
	if id := got[1].Header.Get(nats.MsgIdHdr); id != "r-1:replay-42:p" {
		t.Errorf("replay's outcome id %q", id)
	}
	if calls := rec.calls(); len(calls) != 2 || calls[1].ReplayOf != "42" || calls[1].ID != "r-1" {
		t.Errorf("the replay was handled as %+v", calls[len(calls)-1])
	}
}

// A producer's expectations for the alerts stream do not travel into the dead letter, where the
// dead-letter stream would refuse them.
func TestDeadLetterDropsPublishExpectations(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.publish("soar.alerts.x.y", []byte(`not json`), hdr("Nats-Expected-Stream", "SOAR_ALERTS", "X-Producer", "siem"))
	h.run(h.q, newRecorder(nil).handle)
	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.invalid", 1)[0]
	if dead.Header.Get("Nats-Expected-Stream") != "" || dead.Header.Get("X-Producer") != "siem" {
		t.Errorf("dead letter headers %v", dead.Header)
	}
	h.waitSettled()
}
