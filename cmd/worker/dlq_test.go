package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/queue"
)

// cli runs a worker subcommand in-process against the stack's server, as `worker …` with only
// NATS_URL set.
func (s *stack) cli(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	return runCLI(s.t, s.nc.ConnectedUrl(), args...)
}

func runCLI(t *testing.T, url string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = dispatch(ctx, args, mapEnv(map[string]string{"NATS_URL": url}), nil, &out, &errOut)
	return out.String(), errOut.String(), code
}

// mustCLI is cli that fails the test unless the command exits 0.
func (s *stack) mustCLI(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.cli(args...)
	if code != 0 {
		s.t.Fatalf("worker %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// tableRows are the rows of a printed table, the header left out.
func tableRows(out string) []string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) <= 1 {
		return nil
	}
	return lines[1:]
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not a JSON object: %q: %v", line, err)
		}
		objs = append(objs, o)
	}
	return objs
}

// eventRequests counts the fake HEC's get_event calls.
func eventRequests(hec *checkpoint.Fake) int {
	n := 0
	for _, r := range hec.Requests() {
		if strings.Contains(r.Path, "/event/") {
			n++
		}
	}
	return n
}

// stored returns every message on subject (wildcards allowed), oldest first, read with direct
// gets rather than consumers, so that polling it creates nothing on the server.
func (s *stack) stored(stream, subject string) []*jetstream.RawStreamMsg {
	s.t.Helper()
	str, err := s.js.Stream(context.Background(), stream)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; {
		m, err := str.GetMsg(context.Background(), seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			s.t.Fatalf("read %s: %v", subject, err)
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
}

// outcomeReplaying finds the stored outcome of the replay of dead letter seq.
func (s *stack) outcomeReplaying(subject string, seq uint64) map[string]any {
	s.t.Helper()
	var found map[string]any
	s.eventually(fmt.Sprintf("the outcome of the replay of dead letter %d", seq), func() bool {
		for _, m := range s.stored(s.cfg.OutcomesStream, subject) {
			var o map[string]any
			if json.Unmarshal(m.Data, &o) == nil && o["replay_of"] == fmt.Sprint(seq) {
				found = o
				return true
			}
		}
		return false
	})
	return found
}

// awaitReplayDeadLetter waits for the dead letter of the replay of dead letter seq.
func (s *stack) awaitReplayDeadLetter(seq uint64) *jetstream.RawStreamMsg {
	s.t.Helper()
	var found *jetstream.RawStreamMsg
	s.eventually(fmt.Sprintf("the dead letter of the replay of %d", seq), func() bool {
		for _, m := range s.stored(s.cfg.DLQStream, "soar.dlq.>") {
			if m.Header.Get(queue.HeaderReplayOf) == fmt.Sprint(seq) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// outageStack runs the fast-retry playbook with two deliveries before an alert is exhausted, and
// a breaker that does not open in the test (so that deliveries fail at the vendor, not before).
func outageStack(t *testing.T, tweak func(*settings)) *stack {
	return startStack(t, "testdata/fast-retry", func(st *settings) {
		st.queue.MaxDeliver = 2
		st.breaker.Failures = 1000
		if tweak != nil {
			tweak(st)
		}
	})
}

const phishingSubject = "soar.alerts.checkpoint.phishing"

// An alert exhausted during an outage is listed, shown, and replayed once the vendor is back:
// its journaled first step is not called again, its new outcome says replay_of, and it leaves
// the dead-letter stream. The windows are short so that the replay comes after them, as it does
// an hour after the outage with the default windows.
func TestDLQExhaustedAlertIsReplayedAfterRecovery(t *testing.T) {
	t.Parallel()
	const window = 500 * time.Millisecond
	s := outageStack(t, func(st *settings) { st.queue.DuplicateWindow = window })
	s.hec.FailNextWith("/action/entity", -1, checkpoint.Failure{Status: 503, Message: "HEC is down for maintenance"})
	s.publish(phishingSubject, "outage-1", phishing("outage-1", "ev-1", "ent-outage"), map[string]string{"X-Producer": "siem-7"})
	dl := s.await("SOAR_DLQ", "soar.dlq.exhausted")
	s.settled()
	seq := fmt.Sprint(dl.Sequence)

	// list, as a table and as JSON
	rows := tableRows(s.mustCLI("dlq", "list"))
	if len(rows) != 1 {
		t.Fatalf("dlq list rows = %q, want one", rows)
	}
	for _, want := range []string{seq, "exhausted", phishingSubject, "outage-1", "fast-quarantine/quarantine:", "HEC is down for maintenance"} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("dlq list row %q lacks %q", rows[0], want)
		}
	}
	objs := jsonLines(t, s.mustCLI("dlq", "list", "--json"))
	if len(objs) != 1 {
		t.Fatalf("dlq list --json = %v, want one object", objs)
	}
	j := objs[0]
	if j["seq"] != float64(dl.Sequence) || j["reason"] != "exhausted" || j["subject"] != phishingSubject || j["alert_id"] != "outage-1" ||
		!strings.Contains(fmt.Sprint(j["error"]), "HEC is down for maintenance") || j["original_msg_id"] != "outage-1" || j["deliveries"] != float64(2) {
		t.Errorf("dlq list --json = %v", j)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(j["time"])); err != nil {
		t.Errorf("time %v: %v", j["time"], err)
	}

	// filters
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"--reason", "exhausted"}, 1}, {[]string{"--reason", "invalid"}, 0}, {[]string{"--reason", "invalid,exhausted"}, 1},
		{[]string{"--subject", "soar.alerts.checkpoint.*"}, 1}, {[]string{"--subject", "soar.alerts.>"}, 1},
		{[]string{"--subject", "soar.alerts.gravityzone.>"}, 0}, {[]string{"--subject", "soar.alerts.checkpoint"}, 0},
		{[]string{"--alert-id", "outage-1"}, 1}, {[]string{"--alert-id", "outage-2"}, 0},
		{[]string{"--since", "1h"}, 1}, {[]string{"--until", "1h"}, 0}, {[]string{"--since", future}, 0},
		{[]string{"--until", future, "--reason", "exhausted", "--alert-id", "outage-1"}, 1},
	} {
		if got := jsonLines(t, s.mustCLI(append([]string{"dlq", "list", "--json"}, tt.args...)...)); len(got) != tt.want {
			t.Errorf("dlq list %v: %d dead letters, want %d", tt.args, len(got), tt.want)
		}
	}

	// show: headers, detail, the last outcome and the payload, pretty-printed
	shown := s.mustCLI("dlq", "show", seq)
	for _, want := range []string{
		"dead letter " + seq, "reason:          exhausted", "detail:          a step kept failing", "alert id:        outage-1",
		"headers:", "X-Producer: siem-7", "Riposte-Original-Msg-Id: outage-1", "last outcome:", `"status": "failed"`,
		`"playbook": "fast-quarantine"`, "payload (", `"eventId": "ev-1"`,
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, shown)
		}
	}
	var full map[string]any
	if err := json.Unmarshal([]byte(s.mustCLI("dlq", "show", "--json", seq)), &full); err != nil {
		t.Fatalf("dlq show --json: %v", err)
	}
	if p, _ := full["payload"].(map[string]any); p["entityId"] != "ent-outage" || full["last_outcome"] == nil {
		t.Errorf("dlq show --json = %v", full)
	}

	// a dry run replays nothing
	out := s.mustCLI("dlq", "replay", "--dry-run", "--reason", "exhausted")
	if !strings.Contains(out, seq+"  would replay to "+phishingSubject) {
		t.Errorf("dry run printed %q", out)
	}
	if n := s.count(s.cfg.AlertsStream, phishingSubject); n != 1 || s.deadLetters() != 1 {
		t.Fatalf("after a dry run: %d alerts, %d dead letters; want 1 and 1", n, s.deadLetters())
	}

	// the vendor is back, and the windows have passed
	s.hec.ClearFailures()
	time.Sleep(time.Until(dl.Time.Add(window + dupMargin + 100*time.Millisecond)))
	out = s.mustCLI("dlq", "replay", seq)
	if !strings.Contains(out, seq+"  replayed to "+phishingSubject) || !strings.Contains(out, "(alert outage-1)") || !strings.Contains(out, "dead letter removed") {
		t.Errorf("replay printed %q", out)
	}
	o := s.outcomeReplaying("soar.outcomes.fast-quarantine", dl.Sequence)
	s.settled()
	steps := o["steps"].([]any)
	event, quarantine := steps[0].(map[string]any), steps[1].(map[string]any)
	if o["status"] != "succeeded" || o["alert_id"] != "outage-1" || event["replayed"] != true || quarantine["status"] != "succeeded" {
		t.Errorf("replayed outcome = %v", o)
	}
	if n := eventRequests(s.hec); n != 1 {
		t.Errorf("get_event called %d times in all, want 1: the replay reuses the journal", n)
	}
	if n := s.deadLetters(); n != 0 {
		t.Errorf("%d dead letters after the replay, want 0", n)
	}
	replayed := s.await(s.cfg.AlertsStream, phishingSubject)
	if replayed.Header.Get("Nats-Msg-Id") != "outage-1" || replayed.Header.Get(queue.HeaderReplayOf) != seq ||
		replayed.Header.Get("X-Producer") != "siem-7" || replayed.Header.Get(queue.HeaderDLQReason) != "" || replayed.Header.Get(queue.HeaderLastOutcome) != "" {
		t.Errorf("replayed alert headers = %v", replayed.Header)
	}

	// the outcomes of the alert: the replay's first, then the exhausted run's
	rows = tableRows(s.mustCLI("outcomes", "--alert-id", "outage-1"))
	if len(rows) != 2 || !strings.Contains(rows[0], "succeeded (replay of "+seq+")") || !strings.Contains(rows[1], "failed") {
		t.Errorf("outcomes --alert-id outage-1 =\n%s", strings.Join(rows, "\n"))
	}
}

// Inside the alerts stream's duplicate window (an hour by default) JetStream would drop the
// republished alert as a duplicate of the original: it is republished without Nats-Msg-Id, its
// id carried in Riposte-Alert-Id, and keeps its id and journal, wherever the id came from.
func TestDLQReplayInsideTheDuplicateWindow(t *testing.T) {
	t.Parallel()
	s := outageStack(t, nil)
	s.hec.FailNextWith("/action/entity", -1, checkpoint.Failure{Status: 503})
	s.publish(phishingSubject, "in-body", phishing("in-body", "ev-1", "ent-a"), nil)
	s.publish(phishingSubject, "header-only", phishing("some-other-id", "ev-1", "ent-b"), nil)
	s.eventually("two dead letters", func() bool { return s.deadLetters() == 2 })
	s.settled()
	dls := map[string]uint64{}
	for _, m := range s.stored(s.cfg.DLQStream, "soar.dlq.exhausted") {
		dls[m.Header.Get(queue.HeaderAlertID)] = m.Sequence
	}
	s.hec.ClearFailures()

	// A dry run says so beforehand.
	out := s.mustCLI("dlq", "replay", "--dry-run", "--all")
	for _, id := range []string{"in-body", "header-only"} {
		want := fmt.Sprintf("%d  would replay to %s (alert %s, exhausted); without Nats-Msg-Id (its id travels in Riposte-Alert-Id)", dls[id], phishingSubject, id)
		if !strings.Contains(out, want) {
			t.Errorf("dry run printed %q; want %q in it", out, want)
		}
	}

	out, errOut, code := s.cli("dlq", "replay", "--reason", "exhausted")
	if code != 0 || !strings.Contains(errOut, "2 replayed") {
		t.Errorf("replay: exit %d, stderr %q; want both replayed", code, errOut)
	}
	for _, id := range []string{"in-body", "header-only"} {
		o := s.outcomeReplaying("soar.outcomes.fast-quarantine", dls[id])
		if o["status"] != "succeeded" || o["alert_id"] != id || o["steps"].([]any)[0].(map[string]any)["replayed"] != true {
			t.Errorf("replayed outcome of %s = %v", id, o)
		}
	}
	s.settled()
	if !strings.Contains(out, "without Nats-Msg-Id") || !strings.Contains(out, "dead letter removed") {
		t.Errorf("replay printed %q", out)
	}
	if n := eventRequests(s.hec); n != 2 {
		t.Errorf("get_event called %d times, want 2 (once per alert; the replays reused the journal)", n)
	}
	if n := s.deadLetters(); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// A replay during the outage that is dead-lettered again loses nothing: its new dead letter is
// one of its own, not dropped as a duplicate of the first, which the replay removed.
func TestDLQReplayDuringTheOutageLosesNothing(t *testing.T) {
	t.Parallel()
	s := outageStack(t, nil)
	s.hec.FailNextWith("/action/entity", -1, checkpoint.Failure{Status: 503})
	s.publish(phishingSubject, "", phishing("still-down", "ev-1", "ent-c"), nil) // its id is in its body
	dl := s.await("SOAR_DLQ", "soar.dlq.exhausted")
	s.settled()
	out := s.mustCLI("dlq", "replay", fmt.Sprint(dl.Sequence))
	if !strings.Contains(out, "dead letter removed") {
		t.Errorf("replay printed %q", out)
	}
	o := s.outcomeReplaying("soar.outcomes.fast-quarantine", dl.Sequence)
	if o["status"] != "failed" {
		t.Errorf("the replay's outcome = %v, want failed (HEC is still down)", o)
	}
	s.eventually("the replay dead-lettered again", func() bool {
		got := s.stored(s.cfg.DLQStream, "soar.dlq.exhausted")
		return len(got) == 1 && got[0].Header.Get(queue.HeaderAlertID) == "still-down" && got[0].Header.Get(queue.HeaderReplayOf) == fmt.Sprint(dl.Sequence)
	})
	s.settled()
}

// A non-JSON alert replayed is dead-lettered again with its reason, payload and headers: nothing
// is lost, with or without --keep, with or without a Nats-Msg-Id still in its window.
func TestDLQReplayOfInvalidAlertDeadLettersItAgain(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	const body = "this is \x00 not json {"
	s.publish(phishingSubject, "", body, map[string]string{"X-Producer": "siem-9"})
	first := s.await("SOAR_DLQ", "soar.dlq.invalid")
	s.settled()

	out := s.mustCLI("dlq", "replay", "--keep", fmt.Sprint(first.Sequence))
	if !strings.Contains(out, "dead letter kept (--keep)") {
		t.Errorf("replay --keep printed %q", out)
	}
	second := s.awaitReplayDeadLetter(first.Sequence)
	out = s.mustCLI("dlq", "replay", fmt.Sprint(second.Sequence))
	if !strings.Contains(out, "dead letter removed") {
		t.Errorf("replay printed %q", out)
	}
	third := s.awaitReplayDeadLetter(second.Sequence)
	s.settled()
	for _, dl := range []*jetstream.RawStreamMsg{second, third} {
		if string(dl.Data) != body || dl.Header.Get("X-Producer") != "siem-9" || dl.Header.Get(queue.HeaderDLQReason) != "invalid" ||
			!strings.Contains(dl.Header.Get(queue.HeaderDLQDetail), "not valid JSON") {
			t.Errorf("dead letter %d of the replay = %q %v", dl.Sequence, dl.Data, dl.Header)
		}
	}
	if n := s.deadLetters(); n != 2 {
		t.Errorf("%d dead letters, want 2 (the one kept by --keep, and the last replay's)", n)
	}

	// An invalid alert whose Nats-Msg-Id is still in the alerts stream's window: its id does
	// not matter (no step of it ever ran), so it is republished without it, the id kept in
	// Riposte-Original-Msg-Id.
	s.publish(phishingSubject, "bad-7", "[1, 2", nil)
	s.eventually("the dead letter of bad-7", func() bool { return s.count(s.cfg.DLQStream, "soar.dlq.invalid") == 3 })
	s.settled()
	rows := jsonLines(t, s.mustCLI("dlq", "list", "--json", "--alert-id", "bad-7"))
	if len(rows) != 1 {
		t.Fatalf("dead letters of bad-7 = %v", rows)
	}
	seq := uint64(rows[0]["seq"].(float64))
	out = s.mustCLI("dlq", "replay", "--alert-id", "bad-7")
	if !strings.Contains(out, "without Nats-Msg-Id") || !strings.Contains(out, "dead letter removed") {
		t.Errorf("replay printed %q", out)
	}
	again := s.awaitReplayDeadLetter(seq)
	if string(again.Data) != "[1, 2" || again.Header.Get(queue.HeaderOriginalMsgID) != "bad-7" {
		t.Errorf("dead letter of the replay = %q %v", again.Data, again.Header)
	}
	if n := s.deadLetters(); n != 3 {
		t.Errorf("%d dead letters, want 3", n)
	}
}

// A dead letter whose payload was cut to fit is replayed whole from the alerts stream while the
// alerts stream still has it, and not replayed at all when it does not.
func TestDLQReplayOfTruncatedDeadLetter(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	whole := `{"id":"big-1","note":"` + strings.Repeat("x", 2000) + `"}`
	orig := s.publish("soar.alerts.siem.big", "big-1", whole, nil) // unmatched: acked, kept in the stream
	s.settled()
	deadLetter := func(alertsSeq uint64) uint64 {
		m := nats.NewMsg("soar.dlq.too_large")
		m.Data = []byte(whole[:100])
		for k, v := range map[string]string{
			"Nats-Msg-Id": fmt.Sprintf("big-1@%d:dlq:too_large", alertsSeq), queue.HeaderDLQReason: "too_large",
			queue.HeaderDLQDetail: "alert is 2021 bytes, more than the 1000 allowed", queue.HeaderAlertID: "big-1",
			queue.HeaderSubject: "soar.alerts.siem.big", queue.HeaderStreamSeq: fmt.Sprint(alertsSeq),
			queue.HeaderOriginalMsgID: "big-1", queue.HeaderTruncated: fmt.Sprint(len(whole)),
		} {
			m.Header.Set(k, v)
		}
		ack, err := s.js.PublishMsg(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	gone := deadLetter(999)
	out, _, code := s.cli("dlq", "replay", fmt.Sprint(gone))
	if code != 1 || !strings.Contains(out, "not replayed: it was cut to fit the dead-letter stream (100 bytes kept of "+fmt.Sprint(len(whole))+") and the original is no longer in SOAR_ALERTS at sequence 999") {
		t.Errorf("replay of a cut dead letter without its original: exit %d, %q", code, out)
	}
	cut := deadLetter(orig.Sequence)
	out = s.mustCLI("dlq", "replay", "--keep", fmt.Sprint(cut))
	if !strings.Contains(out, "replayed to soar.alerts.siem.big") {
		t.Errorf("replay printed %q", out)
	}
	s.settled()
	replayed := s.await(s.cfg.AlertsStream, "soar.alerts.siem.big")
	if string(replayed.Data) != whole || replayed.Header.Get(queue.HeaderReplayOf) != fmt.Sprint(cut) {
		t.Errorf("replayed %d bytes with headers %v, want the whole original", len(replayed.Data), replayed.Header)
	}
}

func TestDLQCommandErrors(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	s.publish(phishingSubject, "", "nope", nil)
	s.await("SOAR_DLQ", "soar.dlq.invalid")
	s.settled()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"dlq"}, 2, "usage: worker dlq"},
		{[]string{"dlq", "frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"dlq", "show", "abc"}, 1, `bad sequence "abc"`},
		{[]string{"dlq", "show", "-1"}, 2, ""},
		{[]string{"dlq", "show"}, 1, "give one dead letter's sequence"},
		{[]string{"dlq", "show", "999"}, 1, "no dead letter at sequence 999 in SOAR_DLQ"},
		{[]string{"dlq", "replay", "999"}, 1, "1 dead letter(s) not replayed"},
		{[]string{"dlq", "replay", "0"}, 1, `bad sequence "0"`},
		{[]string{"dlq", "replay"}, 1, "say what to replay"},
		{[]string{"dlq", "replay", "1", "--reason", "invalid"}, 1, "not both"},
		{[]string{"dlq", "delete", "999"}, 1, "not deleted"},
		{[]string{"dlq", "list", "--reason", "broken"}, 1, "the reasons are invalid, too_large, exhausted, unpublishable"},
		{[]string{"dlq", "list", "--subject", "soar.>.x"}, 1, `">" may only be the last token`},
		{[]string{"dlq", "list", "--since", "yesterday"}, 2, "neither an RFC 3339 time"},
		{[]string{"dlq", "list", "--since", "1h", "--until", "2h"}, 1, "is before --since"},
		{[]string{"dlq", "list", "--dlq-stream", "NOPE"}, 1, `no stream "NOPE"`},
		{[]string{"dlq", "list", "--nats-url", "nats://127.0.0.1:1"}, 1, "connect to nats://127.0.0.1:1"},
	} {
		out, errOut, code := s.cli(tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("worker %s: exit %d, output %q; want exit %d and %q", strings.Join(tt.args, " "), code, out+errOut, tt.code, tt.want)
		}
	}
	// The replay of an unknown sequence says which, on its line.
	if out, _, _ := s.cli("dlq", "replay", "999"); !strings.Contains(out, "999  not replayed: no dead letter at sequence 999") {
		t.Errorf("replay 999 printed %q", out)
	}
	if n := s.deadLetters(); n != 1 {
		t.Errorf("%d dead letters, want the one untouched", n)
	}
}

func TestSubjectFilters(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		want            bool
	}{
		{"a.b", "a.b", true}, {"a.b", "a.c", false}, {"a.*", "a.b", true}, {"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true}, {"a.>", "a", false}, {"*.b", "a.b", true}, {">", "a", true}, {"a.b.c", "a.b", false},
	} {
		toks, err := parseSubjectFilter(tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := subjectMatches(toks, tt.subject); got != tt.want {
			t.Errorf("%s matches %s = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
	for _, bad := range []string{"", "a..b", "a.>.b", "a.b*", "a b"} {
		if _, err := parseSubjectFilter(bad); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
}
