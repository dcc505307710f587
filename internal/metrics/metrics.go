// Package metrics holds the worker's Prometheus collectors. It implements the small observer
// interfaces of queue, engine and actions, so those packages report what happens without
// knowing about Prometheus; cmd/worker wires them together and serves the registry.
//
// Labels are bounded by configuration (playbook names, action names) or by the code (statuses,
// results, dead-letter reasons); never by alert data.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/queue"
)

// Metrics is the worker's set of collectors. A nil *Metrics records nothing, so code without
// metrics (tests, the demo) can pass nil wherever an observer is wanted.
type Metrics struct {
	alertsReceived prometheus.Counter
	alertsFinished *prometheus.CounterVec
	deadLetters    *prometheus.CounterVec
	outcomes       *prometheus.CounterVec
	stepRuns       *prometheus.CounterVec
	actionAttempts *prometheus.CounterVec
	actionDuration *prometheus.HistogramVec
	alertsInFlight prometheus.Gauge
	alertDuration  prometheus.Histogram
	breakerState   *prometheus.GaugeVec
	breakerChanges *prometheus.CounterVec
	vendorRequests *prometheus.HistogramVec
	buildInfo      *prometheus.GaugeVec
	natsConnected  prometheus.Gauge
	consumerState  *prometheus.GaugeVec
	reloadOK       prometheus.Gauge
	reloadAt       prometheus.Gauge
	reloads        *prometheus.CounterVec
	approvalsWait  prometheus.Gauge
	approvalsDone  *prometheus.CounterVec
	approvalTime   prometheus.Histogram
	batchSteps     *prometheus.HistogramVec

	// What nearly every alert adds to, found once: a child's lookup hashes its labels under a
	// lock.
	acked     prometheus.Counter // alertsFinished{result="acked"}
	unmatched prometheus.Counter // outcomes{playbook="",status="unmatched"}
}

var (
	_ queue.Observer         = (*Metrics)(nil)
	_ engine.Observer        = (*Metrics)(nil)
	_ actions.Observer       = (*Metrics)(nil)
	_ queue.ApprovalObserver = (*Metrics)(nil)
	_ actions.BatchObserver  = (*Metrics)(nil)
)

// durationBuckets span a vendor call answered at once to a step that retried for minutes
// (the default retry policy allows four 30-second attempts plus waits).
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	const ns = "riposte"
	m := &Metrics{
		alertsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "alerts_received_total",
			Help: "Alert deliveries taken from the consumer (a redelivery counts again).",
		}),
		alertsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "alerts_finished_total",
			Help: "Alert deliveries finished, by result: acked, retried (nak'ed for redelivery) or dead_lettered.",
		}, []string{"result"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "dead_letters_total",
			Help: "Alerts stored on the dead-letter stream, by reason.",
		}, []string{"reason"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "outcomes_total",
			Help: "Playbook runs finished, by playbook and outcome status (an unmatched alert: status unmatched, playbook empty); includes runs of deliveries that will be retried.",
		}, []string{"playbook", "status"}),
		stepRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "step_runs_total",
			Help: "Playbook steps finished, by playbook, action and status: succeeded, failed, skipped, denied (at its approval gate), shadowed, or reused from the step journal.",
		}, []string{"playbook", "action", "status"}),
		vendorRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "vendor_request_duration_seconds",
			Help:    "Vendor HTTP requests, by vendor and status code (error: no answer), and how long each took.",
			Buckets: durationBuckets,
		}, []string{"vendor", "code"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "build_info",
			Help: "Always 1; the labels say which build is running.",
		}, []string{"version", "commit", "goversion"}),
		natsConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "nats_connected",
			Help: "1 while the worker is connected to NATS, else 0.",
		}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "playbooks_last_reload_successful",
			Help: "1 when the last reload of the playbooks (or the start) succeeded; 0 while a broken edit is refused and the last good set serves.",
		}),
		reloadAt: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "playbooks_last_reload_success_timestamp_seconds",
			Help: "When the playbooks in use were loaded, as a Unix time.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "playbooks_reloads_total",
			Help: "Reloads of the playbooks, by result: success or failure.",
		}, []string{"result"}),
		consumerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "consumer_alerts",
			Help: "The shared consumer's alerts, by state: pending (not delivered yet) and ack_pending (delivered, waiting to be acked, parked ones included). Read every 15 s.",
		}, []string{"state"}),
		actionAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "action_attempts_total",
			Help: "Calls of an action, by action, result (ok, retryable or permanent) and, for a failure, its reason (auth, rate_limited, client, server, timeout, network, invalid_input, bad_response, canceled, unknown; empty for ok).",
		}, []string{"action", "result", "reason"}),
		actionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "action_duration_seconds",
			Help:    "Time to run one step's action, every attempt and backoff wait included.",
			Buckets: durationBuckets,
		}, []string{"action"}),
		alertsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "alerts_in_flight",
			Help: "Alert deliveries this worker is processing now.",
		}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "vendor_breaker_state",
			Help: "Each vendor's circuit breaker: 0 closed (calls go through), 1 half open (one probe in flight), 2 open (calls held back).",
		}, []string{"vendor"}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "vendor_breaker_changes_total",
			Help: "Circuit breaker state changes, by vendor and the state entered.",
		}, []string{"vendor", "to"}),
		alertDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "alert_duration_seconds",
			Help:    "Time from receiving an alert delivery to its ack, nak or term.",
			Buckets: durationBuckets,
		}),
		approvalsWait: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "approvals_waiting",
			Help: "Approval gates waiting for a decision (every replica reports the same count; read every 5 s).",
		}),
		approvalsDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "approval_decisions_total",
			Help: "Approval gates decided by this replica, by result: approve, deny, timeout_approve or timeout_deny.",
		}, []string{"result"}),
		approvalTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "approval_decision_seconds",
			Help:    "Time from an approval request to its decision (timeouts included).",
			Buckets: []float64{10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400},
		}),
		batchSteps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "batch_steps",
			Help:    "Steps (alerts) one batched vendor call served, by action; its _count is the batched calls made. A call refused as a whole and sent again in halves counts each half.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000},
		}, []string{"action"}),
	}
	// Known results start at zero, so rate() and alerts on them work before the first event.
	for _, r := range []string{queue.ResultAcked, queue.ResultRetried, queue.ResultDeadLettered} {
		c := m.alertsFinished.WithLabelValues(r)
		if r == queue.ResultAcked {
			m.acked = c
		}
	}
	m.unmatched = m.outcomes.WithLabelValues("", engine.StatusUnmatched)
	for _, r := range []string{"invalid", "too_large", "exhausted", "unpublishable"} {
		m.deadLetters.WithLabelValues(r)
	}
	for _, r := range []string{"approve", "deny", "timeout_approve", "timeout_deny"} {
		m.approvalsDone.WithLabelValues(r)
	}
	for _, st := range []string{"pending", "ack_pending"} {
		m.consumerState.WithLabelValues(st)
	}
	reg.MustRegister(m.alertsReceived, m.alertsFinished, m.deadLetters, m.outcomes, m.stepRuns,
		m.actionAttempts, m.actionDuration, m.alertsInFlight, m.alertDuration, m.breakerState, m.breakerChanges,
		m.vendorRequests, m.buildInfo, m.natsConnected, m.consumerState, m.reloadOK, m.reloadAt, m.reloads,
		m.approvalsWait, m.approvalsDone, m.approvalTime, m.batchSteps)
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reloadOK.Set(1)
	return m
}

// AlertReceived implements queue.Observer.
func (m *Metrics) AlertReceived() {
	if m == nil {
		return
	}
	m.alertsReceived.Inc()
	m.alertsInFlight.Inc()
}

// AlertFinished implements queue.Observer.
func (m *Metrics) AlertFinished(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.alertsInFlight.Dec()
	if result == queue.ResultAcked {
		m.acked.Inc()
	} else {
		m.alertsFinished.WithLabelValues(result).Inc()
	}
	m.alertDuration.Observe(took.Seconds())
}

// DeadLettered implements queue.Observer.
func (m *Metrics) DeadLettered(reason string) {
	if m == nil {
		return
	}
	m.deadLetters.WithLabelValues(reason).Inc()
}

// PlaybookFinished implements engine.Observer.
func (m *Metrics) PlaybookFinished(playbook, status string) {
	if m == nil {
		return
	}
	if playbook == "" && status == engine.StatusUnmatched {
		m.unmatched.Inc()
		return
	}
	m.outcomes.WithLabelValues(playbook, status).Inc()
}

// StepFinished implements engine.Observer.
func (m *Metrics) StepFinished(playbook, action, status string) {
	if m == nil {
		return
	}
	m.stepRuns.WithLabelValues(playbook, action, status).Inc()
}

// PlaybooksLoaded records a load of the playbooks: at start (reload false) or a reload.
func (m *Metrics) PlaybooksLoaded(reload, ok bool, at time.Time) {
	if m == nil {
		return
	}
	if reload {
		result := "failure"
		if ok {
			result = "success"
		}
		m.reloads.WithLabelValues(result).Inc()
	}
	if ok {
		m.reloadOK.Set(1)
		m.reloadAt.Set(float64(at.UnixNano()) / 1e9)
	} else {
		m.reloadOK.Set(0)
	}
}

// Build records which build runs.
func (m *Metrics) Build(version, commit, goVersion string) {
	if m == nil {
		return
	}
	m.buildInfo.WithLabelValues(version, commit, goVersion).Set(1)
}

// Known makes every label value known from the playbooks start at zero, so rates and alert
// rules work before the first event: each playbook's outcomes by status, each step's runs by
// status, each action's attempts by result.
func (m *Metrics) Known(playbooks map[string][]Step) {
	if m == nil {
		return
	}
	for pb, steps := range playbooks {
		for _, st := range []string{"succeeded", "failed", "shadowed"} {
			m.outcomes.WithLabelValues(pb, st)
		}
		for _, s := range steps {
			for _, st := range []string{"succeeded", "failed", "skipped", "reused", "shadowed"} {
				m.stepRuns.WithLabelValues(pb, s.Action, st)
			}
			if s.Gated {
				m.stepRuns.WithLabelValues(pb, s.Action, engine.StatusDenied)
			}
			m.actionAttempts.WithLabelValues(s.Action, actions.AttemptOK, "")
			m.actionDuration.WithLabelValues(s.Action)
		}
	}
}

// Step is what Known needs of a playbook step: its action, and whether it has an approval gate
// (so it can be denied).
type Step struct {
	Action string
	Gated  bool
}

// VendorRequest records one vendor HTTP request.
func (m *Metrics) VendorRequest(vendor, code string, took time.Duration) {
	if m == nil {
		return
	}
	m.vendorRequests.WithLabelValues(vendor, code).Observe(took.Seconds())
}

// NATSConnected records whether the worker is connected.
func (m *Metrics) NATSConnected(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.natsConnected.Set(v)
}

// ApprovalDecided implements queue.ApprovalObserver.
func (m *Metrics) ApprovalDecided(result string, waited time.Duration) {
	if m == nil {
		return
	}
	m.approvalsDone.WithLabelValues(result).Inc()
	m.approvalTime.Observe(waited.Seconds())
}

// ApprovalsWaiting implements queue.ApprovalObserver.
func (m *Metrics) ApprovalsWaiting(n int) {
	if m == nil {
		return
	}
	m.approvalsWait.Set(float64(n))
}

// ConsumerAlerts records the shared consumer's pending and ack-pending counts.
func (m *Metrics) ConsumerAlerts(pending, ackPending uint64) {
	if m == nil {
		return
	}
	m.consumerState.WithLabelValues("pending").Set(float64(pending))
	m.consumerState.WithLabelValues("ack_pending").Set(float64(ackPending))
}

// ActionAttempted implements actions.Observer.
func (m *Metrics) ActionAttempted(action, result, reason string) {
	if m == nil {
		return
	}
	m.actionAttempts.WithLabelValues(action, result, reason).Inc()
}

// Vendors makes each vendor's breaker state start at closed, so alerts on it work from the start.
func (m *Metrics) Vendors(names ...string) {
	if m == nil {
		return
	}
	for _, v := range names {
		m.breakerState.WithLabelValues(v).Set(0)
		for _, to := range []string{actions.BreakerClosed, actions.BreakerHalfOpen, actions.BreakerOpen} {
			m.breakerChanges.WithLabelValues(v, to)
		}
	}
}

// BreakerChanged implements actions.Observer.
func (m *Metrics) BreakerChanged(vendor, _, to string) {
	if m == nil {
		return
	}
	m.breakerState.WithLabelValues(vendor).Set(map[string]float64{actions.BreakerClosed: 0, actions.BreakerHalfOpen: 1, actions.BreakerOpen: 2}[to])
	m.breakerChanges.WithLabelValues(vendor, to).Inc()
}

// Batched makes the batch histogram of each action that playbooks batch start at zero.
func (m *Metrics) Batched(actions ...string) {
	if m == nil {
		return
	}
	for _, a := range actions {
		m.batchSteps.WithLabelValues(a)
	}
}

// BatchCalled implements actions.BatchObserver.
func (m *Metrics) BatchCalled(action string, steps, _ int) {
	if m == nil {
		return
	}
	m.batchSteps.WithLabelValues(action).Observe(float64(steps))
}

// ActionFinished implements actions.Observer.
func (m *Metrics) ActionFinished(action string, took time.Duration) {
	if m == nil {
		return
	}
	m.actionDuration.WithLabelValues(action).Observe(took.Seconds())
}
