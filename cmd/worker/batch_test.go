package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A storm through the whole worker: 30 alerts at once share a few HEC requests; each outcome
// has its own entity's task; the entity HEC refuses fails its own alert only; every alert is
// acked once its outcome is stored, none dead-lettered.
func TestBatchStormE2E(t *testing.T) {
	t.Parallel()
	s := startStack(t, "testdata/batch", withHTTP)
	s.awaitMetrics(`riposte_batch_steps_count{action="checkpoint.quarantine_entity"} 0`)
	s.hec.RejectEntity("ent-13", http.StatusNotFound, "Entity not found")
	const n = 30
	for i := range n {
		s.publish("soar.alerts.checkpoint.phishing", fmt.Sprintf("storm-%d", i), phishing(fmt.Sprintf("storm-%d", i), "ev-1", fmt.Sprintf("ent-%d", i)), nil)
	}
	const subject = "soar.outcomes.storm-quarantine"
	s.eventually("an outcome for every alert", func() bool { return s.count("SOAR_OUTCOMES", subject) == n })
	s.settled()
	if d := s.deadLetters(); d != 0 {
		t.Errorf("%d dead letters", d)
	}
	calls := entityRequests(t, s.hec)
	t.Logf("%d HEC requests for %d alerts", len(calls), n)
	if len(calls) == 0 || len(calls) > n/5 {
		t.Errorf("%d HEC requests for %d alerts; want a few of up to 10 entities", len(calls), n)
	}
	// Every call and every alert it served is counted: HEC answers for each entity, so a
	// batched call is never sent again in halves here.
	s.awaitMetrics(fmt.Sprintf(`riposte_batch_steps_count{action="checkpoint.quarantine_entity"} %d`, len(calls)),
		fmt.Sprintf(`riposte_batch_steps_sum{action="checkpoint.quarantine_entity"} %d`, n))
	seenTask := map[string]string{}
	for _, m := range s.all("SOAR_OUTCOMES", subject) {
		var o map[string]any
		if err := json.Unmarshal(m.Data(), &o); err != nil {
			t.Fatalf("outcome is not JSON: %v", err)
		}
		id := o["alert_id"].(string)
		entity := "ent-" + strings.TrimPrefix(id, "storm-")
		step := o["steps"].([]any)[0].(map[string]any)
		tasks, _ := step["output"].(map[string]any)["tasks"].([]any)
		if len(tasks) != 1 || tasks[0].(map[string]any)["entityId"] != entity {
			t.Errorf("%s: tasks %v, want its own entity %s only", id, tasks, entity)
			continue
		}
		task := tasks[0].(map[string]any)
		if id == "storm-13" {
			if o["status"] != "failed" || !strings.Contains(fmt.Sprint(step["error"]), "[ent-13]") || !strings.Contains(fmt.Sprint(step["error"]), "Entity not found") {
				t.Errorf("storm-13: %v, error %q; want failed with its own refusal", o["status"], step["error"])
			}
			continue
		}
		taskID, _ := task["taskId"].(string)
		if o["status"] != "succeeded" || step["error"] != "" || taskID == "" {
			t.Errorf("%s: %v, step %v", id, o["status"], step)
			continue
		}
		if other, dup := seenTask[taskID]; dup {
			t.Errorf("%s and %s have the same taskId %s", id, other, taskID)
		}
		seenTask[taskID] = id
		if got := s.hec.EntityState(entity); got != "quarantined" {
			t.Errorf("%s: HEC says %s is %q", id, entity, got)
		}
	}
}

// worker validate refuses batch on an action that cannot batch, with file:line.
func TestBatchValidateRejectsAnActionThatCannotBatch(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := dispatch(context.Background(), []string{"validate", "--playbooks", "testdata/batch"}, noEnv, nil, &out, &errOut); code != 0 {
		t.Fatalf("validate testdata/batch: exit %d\n%s", code, errOut.String())
	}
	errOut.Reset()
	if code := dispatch(context.Background(), []string{"validate", "--playbooks", "testdata/batch-broken"}, noEnv, nil, &out, &errOut); code != 1 {
		t.Errorf("validate testdata/batch-broken: exit %d, want 1", code)
	}
	want := `testdata/batch-broken/get-event.yaml:8: step "event": action checkpoint.get_event cannot batch: one call of it serves one target; ` +
		`the actions that can are checkpoint.entity_action, checkpoint.quarantine_entity, checkpoint.restore_entity or gravityzone.add_to_blocklist`
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("validate printed:\n%s\nwant a line:\n%s", errOut.String(), want)
	}
}

// A batch bigger than the alerts a replica has in flight is warned about, naming the step; one
// that fits is not.
func TestBatchOverMaxInFlightIsWarned(t *testing.T) {
	t.Parallel()
	pbs, err := loadPlaybooks("testdata/batch")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		inFlight int
		warned   bool
	}{{64, false}, {10, false}, {9, true}} {
		core, logs := observer.New(zap.WarnLevel)
		got := batchedActions(pbs, tt.inFlight, zap.New(core))
		if len(got) != 1 || got[0] != "checkpoint.quarantine_entity" {
			t.Errorf("batched actions %v, want [checkpoint.quarantine_entity]", got)
		}
		warns := logs.FilterMessageSnippet("every call waits max_wait").All()
		if (len(warns) == 1) != tt.warned || len(warns) > 1 {
			t.Errorf("max-in-flight %d: %d warnings, want warned=%v", tt.inFlight, len(warns), tt.warned)
			continue
		}
		if tt.warned && (warns[0].ContextMap()["step"] == nil || warns[0].ContextMap()["max_size"] != int64(10)) {
			t.Errorf("warning without the step and its max_size: %v", warns[0].ContextMap())
		}
	}
}
