package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/riposte-soar/riposte/internal/actions"
)

func actionByName(t *testing.T, c *Client, name string) actions.Action {
	t.Helper()
	reg, err := actions.NewRegistry(actions.Bind(c, defs())...)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := reg.Lookup(name)
	if !ok {
		t.Fatalf("no action %q; have %v", name, reg.Names())
	}
	return a
}

func TestCatalogueSpecs(t *testing.T) {
	t.Parallel()
	type in struct {
		name     string
		typ      actions.Type
		required bool
	}
	want := map[string]struct {
		inputs     []in
		idempotent bool
	}{
		"checkpoint.quarantine_entity": {[]in{{"entityIds", actions.StringList, true}, {"entityActionParam", actions.String, false}}, true},
		"checkpoint.restore_entity":    {[]in{{"entityIds", actions.StringList, true}, {"entityActionParam", actions.String, false}}, true},
		"checkpoint.entity_action":     {[]in{{"entityIds", actions.StringList, true}, {"entityActionName", actions.String, true}, {"entityActionParam", actions.String, false}}, false},
		"checkpoint.get_event":         {[]in{{"eventId", actions.String, true}}, true},
		"checkpoint.get_exceptions":    {[]in{{"excType", actions.String, true}}, true},
	}
	specs := Vendor().Specs
	if len(specs) != len(want) {
		t.Fatalf("%d actions, want %d", len(specs), len(want))
	}
	for _, s := range specs {
		w, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected action %q", s.Name)
			continue
		}
		if s.Vendor != "checkpoint" || s.Doc == "" || s.Idempotent != w.idempotent {
			t.Errorf("%s: vendor %q, doc %q, idempotent %t", s.Name, s.Vendor, s.Doc, s.Idempotent)
		}
		var got []in
		for _, i := range s.Inputs {
			got = append(got, in{i.Name, i.Type, i.Required})
			if i.Doc == "" {
				t.Errorf("%s: input %q has no doc", s.Name, i.Name)
			}
		}
		if !reflect.DeepEqual(got, w.inputs) {
			t.Errorf("%s: inputs %v, want %v", s.Name, got, w.inputs)
		}
	}
}

func TestEntityActionsOutput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		action    string
		in        actions.Inputs
		wantName  string
		wantParam string
		state     string
	}{
		{"checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{"a1", "b2"}, "entityActionParam": "phishing"}, "quarantine", "phishing", "quarantined"},
		{"checkpoint.restore_entity", actions.Inputs{"entityIds": "a1"}, "restore", "", "restored"},
		{"checkpoint.entity_action", actions.Inputs{"entityIds": []string{"a1"}, "entityActionName": "dismiss"}, "dismiss", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.action, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			out, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), tc.action), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			ids := tc.in.StringList("entityIds")
			var want []any
			for i, id := range ids {
				want = append(want, map[string]any{"entityId": id, "taskId": strconv.FormatInt(fakeFirstTaskID+int64(i), 10)})
			}
			if !reflect.DeepEqual(out, actions.Output{"tasks": want}) {
				t.Errorf("output = %v", out)
			}
			if _, err := json.Marshal(out); err != nil {
				t.Errorf("output does not marshal: %v", err)
			}
			tasks := f.Tasks()
			if len(tasks) != len(ids) || tasks[0].Action != tc.wantName || tasks[0].Param != tc.wantParam {
				t.Errorf("fake tasks = %+v", tasks)
			}
			if got := f.EntityState(ids[0]); got != tc.state {
				t.Errorf("EntityState = %q, want %q", got, tc.state)
			}
		})
	}
}

func TestGetEventAction(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.AddEvent(map[string]any{"eventId": "7ded0371", "state": "dismissed", "type": "dlp"})
	out, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), "checkpoint.get_event"), actions.Inputs{"eventId": "7ded0371"})
	if err != nil {
		t.Fatal(err)
	}
	// The output is the event itself: playbooks read steps.event.output.state.
	if out["state"] != "dismissed" || out["type"] != "dlp" {
		t.Errorf("output = %v", out)
	}
}

func TestGetExceptionsAction(t *testing.T) {
	t.Parallel()
	f, base := startFake(t)
	f.SetExceptions("blacklist", []map[string]any{{"entityId": "1", "senderEmail": "bad@example.com"}})
	out, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), "checkpoint.get_exceptions"), actions.Inputs{"excType": "blacklist"})
	if err != nil {
		t.Fatal(err)
	}
	list, ok := out["exceptions"].([]any)
	if !ok || len(list) != 1 || list[0].(map[string]any)["senderEmail"] != "bad@example.com" {
		t.Errorf("output = %v", out)
	}
}

func TestActionsRejectBadInputsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		action string
		in     actions.Inputs
		want   string
	}{
		{"checkpoint.quarantine_entity", actions.Inputs{}, `missing required input "entityIds"`},
		{"checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{}}, `input "entityIds" must not be empty`},
		{"checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{"a1", ""}}, `input "entityIds": item 1: must not be empty`},
		{"checkpoint.quarantine_entity", actions.Inputs{"entityIds": []any{"a1", 7}}, `must be a list of strings`},
		{"checkpoint.quarantine_entity", actions.Inputs{"entityIds": "a/1"}, `"a/1" must not contain '/'`},
		{"checkpoint.quarantine_entity", actions.Inputs{"entityIds": "a1", "entityActionName": "restore"}, `unknown input "entityActionName"`},
		{"checkpoint.restore_entity", actions.Inputs{"entityIds": "a1", "entityActionParam": 3}, `input "entityActionParam" must be a string`},
		{"checkpoint.entity_action", actions.Inputs{"entityIds": "a1"}, `missing required input "entityActionName"`},
		{"checkpoint.entity_action", actions.Inputs{"entityIds": "a1", "entityActionName": " "}, `input "entityActionName": must not be empty`},
		{"checkpoint.get_event", actions.Inputs{"eventId": ""}, `input "eventId": must not be empty`},
		{"checkpoint.get_event", actions.Inputs{"eventId": "a/b"}, `must not contain '/'`},
		{"checkpoint.get_event", actions.Inputs{"eventId": 12}, `input "eventId" must be a string`},
		{"checkpoint.get_exceptions", actions.Inputs{"excType": "../x"}, `input "excType": "../x" may hold only`},
	}
	for _, tc := range cases {
		t.Run(tc.action+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			_, err := actions.Invoke(context.Background(), actionByName(t, newTestClient(t, base), tc.action), tc.in)
			if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want permanent containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.action+": invalid inputs: ") {
				t.Errorf("error %q does not name the action", err)
			}
			if len(f.Requests()) != 0 || f.AuthCount() != 0 {
				t.Errorf("fake saw requests")
			}
		})
	}
}

// Through the dispatcher: a retryable vendor failure is retried, a permanent one is not.
func TestActionsUnderDispatcher(t *testing.T) {
	t.Parallel()
	policy := actions.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}
	cases := []struct {
		name      string
		failure   Failure
		attempts  int
		succeeded bool
	}{
		{"503 then success", Failure{Status: 503, Message: "busy"}, 2, true},
		{"422 stops at once", Failure{Status: 422, Message: "Entity not found"}, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.FailNextWith("/action/entity", 1, tc.failure)
			d := actions.NewDispatcher(zaptest.NewLogger(t), actions.WithJitterSource(func() float64 { return 0 }))
			res := d.Run(context.Background(), actionByName(t, newTestClient(t, base), "checkpoint.quarantine_entity"), actions.Inputs{"entityIds": []any{"a1"}}, policy)
			if res.Attempts != tc.attempts || (res.Err == nil) != tc.succeeded {
				t.Errorf("attempts %d, err %v", res.Attempts, res.Err)
			}
			if !tc.succeeded && (res.Retryable || !strings.Contains(res.Err.Error(), "Entity not found")) {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

// One entity refused inside a successful answer fails the step with the vendor's message for
// it; the others were acted on, and the output says so entity by entity.
func TestEntityRefusedInsideASuccess(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		code      int
		permanent bool
	}{
		{"refused for good", 404, true},
		{"refused for now", 503, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, base := startFake(t)
			f.RejectEntity("b2", tc.code, "Entity is not in a quarantinable state")
			d := actions.NewDispatcher(zaptest.NewLogger(t), actions.WithJitterSource(func() float64 { return 0 }))
			res := d.Run(context.Background(), actionByName(t, newTestClient(t, base), "checkpoint.quarantine_entity"),
				actions.Inputs{"entityIds": []any{"a1", "b2"}},
				actions.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond})
			if res.Err == nil {
				t.Fatal("the step succeeded although HEC refused an entity")
			}
			want := fmt.Sprintf("HEC did not act on 1 of 2 entities: b2: Entity is not in a quarantinable state (response code %d)", tc.code)
			if !strings.Contains(res.Err.Error(), want) {
				t.Errorf("error %q lacks %q", res.Err, want)
			}
			if res.Retryable == tc.permanent {
				t.Errorf("retryable = %t, want %t", res.Retryable, !tc.permanent)
			}
			tasks, _ := res.Output["tasks"].([]any)
			if len(tasks) != 2 {
				t.Fatalf("output %v, want both entities", res.Output)
			}
			if a1 := tasks[0].(map[string]any); a1["entityId"] != "a1" || a1["taskId"] == "" || a1["error"] != nil {
				t.Errorf("accepted entity: %v", a1)
			}
			if b2 := tasks[1].(map[string]any); b2["entityId"] != "b2" || b2["taskId"] != "" || !strings.Contains(b2["error"].(string), "quarantinable") {
				t.Errorf("refused entity: %v", b2)
			}
			if f.EntityState("b2") != "" || f.EntityState("a1") != "quarantined" {
				t.Errorf("states a1=%q b2=%q", f.EntityState("a1"), f.EntityState("b2"))
			}
		})
	}
}

// The per-entity verdict comes in the shapes the document allows; each refusal is caught.
func TestEntityVerdictShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, data string
		wantErr    string // "" for success
	}{
		{"the sample", `[{"entityId":"a1","taskId":"1"},{"entityId":"b2","taskId":2}]`, ""},
		{"success code and text", `[{"entityId":"a1","taskId":"1","responseCode":0,"responseText":"success"},{"entityId":"b2","taskId":"2","responseCode":200}]`, ""},
		{"a code and responseTest", `[{"entityId":"a1","taskId":"1"},{"entityId":"b2","responseCode":422,"responseTest":"Entity not found"}]`, "b2: Entity not found (response code 422)"},
		{"a message and no taskId", `[{"entityId":"a1","taskId":"1"},{"entityId":"b2","message":"locked"}]`, "b2: locked"},
		{"no taskId at all", `[{"entityId":"a1","taskId":"1"},{"entityId":"b2"}]`, "b2: no taskId for this entity"},
		{"an entity missing", `[{"entityId":"a1","taskId":"1"}]`, "b2: no result for this entity in the answer"},
		{"no responseData", `null`, "did not act on 2 of 2 entities"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := serve(t, func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"responseEnvelope": {"responseCode": 0, "responseText": "success"}, "responseData": %s}`, tc.data)
			})
			tasks, err := newTestClient(t, base).EntityAction(context.Background(), []string{"a1", "b2"}, "quarantine", "")
			if tc.wantErr == "" {
				if err != nil || len(tasks) != 2 {
					t.Fatalf("tasks %v, err %v", tasks, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !actions.IsPermanent(err) {
				t.Errorf("error %v, want permanent containing %q", err, tc.wantErr)
			}
			var ee *EntityError
			if !errors.As(err, &ee) || len(ee.Tasks) != 2 {
				t.Errorf("error %v carries no per-entity results", err)
			}
		})
	}
}
