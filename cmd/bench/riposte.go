package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/checkpoint"
	"github.com/riposte-soar/riposte/internal/actions/cyberark"
	"github.com/riposte-soar/riposte/internal/actions/gravityzone"
	"github.com/riposte-soar/riposte/internal/actions/natspub"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/metrics"
	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/queue"
)

// riposte as `worker run` wires it (cmd/worker/worker.go newWorker, run and handler;
// cmd/worker/vendors.go; cmd/worker/vendorhttp.go), rebuilt here from the internal packages
// since package main cannot be imported: the same catalogue, vendor configuration, HTTP client,
// dispatcher options, metrics, engine options, leases and handler. What differs: the vendor
// settings point at the bench's fake HEC, and the JSON log goes nowhere (it is encoded all the
// same). If cmd/worker's wiring changes, change this with it.

// vendorList is cmd/worker's list of vendors.
func vendorList() []actions.Vendor {
	return []actions.Vendor{checkpoint.Vendor(), gravityzone.Vendor(), cyberark.Vendor(), natspub.Vendor()}
}

func catalogue() (*actions.Catalogue, error) {
	var specs []actions.Spec
	for _, v := range vendorList() {
		specs = append(specs, v.Specs...)
	}
	return actions.NewCatalogue(specs...)
}

// loadPlaybooks loads dir as the worker does, against the whole catalogue.
func loadPlaybooks(dir string) ([]*playbook.Playbook, error) {
	cat, err := catalogue()
	if err != nil {
		return nil, err
	}
	pbs, err := playbook.LoadDir(dir, cat)
	if err != nil {
		return nil, err
	}
	if len(pbs) == 0 {
		return nil, fmt.Errorf("no playbooks in %s", dir)
	}
	return pbs, nil
}

// newLogger is `worker run`'s default logger (JSON, ISO 8601 times, info), writing nowhere.
func newLogger(level string) (*zap.Logger, error) {
	if level == "off" {
		return zap.NewNop(), nil
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("-log-level %q: use debug, info, warn, error or off", level)
	}
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.AddSync(io.Discard), lvl)), nil
}

// conditionPlaybooks writes n playbooks on the bench subject whose `when`s all differ and none
// holds for the bench's alerts: every alert is checked against each and comes out unmatched.
func conditionPlaybooks(dir string, n int) error {
	whens := []string{
		`alert.type == "malware-%d"`,
		`alert.severity in ["critical", "high"] && alert.score > %d`,
		`alert.source == "edr-%d" || "quarantine-%[1]d" in alert.tags`,
		`alert.confidenceIndicator == "malicious" && alert.eventId == "ev-never-%d"`,
		`alert.sender endsWith "@evil-%d.example" && alert.recipient != nil`,
	}
	for i := range n {
		when := fmt.Sprintf(whens[i%len(whens)], i)
		pb := fmt.Sprintf(`name: cond-%03d
description: never matches the bench's alerts (condition %d of %d)
on: [soar.alerts.bench.>]
when: '%s'
steps:
  - id: quarantine
    action: checkpoint.quarantine_entity
    with:
      entityIds: ${{ [alert.entityId] }}
      entityActionParam: "riposte bench ${{ alert_id }}"
`, i, i+1, n, when)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("cond-%03d.yaml", i)), []byte(pb), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// vendorPlaybook writes the one playbook of the vendor-bound cases: one HEC quarantine.
func vendorPlaybook(dir string) error {
	return quarantinePlaybook(dir, "bench-quarantine", "one HEC action per alert", "riposte bench ${{ alert_id }}", "")
}

// stormPlaybook writes the storm case's playbook: one HEC quarantine whose other input is the
// same for every alert, so that with batch (a `batch:` mapping; "" for none) alerts share calls.
func stormPlaybook(dir, batch string) error {
	return quarantinePlaybook(dir, "bench-storm", "quarantines of one campaign", "riposte bench storm", batch)
}

// quarantinePlaybook writes a playbook of one HEC quarantine per phishing alert, its
// entityActionParam param, with batch when it is not "".
func quarantinePlaybook(dir, name, description, param, batch string) error {
	pb := `name: ` + name + `
description: ` + description + `
on: [soar.alerts.bench.>]
when: alert.type == "phishing" && alert.confidenceIndicator == "malicious"
steps:
  - id: quarantine
    action: checkpoint.quarantine_entity
    with:
      entityIds: ${{ [alert.entityId] }}
      entityActionParam: "` + param + `"
`
	if batch != "" {
		pb += "    batch: " + batch + "\n"
	}
	return os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(pb), 0o644)
}

// finishCounter hears every replica's deliveries end (beside the replica's metrics) and says
// when the case's alerts are all acked.
type finishCounter struct {
	want  int64
	acked atomic.Int64
	other atomic.Int64 // retried or dead-lettered: none should be, in a bench
	done  chan struct{}
	once  sync.Once
}

func newFinishCounter(want int) *finishCounter {
	return &finishCounter{want: int64(want), done: make(chan struct{})}
}

// observer is one replica's queue.Observer: its metrics, and the case's counter and stages.
type observer struct {
	m *metrics.Metrics
	c *finishCounter
	s *stageTimes // nil: not timed
}

func (o observer) AlertReceived()             { o.m.AlertReceived() }
func (o observer) DeadLettered(reason string) { o.m.DeadLettered(reason) }
func (o observer) AlertFinished(result string, took time.Duration) {
	o.m.AlertFinished(result, took)
	o.s.add(stageSlot, took)
	if result != queue.ResultAcked {
		o.c.other.Add(1)
		return
	}
	if o.c.acked.Add(1) >= o.c.want {
		o.c.once.Do(func() { close(o.c.done) })
	}
}

// replica is one riposte worker: its own NATS connection, vendor clients, dispatcher, engine and
// queue.Run on the shared durable consumer.
type replica struct {
	nc      *nats.Conn
	q       *queue.Queue
	handler queue.Handler
	https   []*http.Client
}

// wiring is what a replica is wired to: the server, the queue's settings, riposte's log level
// and the fake HEC. The bench process and the replica child (rss.go) build replicas from it.
type wiring struct {
	natsURL  string
	cfg      queue.Config
	logLevel string
	hecURL   string
}

func (st *stack) wiring() wiring {
	return wiring{natsURL: st.srv.URL(), cfg: st.cfg, logLevel: st.o.logLevel, hecURL: st.hec.url}
}

// newReplica wires one replica as `worker run` does; c hears its deliveries end, and stages (nil:
// not timed) where their time went.
func newReplica(ctx context.Context, wr wiring, pbs []*playbook.Playbook, inFlight, index int, c *finishCounter, stages *stageTimes) (*replica, error) {
	log, err := newLogger(wr.logLevel)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("bench-%d-%d", os.Getpid(), index)
	nc, err := queue.Connect(wr.natsURL, "riposte-worker", queue.Auth{}, log)
	if err != nil {
		return nil, err
	}
	r := &replica{nc: nc}
	fail := func(err error) (*replica, error) {
		r.close()
		return nil, err
	}
	cfg := wr.cfg
	cfg.MaxInFlight = inFlight
	if r.q, err = queue.New(nc, cfg, log); err != nil {
		return fail(err)
	}
	journal, err := r.q.Ensure(ctx)
	if err != nil {
		return fail(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	r.q.SetObserver(observer{m: m, c: c, s: stages})

	// cmd/worker newVendors: only the vendors some playbook uses, each from its settings.
	used := map[string]bool{}
	for _, pb := range pbs {
		for _, v := range pb.Vendors() {
			used[v] = true
		}
	}
	reg, _ := actions.NewRegistry()
	guard := actions.DefaultGuardSettings(inFlight)
	var opts []actions.DispatcherOption
	var names []string
	for _, v := range vendorList() {
		if !used[v.Name] {
			continue
		}
		var s actions.Settings
		switch v.Name {
		case "checkpoint":
			s = actions.Settings{checkpoint.EnvBaseURL: wr.hecURL, checkpoint.EnvClientID: hecClientID, checkpoint.EnvAccessKey: hecAccessKey}
		case "nats":
		default:
			return fail(fmt.Errorf("the bench has no fake for vendor %s", v.Name))
		}
		hc, err := vendorhttp.NewHTTPClient(v, s, inFlight, m)
		if err != nil {
			return fail(err)
		}
		if stages != nil {
			hc.Transport = timedVendor{next: hc.Transport, s: stages}
		}
		r.https = append(r.https, hc)
		inst, limit, err := v.Configure(s, actions.Deps{Log: log, HTTP: hc, UserAgent: "riposte/bench"})
		if err != nil {
			return fail(err)
		}
		for _, a := range inst.Actions {
			if err := reg.Add(a); err != nil {
				return fail(err)
			}
			if b, ok := a.(interface{ Bind(*nats.Conn) error }); ok {
				if err := b.Bind(nc); err != nil {
					return fail(err)
				}
			}
		}
		opts = append(opts, actions.WithRateLimit(v.Name, limit), actions.WithGuard(v.Name, guard))
		names = append(names, v.Name)
	}
	slices.Sort(names)
	known := map[string][]metrics.Step{}
	for _, pb := range pbs {
		for _, s := range pb.Steps {
			known[pb.Name] = append(known[pb.Name], metrics.Step{Action: s.Action})
		}
	}
	m.Known(known)
	m.Vendors(names...)
	dispatch := actions.NewDispatcher(log, append(opts, actions.WithObserver(m))...)
	var locker engine.Locker = journal.Leases(name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), r.q.Config().AckWait, log)
	var steps engine.Journal = journal
	if stages != nil {
		locker, steps = timedLocker{l: locker, s: stages}, timedJournal{j: steps, s: stages}
	}
	eng := engine.New(pbs, reg, dispatch, steps, engine.Options{Worker: name, Log: log, Observer: m, Locker: locker})
	maxOutcome := int(nc.MaxPayload()) - 8*1024
	r.q.SetTriage(eng.Triage(maxOutcome, log))
	r.handler = eng.Handler(maxOutcome, log)
	if stages != nil {
		h := r.handler
		r.handler = func(ctx context.Context, a *queue.Alert) queue.Verdict {
			began := time.Now()
			v := h(ctx, a)
			stages.add(stageHandler, time.Since(began))
			return v
		}
	}
	return r, nil
}

func (r *replica) close() {
	for _, hc := range r.https {
		hc.CloseIdleConnections()
	}
	r.nc.Close()
}

// riposteCase is one run of riposte: replicas on the shared consumer until want deliveries are
// acked.
type riposteCase struct {
	name     string // for profiles
	pbs      []*playbook.Playbook
	replicas int
	inFlight int // per replica
	want     int // acked deliveries that end the case, warm-up included
	// warm runs after the replicas start and before the window opens; during, inside the
	// window (the latency case publishes there). Either may be nil.
	warm, during func(ctx context.Context) error
	timeout      time.Duration
	stages       *stageTimes // nil: not timed
}

// runRiposte builds the replicas (outside the window), opens the window, starts them, and
// closes it when every alert is acked.
func (st *stack) runRiposte(ctx context.Context, c riposteCase) (usage, error) {
	counter := newFinishCounter(c.want)
	var reps []*replica
	defer func() {
		for _, r := range reps {
			r.close()
		}
	}()
	for i := range c.replicas {
		r, err := newReplica(ctx, st.wiring(), c.pbs, c.inFlight, i, counter, c.stages)
		if err != nil {
			return usage{}, err
		}
		reps = append(reps, r)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, len(reps))
	startAll := func() {
		for _, r := range reps {
			wg.Go(func() {
				if err := r.q.Run(runCtx, r.handler); err != nil {
					errs <- err
				}
			})
		}
	}
	var w *window
	var err error
	if c.warm != nil {
		startAll()
		if err = c.warm(ctx); err != nil {
			return usage{}, err
		}
	}
	if w, err = st.startWindow(c.name); err != nil {
		return usage{}, err
	}
	if c.warm == nil {
		startAll()
	}
	if c.during != nil {
		if err := c.during(ctx); err != nil {
			_, _ = w.end()
			return usage{}, err
		}
	}
	if err := counter.await(ctx, errs, c.timeout); err != nil {
		_, _ = w.end()
		return usage{}, err
	}
	u, err := w.end()
	stop()
	wg.Wait()
	if err != nil {
		return u, err
	}
	return u, counter.clean()
}

// await waits until every alert is acked, a replica's queue.Run fails (on errs), timeout passes
// or ctx ends.
func (c *finishCounter) await(ctx context.Context, errs <-chan error, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case err := <-errs:
		return fmt.Errorf("queue.Run: %w", err)
	case <-t.C:
		return fmt.Errorf("%d of %d alerts acked after %s (%d deliveries ended otherwise)", c.acked.Load(), c.want, timeout, c.other.Load())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// clean says whether every delivery was acked at its first try.
func (c *finishCounter) clean() error {
	if n := c.other.Load(); n > 0 {
		return fmt.Errorf("%d deliveries were retried or dead-lettered: a bench run must have none", n)
	}
	return nil
}

// playbookDir makes a fresh directory for a case's playbooks.
func (st *stack) playbookDir(name string) (string, error) {
	dir := filepath.Join(st.dir, "playbooks-"+strings.ReplaceAll(name, "/", "-"))
	return dir, os.MkdirAll(dir, 0o755)
}
