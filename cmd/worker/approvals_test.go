package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/queue"
)

const approvalPlaybooks = "testdata/approvals"

// gateAlert is an alert for the approval playbooks.
func gateAlert(id, endpoint string) string {
	return fmt.Sprintf(`{"id": %q, "eventId": "ev-1", "endpointId": %q, "endpointName": "web-%s"}`, id, endpoint, endpoint)
}

// awaitRequest waits for the approval request of an alert on soar.approvals.<playbook>.
func (s *stack) awaitRequest(playbook, alertID string) queue.ApprovalRequest {
	s.t.Helper()
	var req queue.ApprovalRequest
	s.eventually("the approval request of "+alertID, func() bool {
		for _, m := range s.all(s.cfg.ApprovalsStream, s.cfg.ApprovalsPrefix+"."+playbook) {
			var r queue.ApprovalRequest
			if json.Unmarshal(m.Data(), &r) == nil && r.AlertID == alertID {
				req = r
				return true
			}
		}
		return false
	})
	return req
}

// outcomeFor is the outcome of one alert on a playbook's subject, once stored.
func (s *stack) outcomeFor(playbook, alertID string) map[string]any {
	s.t.Helper()
	var o map[string]any
	s.eventually("the outcome of "+alertID, func() bool {
		for _, m := range s.all("SOAR_OUTCOMES", "soar.outcomes."+playbook) {
			var got map[string]any
			if json.Unmarshal(m.Data(), &got) == nil && got["alert_id"] == alertID {
				o = got
				return true
			}
		}
		return false
	})
	return o
}

// stepOf is one step of an outcome decoded with encoding/json's defaults.
func stepOf(t *testing.T, o map[string]any, id string) map[string]any {
	t.Helper()
	steps, _ := o["steps"].([]any)
	for _, st := range steps {
		if m, _ := st.(map[string]any); m["id"] == id {
			return m
		}
	}
	t.Fatalf("outcome has no step %q: %v", id, o)
	return nil
}

func TestApprovalParksTheRunUntilApproved(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, nil)
	s.publish("soar.alerts.approval.one", "", gateAlert("gate-1", "ep-1"), nil)
	req := s.awaitRequest("isolate-approved", "gate-1")
	if req.Step != "isolate" || req.Prompt != "Isolate web-ep-1 (ep-1) for event ev-1?" || req.Inputs["endpointId"] != "ep-1" ||
		req.Approvers != 1 || req.OnTimeout != "deny" || req.ExpiresAt.Sub(req.CreatedAt) != 4*time.Hour {
		t.Errorf("request = %+v", req)
	}
	// Parked: the alert is acked (no worker slot, no pending ack), nothing isolated, no outcome.
	s.settled()
	if s.vendors.gz.Isolated("ep-1") || s.count("SOAR_OUTCOMES", "soar.outcomes.isolate-approved") != 0 {
		t.Fatal("the gated step ran, or an outcome was published, before anyone approved")
	}

	listed := jsonLines(t, s.mustCLI("approvals", "list", "--json"))
	if len(listed) != 1 || listed[0]["approval_id"] != req.ID || listed[0]["prompt"] != req.Prompt {
		t.Fatalf("approvals list = %v, want the one request", listed)
	}
	table := s.mustCLI("approvals", "list")
	if !strings.Contains(table, req.ID) || !strings.Contains(table, "isolate-approved") || !strings.Contains(table, "0/1") {
		t.Errorf("approvals list table:\n%s", table)
	}

	out := s.mustCLI("approve", req.ID, "--by", "alice", "--reason", "confirmed with the owner")
	if !strings.Contains(out, "decided: approve by alice") {
		t.Errorf("approve said:\n%s", out)
	}
	o := s.outcomeFor("isolate-approved", "gate-1")
	if o["status"] != "succeeded" {
		t.Fatalf("outcome = %v, want succeeded", o)
	}
	iso := stepOf(t, o, "isolate")
	ap, _ := iso["approval"].(map[string]any)
	if iso["status"] != "succeeded" || ap["decision"] != "approve" || fmt.Sprint(ap["by"]) != "[alice]" ||
		ap["reason"] != "confirmed with the owner" || ap["decided_at"] == nil {
		t.Errorf("isolate step = %v", iso)
	}
	if ev := stepOf(t, o, "event"); ev["status"] != "succeeded" || ev["replayed"] != true {
		t.Errorf("event step = %v, want its result from the journal", ev)
	}
	if !s.vendors.gz.Isolated("ep-1") || s.vendors.gz.Effects("isolate", "ep-1") != 1 {
		t.Error("ep-1 not isolated exactly once")
	}
	if n := eventRequests(s.hec); n != 1 {
		t.Errorf("get_event reached HEC %d times, want 1: the steps before the gate are not repeated", n)
	}
	s.settled()

	// A second decision, and one on an id nobody issued, are refused with a clear error.
	_, errOut, code := s.cli("deny", req.ID, "--by", "bob", "--reason", "too late")
	if code == 0 || !strings.Contains(errOut, "already decided: approve by alice") {
		t.Errorf("second decision: exit %d, %s", code, errOut)
	}
	_, errOut, code = s.cli("approve", "0123456789abcdef01234567", "--by", "bob")
	if code == 0 || !strings.Contains(errOut, "no approval has this id") {
		t.Errorf("unknown id: exit %d, %s", code, errOut)
	}
	if got := jsonLines(t, s.mustCLI("approvals", "list", "--json")); len(got) != 0 {
		t.Errorf("approvals still waiting: %v", got)
	}
}

func TestApprovalDeniedStopsTheRun(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, nil)
	s.publish("soar.alerts.approval.one", "", gateAlert("gate-deny", "ep-2"), nil)
	req := s.awaitRequest("isolate-approved", "gate-deny")

	_, errOut, code := s.cli("deny", req.ID, "--by", "bob")
	if code == 0 || !strings.Contains(errOut, "--reason must say why") {
		t.Errorf("deny without a reason: exit %d, %s", code, errOut)
	}
	s.mustCLI("deny", req.ID, "--by", "bob", "--reason", "production database server")
	o := s.outcomeFor("isolate-approved", "gate-deny")
	iso := stepOf(t, o, "isolate")
	ap, _ := iso["approval"].(map[string]any)
	if o["status"] != "failed" || iso["status"] != "denied" || ap["decision"] != "deny" || fmt.Sprint(ap["by"]) != "[bob]" ||
		ap["reason"] != "production database server" || !strings.Contains(fmt.Sprint(iso["error"]), "denied by bob") {
		t.Errorf("outcome = %v", o)
	}
	if n := stepOf(t, o, "notify"); n["status"] != "skipped" {
		t.Errorf("notify = %v, want skipped after the denial", n)
	}
	if s.vendors.gz.Effects("isolate", "ep-2") != 0 {
		t.Error("a denied isolation reached GravityZone")
	}
}

// The approvals' stream, subjects and bucket are the operator's to name, as the others' are: a
// worker and the CLI given the same names park and decide a gate on them.
func TestApprovalsUnderNamesOfTheirOwn(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, func(st *settings) {
		st.queue.ApprovalsStream, st.queue.ApprovalsPrefix, st.queue.ApprovalsBucket = "TEAM_B_APPROVALS", "teamb.approvals", "teamb_gates"
	})
	s.publish("soar.alerts.approval.one", "", gateAlert("gate-named", "ep-9"), nil)
	req := s.awaitRequest("isolate-approved", "gate-named")
	if _, errOut, code := s.cli("deny", req.ID, "--by", "bob", "--reason", "no"); code == 0 {
		t.Errorf("deny with the default names found the gate: %s", errOut)
	}
	s.mustCLI("deny", req.ID, "--by", "bob", "--reason", "not this one", "--approvals-stream", "TEAM_B_APPROVALS",
		"--approvals-prefix", "teamb.approvals", "--approvals-bucket", "teamb_gates")
	if o := s.outcomeFor("isolate-approved", "gate-named"); stepOf(t, o, "isolate")["status"] != "denied" {
		t.Errorf("outcome = %v", o)
	}
}

func TestApprovalNeedsDistinctApprovers(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, nil)
	s.publish("soar.alerts.approval.two", "", gateAlert("gate-two", "ep-3"), nil)
	req := s.awaitRequest("isolate-two-approvers", "gate-two")

	out := s.mustCLI("approve", req.ID, "--by", "alice")
	if !strings.Contains(out, "counted: 1 of 2 approvals") {
		t.Errorf("first approval said:\n%s", out)
	}
	_, errOut, code := s.cli("approve", req.ID, "--by", "alice")
	if code == 0 || !strings.Contains(errOut, "alice has approved") {
		t.Errorf("same person again: exit %d, %s", code, errOut)
	}
	// A bridge that does not check first: the same person, other case, straight on the subject.
	b, _ := json.Marshal(queue.Decision{ApprovalID: req.ID, Decision: "approve", By: "Alice"})
	if _, err := s.js.Publish(context.Background(), "soar.approvals.decisions", b); err != nil {
		t.Fatal(err)
	}
	s.eventually("the bridge's decision consumed", func() bool {
		c, err := s.js.Consumer(context.Background(), "SOAR_APPROVALS", s.cfg.Consumer+"-approvals")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer >= 2
	})
	listed := jsonLines(t, s.mustCLI("approvals", "list", "--json"))
	if len(listed) != 1 || fmt.Sprint(listed[0]["approved_by"]) != "[alice]" {
		t.Fatalf("after alice twice: %v, want one gate approved by alice alone", listed)
	}
	if s.vendors.gz.Effects("isolate", "ep-3") != 0 {
		t.Fatal("isolated on one approval of two")
	}

	s.mustCLI("approve", req.ID, "--by", "bob", "--reason", "agreed")
	o := s.outcomeFor("isolate-two-approvers", "gate-two")
	ap, _ := stepOf(t, o, "isolate")["approval"].(map[string]any)
	if o["status"] != "succeeded" || fmt.Sprint(ap["by"]) != "[alice bob]" {
		t.Errorf("outcome = %v", o)
	}
	if s.vendors.gz.Effects("isolate", "ep-3") != 1 {
		t.Error("not isolated exactly once after two approvals")
	}
}

func TestApprovalTimeouts(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, nil)
	s.publish("soar.alerts.approval.timeout-approve", "", gateAlert("gate-ta", "ep-4"), nil)
	s.publish("soar.alerts.approval.timeout-deny", "", gateAlert("gate-td", "ep-5"), nil)

	approved := s.outcomeFor("isolate-unless-stopped", "gate-ta")
	ap, _ := stepOf(t, approved, "isolate")["approval"].(map[string]any)
	if approved["status"] != "succeeded" || ap["decision"] != "approve" || fmt.Sprint(ap["by"]) != "[timeout]" ||
		!strings.Contains(fmt.Sprint(ap["reason"]), "no decision within 2s") {
		t.Errorf("on_timeout approve: %v", approved)
	}
	denied := s.outcomeFor("isolate-if-approved", "gate-td")
	iso := stepOf(t, denied, "isolate")
	ap, _ = iso["approval"].(map[string]any)
	if denied["status"] != "failed" || iso["status"] != "denied" || ap["decision"] != "deny" || fmt.Sprint(ap["by"]) != "[timeout]" {
		t.Errorf("on_timeout deny: %v", denied)
	}
	if s.vendors.gz.Effects("isolate", "ep-4") != 1 || s.vendors.gz.Effects("isolate", "ep-5") != 0 {
		t.Error("isolations: want ep-4 once (approved on timeout), ep-5 never")
	}
}

// A malformed decision from a bridge is dropped, and the gate keeps waiting.
func TestApprovalBadDecisionMessages(t *testing.T) {
	t.Parallel()
	s := startStack(t, approvalPlaybooks, nil)
	s.publish("soar.alerts.approval.one", "", gateAlert("gate-bad", "ep-6"), nil)
	req := s.awaitRequest("isolate-approved", "gate-bad")
	for _, body := range []string{`not json`, `{"approval_id": "` + req.ID + `", "decision": "maybe", "by": "eve"}`,
		`{"approval_id": "` + req.ID + `", "decision": "approve"}`, `{"approval_id": "nope", "decision": "approve", "by": "eve"}`} {
		m := nats.NewMsg("soar.approvals.decisions")
		m.Data = []byte(body)
		if _, err := s.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	s.eventually("the bad decisions consumed", func() bool {
		c, err := s.js.Consumer(context.Background(), "SOAR_APPROVALS", s.cfg.Consumer+"-approvals")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer >= 4
	})
	if got := jsonLines(t, s.mustCLI("approvals", "list", "--json")); len(got) != 1 || fmt.Sprint(got[0]["approved_by"]) != "[]" {
		t.Errorf("after bad decisions: %v, want the gate waiting with no approval", got)
	}
	if s.vendors.gz.Effects("isolate", "ep-6") != 0 {
		t.Error("a bad decision isolated the endpoint")
	}
}

// A parked run outlives a kill -9 of the worker that parked it and a restart of NATS: another
// worker, started after both, carries out the decision, and the steps before the gate are not
// repeated.
func TestProcessApprovalSurvivesKillAndNATSRestart(t *testing.T) {
	t.Parallel()
	addr, store := freeAddr(t), t.TempDir()
	start := func() *queue.Embedded {
		t.Helper()
		var emb *queue.Embedded
		var err error
		for range 50 { // the port may linger for a moment after a shutdown
			if emb, err = queue.StartEmbedded(queue.EmbeddedConfig{Listen: addr, StoreDir: store}); err == nil {
				return emb
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("start nats on %s: %v", addr, err)
		return nil
	}
	emb := start()
	t.Cleanup(emb.Shutdown)
	fakes := startFakeVendors(t)
	env := fakes.environ(map[string]string{
		"NATS_URL": emb.URL(), "RIPOSTE_PLAYBOOKS": approvalPlaybooks, "RIPOSTE_HTTP_ADDR": "",
	})
	a := startProcess(t, env, "run")
	a.waitLog(t, `"msg":"worker ready"`)
	nc, err := nats.Connect(emb.URL())
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, nc: nc, js: mustJetStream(t, nc), cfg: queue.DefaultConfig(), hec: fakes.hec, vendors: fakes}
	s.publish("soar.alerts.approval.one", "", gateAlert("gate-crash", "ep-9"), nil)
	req := s.awaitRequest("isolate-approved", "gate-crash")
	s.settled()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	emb.Shutdown()
	emb = start()
	t.Cleanup(emb.Shutdown)
	b := startProcess(t, env, "run")
	b.waitLog(t, `"msg":"worker ready"`)
	nc = connectURL(t, emb.URL())
	s.nc, s.js = nc, mustJetStream(t, nc)
	if got := jsonLines(t, s.mustCLI("approvals", "list", "--json")); len(got) != 1 || got[0]["approval_id"] != req.ID {
		t.Fatalf("after the crash and restart: %v, want the gate still waiting", got)
	}
	s.mustCLI("approve", req.ID, "--by", "carol")
	o := s.outcomeFor("isolate-approved", "gate-crash")
	if o["status"] != "succeeded" || stepOf(t, o, "event")["replayed"] != true {
		t.Errorf("outcome = %v, want succeeded with the event step from the journal", o)
	}
	if n := eventRequests(fakes.hec); n != 1 {
		t.Errorf("get_event reached HEC %d times, want 1", n)
	}
	if fakes.gz.Effects("isolate", "ep-9") != 1 {
		t.Error("ep-9 not isolated exactly once")
	}
	b.stop(t)
}
