package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/cyberark"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
	"github.com/riposte-soar/riposte/internal/queue"
)

// demoFakes are the vendors the demo runs against.
type demoFakes struct {
	hec *checkpoint.Fake
	gz  *gravityzone.Fake
	pta *cyberark.Fake
}

// demoCase is one sample alert and the outcome it must produce.
type demoCase struct {
	what    string
	subject string
	id      string
	body    string
	setup   func(demoFakes)
	// want: the subject the result arrives on, the outcome status ("dead" for a dead letter),
	// and the steps as "id:status/attempts".
	wantSubject string
	wantStatus  string
	wantSteps   string
}

// demoSHA256 is the sample file hash the demo's alerts carry.
const demoSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func gzIncident(id, incident, endpoint string) string {
	return fmt.Sprintf(`{"id":%q,"incidentId":%q,"incidentType":"incidents","severity":"high","endpointId":%q,"endpointName":"fin-laptop-7","sha256":[%q]}`,
		id, incident, endpoint, demoSHA256)
}

func demoCases(outcomes, dlq string) []demoCase {
	phish := func(id, event, entity string) string {
		return fmt.Sprintf(`{"id":%q,"type":"phishing","confidenceIndicator":"malicious","eventId":%q,"entityId":%q,"subject":"Your mailbox is full"}`, id, event, entity)
	}
	return []demoCase{
		{
			what: "malicious phishing: read the event, quarantine the mail", subject: "soar.alerts.checkpoint.phishing",
			id: "demo-phish-1", body: phish("demo-phish-1", "ev-new", "ent-mail-1"),
			wantSubject: outcomes + ".phishing-quarantine", wantStatus: "succeeded", wantSteps: "event:succeeded/1 quarantine:succeeded/1",
		},
		{
			what: "already remediated: the quarantine step's if skips it", subject: "soar.alerts.checkpoint.phishing",
			id: "demo-phish-2", body: phish("demo-phish-2", "ev-remediated", "ent-mail-2"),
			wantSubject: outcomes + ".phishing-quarantine", wantStatus: "succeeded", wantSteps: "event:succeeded/1 quarantine:skipped/0",
		},
		{
			what: "HEC answers 503 twice: retried with backoff", subject: "soar.alerts.checkpoint.phishing",
			id: "demo-phish-3", body: phish("demo-phish-3", "ev-new", "ent-mail-3"),
			setup: func(f demoFakes) {
				f.hec.FailNext("/action/entity", 2, 503, "service temporarily unavailable")
			},
			wantSubject: outcomes + ".phishing-quarantine", wantStatus: "succeeded", wantSteps: "event:succeeded/1 quarantine:succeeded/3",
		},
		{
			what: "HEC refuses the request (400): fails at once", subject: "soar.alerts.checkpoint.phishing",
			id: "demo-phish-4", body: phish("demo-phish-4", "ev-new", "ent-mail-4"),
			setup: func(f demoFakes) {
				f.hec.FailNext("/action/entity", 1, 400, "entity is not in a quarantinable state")
			},
			wantSubject: outcomes + ".phishing-quarantine", wantStatus: "failed", wantSteps: "event:succeeded/1 quarantine:failed/1",
		},
		{
			what: "GravityZone incident: isolate, blocklist, note, close", subject: "soar.alerts.gravityzone.incident",
			id: "demo-gz-1", body: gzIncident("demo-gz-1", "inc-1", "ep-1"),
			wantSubject: outcomes + ".gravityzone-incident-containment", wantStatus: "succeeded",
			wantSteps: "isolate:succeeded/1 blocklist:succeeded/1 note:succeeded/1 close:succeeded/1",
		},
		{
			what: "GravityZone answers JSON-RPC server errors twice: retried", subject: "soar.alerts.gravityzone.incident",
			id: "demo-gz-2", body: gzIncident("demo-gz-2", "inc-2", "ep-2"),
			setup: func(f demoFakes) {
				f.gz.Inject("createIsolateEndpointTask", 2, gravityzone.Failure{Code: -32000, Message: "Server error", Details: "the endpoint service is busy"})
			},
			wantSubject: outcomes + ".gravityzone-incident-containment", wantStatus: "succeeded",
			wantSteps: "isolate:succeeded/3 blocklist:succeeded/1 note:succeeded/1 close:succeeded/1",
		},
		{
			what: "PTA event closed after credential rotation, SOC told", subject: "soar.alerts.cyberark.pta",
			id: "demo-pta-1", body: `{"id":"demo-pta-1","eventId":"pta-ev-1","type":"SuspectedCredentialsTheft","account":"root@db01","remediation":"credentials-rotated"}`,
			wantSubject: outcomes + ".pta-close-remediated", wantStatus: "succeeded", wantSteps: "close:succeeded/1 notify:succeeded/1",
		},
		{
			what: "credential-theft chain across all three vendors", subject: "soar.alerts.siem.credential-theft",
			id: "demo-chain-1", body: `{"id":"demo-chain-1","mailEntityId":"ent-mail-9","endpointId":"ep-9","sha256":["` + demoSHA256 + `"],"ptaEventId":"pta-ev-2","account":"svc-backup"}`,
			wantSubject: outcomes + ".credential-theft-chain", wantStatus: "succeeded",
			wantSteps: "quarantine:succeeded/1 isolate:succeeded/1 blocklist:succeeded/1 reopen:succeeded/1 notify:succeeded/1",
		},
		{
			what: "no playbook matches a SIEM login alert", subject: "soar.alerts.siem.login",
			id: "demo-login-1", body: `{"id":"demo-login-1","user":"alice","result":"success"}`,
			wantSubject: outcomes + ".unmatched", wantStatus: "unmatched",
		},
		{
			what: "not JSON: dead-lettered with its reason", subject: "soar.alerts.checkpoint.phishing",
			id: "demo-garbage-1", body: `this is not json`,
			wantSubject: dlq + ".invalid", wantStatus: "dead",
		},
	}
}

// cmdDemo runs the whole flow in one process: an embedded JetStream server, the three vendors'
// fakes, the worker with the shipped playbooks; it publishes sample alerts one by one and checks
// each result.
func cmdDemo(ctx context.Context, args []string, env environ, _ io.Reader, stdout, stderr io.Writer) error {
	var s settings
	f := newEnvFlags("demo", env)
	defineCommonWithLogs(f, &s, "error", "console")
	if err := parseFlags(f, args, stderr); err != nil {
		return err
	}
	log, err := newLogger(s.logLevel, s.logFormat, stderr)
	if err != nil {
		return err
	}

	store, err := os.MkdirTemp("", "riposte-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(store)
	emb, err := queue.StartEmbedded(queue.EmbeddedConfig{Listen: "127.0.0.1:0", StoreDir: store})
	if err != nil {
		return err
	}
	defer emb.Shutdown()

	const clientID, accessKey, gzKey, ptaUser, ptaPassword = "demo-client", "demo-access-key", "demo-gz-key", "demo-pta", "demo-pta-password"
	fakes := demoFakes{
		hec: checkpoint.NewFake(clientID, accessKey),
		gz:  gravityzone.NewFake(gzKey),
		pta: cyberark.NewFake(ptaUser, ptaPassword),
	}
	fakes.hec.AddEvent(map[string]any{"eventId": "ev-new", "state": "new", "type": "phishing", "confidenceIndicator": "malicious"})
	fakes.hec.AddEvent(map[string]any{"eventId": "ev-remediated", "state": "remediated", "type": "phishing", "confidenceIndicator": "malicious"})
	fakes.pta.AddEvent(map[string]any{"id": "pta-ev-1", "type": "SuspectedCredentialsTheft", "score": 87})
	fakes.pta.AddEvent(map[string]any{"id": "pta-ev-2", "type": "SuspiciousActivity", "score": 65, "mStatus": "CLOSED"})
	hecURL, stopHEC := fakes.hec.Start()
	defer stopHEC()
	gzURL, stopGZ := fakes.gz.Start()
	defer stopGZ()
	ptaURL, stopPTA := fakes.pta.Start()
	defer stopPTA()

	s.maxInFlight = 8
	s.breaker = actions.DefaultGuardSettings(s.maxInFlight)
	s.queue = queue.DefaultConfig()
	s.queue.RetryDelay = 500 * time.Millisecond
	vendorEnv := map[string]string{
		"HEC_BASE_URL": hecURL, "HEC_CLIENT_ID": clientID, "HEC_ACCESS_KEY": accessKey,
		"GZ_BASE_URL": gzURL, "GZ_API_KEY": gzKey,
		"PVWA_BASE_URL": ptaURL, "PVWA_USERNAME": ptaUser, "PVWA_PASSWORD": ptaPassword,
	}
	if err := s.finish(mapEnv(vendorEnv)); err != nil {
		return err
	}
	w, err := newWorker(&s, log, nil)
	if err != nil {
		return err
	}
	nc, err := queue.Connect(emb.URL(), "riposte-demo", queue.Auth{}, log)
	if err != nil {
		return err
	}
	defer nc.Close()

	// Streams first, so the samples have somewhere to go; the worker finds them in place.
	q, err := queue.New(nc, s.queue, log)
	if err != nil {
		return err
	}
	if _, err := q.Ensure(ctx); err != nil {
		return err
	}
	results := make(chan *nats.Msg, 16)
	for _, subj := range []string{s.queue.OutcomesPrefix + ".>", s.queue.DLQPrefix + ".>"} {
		if _, err := nc.ChanSubscribe(subj, results); err != nil {
			return err
		}
	}
	runCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.run(runCtx, nc) }()
	defer func() { stopWorker(); <-workerDone }()

	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "riposte demo: embedded JetStream at %s, playbooks from %s\n", emb.URL(), s.playbooks)
	fmt.Fprintf(stdout, "  fake Check Point HEC at %s, fake GravityZone at %s, fake PVWA at %s\n\n", hecURL, gzURL, ptaURL)
	const row = "%-15s %-48s %-10s %-58s %s\n"
	fmt.Fprintf(stdout, row, "ALERT", "ARRIVED ON", "STATUS", "STEPS (id:status/attempts)", "CHECK")
	failures := 0
	cases := demoCases(s.queue.OutcomesPrefix, s.queue.DLQPrefix)
	for _, c := range cases {
		if c.setup != nil {
			c.setup(fakes)
		}
		m := nats.NewMsg(c.subject)
		m.Data = []byte(c.body)
		m.Header.Set(nats.MsgIdHdr, c.id)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publish %s: %w", c.id, err)
		}
		got, err := awaitResult(ctx, results, c.id, 30*time.Second)
		if err != nil {
			return fmt.Errorf("alert %s (%s): %w", c.id, c.what, err)
		}
		status, steps, detail := summarise(got, s.queue.DLQPrefix)
		check := "ok"
		if !c.matches(got.Subject, status, steps) {
			check = fmt.Sprintf("MISMATCH: want %s %s %q", c.wantSubject, c.wantStatus, c.wantSteps)
			failures++
		}
		fmt.Fprintf(stdout, row, c.id, got.Subject, status, steps, check)
		if detail != "" {
			fmt.Fprintf(stdout, "%15s └ %s\n", "", detail)
		}
	}
	fmt.Fprintln(stdout)
	for _, c := range cases {
		fmt.Fprintf(stdout, "  %-15s %s\n", c.id, c.what)
	}
	fmt.Fprintf(stdout, "\nfake HEC received %d API requests and issued %d tokens; fake GravityZone received %d requests; fake PVWA %d requests and %d logons\n",
		len(fakes.hec.Requests()), fakes.hec.AuthCount(), len(fakes.gz.Requests()), len(fakes.pta.Requests()), fakes.pta.LogonCount())
	if failures > 0 {
		return fmt.Errorf("%d of %d outcomes were not the expected ones", failures, len(cases))
	}
	fmt.Fprintln(stdout, "every outcome is the expected one")
	return nil
}

// matches says whether what arrived is what the case expects.
func (c demoCase) matches(subject, status, steps string) bool {
	return subject == c.wantSubject && status == c.wantStatus && steps == c.wantSteps
}

// awaitResult waits for the outcome or dead letter of one alert.
func awaitResult(ctx context.Context, results <-chan *nats.Msg, alertID string, timeout time.Duration) (*nats.Msg, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case m := <-results:
			if m.Header.Get(queue.HeaderAlertID) == alertID {
				return m, nil
			}
		case <-deadline.C:
			return nil, fmt.Errorf("no outcome within %s", timeout)
		case <-ctx.Done():
			return nil, errors.New("interrupted")
		}
	}
}

// summarise renders an outcome's status and steps, and what went wrong: a failed step's error
// or a dead letter's reason.
func summarise(m *nats.Msg, dlqPrefix string) (status, steps, detail string) {
	if strings.HasPrefix(m.Subject, dlqPrefix+".") {
		return "dead", "", m.Header.Get(queue.HeaderDLQReason) + ": " + m.Header.Get(queue.HeaderDLQDetail)
	}
	var o struct {
		Status string `json:"status"`
		Steps  []struct {
			ID       string `json:"id"`
			Status   string `json:"status"`
			Attempts int    `json:"attempts"`
			Error    string `json:"error"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(m.Data, &o); err != nil {
		return "unreadable", "", err.Error()
	}
	parts := make([]string, 0, len(o.Steps))
	for _, st := range o.Steps {
		parts = append(parts, fmt.Sprintf("%s:%s/%d", st.ID, st.Status, st.Attempts))
		if st.Error != "" && detail == "" {
			detail = fmt.Sprintf("step %s: %s", st.ID, st.Error)
		}
	}
	return o.Status, strings.Join(parts, " "), detail
}
