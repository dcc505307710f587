package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// alertIDs are the alert ids of `outcomes --json` lines, in order.
func alertIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	for _, o := range jsonLines(t, out) {
		ids = append(ids, fmt.Sprint(o["alert_id"]))
	}
	return ids
}

// Outcomes are found by alert id, playbook, status and time, newest first, as a table or JSON,
// and --follow prints the new ones as they are stored.
func TestOutcomesSearch(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	// One at a time, so that they are stored in this order.
	s.publish(phishingSubject, "o-ok", phishing("o-ok", "ev-1", "ent-1"), nil)
	first := s.await(s.cfg.OutcomesStream, "soar.outcomes.phishing-quarantine")
	s.hec.FailNext("/action/entity", 1, 400, "Entity ent-2 cannot be quarantined")
	s.publish(phishingSubject, "o-failed", phishing("o-failed", "ev-1", "ent-2"), nil)
	s.eventually("two phishing outcomes", func() bool { return s.count(s.cfg.OutcomesStream, "soar.outcomes.phishing-quarantine") == 2 })
	s.publish("soar.alerts.siem.login", "o-unmatched", `{"user":"alice"}`, nil)
	s.await(s.cfg.OutcomesStream, "soar.outcomes.unmatched")
	s.settled()
	// Just after the first outcome: --until takes it, --since the two later ones.
	between := first.Time.Add(time.Nanosecond).Format(time.RFC3339Nano)

	for _, tt := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"o-unmatched", "o-failed", "o-ok"}},
		{[]string{"--alert-id", "o-failed"}, []string{"o-failed"}},
		{[]string{"--alert-id", "nobody"}, nil},
		{[]string{"--playbook", "phishing-quarantine"}, []string{"o-failed", "o-ok"}},
		{[]string{"--playbook", "unmatched"}, []string{"o-unmatched"}},
		{[]string{"--playbook", "unmatched,phishing-quarantine", "--limit", "2"}, []string{"o-unmatched", "o-failed"}},
		{[]string{"--playbook", "gravityzone-incident-containment"}, nil},
		{[]string{"--status", "failed"}, []string{"o-failed"}},
		{[]string{"--status", "succeeded,unmatched"}, []string{"o-unmatched", "o-ok"}},
		{[]string{"--since", between}, []string{"o-unmatched", "o-failed"}},
		{[]string{"--until", between}, []string{"o-ok"}},
		{[]string{"--since", "1h"}, []string{"o-unmatched", "o-failed", "o-ok"}},
		{[]string{"--until", "1h"}, nil},
		{[]string{"--limit", "1"}, []string{"o-unmatched"}},
		{[]string{"--status", "succeeded", "--playbook", "phishing-quarantine", "--alert-id", "o-ok", "--since", "10m"}, []string{"o-ok"}},
	} {
		got := alertIDs(t, s.mustCLI(append([]string{"outcomes", "--json"}, tt.args...)...))
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("outcomes %v = %v, want %v", tt.args, got, tt.want)
		}
	}

	// The table: time, alert id, playbook, status, steps, first error.
	rows := tableRows(s.mustCLI("outcomes"))
	if len(rows) != 3 {
		t.Fatalf("outcomes table rows = %q", rows)
	}
	for i, want := range [][]string{
		{"o-unmatched", "  -  ", "unmatched"},
		{"o-failed", "phishing-quarantine", "failed", "event:succeeded,quarantine:failed", "quarantine: ", "Entity ent-2 cannot be quarantined"},
		{"o-ok", "phishing-quarantine", "succeeded", "event:succeeded,quarantine:succeeded"},
	} {
		for _, w := range want {
			if !strings.Contains(rows[i], w) {
				t.Errorf("row %d %q lacks %q", i, rows[i], w)
			}
		}
		if _, err := time.Parse(time.RFC3339, strings.Fields(rows[i])[0]); err != nil {
			t.Errorf("row %d does not start with its time: %v", i, err)
		}
	}

	// --follow: what is there, then the new ones as they come.
	for _, asJSON := range []bool{false, true} {
		args := []string{"outcomes", "--follow", "--playbook", "phishing-quarantine", "--alert-id", "o-late-" + fmt.Sprint(asJSON)}
		if asJSON {
			args = append(args, "--json")
		}
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- dispatch(ctx, args, mapEnv(map[string]string{"NATS_URL": s.nc.ConnectedUrl()}), nil, &out, &errOut)
		}()
		s.eventually("following", func() bool { return strings.Contains(errOut.String(), "following") })
		id := "o-late-" + fmt.Sprint(asJSON)
		s.publish(phishingSubject, id, phishing(id, "ev-done", "ent-3"), nil)
		s.eventually("the new outcome printed", func() bool { return strings.Contains(out.String(), id) })
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("outcomes --follow exit %d: %s", code, errOut.String())
		}
		if asJSON {
			if ids := alertIDs(t, out.String()); len(ids) != 1 || ids[0] != id {
				t.Errorf("outcomes --follow --json printed %q", out.String())
			}
		} else if rows := tableRows(out.String()); len(rows) != 1 || !strings.Contains(rows[0], "succeeded") {
			t.Errorf("outcomes --follow printed %q", out.String())
		}
	}
	s.settled()

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"outcomes", "--status", "done"}, 1, "the statuses are succeeded, failed, shadowed, unmatched"},
		{[]string{"outcomes", "--playbook", "phishing.*"}, 1, "without dots or wildcards"},
		{[]string{"outcomes", "--follow", "--until", "1h"}, 1, "does not go with --until"},
		{[]string{"outcomes", "--since", "last week"}, 2, "neither an RFC 3339 time"},
		{[]string{"outcomes", "--limit", "-1"}, 1, "--limit"},
		{[]string{"outcomes", "extra"}, 1, "unexpected arguments"},
	} {
		out, errOut, code := s.cli(tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("worker %s: exit %d, output %q; want exit %d and %q", strings.Join(tt.args, " "), code, out+errOut, tt.code, tt.want)
		}
	}
}

// The newest outcomes are read from the end of a long stream, and a rare one is found however
// far back it is.
func TestOutcomesSearchReadsBackwards(t *testing.T) {
	t.Parallel()
	emb := queuetest.StartJetStream(t)
	nc := queuetest.Connect(t, emb)
	js := mustJetStream(t, nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SOAR_OUTCOMES", Subjects: []string{"soar.outcomes.>"}}); err != nil {
		t.Fatal(err)
	}
	const n = 1500
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		pb, status := "bulk", "succeeded"
		if i%500 == 7 {
			pb, status = "rare", "failed"
		}
		m := nats.NewMsg("soar.outcomes." + pb)
		m.Data = fmt.Appendf(nil, `{"alert_id":"a-%d","playbook":%q,"status":%q,"steps":[{"id":"s","status":%q,"error":""}]}`, i, pb, status, status)
		m.Header.Set(queue.HeaderAlertID, fmt.Sprintf("a-%d", i))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("no PubAck")
		}
	}
	url := nc.ConnectedUrl()
	run := func(args ...string) []string {
		out, errOut, code := runCLI(t, url, append([]string{"outcomes", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("outcomes %v: exit %d: %s", args, code, errOut)
		}
		return alertIDs(t, out)
	}
	if got := run("--limit", "3"); strings.Join(got, " ") != "a-1499 a-1498 a-1497" {
		t.Errorf("newest 3 = %v", got)
	}
	if got := run("--alert-id", "a-3"); strings.Join(got, " ") != "a-3" {
		t.Errorf("a-3 = %v", got)
	}
	if got := run("--status", "failed"); strings.Join(got, " ") != "a-1007 a-507 a-7" {
		t.Errorf("failed = %v", got)
	}
	if got := run("--playbook", "rare", "--limit", "2"); strings.Join(got, " ") != "a-1007 a-507" {
		t.Errorf("rare, 2 = %v", got)
	}
	if got := run("--limit", "0", "--playbook", "bulk"); len(got) != n-3 || got[0] != "a-1499" || got[len(got)-1] != "a-0" {
		t.Errorf("every bulk outcome: %d, from %v to %v", len(got), got[0], got[len(got)-1])
	}
	// The reads leave no consumer behind.
	str, err := js.Stream(ctx, "SOAR_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := str.Info(ctx); err != nil || info.State.Consumers != 0 {
		t.Errorf("consumers left on the outcomes stream: %v (%v)", info.State.Consumers, err)
	}
	var raw map[string]any
	out, _, _ := runCLI(t, url, "outcomes", "--json", "--limit", "1")
	if err := json.Unmarshal([]byte(out), &raw); err != nil || raw["alert_id"] != "a-1499" {
		t.Errorf("outcomes --json = %q (%v)", out, err)
	}
}

// watch follows both streams through the same code as outcomes --follow: an outcome and a dead
// letter stored after it starts are printed, a line each, and --count ends it; one stored
// before it started is not.
func TestWatchPrintsOutcomesAndDeadLetters(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, nil)
	s.publish(phishingSubject, "w-before", phishing("w-before", "ev-1", "ent-0"), nil)
	s.await(s.cfg.OutcomesStream, "soar.outcomes.phishing-quarantine")

	for _, asJSON := range []bool{false, true} {
		args := []string{"watch", "--count", "2"}
		if asJSON {
			args = append(args, "--json")
		}
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- dispatch(context.Background(), args, mapEnv(map[string]string{"NATS_URL": s.nc.ConnectedUrl()}), nil, &out, &errOut)
		}()
		s.eventually("watching", func() bool { return strings.Contains(errOut.String(), "watching") })
		id := "w-" + fmt.Sprint(asJSON)
		s.publish(phishingSubject, id, phishing(id, "ev-1", "ent-"+id), nil)
		s.eventually("its outcome printed", func() bool { return strings.Contains(out.String(), id) })
		s.publish(phishingSubject, id+"-bad", `{"broken`, nil)
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("watch exit %d: %s", code, errOut.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("watch --count 2 did not end after an outcome and a dead letter; printed %q", out.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 2 || strings.Contains(out.String(), "w-before") {
			t.Fatalf("watch printed %q; want the two messages stored while it ran", out.String())
		}
		want := [][]string{{"SUCCEEDED", "phishing-quarantine", "alert=" + id}, {"DEAD", "alert=" + id + "-bad", "reason=invalid"}}
		if asJSON {
			want = [][]string{{"soar.outcomes.phishing-quarantine ", `"alert_id":"` + id + `"`, `"status":"succeeded"`},
				{"soar.dlq.invalid ", "alert=" + id + "-bad", "reason=invalid"}}
		}
		for i, w := range want {
			for _, part := range w {
				if !strings.Contains(lines[i], part) {
					t.Errorf("line %d %q lacks %q", i, lines[i], part)
				}
			}
		}
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "--count", "-1"}, "--count must be 0"},
		{[]string{"watch", "--dlq-stream", "NOPE"}, `no stream "NOPE"`},
	} {
		out, errOut, code := s.cli(tt.args...)
		if code != 1 || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("worker %s: exit %d, output %q; want exit 1 and %q", strings.Join(tt.args, " "), code, out+errOut, tt.want)
		}
	}
	s.settled()
}
