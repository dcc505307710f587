package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/riposte-soar/riposte/internal/metrics"
)

func TestCountersMove(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)

	m.AlertReceived()
	m.AlertReceived()
	m.PlaybookFinished("phishing-quarantine", "succeeded")
	m.PlaybookFinished("", "unmatched")
	m.StepFinished("phishing-quarantine", "checkpoint.get_event", "reused")
	m.StepFinished("phishing-quarantine", "checkpoint.quarantine_entity", "succeeded")
	m.ActionAttempted("checkpoint.quarantine_entity", "retryable", "server")
	m.ActionAttempted("checkpoint.quarantine_entity", "ok", "")
	m.ActionFinished("checkpoint.quarantine_entity", 1500*time.Millisecond)
	m.DeadLettered("invalid")
	m.AlertFinished("dead_lettered", 20*time.Millisecond)

	want := `
# HELP riposte_alerts_finished_total Alert deliveries finished, by result: acked, retried (nak'ed for redelivery) or dead_lettered.
# TYPE riposte_alerts_finished_total counter
riposte_alerts_finished_total{result="acked"} 0
riposte_alerts_finished_total{result="dead_lettered"} 1
riposte_alerts_finished_total{result="retried"} 0
# HELP riposte_alerts_in_flight Alert deliveries this worker is processing now.
# TYPE riposte_alerts_in_flight gauge
riposte_alerts_in_flight 1
# HELP riposte_alerts_received_total Alert deliveries taken from the consumer (a redelivery counts again).
# TYPE riposte_alerts_received_total counter
riposte_alerts_received_total 2
# HELP riposte_dead_letters_total Alerts stored on the dead-letter stream, by reason.
# TYPE riposte_dead_letters_total counter
riposte_dead_letters_total{reason="exhausted"} 0
riposte_dead_letters_total{reason="invalid"} 1
riposte_dead_letters_total{reason="too_large"} 0
riposte_dead_letters_total{reason="unpublishable"} 0
# HELP riposte_outcomes_total Playbook runs finished, by playbook and outcome status (an unmatched alert: status unmatched, playbook empty); includes runs of deliveries that will be retried.
# TYPE riposte_outcomes_total counter
riposte_outcomes_total{playbook="",status="unmatched"} 1
riposte_outcomes_total{playbook="phishing-quarantine",status="succeeded"} 1
# HELP riposte_step_runs_total Playbook steps finished, by playbook, action and status: succeeded, failed, skipped, denied (at its approval gate), shadowed, or reused from the step journal.
# TYPE riposte_step_runs_total counter
riposte_step_runs_total{action="checkpoint.get_event",playbook="phishing-quarantine",status="reused"} 1
riposte_step_runs_total{action="checkpoint.quarantine_entity",playbook="phishing-quarantine",status="succeeded"} 1
# HELP riposte_action_attempts_total Calls of an action, by action, result (ok, retryable or permanent) and, for a failure, its reason (auth, rate_limited, client, server, timeout, network, invalid_input, bad_response, canceled, unknown; empty for ok).
# TYPE riposte_action_attempts_total counter
riposte_action_attempts_total{action="checkpoint.quarantine_entity",reason="",result="ok"} 1
riposte_action_attempts_total{action="checkpoint.quarantine_entity",reason="server",result="retryable"} 1
`
	names := []string{
		"riposte_alerts_finished_total", "riposte_alerts_in_flight", "riposte_alerts_received_total",
		"riposte_dead_letters_total", "riposte_outcomes_total", "riposte_step_runs_total", "riposte_action_attempts_total",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// Histograms: one observation each, in the bucket its duration belongs to.
	if n := testutil.CollectAndCount(reg, "riposte_action_duration_seconds", "riposte_alert_duration_seconds"); n != 2 {
		t.Errorf("%d histogram series, want 2", n)
	}
	hists := `
# HELP riposte_alert_duration_seconds Time from receiving an alert delivery to its ack, nak or term.
# TYPE riposte_alert_duration_seconds histogram
riposte_alert_duration_seconds_bucket{le="0.005"} 0
riposte_alert_duration_seconds_bucket{le="0.01"} 0
riposte_alert_duration_seconds_bucket{le="0.025"} 1
riposte_alert_duration_seconds_bucket{le="0.05"} 1
riposte_alert_duration_seconds_bucket{le="0.1"} 1
riposte_alert_duration_seconds_bucket{le="0.25"} 1
riposte_alert_duration_seconds_bucket{le="0.5"} 1
riposte_alert_duration_seconds_bucket{le="1"} 1
riposte_alert_duration_seconds_bucket{le="2.5"} 1
riposte_alert_duration_seconds_bucket{le="5"} 1
riposte_alert_duration_seconds_bucket{le="10"} 1
riposte_alert_duration_seconds_bucket{le="30"} 1
riposte_alert_duration_seconds_bucket{le="60"} 1
riposte_alert_duration_seconds_bucket{le="120"} 1
riposte_alert_duration_seconds_bucket{le="300"} 1
riposte_alert_duration_seconds_bucket{le="+Inf"} 1
riposte_alert_duration_seconds_sum 0.02
riposte_alert_duration_seconds_count 1
# HELP riposte_action_duration_seconds Time to run one step's action, every attempt and backoff wait included.
# TYPE riposte_action_duration_seconds histogram
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.005"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.01"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.025"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.05"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.1"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.25"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="0.5"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="1"} 0
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="2.5"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="5"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="10"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="30"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="60"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="120"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="300"} 1
riposte_action_duration_seconds_bucket{action="checkpoint.quarantine_entity",le="+Inf"} 1
riposte_action_duration_seconds_sum{action="checkpoint.quarantine_entity"} 1.5
riposte_action_duration_seconds_count{action="checkpoint.quarantine_entity"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(hists), "riposte_alert_duration_seconds", "riposte_action_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestNilRecordsNothingAndDoesNotPanic(t *testing.T) {
	var m *metrics.Metrics
	m.AlertReceived()
	m.AlertFinished("acked", time.Second)
	m.DeadLettered("exhausted")
	m.PlaybookFinished("p", "failed")
	m.StepFinished("p", "a", "failed")
	m.VendorRequest("v", "200", time.Second)
	m.Known(map[string][]metrics.Step{"p": {{Action: "a"}}})
	m.Build("v", "c", "go")
	m.NATSConnected(true)
	m.ConsumerAlerts(1, 2)
	m.BreakerChanged("v", "closed", "open")
	m.ActionAttempted("a", "permanent", "client")
	m.ActionFinished("a", time.Second)
}

func TestTwoRegistriesDoNotShareState(t *testing.T) {
	// No package-level state: each worker (or test) has its own counters.
	r1, r2 := prometheus.NewRegistry(), prometheus.NewRegistry()
	metrics.New(r1).AlertReceived()
	metrics.New(r2)
	const help = "# HELP riposte_alerts_received_total Alert deliveries taken from the consumer (a redelivery counts again).\n" +
		"# TYPE riposte_alerts_received_total counter\n"
	for _, c := range []struct {
		reg  *prometheus.Registry
		want string
	}{{r1, "1"}, {r2, "0"}} {
		err := testutil.GatherAndCompare(c.reg, strings.NewReader(help+"riposte_alerts_received_total "+c.want+"\n"), "riposte_alerts_received_total")
		if err != nil {
			t.Error(err)
		}
	}
}

// Every label value the playbooks make known is exported at zero from the start; the gauges
// say what they were last told.
func TestKnownSeriesStartAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Known(map[string][]metrics.Step{"gz-isolate": {{Action: "gravityzone.isolate_endpoint"}}})
	m.Build("1.2.0", "abc1234", "go1.26.8")
	m.NATSConnected(true)
	m.ConsumerAlerts(7, 3)
	m.VendorRequest("gravityzone", "200", 40*time.Millisecond)
	want := `
# HELP riposte_build_info Always 1; the labels say which build is running.
# TYPE riposte_build_info gauge
riposte_build_info{commit="abc1234",goversion="go1.26.8",version="1.2.0"} 1
# HELP riposte_consumer_alerts The shared consumer's alerts, by state: pending (not delivered yet) and ack_pending (delivered, waiting to be acked, parked ones included). Read every 15 s.
# TYPE riposte_consumer_alerts gauge
riposte_consumer_alerts{state="ack_pending"} 3
riposte_consumer_alerts{state="pending"} 7
# HELP riposte_nats_connected 1 while the worker is connected to NATS, else 0.
# TYPE riposte_nats_connected gauge
riposte_nats_connected 1
# HELP riposte_outcomes_total Playbook runs finished, by playbook and outcome status (an unmatched alert: status unmatched, playbook empty); includes runs of deliveries that will be retried.
# TYPE riposte_outcomes_total counter
riposte_outcomes_total{playbook="",status="unmatched"} 0
riposte_outcomes_total{playbook="gz-isolate",status="failed"} 0
riposte_outcomes_total{playbook="gz-isolate",status="shadowed"} 0
riposte_outcomes_total{playbook="gz-isolate",status="succeeded"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"riposte_build_info", "riposte_consumer_alerts", "riposte_nats_connected", "riposte_outcomes_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "riposte_step_runs_total"); n != 5 {
		t.Errorf("%d step series, want 5 (each status of the one step)", n)
	}
	if n := testutil.CollectAndCount(reg, "riposte_vendor_request_duration_seconds"); n != 1 {
		t.Errorf("%d vendor request series, want 1", n)
	}
}
