// Package engine runs one alert: it picks the playbooks that match, runs their steps in order
// through the action dispatcher, remembers completed steps in a journal, and builds one outcome
// per playbook run. It knows nothing of NATS or HTTP.
package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/jsonval"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// Outcome and step statuses, as published.
const (
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusSkipped   = "skipped"
	StatusUnmatched = "unmatched"
	// StatusShadowed is a run, or a step of it, of a playbook in mode: shadow: no vendor was
	// called; each step's output holds the inputs it would have sent.
	StatusShadowed = "shadowed"
	// StatusDenied is a step whose approval gate was denied, by people or by its timeout.
	StatusDenied = "denied"
	// StatusReused is never published (the step's outcome says succeeded); Observer hears it
	// for a step whose result came from the journal, so no vendor was called.
	StatusReused = "reused"
)

// Outcome is the outcome message of docs/playbooks.md.
type Outcome struct {
	AlertID    string    `json:"alert_id"`
	Subject    string    `json:"subject"`
	Playbook   string    `json:"playbook"`
	Status     string    `json:"status"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Worker     string    `json:"worker"`
	Deliveries int       `json:"deliveries"`
	// FailedDeliveries counts the earlier deliveries that ended in a vendor failure, the ones
	// that count against max_deliver; absent when there were none.
	FailedDeliveries int           `json:"failed_deliveries,omitempty"`
	Steps            []StepOutcome `json:"steps"`
	// Error explains a failure that is no step's: a `when` that could not be evaluated.
	Error string `json:"error,omitempty"`
	// Simulated marks a run against the in-process vendor fakes (--simulate).
	Simulated bool `json:"simulated,omitempty"`
	// ReplayOf is the dead-letter sequence the alert was replayed from (worker dlq replay).
	ReplayOf string `json:"replay_of,omitempty"`
}

// StepOutcome is one step's part of an outcome.
type StepOutcome struct {
	ID         string `json:"id"`
	Action     string `json:"action"`
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	DurationMS int64  `json:"duration_ms"`
	// Output is what steps.<id>.output reads: the vendor's answer (an object), the list of a
	// foreach step's item outputs, or a shadow step's inputs.
	Output any    `json:"output"`
	Error  string `json:"error"`
	// Replayed marks a step whose result came from the journal of an earlier delivery: no
	// vendor was called this time.
	Replayed bool `json:"replayed,omitempty"`
	// Approval is the decision on the step's approval gate, when it has one.
	Approval *ApprovalInfo `json:"approval,omitempty"`
}

// ApprovalInfo is who decided a gate, when, how and why.
type ApprovalInfo struct {
	Decision  string    `json:"decision"` // approve or deny
	By        []string  `json:"by"`       // the approvers, or ["timeout"]
	DecidedAt time.Time `json:"decided_at"`
	Reason    string    `json:"reason"`
}

// Gate is a step's approval request, with what resuming its alert needs.
type Gate struct {
	ID, AlertID, JournalID, Subject string
	Headers                         map[string]string
	Body                            map[string]any
	Playbook, Step, Prompt          string
	Inputs                          map[string]any
	Approvers                       int
	Timeout                         time.Duration
	OnTimeout                       string
}

// Approvals keeps approval gates; the queue implements it. Gate returns the decision on g,
// nil while it waits; the first call records g and asks people.
type Approvals interface {
	Gate(ctx context.Context, g Gate) (*ApprovalInfo, error)
}

// Alert is what the engine needs to know of one delivery.
type Alert struct {
	ID         string
	Subject    string
	Headers    map[string]string
	Body       map[string]any
	Deliveries int
	// Failures is how many earlier deliveries ended in a vendor failure.
	Failures int
	// ReplayOf is the dead-letter sequence the alert was replayed from; "" for a first run.
	ReplayOf string
	// ResumePlaybook, set when the alert resumes after an approval decision, is the one
	// playbook that runs.
	ResumePlaybook string
	// JournalID, when set, names the alert in the step journal instead of ID (see queue.Alert).
	JournalID string
}

// Result is the engine's verdict on one alert.
type Result struct {
	Outcomes []Outcome
	// Retry is set when a step ran out of retries on a failure that may pass later; the
	// outcomes then describe this delivery, to be published only if no delivery is left.
	Retry bool
	// RetryAfter is the longest wait a vendor asked for (Retry-After) among the failures that
	// set Retry, or until a held-back vendor is tried again: the redelivery should not come sooner.
	RetryAfter time.Duration
	// HeldBack is set, with Retry, when no retried step reached its vendor (its breaker was
	// open or its bulkhead full, or another delivery holds the step or the concurrency key):
	// the alert waits, but no vendor failed it.
	HeldBack bool
	// Requeue is set when the run could not go on for a reason of the worker's own (the journal
	// could not be read or a claim taken): the alert comes back later, no vendor failure counted.
	Requeue bool
	// Parked counts the runs waiting at an approval gate: they have no outcome yet; the
	// decision resumes them.
	Parked int
}

// Locker hands out leases shared by every replica; the queue implements it on the journal
// bucket (queue.Leases). Lock takes name, or says for about how long another holder keeps it
// (wait); held ends if the lease is lost while the work it covers goes on.
//
// ClaimStep claims one step (or item) of one alert, in the name of this delivery, keeping the
// claim and, once the step succeeded, its journal record under the record's key: a claim taken
// where no record is tells that the step has not succeeded yet, with no read of the journal,
// and the record written over the claim ends it, with no release (two round trips to JetStream
// per step, not four). recorded says the key holds the step's record, which usable accepted
// (nothing is then claimed); a record usable refuses (it does not read) is claimed over, as a
// lapsed claim is. wait is about how long another delivery's live claim lasts. Else the claim
// is held, renewed until release, and held ends if it is lost. record writes the step's record
// in the claim's place (it may be tried again, and fails with the same Permanent() errors as
// Journal.Put); release gives up a claim that has no record, and does nothing once record
// succeeded. With a Locker, steps are journaled through it, not through the Journal.
type Locker interface {
	Lock(ctx context.Context, name string) (held context.Context, release func(), wait time.Duration, err error)
	ClaimStep(ctx context.Context, key string, usable func([]byte) bool) (held context.Context,
		record func(context.Context, []byte) error, release func(), recorded bool, wait time.Duration, err error)
}

// maxLockWait bounds how long a run waits for a lease another run holds before it tries again:
// holders renew theirs, so the lease's own end says little about when the work ends.
const maxLockWait = 2 * time.Second

// Journal stores the results of steps that succeeded, so a redelivered alert does not repeat
// vendor calls. The queue package implements it on a JetStream key-value bucket.
//
// A Put error with a Permanent() bool method that answers true (a record too large for the
// server) is not tried again.
type Journal interface {
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	Put(ctx context.Context, key string, value []byte) error
}

// permanent says whether a journal write can never succeed, however often it is tried.
func permanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Observer hears each playbook run and each step as they finish; the worker's metrics
// implement it. Methods are called from many goroutines at once.
type Observer interface {
	// PlaybookFinished reports every outcome built, unmatched ones (playbook "") included, also
	// those of a delivery that will be retried and so not published.
	PlaybookFinished(playbook, status string)
	// StepFinished reports each step of a run: succeeded, failed, skipped or reused.
	StepFinished(playbook, action, status string)
}

type nopObserver struct{}

func (nopObserver) PlaybookFinished(string, string)     {}
func (nopObserver) StepFinished(string, string, string) {}

// Options are the engine's settings.
type Options struct {
	Worker    string // this replica's name in outcomes
	Simulated bool
	Now       func() time.Time
	Log       *zap.Logger
	Observer  Observer // nil: none
	// Locker, when set, claims each step before its vendor is called, so that two deliveries
	// of one alert never call a vendor for the same step at once, and keeps the step's
	// journal record in its claim's place (the Journal is then not used for steps); and it
	// serialises the runs of a playbook with a concurrency_key.
	Locker Locker
	// Batcher coalesces the calls of steps with `batch:` across alerts; nil means one on the
	// engine's dispatcher, on real time.
	Batcher *actions.Batcher
	// Approvals, when set, keeps the approval gates of steps that have one; without it such a
	// step fails.
	Approvals Approvals
	// JournalWriteBudget is how long a step's journal record is tried for when the journal does
	// not take it (a leader election on a cluster takes 4 to 9 s): as long as the step's claim
	// keeps other deliveries off the step, the consumer's ack wait. Zero means 30 s.
	JournalWriteBudget time.Duration
}

// Engine runs alerts against a fixed set of playbooks.
type Engine struct {
	playbooks atomic.Pointer[playbook.Set]
	registry  *actions.Registry
	dispatch  *actions.Dispatcher
	journal   Journal
	opts      Options
	// triageEnvs holds the environments of triaged alerts, to be used again.
	triageEnvs sync.Pool
}

// New builds an engine. Playbooks run in the order given (LoadDir sorts them by name).
func New(pbs []*playbook.Playbook, reg *actions.Registry, d *actions.Dispatcher, j Journal, opts Options) *Engine {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Batcher == nil {
		opts.Batcher = actions.NewBatcher(d, opts.Log)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.JournalWriteBudget <= 0 {
		opts.JournalWriteBudget = defaultJournalWriteBudget
	}
	e := &Engine{registry: reg, dispatch: d, journal: j, opts: opts}
	e.SetPlaybooks(pbs)
	return e
}

// SetPlaybooks swaps in a new set of playbooks (a reload). Alerts already running finish on
// the set they started with; the next alert sees the new one.
func (e *Engine) SetPlaybooks(pbs []*playbook.Playbook) {
	e.playbooks.Store(playbook.NewSet(pbs))
}

// Playbooks is the set new alerts run against.
func (e *Engine) Playbooks() []*playbook.Playbook {
	return e.playbooks.Load().All()
}

// Process runs every matching playbook for one alert.
func (e *Engine) Process(ctx context.Context, a Alert) Result {
	var res Result
	realRetry := false // some run stopped on a vendor's failure, not only on a held-back vendor
	// env is what every playbook's vars and `when` read, made at the first playbook on the
	// subject and shared by the rest (its Vars set for each): most playbooks end there, and
	// only one whose `when` holds gets an environment of its own, for its run.
	var env *playbook.Env
	defer func() { env.Done() }()
	for _, pb := range e.playbooks.Load().Matching(a.Subject) {
		if ctx.Err() != nil {
			// Shutting down: leave the remaining playbooks to the redelivery.
			res.Retry = true
			break
		}
		if a.ResumePlaybook != "" && pb.Name != a.ResumePlaybook {
			continue
		}
		if env == nil {
			env = e.env(a)
		}
		match, err := holds(pb, env)
		if err != nil {
			now := e.now()
			out := e.outcome(a, pb.Name, now)
			out.Status, out.FinishedAt = StatusFailed, now
			out.Error = err.Error()
			e.opts.Log.Warn("playbook condition failed", zap.String("alert_id", a.ID), zap.String("playbook", pb.Name), zap.Error(err))
			res.Outcomes = append(res.Outcomes, out)
			continue
		}
		if !match {
			continue
		}
		// The run sees the instant and vars its `when` saw, and keeps its steps.
		run := &playbook.Env{Alert: env.Alert, Subject: env.Subject, Headers: env.Headers, AlertID: env.AlertID,
			Vars: env.Vars, Now: env.Now, Steps: make(map[string]playbook.StepState, len(pb.Steps))}
		if run.Vars == nil {
			run.Vars = map[string]any{} // as EvalVars gives a playbook without vars: the run's own
		}
		out, end := e.runLocked(ctx, a, pb, run)
		run.Done()
		env.Now = e.now() // a run takes time: the next playbook's `when` sees an instant of its own
		if end.park {
			res.Parked++
			continue
		}
		res.Outcomes = append(res.Outcomes, out)
		res.Requeue = res.Requeue || end.requeue
		res.Retry = res.Retry || end.retry
		res.RetryAfter = max(res.RetryAfter, end.retryAfter)
		res.HeldBack = res.HeldBack || end.heldBack
		realRetry = realRetry || (end.retry && !end.heldBack && !end.requeue)
	}
	res.Requeue = res.Requeue && !realRetry && ctx.Err() == nil
	res.HeldBack = res.HeldBack && !realRetry && !res.Requeue && ctx.Err() == nil
	if len(res.Outcomes) == 0 && res.Parked == 0 && a.ResumePlaybook != "" && !res.Retry && !res.Requeue {
		// Decided after its playbook was removed or renamed by a reload: nothing runs it on.
		e.opts.Log.Warn("approved alert's playbook is no longer loaded; the run ends here", zap.String("alert_id", a.ID),
			zap.String("playbook", a.ResumePlaybook))
	}
	if len(res.Outcomes) == 0 && res.Parked == 0 && a.ResumePlaybook == "" {
		res.Outcomes = append(res.Outcomes, e.unmatched(a))
	}
	for _, o := range res.Outcomes {
		e.opts.Observer.PlaybookFinished(o.Playbook, o.Status)
	}
	return res
}

// triage is Process for an alert no playbook's `when` holds, answered without I/O: its one
// outcome, the one Process would give. ok is false for any other alert (one that some playbook
// runs, a condition that fails, an alert resumed after an approval), which Process must run.
func (e *Engine) triage(a Alert) (out Outcome, ok bool) {
	if a.ResumePlaybook != "" {
		return Outcome{}, false
	}
	if pbs := e.playbooks.Load().Matching(a.Subject); len(pbs) > 0 {
		// Nothing keeps an Env that found no match: the next alert's conditions reuse it, and
		// the VM it keeps.
		env, _ := e.triageEnvs.Get().(*playbook.Env)
		if env == nil {
			env = new(playbook.Env)
		}
		e.ready(env, a)
		for _, pb := range pbs {
			// A failed condition is left to Process, which reports it and runs the other playbooks.
			if match, err := holds(pb, env); match || err != nil {
				e.triageEnvs.Put(env) // Process makes its own
				return Outcome{}, false
			}
		}
		e.triageEnvs.Put(env)
	}
	out = e.unmatched(a)
	e.opts.Observer.PlaybookFinished(out.Playbook, out.Status)
	return out, true
}

// holds evaluates pb's vars, into env.Vars, and then its `when`.
func holds(pb *playbook.Playbook, env *playbook.Env) (bool, error) {
	env.Vars = nil
	if pb.HasVars() {
		var err error
		if env.Vars, err = pb.EvalVars(env); err != nil {
			return false, err
		}
	}
	return pb.When(env)
}

// unmatched is the outcome of an alert that no playbook runs.
func (e *Engine) unmatched(a Alert) Outcome {
	e.opts.Log.Debug("no playbook matches the alert", zap.String("alert_id", a.ID), zap.String("subject", a.Subject))
	now := e.now()
	out := e.outcome(a, "", now)
	out.Status, out.FinishedAt = StatusUnmatched, now
	return out
}

// now is truncated to milliseconds: outcomes are read by people and by tools, not by clocks.
func (e *Engine) now() time.Time { return e.opts.Now().UTC().Truncate(time.Millisecond) }

// env is what the vars and `when`s of a's playbooks read: no step has run yet.
func (e *Engine) env(a Alert) *playbook.Env {
	env := new(playbook.Env)
	e.ready(env, a)
	return env
}

// ready makes env what a's playbooks read before any step, keeping what it keeps between
// evaluations.
func (e *Engine) ready(env *playbook.Env, a Alert) {
	env.Alert, env.Subject, env.Headers, env.AlertID, env.Now = a.Body, a.Subject, a.Headers, a.ID, e.now()
	env.Steps, env.Vars = nil, nil
}

func (e *Engine) outcome(a Alert, name string, started time.Time) Outcome {
	return Outcome{
		AlertID: a.ID, Subject: a.Subject, Playbook: name, StartedAt: started,
		Worker: e.opts.Worker, Deliveries: a.Deliveries, FailedDeliveries: a.Failures, Steps: []StepOutcome{}, Simulated: e.opts.Simulated, ReplayOf: a.ReplayOf,
	}
}

// runLocked runs a playbook under its concurrency key's lease, when it has one.
func (e *Engine) runLocked(ctx context.Context, a Alert, pb *playbook.Playbook, env *playbook.Env) (Outcome, stepEnd) {
	key, err := pb.ConcurrencyKey(env)
	if err != nil || key == "" || e.opts.Locker == nil {
		if err != nil {
			now := e.now()
			out := e.outcome(a, pb.Name, now)
			out.Status, out.FinishedAt, out.Error = StatusFailed, now, err.Error()
			return out, stepEnd{}
		}
		return e.run(ctx, a, pb, env)
	}
	held, release, wait, err := e.opts.Locker.Lock(ctx, "run\x00"+pb.Name+"\x00"+key)
	if err != nil || wait > 0 {
		now := e.now()
		out := e.outcome(a, pb.Name, now)
		out.Status, out.FinishedAt = StatusFailed, now
		if err != nil {
			e.opts.Log.Warn("take the playbook's concurrency key; the alert will come back", zap.String("alert_id", a.ID),
				zap.String("playbook", pb.Name), zap.Error(err))
			out.Error = err.Error()
			return out, stepEnd{retry: true, requeue: true}
		}
		out.Error = fmt.Sprintf("another run holds concurrency key %q", key)
		return out, stepEnd{retry: true, heldBack: true, retryAfter: min(wait, maxLockWait)}
	}
	defer release()
	out, end := e.run(held, a, pb, env)
	if held.Err() != nil && ctx.Err() == nil {
		// The key's lease lapsed under us: another run may hold it now; this one comes back.
		return out, stepEnd{retry: true, heldBack: true, retryAfter: maxLockWait}
	}
	return out, end
}

// run executes one playbook's steps in order; end says whether a retryable failure stopped it.
func (e *Engine) run(ctx context.Context, a Alert, pb *playbook.Playbook, env *playbook.Env) (out Outcome, end stepEnd) {
	out = e.outcome(a, pb.Name, e.now())
	out.Status = StatusSucceeded
	log := e.opts.Log.WithLazy(zap.String("alert_id", a.ID), zap.String("playbook", pb.Name))
	stopped := false
	for _, st := range pb.Steps {
		so := StepOutcome{ID: st.ID, Action: st.Action, Status: StatusSkipped}
		observed := so.Status
		if !stopped && ctx.Err() != nil {
			// Shut down between steps: no new vendor call; the run comes back whole.
			out.Status, stopped, end.retry = StatusFailed, true, true
		}
		if !stopped {
			var se stepEnd
			so, se = e.step(ctx, a, pb, st, env, log)
			observed = so.Status
			if se.reused {
				observed = StatusReused
			}
			if se.park {
				// Waiting for people: the run resumes from here when they decide.
				log.Info("run waits at an approval gate", zap.String("step", st.ID))
				return out, stepEnd{park: true}
			}
			if so.Status == StatusFailed || so.Status == StatusDenied {
				out.Status = StatusFailed
				switch {
				case se.retry && ctx.Err() != nil:
					// Shutdown, not the vendor, cut the step short: whatever on_error says,
					// this run is not finished and its outcome must not be published.
					stopped, end.retry = true, true
				case se.denied:
					stopped = true
				case se.retry && (se.heldBack || se.requeue):
					// The vendor is being left alone, or another delivery has the step: whatever
					// on_error says, the step has not had its chance yet; the run waits.
					stopped, end = true, se
				case st.OnError != playbook.OnErrorContinue:
					stopped, end.retry = true, end.retry || se.retry
					if se.retry {
						end.retryAfter = max(end.retryAfter, se.retryAfter)
					}
				}
			}
		}
		e.opts.Observer.StepFinished(pb.Name, st.Action, observed)
		env.Steps[st.ID] = playbook.StepState{Status: so.Status, Output: so.Output, Error: so.Error}
		out.Steps = append(out.Steps, so)
	}
	if pb.Shadow && out.Status == StatusSucceeded {
		out.Status = StatusShadowed
	}
	out.FinishedAt = e.now()
	log.Info("playbook finished", zap.String("status", out.Status), zap.Bool("retry", end.retry), zap.Bool("held_back", end.heldBack))
	return out, end
}

// journalRecord is what the journal keeps of a succeeded step.
type journalRecord struct {
	Output     map[string]any `json:"output"`
	Attempts   int            `json:"attempts"`
	DurationMS int64          `json:"duration_ms"`
}

// step runs one step. retry reports a retryable failure; reused, a result taken from the journal.
// stepEnd is what a step's run tells the playbook's run, beyond the step's outcome.
type stepEnd struct {
	retry      bool          // it failed in a way a later delivery may fix
	retryAfter time.Duration // the vendor asked not to be called again before this
	reused     bool          // the journal supplied the result
	heldBack   bool          // no request reached the vendor: its breaker or bulkhead held it back
	requeue    bool          // the worker could not tell what to do (journal unreadable): try later
	park       bool          // the step waits at its approval gate
	denied     bool          // its approval gate was denied
}

func (e *Engine) step(ctx context.Context, a Alert, pb *playbook.Playbook, st *playbook.Step, env *playbook.Env, log *zap.Logger) (StepOutcome, stepEnd) {
	log = log.WithLazy(zap.String("step", st.ID), zap.String("action", st.Action))
	jid := a.JournalID
	if jid == "" {
		jid = a.ID
	}
	key := journalKey(jid, pb.Name, st.ID)
	if st.HasForEach() {
		return e.steps(ctx, a, pb, st, env, key, log)
	}
	ctx = context.WithValue(ctx, stepRefKey{}, StepRef{Playbook: pb.Name, Step: st.ID, Item: -1})
	return e.item(ctx, a, pb, st, env, nil, key, log)
}

// StepRef names the step, and the item of a foreach step, an action is run for.
type StepRef struct {
	Playbook, Step string
	Item           int // the item's index; -1 for a step without foreach
}

type stepRefKey struct{}

// StepFrom tells an action which step it runs for: tools that stand in for the vendors
// (`worker plan`, `worker test`) answer per step.
func StepFrom(ctx context.Context) (StepRef, bool) {
	ref, ok := ctx.Value(stepRefKey{}).(StepRef)
	return ref, ok
}

// steps runs a foreach step: each item on its own, journaled under its own key, a failed item
// reported with its index; on_error says whether the others run. The output is the list of
// the items' outputs, nil for those skipped or failed.
func (e *Engine) steps(ctx context.Context, a Alert, pb *playbook.Playbook, st *playbook.Step, env *playbook.Env, key string, log *zap.Logger) (StepOutcome, stepEnd) {
	so := StepOutcome{ID: st.ID, Action: st.Action}
	items, err := st.Items(env)
	if err != nil {
		so.Status, so.Error = StatusFailed, err.Error()
		return so, stepEnd{}
	}
	outputs := make([]any, len(items))
	var errs []string
	var end stepEnd
	realRetry := false // an item failed at its vendor, not only held back
	ran, replayed := 0, len(items) > 0
	var denied []string // items whose approval was denied
	for i, item := range items {
		ilog := log.With(zap.Int("item", i))
		ictx := context.WithValue(ctx, stepRefKey{}, StepRef{Playbook: pb.Name, Step: st.ID, Item: i})
		io, ie := e.item(ictx, a, pb, st, env, item, fmt.Sprintf("%s#%d", key, i), ilog)
		if ie.park {
			// This item waits for people; the items after it wait with it.
			return io, ie
		}
		so.Attempts += io.Attempts
		so.DurationMS += io.DurationMS
		outputs[i] = io.Output
		if io.Status == StatusSkipped {
			continue
		}
		ran++
		replayed = replayed && io.Replayed
		if io.Status == StatusDenied {
			denied = append(denied, fmt.Sprintf("item %d: %s", i, io.Error))
			if st.OnError != playbook.OnErrorContinue {
				break
			}
			continue
		}
		if io.Status == StatusFailed {
			errs = append(errs, fmt.Sprintf("item %d: %s", i, io.Error))
			outputs[i] = nil
			if ie.retry {
				end.retry = true
				end.retryAfter = max(end.retryAfter, ie.retryAfter)
				end.requeue = end.requeue || ie.requeue
				realRetry = realRetry || !(ie.heldBack || ie.requeue)
				end.heldBack = ie.heldBack && !realRetry
			}
			if st.OnError != playbook.OnErrorContinue || ie.heldBack || ie.requeue || ctx.Err() != nil {
				break
			}
		}
	}
	so.Output = outputs
	switch {
	case len(denied) > 0 && len(errs) == 0:
		so.Status, so.Error = StatusDenied, strings.Join(denied, "; ")
		end.denied = true
	case len(errs) > 0:
		errs = append(errs, denied...)
		so.Status, so.Error = StatusFailed, strings.Join(errs, "; ")
	case ran == 0:
		so.Status = StatusSkipped
	default:
		so.Status = StatusSucceeded
		so.Replayed = replayed
	}
	return so, end
}

// item runs a step once (for one item of a foreach, or the step itself when item is nil): its
// `if`, its claim, then its vendor call or its journaled result.
func (e *Engine) item(ctx context.Context, a Alert, pb *playbook.Playbook, st *playbook.Step, env *playbook.Env, item any, key string, log *zap.Logger) (StepOutcome, stepEnd) {
	so := StepOutcome{ID: st.ID, Action: st.Action}
	run, err := st.ShouldRunItem(env, item)
	if err != nil {
		so.Status, so.Error = StatusFailed, err.Error()
		return so, stepEnd{}
	}
	if !run {
		so.Status = StatusSkipped
		return so, stepEnd{}
	}
	if st.Approval == nil || pb.Shadow {
		return e.itemRun(ctx, pb, st, env, item, key, log)
	}
	info, end, err := e.gate(ctx, a, pb, st, env, item, key, log)
	so.Approval = info
	switch {
	case err != nil:
		so.Status, so.Error = StatusFailed, err.Error()
		return so, end
	case end.park:
		return so, end
	case info.Decision != playbook.Approve:
		so.Status, so.Error = StatusDenied, fmt.Sprintf("denied by %s: %s", strings.Join(info.By, ", "), info.Reason)
		return so, stepEnd{denied: true}
	}
	so, end = e.itemRun(ctx, pb, st, env, item, key, log)
	so.Approval = info
	return so, end
}

// gate asks for the decision on a step's approval gate, or reads it: nil info with end.park
// while people have not decided; an error when the gate cannot be asked (end says whether a
// later delivery may do better).
func (e *Engine) gate(ctx context.Context, a Alert, pb *playbook.Playbook, st *playbook.Step, env *playbook.Env, item any, key string, log *zap.Logger) (*ApprovalInfo, stepEnd, error) {
	if e.opts.Approvals == nil {
		return nil, stepEnd{}, fmt.Errorf("step %q needs an approval, and this worker keeps no approvals", st.ID)
	}
	prompt, err := st.RenderPrompt(env, item)
	if err != nil {
		return nil, stepEnd{}, err
	}
	in, err := st.RenderItem(env, item)
	if err != nil {
		return nil, stepEnd{}, err
	}
	// The gate's id follows from the step's journal key, so every delivery of the alert, and
	// the resumed run, finds the same gate.
	sum := sha256.Sum256([]byte(key))
	g := Gate{
		ID: hex.EncodeToString(sum[:12]), AlertID: a.ID, JournalID: a.JournalID, Subject: a.Subject,
		Headers: a.Headers, Body: a.Body, Playbook: pb.Name, Step: st.ID, Prompt: prompt, Inputs: in,
		Approvers: st.Approval.Approvers, Timeout: st.Approval.Timeout, OnTimeout: st.Approval.OnTimeout,
	}
	if g.JournalID == "" {
		g.JournalID = a.ID
	}
	info, err := e.opts.Approvals.Gate(ctx, g)
	if err != nil {
		log.Warn("reach the step's approval gate; the alert will come back", zap.Error(err))
		return nil, stepEnd{retry: true, requeue: true}, fmt.Errorf("step %q approval: %w", st.ID, err)
	}
	if info == nil {
		log.Info("step waits for approval", zap.String("approval_id", g.ID))
		return nil, stepEnd{park: true}, nil
	}
	log.Info("step's approval decided", zap.String("approval_id", g.ID), zap.String("decision", info.Decision), zap.Strings("by", info.By))
	return info, stepEnd{}, nil
}

// itemRun runs a step, or one item of it, that is not waiting for anyone.
func (e *Engine) itemRun(ctx context.Context, pb *playbook.Playbook, st *playbook.Step, env *playbook.Env, item any, key string, log *zap.Logger) (StepOutcome, stepEnd) {
	so := StepOutcome{ID: st.ID, Action: st.Action}
	if pb.Shadow {
		// What the step would send, and no more: no claim, no journal, no vendor.
		in, err := st.RenderItem(env, item)
		if err != nil {
			so.Status, so.Error = StatusFailed, err.Error()
			return so, stepEnd{}
		}
		so.Status, so.Output = StatusShadowed, map[string]any(in)
		return so, stepEnd{}
	}
	if e.opts.Locker != nil {
		return e.claimStep(ctx, st, env, item, key, log)
	}
	return e.claimedStep(ctx, st, env, item, key, log)
}

// claimStep runs a step (or one item of it) under a claim that shares its key with the step's
// journal record (Locker.ClaimStep).
func (e *Engine) claimStep(ctx context.Context, st *playbook.Step, env *playbook.Env, item any, key string, log *zap.Logger) (StepOutcome, stepEnd) {
	so := StepOutcome{ID: st.ID, Action: st.Action}
	var rec journalRecord
	held, record, release, recorded, wait, err := e.opts.Locker.ClaimStep(ctx, key, func(b []byte) (ok bool) {
		rec, ok = decodeRecord(b, log)
		return ok
	})
	switch {
	case err != nil:
		// Running the step blind could repeat a vendor call that already succeeded.
		log.Warn("claim the step; the alert will come back", zap.Error(err))
		so.Status, so.Error = StatusFailed, err.Error()
		return so, stepEnd{retry: true, requeue: true}
	case recorded:
		return reused(so, rec), stepEnd{reused: true}
	case wait > 0:
		log.Info("another delivery of this alert is running this step; waiting for it", zap.Duration("wait", wait))
		so.Status, so.Error = StatusFailed, "another delivery of this alert is running this step"
		return so, stepEnd{retry: true, heldBack: true, retryAfter: min(wait, maxLockWait)}
	}
	defer release()
	so, end, done := e.runStep(held, st, env, item, log)
	if done != nil {
		e.remember(held, record, *done, log)
	}
	if held.Err() != nil && ctx.Err() == nil && so.Status == StatusFailed {
		log.Warn("lost the step's claim while running it; handing the alert back")
		return so, stepEnd{retry: true, heldBack: true, retryAfter: maxLockWait}
	}
	return so, end
}

// reused is so as the journal's record of an earlier delivery left it.
func reused(so StepOutcome, rec journalRecord) StepOutcome {
	so.Status, so.Output, so.Attempts, so.DurationMS = StatusSucceeded, rec.Output, rec.Attempts, rec.DurationMS
	so.Replayed = true
	return so
}

// claimedStep runs a step (or one item of it) without claims (no Locker: tests, one process),
// journaled through the Journal.
func (e *Engine) claimedStep(ctx context.Context, st *playbook.Step, env *playbook.Env, item any, key string, log *zap.Logger) (StepOutcome, stepEnd) {
	so := StepOutcome{ID: st.ID, Action: st.Action}
	rec, ok, err := e.recall(ctx, key, log)
	if err != nil {
		// Running the step blind could repeat a vendor call that already succeeded.
		log.Warn("step journal unreadable; the alert will come back", zap.Error(err))
		so.Status, so.Error = StatusFailed, err.Error()
		return so, stepEnd{retry: true, requeue: true}
	}
	if ok {
		return reused(so, rec), stepEnd{reused: true}
	}
	so, end, done := e.runStep(ctx, st, env, item, log)
	if done != nil && e.journal != nil {
		e.remember(ctx, func(ctx context.Context, b []byte) error { return e.journal.Put(ctx, key, b) }, *done, log)
	}
	return so, end
}

// runStep renders a step's inputs and calls its vendor; rec is what the journal should keep of
// it when it succeeded.
func (e *Engine) runStep(ctx context.Context, st *playbook.Step, env *playbook.Env, item any, log *zap.Logger) (StepOutcome, stepEnd, *journalRecord) {
	so := StepOutcome{ID: st.ID, Action: st.Action}
	fail := func(err error) (StepOutcome, stepEnd, *journalRecord) {
		so.Status, so.Error = StatusFailed, err.Error()
		return so, stepEnd{}, nil
	}
	in, err := st.RenderItem(env, item)
	if err != nil {
		return fail(err)
	}
	act, ok := e.registry.Lookup(st.Action)
	if !ok { // the loader checked every action, so this is a wiring bug
		return fail(fmt.Errorf("step %q: action %q is not registered", st.ID, st.Action))
	}
	began := e.opts.Now()
	var r actions.Result
	if st.Batch != nil {
		// One call with the same action's steps of other alerts; this step's share of it comes
		// back as its own result, and the journal and claim below treat it as any other.
		r = e.opts.Batcher.Run(ctx, log, act, in, st.Retry, *st.Batch)
	} else {
		r = e.dispatch.RunLogged(ctx, log, act, in, st.Retry)
	}
	so.Attempts, so.DurationMS = r.Attempts, e.opts.Now().Sub(began).Milliseconds()
	if r.Err != nil {
		so.Status, so.Error = StatusFailed, r.Err.Error()
		if r.Output != nil {
			// Which targets the vendor acted on and which it refused.
			jsonval.Normalize(r.Output)
			so.Output = r.Output
		}
		log.Warn("step failed", zap.Int("attempts", r.Attempts), zap.Bool("retryable", r.Retryable), zap.Error(r.Err))
		return so, stepEnd{retry: r.Retryable, retryAfter: r.RetryAfter, heldBack: r.HeldBack}, nil
	}
	// Clients decode with UseNumber to keep ids exact; expressions need real numbers, the
	// same ones a journal replay will give.
	jsonval.Normalize(r.Output)
	so.Status, so.Output = StatusSucceeded, r.Output
	log.Info("step succeeded", zap.Int("attempts", r.Attempts), zap.Int64("duration_ms", so.DurationMS), zap.Int("batch", r.Batch))
	return so, stepEnd{}, &journalRecord{Output: r.Output, Attempts: r.Attempts, DurationMS: so.DurationMS}
}

func (e *Engine) recall(ctx context.Context, key string, log *zap.Logger) (journalRecord, bool, error) {
	if e.journal == nil {
		return journalRecord{}, false, nil
	}
	b, ok, err := e.journal.Get(ctx, key)
	if err != nil {
		return journalRecord{}, false, err
	}
	if !ok {
		return journalRecord{}, false, nil
	}
	rec, ok := decodeRecord(b, log)
	return rec, ok, nil
}

// decodeRecord reads a journal record; ok is false for one that does not read, which was
// written by us: no later delivery will read it better, so the step runs again.
func decodeRecord(b []byte, log *zap.Logger) (rec journalRecord, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&rec); err != nil {
		log.Warn("step journal record unreadable; running the step", zap.Error(err))
		return journalRecord{}, false
	}
	jsonval.Normalize(rec.Output)
	log.Info("step already succeeded on an earlier delivery; reusing its result")
	return rec, true
}

// A journal write that fails is tried again, backing off from journalRetryFirst to
// journalRetryMax, each try waiting journalTryTimeout at most (a write sent while the bucket has
// no leader is never answered), until Options.JournalWriteBudget has passed.
const (
	journalRetryFirst         = 100 * time.Millisecond
	journalRetryMax           = 2 * time.Second
	journalTryTimeout         = 2 * time.Second
	defaultJournalWriteBudget = 30 * time.Second
)

// remember writes a succeeded step's record with write (the journal's Put, or the step claim's
// record), trying again within the write budget.
func (e *Engine) remember(ctx context.Context, write func(context.Context, []byte) error, rec journalRecord, log *zap.Logger) {
	b, err := json.Marshal(rec)
	tries := 0
	if err == nil {
		// A shutdown must not stop us recording what the vendor already did, and a leader
		// election must not make a redelivery repeat it. Tried for as long as the step's claim
		// keeps other deliveries off the step, and no longer: shutdown waits a bounded time.
		budget, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.JournalWriteBudget)
		defer cancel()
		for wait := journalRetryFirst; ; wait = min(wait*2, journalRetryMax) {
			tries++
			try, cancelTry := context.WithTimeout(budget, journalTryTimeout)
			err = write(try, b)
			cancelTry()
			if err == nil || budget.Err() != nil || permanent(err) {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				continue
			case <-budget.Done():
				t.Stop()
			}
			break
		}
	}
	if err != nil {
		log.Error("step journal write failed; a redelivery may repeat this step", zap.Int("tries", tries),
			zap.Duration("budget", e.opts.JournalWriteBudget), zap.Error(err))
	} else if tries > 1 {
		log.Info("step journal written after retries", zap.Int("tries", tries))
	}
}

// journalKey hashes the identity of a step run: alert ids are producer-chosen and may hold
// characters a key-value key cannot.
func journalKey(alertID, pb, step string) string {
	h := sha256.New()
	for _, part := range []string{alertID, pb, step} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
