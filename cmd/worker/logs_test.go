package main

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/cyberark"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
)

// Through success and failure on every vendor, at debug: no log line carries a secret, and
// every line about a step names its alert, playbook and step, one spelling each.
func TestLogsNameTheAlertAndCarryNoSecret(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	s := startStackLogged(t, shippedPlaybooks, nil, zap.New(core))
	f := s.vendors
	// Each vendor fails once, retryably, and echoes what it was sent where it can.
	f.hec.FailNextWith("/action/entity", 1, checkpoint.Failure{Status: 503, Message: "busy; your key was " + testAccessKey})
	f.gz.Inject("createIsolateEndpointTask", 1, gravityzone.Failure{Code: -32000, Message: "Server error", Details: "key " + testGZKey})
	f.pta.ExpireSessions()
	f.pta.Inject("/Events/", 1, cyberark.Failure{Status: 500, Message: "password " + testPVWASecret + " rejected"})
	s.publish("soar.alerts.siem.credential-theft", "logs-1",
		`{"mailEntityId":"mail-l","endpointId":"ep-l","sha256":["`+chainSHA256+`"],"ptaEventId":"pta-1"}`, nil)
	s.publish("soar.alerts.siem.login", "logs-unmatched", `{"user":"bob"}`, nil)
	s.await("SOAR_OUTCOMES", "soar.outcomes.credential-theft-chain")
	s.await("SOAR_OUTCOMES", "soar.outcomes.unmatched")
	s.settled()

	var sawUnmatched, sawRetry bool
	for _, e := range logs.All() {
		fields := e.ContextMap()
		line := e.Message + " " + fmt.Sprint(fields)
		for _, secret := range f.secrets() {
			if strings.Contains(line, secret) {
				t.Errorf("log line leaks a secret: %q", strings.ReplaceAll(line, secret, "[SECRET]"))
			}
		}
		if _, ok := fields["step"]; ok {
			for _, k := range []string{"alert_id", "playbook"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("line %q about step %v lacks %s", e.Message, fields["step"], k)
				}
			}
		}
		if e.Message == "action attempt failed, retrying" {
			sawRetry = true
			for _, k := range []string{"alert_id", "playbook", "step", "action", "attempt"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("retry line lacks %s: %v", k, fields)
				}
			}
		}
		if e.Message == "no playbook matches the alert" && fields["alert_id"] == "logs-unmatched" {
			sawUnmatched = true
		}
		seen := map[string]bool{}
		for _, fld := range e.Context {
			if seen[fld.Key] {
				t.Errorf("line %q has %q twice", e.Message, fld.Key)
			}
			seen[fld.Key] = true
		}
	}
	if !sawRetry {
		t.Error("no retry was logged: the test proves less than it says")
	}
	if !sawUnmatched {
		t.Error("the unmatched alert was not logged at debug")
	}
}
