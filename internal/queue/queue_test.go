package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

func TestAlertID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	rec := newRecorder(nil)

	// Each case on its own subject, so the handler's alerts can be told apart.
	tests := []struct {
		name string
		body string
		hdr  nats.Header
		want func(seq uint64) string
	}{
		{"header wins over id field", `{"id":"from-body"}`, hdr("Nats-Msg-Id", "from-header"), func(uint64) string { return "from-header" }},
		{"header alone", `{"x":1}`, hdr("Nats-Msg-Id", "only-header"), func(uint64) string { return "only-header" }},
		{"string id field", `{"id":"a-17","x":1}`, nil, func(uint64) string { return "a-17" }},
		{"numeric id field ignored", `{"id":17}`, nil, func(seq uint64) string { return fmt.Sprintf("SOAR_ALERTS:%d", seq) }},
		{"object id field ignored", `{"id":{"v":"x"}}`, nil, func(seq uint64) string { return fmt.Sprintf("SOAR_ALERTS:%d", seq) }},
		{"empty id field ignored", `{"id":""}`, nil, func(seq uint64) string { return fmt.Sprintf("SOAR_ALERTS:%d", seq) }},
		{"nested id ignored", `{"alert":{"id":"inner"}}`, nil, func(seq uint64) string { return fmt.Sprintf("SOAR_ALERTS:%d", seq) }},
		{"no id", `{}`, nil, func(seq uint64) string { return fmt.Sprintf("SOAR_ALERTS:%d", seq) }},
	}
	want := map[string]string{}
	for i, tt := range tests {
		subject := fmt.Sprintf("soar.alerts.id.case%d", i)
		ack := h.publish(subject, []byte(tt.body), tt.hdr)
		want[subject] = tt.want(ack.Sequence)
	}
	h.run(h.q, rec.handle)
	h.waitSettled()

	got := map[string]*queue.Alert{}
	for _, a := range rec.calls() {
		got[a.Subject] = a
	}
	for i, tt := range tests {
		subject := fmt.Sprintf("soar.alerts.id.case%d", i)
		a := got[subject]
		if a == nil || a.ID != want[subject] {
			t.Errorf("%s: alert = %+v, want id %q", tt.name, a, want[subject])
			continue
		}
		// A producer's id names the alert in the journal as it is; an id made from the stream
		// sequence also carries the time it was stored, as sequences repeat in a new stream.
		if strings.HasPrefix(a.ID, "SOAR_ALERTS:") {
			if !strings.HasPrefix(a.JournalID, a.ID+"@") || len(a.JournalID) < len(a.ID)+10 {
				t.Errorf("%s: journal id %q, want %q@<stored time>", tt.name, a.JournalID, a.ID)
			}
		} else if a.JournalID != a.ID {
			t.Errorf("%s: journal id %q, want the alert id %q", tt.name, a.JournalID, a.ID)
		}
	}
}

func TestHandlerGetsDecodedAlert(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	rec := newRecorder(nil)
	h.publish("soar.alerts.checkpoint.phishing",
		[]byte(`{"type":"phishing","entityId":"e1","score":0.5,"tags":["a","b"],"nested":{"n":1}}`),
		hdr("X-Source", "hec", "X-Source", "second value", "Nats-Msg-Id", "m-1"))
	h.run(h.q, rec.handle)

	a := rec.next(t)
	wantBody := map[string]any{
		"type": "phishing", "entityId": "e1", "score": 0.5,
		"tags": []any{"a", "b"}, "nested": map[string]any{"n": int64(1)},
	}
	if !reflect.DeepEqual(a.Body, wantBody) {
		t.Errorf("body = %#v, want %#v", a.Body, wantBody)
	}
	if a.Subject != "soar.alerts.checkpoint.phishing" {
		t.Errorf("subject = %q", a.Subject)
	}
	if a.Headers["X-Source"] != "hec" || a.Headers["Nats-Msg-Id"] != "m-1" {
		t.Errorf("headers = %v, want X-Source hec (the first value) and Nats-Msg-Id m-1", a.Headers)
	}
	if a.Deliveries != 1 {
		t.Errorf("deliveries = %d, want 1", a.Deliveries)
	}
	if a.ID != "m-1" {
		t.Errorf("id = %q, want m-1", a.ID)
	}
	info := h.waitSettled()
	if info.NumRedelivered != 0 || info.Delivered.Consumer != 1 {
		t.Errorf("consumer delivered %d times with %d redelivered, want 1 and 0", info.Delivered.Consumer, info.NumRedelivered)
	}
}

func TestOutcomesPublishedBeforeAck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{
			{Playbook: "phishing-quarantine", JSON: []byte(`{"playbook":"phishing-quarantine","status":"succeeded"}`)},
			{Playbook: "notify", JSON: []byte(`{"playbook":"notify","status":"failed"}`)},
		}}
	})
	rec2 := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "", JSON: []byte(`{"status":"unmatched"}`)}}}
	})
	h.publish("soar.alerts.checkpoint.phishing", []byte(`{"id":"a-1"}`), nil)
	h.publish("soar.alerts.other.kind", []byte(`{"id":"a-2"}`), nil)
	h.run(h.q, func(ctx context.Context, a *queue.Alert) queue.Verdict {
		if a.ID == "a-2" {
			return rec2.handle(ctx, a)
		}
		return rec.handle(ctx, a)
	})

	for _, want := range []struct{ subject, msgID, data string }{
		{"soar.outcomes.phishing-quarantine", "a-1:phishing-quarantine", `{"playbook":"phishing-quarantine","status":"succeeded"}`},
		{"soar.outcomes.notify", "a-1:notify", `{"playbook":"notify","status":"failed"}`},
		{"soar.outcomes.unmatched", "a-2:", `{"status":"unmatched"}`},
	} {
		m := h.waitMessages("SOAR_OUTCOMES", want.subject, 1)[0]
		if got := m.Header.Get(nats.MsgIdHdr); got != want.msgID {
			t.Errorf("%s: Nats-Msg-Id = %q, want %q", want.subject, got, want.msgID)
		}
		if string(m.Data) != want.data {
			t.Errorf("%s: data = %s, want %s", want.subject, m.Data, want.data)
		}
		if got := m.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s: Content-Type = %q", want.subject, got)
		}
	}
	info := h.waitSettled()
	if info.NumRedelivered != 0 {
		t.Errorf("%d alerts redelivered", info.NumRedelivered)
	}
	if got := len(h.messages("SOAR_OUTCOMES")); got != 3 {
		t.Errorf("outcomes stream holds %d messages, want 3", got)
	}
	if n := len(h.messages("SOAR_DLQ")); n != 0 {
		t.Errorf("dead-letter stream holds %d messages, want 0", n)
	}
}

func TestInvalidAlertsAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxAlertBytes = 64 })
	var calls atomic.Int64
	h.run(h.q, func(context.Context, *queue.Alert) queue.Verdict {
		calls.Add(1)
		return queue.Verdict{}
	})

	big := []byte(`{"pad":"` + strings.Repeat("x", 100) + `"}`)
	tests := []struct {
		name, subject string
		data          []byte
		msgID         string // "" publishes none
		dlqSubject    string
		reasonHas     string
		wantID        func(seq uint64) string
	}{
		{"not json", "soar.alerts.bad.notjson", []byte(`{"id":"x",`), "bad-1", "soar.dlq.invalid", "not valid JSON", nil},
		{"array", "soar.alerts.bad.array", []byte(`[{"id":"x"}]`), "", "soar.dlq.invalid", "array", nil},
		{"string", "soar.alerts.bad.string", []byte(`"phishing"`), "bad-3", "soar.dlq.invalid", "string", nil},
		{"null", "soar.alerts.bad.null", []byte(`null`), "", "soar.dlq.invalid", "null", nil},
		{"too large", "soar.alerts.bad.large", big, "bad-5", "soar.dlq.too_large", "bytes", nil},
		{"too large without id", "soar.alerts.bad.large2", big, "", "soar.dlq.too_large", "bytes", nil},
	}
	seqs := map[string]uint64{}
	for _, tt := range tests {
		hd := hdr("X-Custom", "keep me", "X-Custom", "and me")
		if tt.msgID != "" {
			hd.Set(nats.MsgIdHdr, tt.msgID)
		}
		seqs[tt.subject] = h.publish(tt.subject, tt.data, hd).Sequence
	}

	// An alert of exactly MaxAlertBytes is not too large.
	exact := []byte(`{"id":"exact","pad":"` + strings.Repeat("x", 64-23) + `"}`)
	if len(exact) != 64 {
		t.Fatalf("test bug: exact alert is %d bytes", len(exact))
	}
	h.publish("soar.alerts.ok.exact", exact, nil)

	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.invalid", 4)
	dead = append(dead, h.waitMessages("SOAR_DLQ", "soar.dlq.too_large", 2)...)
	bySubject := map[string]*jetstream.RawStreamMsg{}
	for _, m := range dead {
		bySubject[m.Header.Get(queue.HeaderSubject)] = m
	}
	for _, tt := range tests {
		m := bySubject[tt.subject]
		if m == nil {
			t.Errorf("%s: no dead letter with %s %s", tt.name, queue.HeaderSubject, tt.subject)
			continue
		}
		if m.Subject != tt.dlqSubject {
			t.Errorf("%s: dead-lettered to %s, want %s", tt.name, m.Subject, tt.dlqSubject)
		}
		if string(m.Data) != string(tt.data) {
			t.Errorf("%s: payload = %q, want the original %q", tt.name, m.Data, tt.data)
		}
		if got := m.Header.Values("X-Custom"); !reflect.DeepEqual(got, []string{"keep me", "and me"}) {
			t.Errorf("%s: X-Custom = %q, want both original values", tt.name, got)
		}
		if got, want := m.Header.Get(queue.HeaderDLQReason), strings.TrimPrefix(tt.dlqSubject, "soar.dlq."); got != want {
			t.Errorf("%s: %s = %q, want the subject's reason %q", tt.name, queue.HeaderDLQReason, got, want)
		}
		if detail := m.Header.Get(queue.HeaderDLQDetail); !strings.Contains(detail, tt.reasonHas) {
			t.Errorf("%s: %s = %q, want it to mention %q", tt.name, queue.HeaderDLQDetail, detail, tt.reasonHas)
		}
		wantID := fmt.Sprintf("SOAR_ALERTS:%d", seqs[tt.subject])
		if tt.msgID != "" {
			wantID = tt.msgID
			if got := m.Header.Get(queue.HeaderOriginalMsgID); got != tt.msgID {
				t.Errorf("%s: %s = %q, want %q", tt.name, queue.HeaderOriginalMsgID, got, tt.msgID)
			}
		} else if got := m.Header.Values(queue.HeaderOriginalMsgID); len(got) != 0 {
			t.Errorf("%s: %s = %q on an alert that had none", tt.name, queue.HeaderOriginalMsgID, got)
		}
		if got := m.Header.Get(nats.MsgIdHdr); got == tt.msgID && got != "" {
			t.Errorf("%s: the dead letter kept the original Nats-Msg-Id %q", tt.name, got)
		}
		if got := m.Header.Get(queue.HeaderAlertID); got != wantID {
			t.Errorf("%s: %s = %q, want %q", tt.name, queue.HeaderAlertID, got, wantID)
		}
		if got := m.Header.Get(queue.HeaderDeliveries); got != "1" {
			t.Errorf("%s: %s = %q, want 1", tt.name, queue.HeaderDeliveries, got)
		}
		if got := m.Header.Get(queue.HeaderStreamSeq); got != strconv.FormatUint(seqs[tt.subject], 10) {
			t.Errorf("%s: %s = %q, want %d", tt.name, queue.HeaderStreamSeq, got, seqs[tt.subject])
		}
	}

	// Terminated, not left to redeliver: nothing is unacked once the dead letters are stored.
	info := h.waitSettled()
	if info.NumRedelivered != 0 || info.Delivered.Consumer != uint64(len(tests)+1) {
		t.Errorf("consumer delivered %d times (%d redelivered), want each alert once", info.Delivered.Consumer, info.NumRedelivered)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want once (for the alert of exactly MaxAlertBytes) and never for alerts that cannot be processed", n)
	}
	if n := len(h.messages("SOAR_DLQ")); n != len(tests) {
		t.Errorf("dead-letter stream holds %d messages, want %d", n, len(tests))
	}
}

// retryOutcome is the outcome a scripted handler returns: it names the delivery it came from.
func retryOutcome(a *queue.Alert) []queue.Outcome {
	return []queue.Outcome{{Playbook: "pb", JSON: fmt.Appendf(nil, `{"delivery":%d}`, a.Deliveries)}}
}

func TestRetryRedeliversThenDeadLettersExhausted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil) // MaxDeliver 3, RetryDelay 20ms
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		return queue.Verdict{Retry: true, Outcomes: retryOutcome(a)}
	})
	h.publish("soar.alerts.vendor.down", []byte(`{"id":"r-1"}`), hdr("X-Custom", "v"))
	h.run(h.q, rec.handle)

	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)[0]
	h.waitSettled()

	var deliveries []int
	for _, a := range rec.calls() {
		deliveries = append(deliveries, a.Deliveries)
	}
	if !reflect.DeepEqual(deliveries, []int{1, 2, 3}) {
		t.Errorf("handler saw deliveries %v, want [1 2 3]", deliveries)
	}
	if string(dead.Data) != `{"id":"r-1"}` || dead.Header.Get("X-Custom") != "v" {
		t.Errorf("dead letter = %q with headers %v, want the original payload and headers", dead.Data, dead.Header)
	}
	if got := dead.Header.Get(queue.HeaderLastOutcome); got != `[{"delivery":3}]` {
		t.Errorf("%s = %q, want the last delivery's outcomes [{\"delivery\":3}]", queue.HeaderLastOutcome, got)
	}
	if got := dead.Header.Get(queue.HeaderDeliveries); got != "3" {
		t.Errorf("%s = %q, want 3", queue.HeaderDeliveries, got)
	}
	if got := dead.Header.Get(queue.HeaderAlertID); got != "r-1" {
		t.Errorf("%s = %q, want r-1", queue.HeaderAlertID, got)
	}
	if dead.Header.Get(queue.HeaderDLQReason) == "" {
		t.Errorf("no %s header", queue.HeaderDLQReason)
	}

	// Only the last delivery's outcomes are published.
	outs := h.messages("SOAR_OUTCOMES")
	if len(outs) != 1 || string(outs[0].Data) != `{"delivery":3}` || outs[0].Subject != "soar.outcomes.pb" {
		var got []string
		for _, m := range outs {
			got = append(got, m.Subject+" "+string(m.Data))
		}
		t.Errorf("outcomes stream holds %q, want only soar.outcomes.pb {\"delivery\":3}", got)
	}

	// Terminated: a later alert is handled while this one never comes back.
	h.publish("soar.alerts.vendor.down", []byte(`{"id":"r-2"}`), nil)
	eventually(t, "the second alert's dead letter", func() bool {
		return len(h.messages("SOAR_DLQ")) == 2
	})
	h.waitSettled()
	n := 0
	for _, a := range rec.calls() {
		if a.ID == "r-1" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("r-1 handled %d times, want 3", n)
	}
}

func TestRetryThenSuccessAcks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		return queue.Verdict{Retry: a.Deliveries < 2, Outcomes: retryOutcome(a)}
	})
	h.publish("soar.alerts.vendor.flaky", []byte(`{"id":"f-1"}`), nil)
	h.run(h.q, rec.handle)

	m := h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.pb", 1)[0]
	h.waitSettled()
	if string(m.Data) != `{"delivery":2}` {
		t.Errorf("published outcome %s, want the second delivery's", m.Data)
	}
	if n := len(rec.calls()); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
	if n := len(h.messages("SOAR_DLQ")); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

func TestPanickingHandlerEndsInExhausted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	var panics atomic.Int64
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		if a.ID == "poison" {
			panics.Add(1)
			panic("handler bug")
		}
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"poison"}`), nil)
	r := h.run(h.q, rec.handle)

	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)[0]
	if got := dead.Header.Get(queue.HeaderAlertID); got != "poison" {
		t.Errorf("dead letter for %q, want poison", got)
	}
	if got := dead.Header.Get(queue.HeaderLastOutcome); got != "" {
		t.Errorf("%s = %q after a panic, want none", queue.HeaderLastOutcome, got)
	}
	// A panic is the worker's fault, not the vendor's: only the hard cap on deliveries bounds it.
	if n := panics.Load(); n != int64(h.cfg.MaxDeliveries) {
		t.Errorf("handler panicked %d times, want MaxDeliveries = %d", n, h.cfg.MaxDeliveries)
	}

	// The worker is still running and handles the next alert.
	h.publish("soar.alerts.x.y", []byte(`{"id":"fine"}`), nil)
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.pb", 1)
	h.waitSettled()
	select {
	case <-r.done:
		t.Fatalf("Run returned after a handler panic: %v", r.err)
	default:
	}
}

func TestMaxInFlightBoundsConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxInFlight = 2 })
	var running, peak, done atomic.Int64
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	h.run(h.q, func(ctx context.Context, a *queue.Alert) queue.Verdict {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
		done.Add(1)
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	for i := range 10 {
		h.publish("soar.alerts.x.y", fmt.Appendf(nil, `{"id":"c-%d"}`, i), nil)
	}

	for range 2 {
		<-entered
	}
	// Two run and six are pulled ahead (the pull holds at most 4 × MaxInFlight); two wait in
	// the stream.
	eventually(t, "eight alerts unacked and two pending", func() bool {
		info := h.consumerInfo()
		return info.NumAckPending == 8 && info.NumPending == 2
	})
	if n := running.Load(); n != 2 {
		t.Fatalf("%d handlers running, want 2", n)
	}
	for i := range 10 {
		release <- struct{}{} // one at a time: each frees one slot
		if i < 8 {
			<-entered
		}
		if p := peak.Load(); p > 2 {
			t.Fatalf("%d handlers ran at once, want at most MaxInFlight = 2", p)
		}
	}
	h.waitSettled()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d, want 2", p)
	}
	if n := done.Load(); n != 10 {
		t.Errorf("%d alerts handled, want 10", n)
	}
}

func TestShutdownWaitsForInFlightAlert(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.GracePeriod = 5 * time.Second })
	entered := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	var ctxErr atomic.Value
	r := h.run(h.q, func(ctx context.Context, a *queue.Alert) queue.Verdict {
		close(entered)
		<-release
		ctxErr.Store(fmt.Sprint(ctx.Err()))
		finished.Store(true)
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"ok":true}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"s-1"}`), nil)
	<-entered

	r.cancel()
	select {
	case <-r.done:
		t.Fatal("Run returned while an alert was still being handled")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Run returned before the handler finished")
	}
	if got := ctxErr.Load(); got != "<nil>" {
		t.Errorf("handler's context ended (%v) inside the grace period", got)
	}
	// Its outcome was published and the alert acked on the way out.
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.pb", 1)
	h.waitSettled()
}

func TestShutdownAfterGracePeriodNaksForAnotherReplica(t *testing.T) {
	t.Parallel()
	// A long AckWait: a redelivery inside it can only come from the nak.
	h := newHarness(t, func(c *queue.Config) {
		c.GracePeriod = 200 * time.Millisecond
		c.AckWait = 20 * time.Second
	})
	entered := make(chan struct{})
	var cancelled atomic.Bool
	r := h.run(h.q, func(ctx context.Context, a *queue.Alert) queue.Verdict {
		close(entered)
		<-ctx.Done() // a run that only ends when told to
		cancelled.Store(true)
		return queue.Verdict{Retry: true}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"g-1"}`), nil)
	<-entered

	began := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	took := time.Since(began)
	if !cancelled.Load() {
		t.Fatal("Run returned before the handler saw its context cancelled")
	}
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("Run returned %s after cancel, want just after the 200ms grace period", took)
	}

	// A second replica on the same consumer gets the alert at once.
	q2, err := queue.New(h.nc, h.cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	h.run(q2, rec.handle)
	select {
	case a := <-rec.seen:
		if a.ID != "g-1" {
			t.Errorf("second replica got %q, want g-1", a.ID)
		}
		if a.Deliveries < 2 {
			t.Errorf("deliveries = %d on the redelivery", a.Deliveries)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the alert was not redelivered within 5s of shutdown (nak missing; AckWait is 20s)")
	}
	h.waitSettled()
	if n := len(h.messages("SOAR_DLQ")); n != 0 {
		t.Errorf("%d dead letters after a shutdown, want none", n)
	}
}

func TestDuplicatePublishHandledOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	var calls atomic.Int64
	h.run(h.q, func(context.Context, *queue.Alert) queue.Verdict {
		calls.Add(1)
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	first := h.publish("soar.alerts.x.y", []byte(`{"n":1}`), hdr(nats.MsgIdHdr, "dup-1"))
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.pb", 1)
	h.waitSettled()
	second := h.publish("soar.alerts.x.y", []byte(`{"n":1}`), hdr(nats.MsgIdHdr, "dup-1"))
	if !second.Duplicate || second.Sequence != first.Sequence {
		t.Errorf("second publish: duplicate %v, sequence %d; want a duplicate of %d", second.Duplicate, second.Sequence, first.Sequence)
	}
	// A third, different alert flows through after it, proving the duplicate was not queued ahead.
	h.publish("soar.alerts.x.y", []byte(`{"n":2}`), hdr(nats.MsgIdHdr, "other"))
	eventually(t, "the other alert's outcome", func() bool { return len(h.messages("SOAR_OUTCOMES")) == 2 })
	h.waitSettled()
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times for one alert published twice and one other, want 2", n)
	}
}

func TestOutcomeNotRepublishedOnRedelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	// The first delivery publishes and then "crashes" before acking: simulated by publishing the
	// same outcome (same alert id and playbook) from the test first.
	m := nats.NewMsg("soar.outcomes.pb")
	m.Data = []byte(`{"first":true}`)
	if _, err := h.js.PublishMsg(context.Background(), m, jetstream.WithMsgID("o-1:pb")); err != nil {
		t.Fatal(err)
	}
	h.publish("soar.alerts.x.y", []byte(`{"id":"o-1"}`), nil)
	h.run(h.q, func(context.Context, *queue.Alert) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"first":false}`)}}}
	})
	h.waitSettled()
	outs := h.messages("SOAR_OUTCOMES")
	if len(outs) != 1 || string(outs[0].Data) != `{"first":true}` {
		t.Errorf("outcomes stream holds %d messages, want the first outcome only", len(outs))
	}
}

// Run must report a consumer it cannot bind to rather than spin.
func TestRunWithoutConsumerFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	if err := h.js.DeleteConsumer(context.Background(), h.cfg.AlertsStream, h.cfg.Consumer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := h.q.Run(ctx, func(context.Context, *queue.Alert) queue.Verdict { return queue.Verdict{} })
	if err == nil || !strings.Contains(err.Error(), "riposte") {
		t.Errorf("Run without a consumer = %v, want an error naming it", err)
	}
}

// The DLQ's Riposte-Last-Outcome is JSON a tool can read back.
func TestLastOutcomeHeaderIsJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxDeliver = 1 })
	h.run(h.q, func(_ context.Context, a *queue.Alert) queue.Verdict {
		return queue.Verdict{Retry: true, Outcomes: []queue.Outcome{
			{Playbook: "a", JSON: []byte(`{"playbook":"a","steps":[{"error":"HTTP 503:\nline two"}]}`)},
			{Playbook: "b", JSON: []byte(`{"playbook":"b"}`)},
		}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"l-1"}`), nil)
	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)[0]
	var last []map[string]any
	if err := json.Unmarshal([]byte(dead.Header.Get(queue.HeaderLastOutcome)), &last); err != nil {
		t.Fatalf("%s is not JSON: %v", queue.HeaderLastOutcome, err)
	}
	if len(last) != 2 || last[0]["playbook"] != "a" || last[1]["playbook"] != "b" {
		t.Errorf("%s = %v, want both outcomes in order", queue.HeaderLastOutcome, last)
	}
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.b", 1)
	h.waitSettled()
}

// A handler that returns a final verdict (no retry) after the grace period has cut it short
// must see the queue's storage and its ack agree: either its outcome is stored and the alert
// acked, or the alert is nak'ed and the redelivery's outcome is the one stored.
func TestFinalVerdictAfterGracePeriodIsConsistent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.GracePeriod = 100 * time.Millisecond })
	entered := make(chan struct{})
	r := h.run(h.q, func(ctx context.Context, a *queue.Alert) queue.Verdict {
		close(entered)
		<-ctx.Done()
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"run":1}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"cut-1"}`), nil)
	<-entered
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"run":2}`)}}}
	})
	h.run(h.q, rec.handle)
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.pb", 1)
	h.waitSettled()
	stored := string(h.messages("SOAR_OUTCOMES")[0].Data)
	redelivered := len(rec.calls()) > 0
	if redelivered && stored != `{"run":2}` {
		t.Errorf("the alert was redelivered and run again, yet the stored outcome is %s from the run that was nak'ed", stored)
	}
	if !redelivered && stored != `{"run":1}` {
		t.Errorf("the alert was acked, yet the stored outcome is %s", stored)
	}
}

// Heartbeats keep a run longer than AckWait from being redelivered under it.
func TestLongRunIsNotRedeliveredUnderIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.AckWait = time.Second })
	var calls atomic.Int64
	h.run(h.q, func(ctx context.Context, a *queue.Alert) queue.Verdict {
		calls.Add(1)
		time.Sleep(1600 * time.Millisecond) // a slow vendor: longer than AckWait
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"slow"}`), nil)
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.pb", 1)
	info := h.waitSettled()
	if n := calls.Load(); n != 1 || info.Delivered.Consumer != 1 {
		t.Errorf("handler called %d times, consumer delivered %d times; want 1 and 1", n, info.Delivered.Consumer)
	}
}

// An idle worker keeps pulling across the fetch timeout and picks up a late alert at once,
// without logging the idle fetches as failures.
func TestIdleWorkerPicksUpLateAlert(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	core, logs := observer.New(zapcore.WarnLevel)
	q, err := queue.New(h.nc, h.cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	h.run(q, rec.handle)
	// Idle through one whole fetch (5s) and into the next.
	eventually(t, "a second pull request after the first one expired", func() bool {
		return h.consumerInfo().NumWaiting > 0 && time.Since(rec.started) > 5500*time.Millisecond
	})
	began := time.Now()
	h.publish("soar.alerts.x.y", []byte(`{"id":"late"}`), nil)
	rec.next(t)
	if took := time.Since(began); took > time.Second {
		t.Errorf("late alert picked up after %s", took)
	}
	for _, e := range logs.All() {
		t.Errorf("idle worker logged %s: %v", e.Message, e.ContextMap())
	}
}

// An alert is acked only once JetStream holds its outcomes: while the outcomes stream is
// missing, the alert keeps coming back; once it is there again, the outcome is stored and the
// alert acked.
func TestAlertNotAckedUntilOutcomeStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	if err := h.js.DeleteStream(ctx, h.cfg.OutcomesStream); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: fmt.Appendf(nil, `{"delivery":%d}`, a.Deliveries)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"n-1"}`), nil)
	h.run(h.q, rec.handle)

	for a := rec.next(t); a.Deliveries < 2; a = rec.next(t) {
	}
	if _, err := h.q.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	m := h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.pb", 1)[0]
	h.waitSettled()
	if got := m.Header.Get(nats.MsgIdHdr); got != "n-1:pb" {
		t.Errorf("Nats-Msg-Id = %q, want n-1:pb", got)
	}
	if n := len(h.messages("SOAR_DLQ")); n != 0 {
		t.Errorf("%d dead letters: a publishing outage must not exhaust the alert", n)
	}
}

// An outcome publish whose acknowledgement never comes (sent while the outcomes stream had no
// leader) is sent again within a couple of seconds, not after the whole publish timeout: once
// the stream is back, the outcome is stored promptly, once, and the alert acked without a
// redelivery.
func TestLostOutcomePublishIsRetriedPromptly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx := context.Background()
	lost := h.outcomesTakenNotStored()
	rec := newRecorder(func(context.Context, *queue.Alert, int) queue.Verdict {
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"status":"succeeded"}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"lost-ack-1"}`), nil)
	h.run(h.q, rec.handle)
	select {
	case <-lost:
	case <-time.After(waitFor):
		t.Fatal("the outcome was never published")
	}

	if _, err := h.q.Ensure(ctx); err != nil { // the stream is back
		t.Fatal(err)
	}
	back := time.Now()
	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.pb", 1)
	if took := time.Since(back); took > 4*time.Second {
		t.Errorf("outcome stored %s after its stream was back; want a retry within about 2 s", took.Round(time.Millisecond))
	}
	h.waitSettled()
	if n := len(h.messages(h.cfg.OutcomesStream)); n != 1 {
		t.Errorf("%d outcomes stored, want 1", n)
	}
	if n := len(rec.calls()); n != 1 {
		t.Errorf("handled %d times, want 1: the publish should have been retried within the delivery", n)
	}
}

// A slot is for running alerts: once a run has decided, the next alert starts while the first
// one's outcome still waits for its PubAck, and --max-in-flight still bounds the runs.
func TestSlotIsFreeWhileAnOutcomeIsStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxInFlight = 1 })
	ctx := context.Background()
	taken := h.outcomesTakenNotStored()
	var running, peak atomic.Int64
	rec := newRecorder(func(_ context.Context, a *queue.Alert, _ int) queue.Verdict {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		defer running.Add(-1)
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{"status":"succeeded"}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"slot-1"}`), nil)
	h.run(h.q, rec.handle)
	if a := rec.next(t); a.ID != "slot-1" {
		t.Fatalf("first alert %q, want slot-1", a.ID)
	}
	select {
	case <-taken:
	case <-time.After(waitFor):
		t.Fatal("the first outcome was never published")
	}
	h.publish("soar.alerts.x.y", []byte(`{"id":"slot-2"}`), nil)
	if a := rec.next(t); a.ID != "slot-2" {
		t.Fatalf("second alert %q, want slot-2", a.ID)
	}
	if info := h.consumerInfo(); info.NumAckPending != 2 {
		t.Errorf("%d alerts unacked while the first outcome waits, want both", info.NumAckPending)
	}

	if _, err := h.q.Ensure(ctx); err != nil { // the stream is back: both outcomes are stored
		t.Fatal(err)
	}
	h.waitMessages(h.cfg.OutcomesStream, "soar.outcomes.pb", 2)
	h.waitSettled()
	if n := len(rec.calls()); n != 2 {
		t.Errorf("handled %d times, want 2", n)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("%d runs at once, want at most MaxInFlight = 1", p)
	}
}

// obsRecorder is a queue.Observer that counts what it hears.
type obsRecorder struct {
	mu       sync.Mutex
	received int
	finished map[string]int
	dead     map[string]int
}

func (o *obsRecorder) AlertReceived() { o.mu.Lock(); o.received++; o.mu.Unlock() }
func (o *obsRecorder) AlertFinished(result string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if took < 0 {
		result += " (negative duration)"
	}
	o.finished[result]++
}
func (o *obsRecorder) DeadLettered(reason string) { o.mu.Lock(); o.dead[reason]++; o.mu.Unlock() }

func (o *obsRecorder) snapshot() (int, map[string]int, map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.received, maps.Clone(o.finished), maps.Clone(o.dead)
}

func TestObserverHearsEveryDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil) // MaxDeliver 3
	obs := &obsRecorder{finished: map[string]int{}, dead: map[string]int{}}
	h.q.SetObserver(obs)
	h.run(h.q, func(_ context.Context, a *queue.Alert) queue.Verdict {
		return queue.Verdict{Retry: a.ID == "retry", Outcomes: []queue.Outcome{{Playbook: "pb", JSON: []byte(`{}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{"id":"fine"}`), nil)
	h.publish("soar.alerts.x.y", []byte(`not json`), nil)
	h.publish("soar.alerts.x.y", []byte(`{"id":"retry"}`), nil)

	wantFinished := map[string]int{queue.ResultAcked: 1, queue.ResultRetried: 2, queue.ResultDeadLettered: 2}
	wantDead := map[string]int{"invalid": 1, "exhausted": 1}
	eventually(t, "the observer to hear five deliveries end", func() bool {
		received, finished, dead := obs.snapshot()
		return received == 5 && maps.Equal(finished, wantFinished) && maps.Equal(dead, wantDead)
	})
	h.waitSettled()
	received, finished, dead := obs.snapshot()
	if received != 5 || !maps.Equal(finished, wantFinished) || !maps.Equal(dead, wantDead) {
		t.Errorf("observer heard %d received, finished %v, dead %v", received, finished, dead)
	}
}

// A signal that arrives while the worker is still starting is a clean stop, not an error.
func TestRunStoppedBeforeItStartsIsClean(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.q.Run(ctx, func(context.Context, *queue.Alert) queue.Verdict { return queue.Verdict{} }); err != nil {
		t.Errorf("Run on a cancelled context = %v, want nil", err)
	}
}

// Valid JSON is processed even where float64 falls short: a number beyond its range, and an id
// above 2^53 whose digits must survive.
func TestHandlerGetsExactNumbers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	rec := newRecorder(nil)
	h.publish("soar.alerts.x.y", []byte(`{"huge":1e400,"big":12345678901234567890,"id53":9007199254740993}`), nil)
	h.run(h.q, rec.handle)
	a := rec.next(t)
	want := map[string]any{"huge": json.Number("1e400"), "big": json.Number("12345678901234567890"), "id53": int64(9007199254740993)}
	if !reflect.DeepEqual(a.Body, want) {
		t.Errorf("body = %#v, want %#v", a.Body, want)
	}
}

// An operator-made consumer with a short ack wait and a low max_deliver: the worker's
// heartbeats keep a long step from being redelivered, and the alert is dead-lettered on the
// consumer's last delivery instead of being dropped by the server.
func TestRunAdoptsAnExistingConsumersLimits(t *testing.T) {
	t.Parallel()
	nc, js := queuetest.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SOAR_ALERTS", Subjects: []string{"soar.alerts.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "SOAR_ALERTS", jetstream.ConsumerConfig{
		Durable: "riposte", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 600 * time.Millisecond, MaxDeliver: 2,
	}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.AckWait, cfg.MaxDeliver = 30*time.Second, 5
	q, err := queue.New(nc, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, nc: nc, js: js, q: q, cfg: cfg}
	var slow atomic.Int32
	rec := newRecorder(func(ctx context.Context, a *queue.Alert, call int) queue.Verdict {
		if a.ID == "slow" {
			slow.Add(1)
			time.Sleep(1500 * time.Millisecond) // well past the consumer's 600ms ack wait
			return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{}`)}}}
		}
		return queue.Verdict{Retry: true, Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{"status":"failed"}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "slow"))
	h.publish("soar.alerts.x.y", []byte(`{}`), hdr(nats.MsgIdHdr, "failing"))
	h.run(q, rec.handle)
	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.exhausted", 1)
	if got := dead[0].Header.Get(queue.HeaderDeliveries); got != "2" {
		t.Errorf("dead-lettered after %s deliveries, want the consumer's max_deliver 2", got)
	}
	h.waitMessages("SOAR_OUTCOMES", "soar.outcomes.p", 2)
	if n := slow.Load(); n != 1 {
		t.Errorf("the slow alert was handled %d times, want 1: heartbeats must beat the consumer's ack wait", n)
	}
}

// A verdict's RetryAfter (a vendor's Retry-After) delays the redelivery beyond the worker's own
// retry delay.
func TestRetryAfterDelaysTheRedelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil) // RetryDelay 20ms
	const after = 700 * time.Millisecond
	var first time.Time
	delay := make(chan time.Duration, 1)
	rec := newRecorder(func(_ context.Context, a *queue.Alert, call int) queue.Verdict {
		if call == 1 {
			first = time.Now()
			return queue.Verdict{Retry: true, RetryAfter: after}
		}
		delay <- time.Since(first)
		return queue.Verdict{Outcomes: []queue.Outcome{{Playbook: "p", JSON: []byte(`{}`)}}}
	})
	h.publish("soar.alerts.x.y", []byte(`{}`), nil)
	h.run(h.q, rec.handle)
	select {
	case d := <-delay:
		if d < after {
			t.Errorf("redelivered after %v, want at least the vendor's %v", d, after)
		}
	case <-time.After(waitFor):
		t.Fatal("never redelivered")
	}
}

// A dead letter must fit in one message even when the alert nearly filled one: the payload is
// cut, and says so, rather than the alert being offered again forever.
func TestDeadLetterOfAnAlmostMaximalAlertFits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *queue.Config) { c.MaxAlertBytes = 1000 })
	payload := bytes.Repeat([]byte("x"), int(h.nc.MaxPayload())-300)
	h.publish("soar.alerts.x.y", payload, hdr(nats.MsgIdHdr, "big-1"))
	h.run(h.q, newRecorder(nil).handle)
	dead := h.waitMessages("SOAR_DLQ", "soar.dlq.too_large", 1)[0]
	if got := dead.Header.Get(queue.HeaderTruncated); got != strconv.Itoa(len(payload)) {
		t.Errorf("%s = %q, want the original size %d", queue.HeaderTruncated, got, len(payload))
	}
	if len(dead.Data) >= len(payload) || !bytes.Equal(dead.Data, payload[:len(dead.Data)]) {
		t.Errorf("dead letter payload is %d bytes; want a prefix of the %d-byte original", len(dead.Data), len(payload))
	}
	h.waitSettled()
}

// An operator who deletes the alerts stream (and with it the consumer) while a worker runs gets
// them back: the worker notices, re-creates them and goes on consuming.
func TestRunRecreatesADeletedStreamAndConsumer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	q, err := queue.New(h.nc, h.cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	h.run(q, rec.handle)
	h.publish("soar.alerts.x.y", []byte(`{"id":"before-delete"}`), nil)
	rec.next(t) // the worker is bound and consuming
	ctx := context.Background()
	if err := h.js.DeleteStream(ctx, "SOAR_ALERTS"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := h.js.Consumer(ctx, "SOAR_ALERTS", "riposte"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not re-create the stream and its consumer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.publish("soar.alerts.x.y", []byte(`{"id":"after-delete"}`), nil)
	deadline = time.Now().Add(30 * time.Second)
	for len(rec.calls()) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("an alert published after the re-creation was never handled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rec.calls()[1].ID; got != "after-delete" {
		t.Errorf("handled %q", got)
	}
}
