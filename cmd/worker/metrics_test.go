package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// withHTTP makes startStack serve the health and metrics endpoints on a free local port.
func withHTTP(s *settings) { s.httpAddr = "127.0.0.1:0" }

func TestMetricsEndpointCountsAnAlertsRun(t *testing.T) {
	t.Parallel()
	s := startStack(t, shippedPlaybooks, withHTTP)
	s.publish("soar.alerts.checkpoint.phishing", "alert-metrics", phishing("x", "ev-1", "ent-metrics"), nil)
	s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine")
	s.settled()

	page := s.awaitMetrics(
		`riposte_outcomes_total{playbook="phishing-quarantine",status="succeeded"} 1`,
		`riposte_step_runs_total{action="checkpoint.quarantine_entity",playbook="phishing-quarantine",status="succeeded"} 1`,
		`riposte_step_runs_total{action="checkpoint.get_event",playbook="phishing-quarantine",status="succeeded"} 1`,
		`riposte_action_attempts_total{action="checkpoint.quarantine_entity",reason="",result="ok"} 1`,
		`riposte_action_duration_seconds_count{action="checkpoint.quarantine_entity"} 1`,
		`riposte_alerts_received_total 1`,
		`riposte_alerts_finished_total{result="acked"} 1`,
		`riposte_alerts_in_flight 0`,
		`riposte_alert_duration_seconds_count 1`,
		`go_goroutines `,
		`process_start_time_seconds `,
	)
	if strings.Contains(page, "alert-metrics") || strings.Contains(page, "ent-metrics") {
		t.Errorf("/metrics carries alert data:\n%s", page)
	}
}

func TestMetricsOfARedeliveredAlert(t *testing.T) {
	t.Parallel()
	s := startStack(t, "testdata/fast-retry", withHTTP)
	s.hec.FailNext("/action/entity", 2, 503, "busy") // both attempts of the first delivery
	s.publish("soar.alerts.checkpoint.phishing", "redeliver-metrics", phishing("x", "ev-1", "ent-m2"), nil)
	s.await("SOAR_OUTCOMES", "soar.outcomes.fast-quarantine")
	s.settled()

	s.awaitMetrics(
		`riposte_alerts_received_total 2`,
		`riposte_alerts_finished_total{result="retried"} 1`,
		`riposte_alerts_finished_total{result="acked"} 1`,
		`riposte_outcomes_total{playbook="fast-quarantine",status="failed"} 1`, // the retried delivery's run
		`riposte_outcomes_total{playbook="fast-quarantine",status="succeeded"} 1`,
		`riposte_step_runs_total{action="checkpoint.get_event",playbook="fast-quarantine",status="succeeded"} 1`,
		`riposte_step_runs_total{action="checkpoint.get_event",playbook="fast-quarantine",status="reused"} 1`,
		`riposte_step_runs_total{action="checkpoint.quarantine_entity",playbook="fast-quarantine",status="failed"} 1`,
		`riposte_step_runs_total{action="checkpoint.quarantine_entity",playbook="fast-quarantine",status="succeeded"} 1`,
		`riposte_action_attempts_total{action="checkpoint.quarantine_entity",reason="server",result="retryable"} 2`,
		`riposte_action_attempts_total{action="checkpoint.quarantine_entity",reason="",result="ok"} 1`,
		`riposte_action_duration_seconds_count{action="checkpoint.get_event"} 1`, // not called again
		`riposte_alerts_in_flight 0`,
	)
}

// awaitMetrics polls /metrics until it holds every line in want, and returns the page. Polling,
// because the consumer learns of an ack just before the worker counts it.
func (s *stack) awaitMetrics(want ...string) string {
	s.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		page := getPage(s.t, s.httpURL+"/metrics")
		var missing []string
		for _, line := range want {
			if !strings.Contains(page, "\n"+line) {
				missing = append(missing, line)
			}
		}
		if len(missing) == 0 {
			return page
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("/metrics lacks %q:\n%s", missing, page)
		}
	}
}

func getPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", url, resp.Status, err, b)
	}
	return string(b)
}

// --pprof serves Go's profiles beside the metrics; without it they are not there.
func TestPprofOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		s := startStack(t, shippedPlaybooks, func(st *settings) { withHTTP(st); st.pprof = on })
		resp, err := http.Get(s.httpURL + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case on && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile")):
			t.Errorf("with --pprof: %d %.200s", resp.StatusCode, body)
		case !on && resp.StatusCode != http.StatusNotFound:
			t.Errorf("without --pprof: %d, want 404", resp.StatusCode)
		}
	}
	var s settings
	f := newEnvFlags("run", mapEnv(nil))
	defineWorker(f, &s)
	if err := f.fs.Parse([]string{"--pprof", "--http-addr", "0.0.0.0:9464"}); err != nil {
		t.Fatal(err)
	}
	if err := s.finish(mapEnv(nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(s.warnings, "\n"), "--pprof on --http-addr \"0.0.0.0:9464\", which is not a loopback address") {
		t.Errorf("no warning for pprof off loopback: %q", s.warnings)
	}
}
