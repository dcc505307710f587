package main

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/riposte-soar/riposte/internal/queue"
)

// TestPlanGolden (playtest_test.go) holds what plan prints; these are the alerts and files it refuses.
func TestPlanRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, alert string
		args        []string
		want        string
	}{
		{"not an object", `[1,2]`, nil, "must be a JSON object"},
		{"not JSON", `{"a":`, nil, "must be a JSON object"},
		{"outputs for no step", `{}`, []string{"--outputs", "testdata/plan/nostep.yaml"}, `"lookup" names no step`},
		{"outputs file missing", `{}`, []string{"--outputs", "testdata/plan/none.yaml"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"plan", "--playbooks", shippedPlaybooks}, tt.args...)
			out, errOut, code := runWorker(t, tt.alert, append(args, "-")...)
			if code != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, want 1 with %q\n%s%s", code, tt.want, out, errOut)
			}
		})
	}
}

func TestReadableMessage(t *testing.T) {
	t.Parallel()
	m := nats.NewMsg("soar.outcomes.phishing-quarantine")
	m.Data = []byte(`{"alert_id":"a-1","playbook":"phishing-quarantine","status":"failed","steps":[{"id":"event","status":"succeeded","attempts":1,"replayed":true},{"id":"quarantine","status":"failed","attempts":3,"error":"HTTP 503: busy"}]}`)
	got := readableMessage(m, "soar.dlq")
	want := "FAILED   phishing-quarantine          alert=a-1 steps: event:succeeded/1 (replayed) quarantine:failed/3 error: quarantine: HTTP 503: busy"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	d := nats.NewMsg("soar.dlq.invalid")
	d.Header.Set(queue.HeaderSubject, "soar.alerts.x")
	d.Header.Set(queue.HeaderAlertID, "SOAR_ALERTS:7")
	d.Header.Set(queue.HeaderDLQReason, "invalid")
	d.Header.Set(queue.HeaderDLQDetail, "alert is not valid JSON")
	if got := readableMessage(d, "soar.dlq"); !strings.Contains(got, "DEAD") || !strings.Contains(got, "reason=invalid: alert is not valid JSON") {
		t.Errorf("dead letter: %q", got)
	}
}
