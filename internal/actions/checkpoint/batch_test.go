package checkpoint

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/riposte-soar/riposte/internal/actions"
)

// One request for three alerts' entities, one of them refused: each step's share holds its own
// entities' tasks, and only the refused entity's step fails, classed by its own refusal.
func TestShareTasksSplitsPerEntity(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.RejectEntity("e-bad", http.StatusNotFound, "Entity not found")
	f.RejectEntity("e-busy", http.StatusServiceUnavailable, "try again")
	a := actionByName(t, newTestClient(t, base), "checkpoint.quarantine_entity")
	if a.Spec().Batch == nil || a.Spec().Batch.Input != "entityIds" {
		t.Fatalf("quarantine_entity declares batch %+v, want on entityIds", a.Spec().Batch)
	}
	out, err := actions.Invoke(context.Background(), a, actions.Inputs{"entityIds": []any{"e-1", "e-2", "e-bad", "e-busy"}})
	var partial *actions.PartialError
	if !errors.As(err, &partial) || !actions.IsPermanent(err) {
		t.Fatalf("the call: %v, want a permanent partial failure", err)
	}
	out = partial.Output
	share := a.Spec().Batch.Share

	mine, merr := share(out, err, []string{"e-2", "e-1", "e-2"})
	if merr != nil {
		t.Fatalf("e-1, e-2's share failed: %v", merr)
	}
	want := actions.Output{"tasks": []any{
		map[string]any{"entityId": "e-2", "taskId": "123445311235"},
		map[string]any{"entityId": "e-1", "taskId": "123445311234"},
	}}
	if !reflect.DeepEqual(mine, want) {
		t.Errorf("e-1, e-2's share = %v, want %v", mine, want)
	}

	mine, merr = share(out, err, []string{"e-bad"})
	if merr == nil || !actions.IsPermanent(merr) {
		t.Fatalf("e-bad's share: %v, want a permanent failure", merr)
	}
	if msg := merr.Error(); !strings.Contains(msg, "quarantine entities [e-bad] on HEC") || !strings.Contains(msg, "Entity not found") ||
		strings.Contains(msg, "e-busy") || strings.Contains(msg, "e-1") {
		t.Errorf("e-bad's error speaks of others' entities or not of its own: %v", msg)
	}
	if tasks := mine["tasks"].([]any); len(tasks) != 1 || tasks[0].(map[string]any)["error"] == nil {
		t.Errorf("e-bad's output = %v, want its one refused task", mine)
	}

	// A refusal that may pass fails its step as retryable, whatever the others' refusals were.
	if _, merr = share(out, err, []string{"e-busy"}); merr == nil || actions.IsPermanent(merr) {
		t.Errorf("e-busy's share: %v, want a retryable failure", merr)
	}
}

// A request HEC refused as a whole fails every step with the call's own error.
func TestShareTasksWholeFailure(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.FailNext("/action/entity", 1, http.StatusServiceUnavailable, "maintenance")
	a := actionByName(t, newTestClient(t, base), "checkpoint.restore_entity")
	out, err := actions.Invoke(context.Background(), a, actions.Inputs{"entityIds": []any{"e-1", "e-2"}})
	if err == nil {
		t.Fatal("the call succeeded")
	}
	mine, merr := a.Spec().Batch.Share(out, err, []string{"e-1"})
	if merr != err || mine != nil {
		t.Errorf("share = %v, %v; want no output and the call's own error %v", mine, merr, err)
	}
}
