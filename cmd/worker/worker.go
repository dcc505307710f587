package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/metrics"
	"github.com/riposte-soar/riposte/internal/playbook"
	"github.com/riposte-soar/riposte/internal/queue"
)

// worker is one replica: playbooks, vendor clients, the engine and its queue, wired together.
type worker struct {
	pbs      []*playbook.Playbook
	vendors  *vendors
	settings *settings
	log      *zap.Logger
	metrics  *metrics.Metrics // nil: none (the demo, most tests)

	// readiness: the connection and the queue once run has them.
	state atomic.Pointer[runState]
	// hup delivers SIGHUP, registered before start-up so it can never kill the worker; nil: none.
	hup <-chan os.Signal
	// console is the web console once the HTTP listener serves it; its tokens file is read
	// again on every reload.
	console atomic.Pointer[console]
}

type runState struct {
	nc       *nats.Conn
	q        *queue.Queue
	reloader *reloader
	// approvals is the approvals bucket once run has opened it, for the console.
	approvals *queue.Approvals
}

// reload is POST /-/reload: it answers why a reload was refused, or nil.
func (w *worker) reload() error {
	st := w.state.Load()
	if st == nil || st.reloader == nil {
		return errors.New("the worker is still starting")
	}
	return st.reloader.reload("POST /-/reload")
}

// ready says why the worker does not take alerts, or nil when it does: streams, consumer and
// playbooks in place, connected, and the pull loop healthy.
func (w *worker) ready() error {
	st := w.state.Load()
	switch {
	case st == nil || st.q == nil:
		return errors.New("starting: streams and consumer not in place yet")
	case !st.nc.IsConnected():
		return errors.New("not connected to NATS")
	case !st.q.Ready():
		return errors.New("not pulling alerts: the consumer cannot be read")
	}
	return nil
}

// loadPlaybooks reads and checks every playbook against the full action catalogue.
func loadPlaybooks(dir string) ([]*playbook.Playbook, error) {
	pbs, err := playbook.LoadDir(dir, catalogue())
	if err != nil {
		return nil, err
	}
	if len(pbs) == 0 {
		return nil, fmt.Errorf("no playbooks (*.yaml, *.yml) in %s", dir)
	}
	return pbs, nil
}

// newWorker loads the playbooks and configures the vendors they use, before any connection is
// made: anything wrong stops start-up with a message naming the file, playbook or variable.
// m may be nil: no metrics.
func newWorker(s *settings, log *zap.Logger, m *metrics.Metrics) (*worker, error) {
	pbs, err := loadPlaybooks(s.playbooks)
	if err != nil {
		return nil, err
	}
	deps := actions.Deps{Log: log, UserAgent: currentBuild().userAgent()}
	v, err := newVendors(pbs, s.simulate, s.vendorEnv, deps, s.maxInFlight, m)
	if err != nil {
		return nil, err
	}
	return &worker{pbs: pbs, vendors: v, settings: s, log: log, metrics: m}, nil
}

// run makes sure the streams, consumer and journal exist, then consumes alerts until ctx ends
// and finishes what is in flight.
func (w *worker) run(ctx context.Context, nc *nats.Conn) error {
	defer w.vendors.close()
	q, err := queue.New(nc, w.settings.queue, w.log)
	if err != nil {
		return err
	}
	if err := w.vendors.bind(nc); err != nil {
		return err
	}
	journal, err := q.Ensure(ctx)
	if err != nil && ctx.Err() != nil {
		return nil // a signal during start-up is a clean stop
	}
	if err != nil {
		return err
	}
	q.SetObserver(w.metrics)
	w.state.Store(&runState{nc: nc, q: q})
	defer w.state.Store(nil)
	if w.metrics != nil {
		b := currentBuild()
		w.metrics.Build(b.Version, b.Commit, b.GoVersion)
		known := map[string][]metrics.Step{}
		for _, pb := range w.pbs {
			for _, st := range pb.Steps {
				known[pb.Name] = append(known[pb.Name], metrics.Step{Action: st.Action, Gated: st.Approval != nil})
			}
		}
		w.metrics.Known(known)
		stopGauges := w.watchGauges(ctx, nc, q)
		defer stopGauges()
	}
	w.metrics.Vendors(w.vendors.names()...)
	w.metrics.Batched(batchedActions(w.pbs, w.settings.maxInFlight, w.log)...)
	dispatch := actions.NewDispatcher(w.log, append(w.vendors.dispatcherOptions(w.settings.breaker), actions.WithObserver(w.metrics))...)
	name := workerName()
	// A claim lasts as long as a delivery's ack wait: a replica cut off longer than that has
	// lost the alert to another, and must have stopped calling vendors for it too.
	leases := journal.Leases(name+"-"+strconv.FormatInt(time.Now().UnixNano(), 36), q.Config().AckWait, w.log)
	approvals, err := q.Approvals(ctx, w.metrics)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	eng := engine.New(w.pbs, w.vendors.registry, dispatch, journal, engine.Options{
		Worker: name, Simulated: w.settings.simulate, Log: w.log, Observer: w.metrics, Locker: leases,
		Approvals: gates{ap: approvals, now: time.Now}, JournalWriteBudget: q.Config().AckWait,
		Batcher: actions.NewBatcher(dispatch, w.log, actions.WithBatchObserver(w.metrics)),
	})
	rl := &reloader{w: w, eng: eng}
	w.state.Store(&runState{nc: nc, q: q, reloader: rl, approvals: approvals})
	w.metrics.PlaybooksLoaded(false, true, time.Now())
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	rl.watch(watchCtx, w.hup)
	names := make([]string, 0, len(w.pbs))
	for _, pb := range w.pbs {
		names = append(names, pb.Name)
	}
	w.log.Info("worker ready", zap.Strings("playbooks", names), zap.Bool("simulate", w.settings.simulate),
		zap.String("stream", q.Config().AlertsStream), zap.String("consumer", q.Config().Consumer))
	// Decisions and timeouts are carried out for as long as alerts are taken.
	decisions := make(chan error, 1)
	actx, stopApprovals := context.WithCancel(ctx)
	go func() { decisions <- approvals.Run(actx) }()
	maxOutcome := int(nc.MaxPayload()) - 8*1024
	q.SetTriage(eng.Triage(maxOutcome, w.log))
	err = q.Run(ctx, eng.Handler(maxOutcome, w.log))
	stopApprovals()
	if aerr := <-decisions; aerr != nil && err == nil && ctx.Err() == nil {
		err = aerr
	}
	return err
}

// batchedActions are the actions pbs's steps batch, each once. A step whose max_size is over
// the alerts a replica has in flight is warned about: its calls fill only when alerts carry
// several targets each, and otherwise every one waits its max_wait.
func batchedActions(pbs []*playbook.Playbook, maxInFlight int, log *zap.Logger) []string {
	var names []string
	for _, pb := range pbs {
		for _, st := range pb.Steps {
			if st.Batch == nil {
				continue
			}
			if !slices.Contains(names, st.Action) {
				names = append(names, st.Action)
			}
			if st.Batch.MaxSize > maxInFlight {
				log.Warn("a batch can hold more targets than this replica has alerts in flight: unless alerts carry several targets each, every call waits max_wait",
					zap.String("playbook", pb.Name), zap.String("step", st.ID), zap.Int("max_size", st.Batch.MaxSize),
					zap.Int("max_in_flight", maxInFlight), zap.Duration("max_wait", st.Batch.MaxWait))
			}
		}
	}
	return names
}

// watchGauges keeps the connection and consumer gauges current until stopped.
func (w *worker) watchGauges(ctx context.Context, nc *nats.Conn, q *queue.Queue) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			w.metrics.NATSConnected(nc.IsConnected())
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if pending, ackPending, err := q.ConsumerState(qctx); err == nil {
				w.metrics.ConsumerAlerts(pending, ackPending)
			}
			cancel()
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

func workerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
