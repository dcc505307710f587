package actions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.uber.org/zap"
)

// BatchPolicy is a step's `batch:`: how many targets one call may carry, and how long a call
// waits for more once its first step has joined.
type BatchPolicy struct {
	MaxSize int           // targets (items of the action's Batch.Input) in one call, at least 2
	MaxWait time.Duration // from the first step's arrival to the call leaving, at most
}

// Batcher coalesces the steps of concurrent alerts that run one batchable action (Spec.Batch)
// into shared vendor calls. Steps share a call when they agree on every input but the targets
// (after Spec.Check, so `md5` and 2 agree), on their retry policy and on their batch policy. A
// call leaves when it holds MaxSize targets or when its first step has waited MaxWait, and goes
// through the Dispatcher as a step's call would: rate limit, breaker and bulkhead, retries. Each
// step then gets its own part of the result from Batch.Share.
//
// A call refused as a whole (a 4xx other than auth, JSON-RPC invalid params) is split in halves,
// each sent again, down to single steps, so that a target the vendor refuses fails only its own
// step: at worst twice the calls the steps would have made alone. A target refused on its own
// (HEC's per-entity verdicts) fails only its step, without the call being sent again for it. A
// step whose context ends stops waiting for the call; the call goes on for the others, and is
// cancelled only when no step waits for it any more.
type Batcher struct {
	d     *Dispatcher
	log   *zap.Logger
	obs   BatchObserver
	after func(d time.Duration, f func()) (stop func() bool)

	mu      sync.Mutex
	open    map[string]*batch // filling, by what its steps agree on
	waiting int               // steps in open batches
}

// BatcherOption adjusts a Batcher.
type BatcherOption func(*Batcher)

// WithTimers replaces the timers that end a batch's MaxWait: after calls f once d has passed,
// unless stop is called first. Tests pass testkit's Clock.AfterFunc.
func WithTimers(after func(d time.Duration, f func()) (stop func() bool)) BatcherOption {
	return func(b *Batcher) { b.after = after }
}

// BatchObserver hears each vendor call a Batcher makes; the worker's metrics implement it.
// Called from many goroutines at once.
type BatchObserver interface {
	// BatchCalled reports one call of action for steps steps (alerts) carrying targets
	// targets; a call refused as a whole and sent again in halves reports each half too.
	BatchCalled(action string, steps, targets int)
}

type nopBatchObserver struct{}

func (nopBatchObserver) BatchCalled(string, int, int) {}

// WithBatchObserver makes o hear every batched call. nil means none.
func WithBatchObserver(o BatchObserver) BatcherOption {
	return func(b *Batcher) {
		if o != nil {
			b.obs = o
		}
	}
}

// NewBatcher returns a Batcher whose calls go through d, logging to log.
func NewBatcher(d *Dispatcher, log *zap.Logger, opts ...BatcherOption) *Batcher {
	b := &Batcher{d: d, log: log, obs: nopBatchObserver{}, open: map[string]*batch{},
		after: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Waiting is how many steps wait for their batch to leave.
func (b *Batcher) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// batch is one call being filled, then sent.
type batch struct {
	key     string
	action  Action
	base    Inputs // the steps' checked inputs, less the targets
	policy  RetryPolicy
	limit   int
	log     *zap.Logger
	members []*member
	targets map[string]int // target → how many of the members send it
	stop    func() bool    // stops the MaxWait timer
	sent    bool
	live    int                // once sent: members still waiting for the answer
	cancel  context.CancelFunc // once sent: ends the call
}

// member is one step in a batch.
type member struct {
	targets []string // the step's own, as it sent them
	done    chan struct{}
	res     Result
}

// Run is Dispatcher.RunLogged for a step with `batch:`: it waits, up to bp.MaxWait, for the same
// action's steps of other alerts, and returns this step's part of their shared call. The
// result's Batch says how many steps the call served. An action that cannot batch, or inputs
// that fail their checks, run alone.
func (b *Batcher) Run(ctx context.Context, log *zap.Logger, a Action, in Inputs, p RetryPolicy, bp BatchPolicy) Result {
	spec := a.Spec()
	if spec.Batch == nil || bp.MaxSize < 2 || bp.MaxWait <= 0 || ctx.Err() != nil {
		return b.d.RunLogged(ctx, log, a, in, p)
	}
	checked, err := spec.Check(in)
	if err != nil {
		return b.d.RunLogged(ctx, log, a, in, p) // which reports the bad inputs, calling no one
	}
	targets := checked.StringList(spec.Batch.Input)
	base := maps.Clone(checked)
	delete(base, spec.Batch.Input)
	key, err := json.Marshal(base) // map keys sorted: equal inputs, equal keys
	if len(targets) == 0 || err != nil {
		return b.d.RunLogged(ctx, log, a, in, p)
	}
	limit := bp.MaxSize
	if decl, _ := spec.Input(spec.Batch.Input); decl.MaxItems > 0 {
		limit = min(limit, decl.MaxItems)
	}
	m := &member{targets: targets, done: make(chan struct{})}
	g := b.join(fmt.Sprintf("%s\x00%s\x00%v\x00%v", spec.Name, key, p, bp), a, base, p, bp, limit, m)
	select {
	case <-m.done:
		return m.res
	case <-ctx.Done():
	}
	sent := b.leave(g, m)
	select {
	case <-m.done: // the answer came all the same
		return m.res
	default:
	}
	where := "waited for other alerts"
	if sent {
		where = "was at the vendor"
	}
	log.Info("step cut short in its batch", zap.Bool("call_sent", sent), zap.Error(context.Cause(ctx)))
	return Result{Retryable: true, Err: fmt.Errorf("%s: the step was cut short while its batched call %s: %w", spec.Name, where, context.Cause(ctx))}
}

// join puts m in the open batch under key, or in a new one; it sends the batch when m fills it.
func (b *Batcher) join(key string, a Action, base Inputs, p RetryPolicy, bp BatchPolicy, limit int, m *member) *batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.open[key]
	if g != nil && len(g.targets)+g.fresh(m.targets) > limit {
		b.sendLocked(g) // full: it leaves as it is, and m starts the next
		g = nil
	}
	if g == nil {
		g = &batch{key: key, action: a, base: base, policy: p, limit: limit, targets: map[string]int{},
			log: b.log.With(zap.String("action", a.Spec().Name))}
		b.open[key] = g
		g.stop = b.after(bp.MaxWait, func() { b.expire(g) })
	}
	g.members = append(g.members, m)
	for _, t := range m.targets {
		g.targets[t]++
	}
	b.waiting++
	if len(g.targets) >= limit {
		b.sendLocked(g)
	}
	return g
}

// fresh is how many of targets the batch does not carry yet.
func (g *batch) fresh(targets []string) int {
	n := 0
	seen := map[string]bool{}
	for _, t := range targets {
		if g.targets[t] == 0 && !seen[t] {
			seen[t] = true
			n++
		}
	}
	return n
}

// expire sends a batch whose MaxWait is over.
func (b *Batcher) expire(g *batch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !g.sent && len(g.members) > 0 {
		b.sendLocked(g)
	}
}

// leave takes m out of g, whose step's context ended: out of the call if it has not left yet,
// else out of those waiting for its answer, cancelling the call when m was the last. It reports
// whether the call had left.
func (b *Batcher) leave(g *batch, m *member) (sent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if g.sent {
		if g.live--; g.live == 0 {
			g.cancel()
		}
		return true
	}
	for i, o := range g.members {
		if o == m {
			g.members = append(g.members[:i:i], g.members[i+1:]...)
			b.waiting--
			break
		}
	}
	for _, t := range m.targets {
		if g.targets[t]--; g.targets[t] <= 0 {
			delete(g.targets, t)
		}
	}
	if len(g.members) == 0 {
		g.stop()
		if b.open[g.key] == g {
			delete(b.open, g.key)
		}
	}
	return false
}

// sendLocked closes g to new steps and sends its call; b.mu is held.
func (b *Batcher) sendLocked(g *batch) {
	if b.open[g.key] == g {
		delete(b.open, g.key)
	}
	g.stop()
	g.sent = true
	g.live = len(g.members)
	b.waiting -= len(g.members)
	// The call belongs to no one step: one alert's shutdown or lost claim must not end the
	// others' call. leave cancels it when nobody waits for it any more.
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	members := g.members
	go func() {
		defer cancel()
		b.call(ctx, g, members, 0)
	}()
}

// call makes one vendor call for members and gives each its share; a call refused as a whole
// is split in halves. prior is the attempts members' targets already had in refused calls.
func (b *Batcher) call(ctx context.Context, g *batch, members []*member, prior int) {
	spec := g.action.Spec()
	var targets []string
	seen := map[string]bool{}
	for _, m := range members {
		for _, t := range m.targets {
			if !seen[t] {
				seen[t] = true
				targets = append(targets, t)
			}
		}
	}
	in := maps.Clone(g.base)
	in[spec.Batch.Input] = targets
	var act Action = g.action
	if len(members) > 1 {
		act = eachJudged{g.action}
	}
	log := g.log.With(zap.Int("batch_steps", len(members)), zap.Int("batch_targets", len(targets)))
	b.obs.BatchCalled(spec.Name, len(members), len(targets))
	r := b.d.RunLogged(ctx, log, act, in, g.policy)
	if len(members) > 1 && refusedWhole(r) {
		log.Info("vendor refused a batched call as a whole; sending it again in halves to find the target it refuses", zap.Error(r.Err))
		var wg sync.WaitGroup
		for _, part := range [][]*member{members[:len(members)/2], members[len(members)/2:]} {
			wg.Go(func() { b.call(ctx, g, part, prior+r.Attempts) })
		}
		wg.Wait()
		return
	}
	log.Debug("batched call done", zap.Int("attempts", r.Attempts), zap.Error(r.Err))
	for _, m := range members {
		m.res = share(spec, r, m.targets, len(members), prior)
		close(m.done)
	}
}

// share is one step's result of a call that served steps steps.
func share(spec Spec, r Result, targets []string, steps, prior int) Result {
	callErr, retryable := r.Err, r.Retryable
	var each *eachRefused
	if errors.As(callErr, &each) {
		callErr, retryable = each.err, !IsPermanent(each.err)
	}
	out, err := spec.Batch.Share(r.Output, callErr, targets)
	res := Result{Output: out, Attempts: prior + r.Attempts, Err: err, Batch: steps}
	switch {
	case err == nil:
	case callErr != nil && errors.Is(err, callErr):
		// The call's own failure: the step fails as the call did, waiting as it must.
		res.Retryable, res.RetryAfter, res.HeldBack = retryable, r.RetryAfter, r.HeldBack
	default:
		// The vendor's verdict on the step's own targets.
		res.Retryable = !IsPermanent(err)
	}
	return res
}

// refusedWhole says the vendor refused a call as a whole, for what it was sent: which of its
// targets, only sending fewer can tell. Credentials, bad inputs and a vendor that is down are
// everyone's problem, not one target's.
func refusedWhole(r Result) bool {
	var partial *PartialError
	return r.Err != nil && !r.Retryable && !r.HeldBack && !errors.As(r.Err, &partial) && ReasonOf(r.Err) == ReasonClient
}

// eachJudged is a batched call's action: when the vendor judged each target and refused some
// for now (a retryable PartialError), the dispatcher must not send the whole call again, which
// would repeat every other step's targets. The refused steps fail as retryable instead, and
// their alerts come back later.
type eachJudged struct{ Action }

func (a eachJudged) Run(ctx context.Context, in Inputs) (Output, error) {
	out, err := a.Action.Run(ctx, in)
	var partial *PartialError
	if err != nil && !IsPermanent(err) && errors.As(err, &partial) {
		return out, Permanent(&eachRefused{err: err})
	}
	return out, err
}

// eachRefused carries a retryable per-target refusal past the dispatcher's retries.
type eachRefused struct{ err error }

func (e *eachRefused) Error() string { return e.err.Error() }
func (e *eachRefused) Unwrap() error { return e.err }
