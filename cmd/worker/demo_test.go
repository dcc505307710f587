package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// `make demo` is one of the README's two commands: it must keep passing, and say so.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	env := mapEnv(map[string]string{"RIPOSTE_PLAYBOOKS": shippedPlaybooks})
	if code := dispatch(context.Background(), []string{"demo"}, env, nil, &out, &errOut); code != 0 {
		t.Fatalf("demo exited %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"every outcome is the expected one", "demo-garbage-1  soar.dlq.invalid", "quarantine:succeeded/3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("demo reported a mismatch:\n%s", out.String())
	}
}

// The demo's own checks must be able to fail: a result that differs from the case is a mismatch.
func TestDemoChecksEachResult(t *testing.T) {
	t.Parallel()
	out := &nats.Msg{Subject: "soar.outcomes.phishing-quarantine",
		Data: []byte(`{"status":"failed","steps":[{"id":"event","status":"succeeded","attempts":1,"error":""},{"id":"quarantine","status":"failed","attempts":2,"error":"HTTP 400: nope"}]}`)}
	status, steps, detail := summarise(out, "soar.dlq")
	if status != "failed" || steps != "event:succeeded/1 quarantine:failed/2" || detail != "step quarantine: HTTP 400: nope" {
		t.Errorf("outcome summary = %q %q %q", status, steps, detail)
	}
	dead := &nats.Msg{Subject: "soar.dlq.invalid", Header: nats.Header{"Riposte-Dlq-Reason": {"invalid"}, "Riposte-Dlq-Detail": {"not JSON"}}}
	if status, _, detail := summarise(dead, "soar.dlq"); status != "dead" || detail != "invalid: not JSON" {
		t.Errorf("dead letter summary = %q %q", status, detail)
	}
	cases := demoCases("soar.outcomes", "soar.dlq")
	refused := cases[3] // HEC refuses the request: failed after one attempt
	if refused.matches(out.Subject, status, steps) {
		t.Errorf("a quarantine failed after 2 attempts matched the case that wants 1")
	}
	if !refused.matches(out.Subject, "failed", "event:succeeded/1 quarantine:failed/1") {
		t.Errorf("the expected result did not match its case")
	}
	if cases[0].matches("soar.outcomes.unmatched", "succeeded", cases[0].wantSteps) {
		t.Errorf("an outcome on the wrong subject matched")
	}
}
