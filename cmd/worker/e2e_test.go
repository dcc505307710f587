package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

const shippedPlaybooks = "../../playbooks"

func phishing(id, event, entity string) string {
	return fmt.Sprintf(`{"id":%q,"type":"phishing","confidenceIndicator":"malicious","eventId":%q,"entityId":%q}`, id, event, entity)
}

func TestMatchingAlertQuarantinesAndPublishesOneOutcome(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	before := time.Now().UTC().Add(-time.Second)
	s.publish("soar.alerts.checkpoint.phishing", "alert-1", phishing("ignored-body-id", "ev-1", "ent-1"), nil)

	m := s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine")
	s.settled()
	if got := m.Header.Get(nats.MsgIdHdr); got != "alert-1:phishing-quarantine" {
		t.Errorf("outcome Nats-Msg-Id = %q, want alert-1:phishing-quarantine", got)
	}
	o := outcomeOf(t, m)
	for field, want := range map[string]any{
		"alert_id": "alert-1", "subject": "soar.alerts.checkpoint.phishing",
		"playbook": "phishing-quarantine", "status": "succeeded", "deliveries": json.Number("1"),
	} {
		if o[field] != want {
			t.Errorf("outcome %s = %#v, want %#v", field, o[field], want)
		}
	}
	if w, _ := o["worker"].(string); w == "" {
		t.Errorf("outcome worker is empty")
	}
	started, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(o["started_at"]))
	finished, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(o["finished_at"]))
	if err1 != nil || err2 != nil || started.Before(before) || finished.Before(started) || finished.After(time.Now().Add(time.Second)) {
		t.Errorf("outcome times started_at=%v finished_at=%v are not RFC 3339 times in order", o["started_at"], o["finished_at"])
	}
	steps, _ := o["steps"].([]any)
	if len(steps) != 2 {
		t.Fatalf("outcome has %d steps, want 2: %v", len(steps), o["steps"])
	}
	event, quarantine := steps[0].(map[string]any), steps[1].(map[string]any)
	wantKeys := []string{"action", "attempts", "duration_ms", "error", "id", "output", "status"}
	for _, st := range []map[string]any{event, quarantine} {
		if keys := sortedKeys(st); !reflect.DeepEqual(keys, wantKeys) {
			t.Errorf("step fields = %v, want %v", keys, wantKeys)
		}
		if st["status"] != "succeeded" || st["attempts"] != json.Number("1") || st["error"] != "" {
			t.Errorf("step %v: status %v attempts %v error %q, want succeeded 1 \"\"", st["id"], st["status"], st["attempts"], st["error"])
		}
	}
	if event["id"] != "event" || event["action"] != "checkpoint.get_event" {
		t.Errorf("first step = %v %v", event["id"], event["action"])
	}
	if out, _ := event["output"].(map[string]any); out["eventId"] != "ev-1" || out["state"] != "new" {
		t.Errorf("get_event output = %v", event["output"])
	}
	if quarantine["id"] != "quarantine" || quarantine["action"] != "checkpoint.quarantine_entity" {
		t.Errorf("second step = %v %v", quarantine["id"], quarantine["action"])
	}
	tasks, _ := quarantine["output"].(map[string]any)["tasks"].([]any)
	if len(tasks) != 1 {
		t.Fatalf("quarantine output tasks = %v", quarantine["output"])
	}
	task := tasks[0].(map[string]any)
	if task["entityId"] != "ent-1" {
		t.Errorf("task entityId = %v", task["entityId"])
	}
	if id, ok := task["taskId"].(string); !ok || id == "" {
		t.Errorf("task taskId = %#v, want a non-empty string", task["taskId"])
	}

	reqs := entityRequests(t, s.hec)
	if len(reqs) != 1 {
		t.Fatalf("fake HEC got %d entity actions, want exactly 1", len(reqs))
	}
	want := map[string]any{"requestData": map[string]any{
		"entityIds":         []any{"ent-1"},
		"entityActionName":  []any{"quarantine"},
		"entityActionParam": []any{"riposte: malicious phishing, event ev-1"},
	}}
	if !reflect.DeepEqual(reqs[0], want) {
		t.Errorf("quarantine request body = %v, want %v", reqs[0], want)
	}
	if got := s.hec.EntityState("ent-1"); got != "quarantined" {
		t.Errorf("fake HEC entity state = %q, want quarantined", got)
	}
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"); n != 1 {
		t.Errorf("%d outcomes stored, want 1", n)
	}
}

func TestIfFalseSkipsTheStep(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	s.publish("soar.alerts.checkpoint.phishing", "alert-done", phishing("x", "ev-done", "ent-2"), nil)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	s.settled()
	steps := o["steps"].([]any)
	if o["status"] != "succeeded" || steps[1].(map[string]any)["status"] != "skipped" || steps[1].(map[string]any)["output"] != nil {
		t.Errorf("outcome = %v, want succeeded with quarantine skipped and no output", o)
	}
	if n := len(entityRequests(t, s.hec)); n != 0 {
		t.Errorf("fake HEC got %d entity actions, want none", n)
	}
}

func TestUnmatchedAlert(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	// One alert misses every subject filter, the other matches a filter but not the condition.
	s.publish("soar.alerts.siem.login", "login-1", `{"user":"alice"}`, nil)
	s.publish("soar.alerts.checkpoint.dlp", "", `{"id":"dlp-7","type":"dlp","confidenceIndicator":"malicious"}`, nil)
	s.settled()
	s.eventually("two unmatched outcomes", func() bool { return s.count("SOAR_OUTCOMES", "soar.outcomes.unmatched") == 2 })
	subjects := map[string]string{}
	for _, m := range s.all("SOAR_OUTCOMES", "soar.outcomes.unmatched") {
		var o map[string]any
		if err := json.Unmarshal(m.Data(), &o); err != nil {
			t.Fatal(err)
		}
		if o["playbook"] != "" || o["status"] != "unmatched" {
			t.Errorf("unmatched outcome = %v", o)
		}
		if steps, ok := o["steps"].([]any); !ok || len(steps) != 0 {
			t.Errorf("unmatched steps = %#v, want []", o["steps"])
		}
		if got, want := m.Headers().Get(nats.MsgIdHdr), fmt.Sprint(o["alert_id"])+":"; got != want { // docs/playbooks.md: <alert_id>:<playbook>, playbook empty
			t.Errorf("Nats-Msg-Id = %q, want %q", got, want)
		}
		subjects[fmt.Sprint(o["alert_id"])] = fmt.Sprint(o["subject"])
	}
	want := map[string]string{"login-1": "soar.alerts.siem.login", "dlp-7": "soar.alerts.checkpoint.dlp"}
	if !reflect.DeepEqual(subjects, want) {
		t.Errorf("unmatched outcomes (alert id → subject) = %v, want %v", subjects, want)
	}
	if n := len(s.hec.Requests()); n != 0 {
		t.Errorf("fake HEC got %d requests, want none", n)
	}
}

func TestNotJSONGoesToDeadLetterWithReason(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	body := "this is \x00 not json {"
	s.publish("soar.alerts.checkpoint.phishing", "bad-1", body, map[string]string{"X-Producer": "siem-7"})
	m := s.await("SOAR_DLQ", "soar.dlq.invalid")
	s.settled()
	if string(m.Data) != body {
		t.Errorf("dead letter payload = %q, want the original %q", m.Data, body)
	}
	if r := m.Header.Get("Riposte-Dlq-Reason"); r != "invalid" {
		t.Errorf("Riposte-Dlq-Reason = %q, want invalid", r)
	}
	if d := m.Header.Get("Riposte-Dlq-Detail"); !strings.Contains(d, "not valid JSON") {
		t.Errorf("Riposte-Dlq-Detail = %q", d)
	}
	if m.Header.Get("X-Producer") != "siem-7" || m.Header.Get("Riposte-Original-Msg-Id") != "bad-1" {
		t.Errorf("original headers not kept: %v", m.Header)
	}
	// Terminated, not retried: no outcome, one dead letter, nothing left to deliver.
	if n := s.count("SOAR_DLQ", "soar.dlq.invalid"); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.unmatched"); n != 0 {
		t.Errorf("an outcome was published for a broken alert")
	}
}

func TestRetryableVendorErrorThenSuccess(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	s.hec.FailNext("/action/entity", 2, 503, "service temporarily unavailable")
	s.publish("soar.alerts.checkpoint.phishing", "retry-1", phishing("x", "ev-1", "ent-3"), nil)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	s.settled()
	q := o["steps"].([]any)[1].(map[string]any)
	if o["status"] != "succeeded" || q["status"] != "succeeded" || q["attempts"] != json.Number("3") || q["error"] != "" {
		t.Errorf("outcome = %v, want quarantine succeeded after 3 attempts", o)
	}
	if n := len(entityRequests(t, s.hec)); n != 3 {
		t.Errorf("fake HEC got %d entity actions, want 3 (two refused, one accepted)", n)
	}
}

func TestPermanentVendorErrorFailsAtOnce(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	s.hec.FailNext("/action/entity", 1, 400, "Entity ent-4 cannot be quarantined")
	s.publish("soar.alerts.checkpoint.phishing", "perm-1", phishing("x", "ev-1", "ent-4"), nil)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	s.settled() // acked, not redelivered
	q := o["steps"].([]any)[1].(map[string]any)
	if o["status"] != "failed" || q["status"] != "failed" || q["attempts"] != json.Number("1") {
		t.Errorf("outcome = %v, want quarantine failed after 1 attempt", o)
	}
	if e, _ := q["error"].(string); !strings.Contains(e, "Entity ent-4 cannot be quarantined") || !strings.Contains(e, "400") {
		t.Errorf("step error %q lacks the vendor's status and message", e)
	}
	if strings.Contains(fmt.Sprint(o), testAccessKey) {
		t.Errorf("outcome leaks the HEC access key")
	}
	if n := len(entityRequests(t, s.hec)); n != 1 {
		t.Errorf("fake HEC got %d entity actions, want 1", n)
	}
}

func TestDuplicatePublishGivesOneOutcome(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	first := s.publish("soar.alerts.checkpoint.phishing", "dup-1", phishing("x", "ev-1", "ent-5"), nil)
	second := s.publish("soar.alerts.checkpoint.phishing", "dup-1", phishing("x", "ev-1", "ent-5"), nil)
	if first.Duplicate || !second.Duplicate {
		t.Errorf("PubAck duplicate flags = %v, %v; want false, true", first.Duplicate, second.Duplicate)
	}
	s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine")
	s.settled()
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"); n != 1 {
		t.Errorf("%d outcomes, want 1", n)
	}
	if n := len(entityRequests(t, s.hec)); n != 1 {
		t.Errorf("fake HEC got %d entity actions, want 1", n)
	}
}

// A step that runs out of retries leaves the alert for redelivery; on the next delivery the step
// that already succeeded is not called again.
func TestRedeliveryReusesCompletedSteps(t *testing.T) {
	t.Parallel()
	s := startStack(t, "testdata/fast-retry", nil)
	s.hec.FailNext("/action/entity", 2, 503, "busy") // both attempts of the first delivery
	s.publish("soar.alerts.checkpoint.phishing", "redeliver-1", phishing("x", "ev-1", "ent-6"), nil)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.fast-quarantine"))
	s.settled()
	if o["status"] != "succeeded" || o["deliveries"] != json.Number("2") {
		t.Errorf("outcome = %v, want succeeded on delivery 2", o)
	}
	gets := 0
	for _, r := range s.hec.Requests() {
		if strings.Contains(r.Path, "/event/") {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("get_event called %d times over two deliveries, want 1 (journal)", gets)
	}
	if n := s.count("SOAR_OUTCOMES", "soar.outcomes.fast-quarantine"); n != 1 {
		t.Errorf("%d outcomes, want 1", n)
	}
}

func TestExhaustedDeliveriesDeadLetterWithLastOutcome(t *testing.T) {
	t.Parallel()
	s := startStack(t, "testdata/fast-retry", func(st *settings) { st.queue.MaxDeliver = 2 })
	s.hec.FailNext("/action/entity", 100, 503, "still down")
	s.publish("soar.alerts.checkpoint.phishing", "exhaust-1", phishing("x", "ev-1", "ent-7"), nil)
	dl := s.await("SOAR_DLQ", "soar.dlq.exhausted")
	s.settled()
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.fast-quarantine"))
	if o["status"] != "failed" || o["deliveries"] != json.Number("2") {
		t.Errorf("final outcome = %v, want failed on delivery 2", o)
	}
	var last []map[string]any
	if err := json.Unmarshal([]byte(dl.Header.Get("Riposte-Last-Outcome")), &last); err != nil || len(last) != 1 || last[0]["status"] != "failed" {
		t.Errorf("Riposte-Last-Outcome = %q (%v)", dl.Header.Get("Riposte-Last-Outcome"), err)
	}
	if r, d := dl.Header.Get("Riposte-Dlq-Reason"), dl.Header.Get("Riposte-Dlq-Detail"); r != "exhausted" || !strings.Contains(d, "2 deliveries") {
		t.Errorf("Riposte-Dlq-Reason = %q, Riposte-Dlq-Detail = %q", r, d)
	}
	if n := len(entityRequests(t, s.hec)); n != 4 {
		t.Errorf("fake HEC got %d entity actions, want 4 (2 attempts × 2 deliveries)", n)
	}
}

// An outcome larger than the server's max payload could never be stored, and its alert never
// acked: it is published with the step outputs left out instead.
func TestOversizedOutcomeIsPublishedWithoutOutputs(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	s.hec.AddEvent(map[string]any{"eventId": "ev-huge", "state": "new", "data": strings.Repeat("x", 1200<<10)})
	s.publish("soar.alerts.checkpoint.phishing", "huge-1", phishing("x", "ev-huge", "ent-8"), nil)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	s.settled()
	steps := o["steps"].([]any)
	event, quarantine := steps[0].(map[string]any), steps[1].(map[string]any)
	if o["status"] != "succeeded" || quarantine["status"] != "succeeded" {
		t.Errorf("outcome = %v", o)
	}
	if out, _ := event["output"].(map[string]any); out["truncated"] != true {
		t.Errorf("event output = %v, want {truncated: true}", event["output"])
	}
}

func TestNotificationStep(t *testing.T) {
	t.Parallel()
	s := startStack(t, "testdata/notify", nil)
	sub, err := s.nc.SubscribeSync("soc.notifications.>")
	if err != nil {
		t.Fatal(err)
	}
	s.publish("soar.alerts.checkpoint.phishing", "notify-1", phishing("x", "ev-1", "ent-9"), nil)
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	var note map[string]any
	if err := json.Unmarshal(m.Data, &note); err != nil {
		t.Fatalf("notification %q is not JSON: %v", m.Data, err)
	}
	if note["text"] != "quarantined ent-9 for notify-1" || note["task"] == "" || note["task"] == nil {
		t.Errorf("notification = %v", note)
	}
	if m.Header.Get("X-Riposte-Playbook") != "quarantine-and-notify" || m.Header.Get(nats.MsgIdHdr) != "notify-1:notify" {
		t.Errorf("notification headers = %v", m.Header)
	}
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.quarantine-and-notify"))
	s.settled()
	if st := o["steps"].([]any)[1].(map[string]any); st["status"] != "succeeded" || st["output"].(map[string]any)["subject"] != "soc.notifications.phishing" {
		t.Errorf("notify step = %v", st)
	}
}
