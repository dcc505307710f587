package actions

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// RetryPolicy is one step's retry budget (the playbook's `retry:`).
type RetryPolicy struct {
	MaxAttempts     int           // attempts in all, including the first; at least 1
	InitialInterval time.Duration // wait before the second attempt
	MaxInterval     time.Duration // cap on any single wait
	AttemptTimeout  time.Duration // deadline for one attempt; 0 means none
}

// DefaultRetryPolicy applies where a step sets no `retry:`. A function, not a variable, so no
// caller can change it under everyone else.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		MaxAttempts:     4,
		InitialInterval: 500 * time.Millisecond,
		MaxInterval:     30 * time.Second,
		AttemptTimeout:  30 * time.Second,
	}
}

// Result is what one step's dispatch came to.
type Result struct {
	Output   Output // on failure, what the vendor did do (PartialError), if anything
	Attempts int
	Err      error // nil on success; the last vendor error otherwise, never a bare context error
	// Retryable is set when Err is a retryable failure whose budget ran out (or whose run was
	// cut short by shutdown): the alert should be redelivered later rather than given up.
	Retryable bool
	// RetryAfter is how long the vendor asked to be left alone in its last answer
	// (Retry-After), when that answer ended the retries, or when the vendor's breaker will next
	// let a call through.
	RetryAfter time.Duration
	// HeldBack says no request reached the vendor at all: its breaker was open or its bulkhead
	// full. The alert should wait for the vendor, but this was no vendor failure.
	HeldBack bool
	// Batch is how many steps the vendor call that decided this one served (Batcher); 0 for a
	// step that ran alone.
	Batch int
}

// How one attempt ended, as Observer.ActionAttempted reports it.
const (
	AttemptOK        = "ok"
	AttemptRetryable = "retryable"
	AttemptPermanent = "permanent"
)

// Observer hears each attempt and each whole dispatch; the worker's metrics implement it.
// Methods are called from many goroutines at once.
type Observer interface {
	// ActionAttempted reports one call of the action: AttemptOK, AttemptRetryable or
	// AttemptPermanent, and for a failure its reason (ReasonOf; "" for AttemptOK).
	ActionAttempted(action, result, reason string)
	// ActionFinished reports one Run: every attempt and the waits between them.
	ActionFinished(action string, took time.Duration)
	// BreakerChanged reports a vendor's circuit breaker moving between BreakerClosed,
	// BreakerHalfOpen and BreakerOpen.
	BreakerChanged(vendor, from, to string)
}

type nopObserver struct{}

func (nopObserver) ActionAttempted(string, string, string) {}
func (nopObserver) ActionFinished(string, time.Duration)   {}
func (nopObserver) BreakerChanged(string, string, string)  {}

// Dispatcher runs actions with retries. It alone decides whether and when to try again.
type Dispatcher struct {
	log    *zap.Logger
	jitter func() float64 // in [0,1); injectable so tests are repeatable
	timer  backoff.Timer  // nil: real time
	obs    Observer
	limits map[string]*rate.Limiter // by vendor; absent: no limit
	guards map[string]*guard        // by vendor; absent: none
	guardS map[string]GuardSettings // what WithGuard asked for, built by NewDispatcher
	now    func() time.Time
}

// DispatcherOption adjusts a Dispatcher.
type DispatcherOption func(*Dispatcher)

// WithJitterSource replaces the random source of the backoff jitter.
func WithJitterSource(f func() float64) DispatcherOption { return func(d *Dispatcher) { d.jitter = f } }

// WithObserver makes o hear every attempt and dispatch. nil means none.
func WithObserver(o Observer) DispatcherOption {
	return func(d *Dispatcher) {
		if o != nil {
			d.obs = o
		}
	}
}

// WithRateLimit caps the requests of one vendor's actions, all steps and alerts of the process
// together, at perSecond; 0 or less means no limit. Every request counts: the first of each
// attempt is waited for before the attempt starts (the wait is not an attempt and does not run
// down its timeout), and any further one (a renewed token, the next page) through Pace.
func WithRateLimit(vendor string, perSecond float64) DispatcherOption {
	return func(d *Dispatcher) {
		if perSecond <= 0 {
			delete(d.limits, vendor)
			return
		}
		// A burst of one: requests leave evenly spaced, so a vendor that counts per second
		// never sees more than the limit bunched together.
		d.limits[vendor] = rate.NewLimiter(rate.Limit(perSecond), 1)
	}
}

// WithGuard gives a vendor a circuit breaker and a bulkhead (see GuardSettings), shared by every
// step of the process.
func WithGuard(vendor string, s GuardSettings) DispatcherOption {
	return func(d *Dispatcher) { d.guardS[vendor] = s }
}

// WithClock replaces the clock the breakers read; tests step it.
func WithClock(now func() time.Time) DispatcherOption {
	return func(d *Dispatcher) { d.now = now }
}

// NewDispatcher returns a dispatcher that logs each retry to log.
func NewDispatcher(log *zap.Logger, opts ...DispatcherOption) *Dispatcher {
	d := &Dispatcher{log: log, jitter: rand.Float64, obs: nopObserver{}, limits: map[string]*rate.Limiter{},
		guards: map[string]*guard{}, guardS: map[string]GuardSettings{}, now: time.Now}
	for _, o := range opts {
		o(d)
	}
	for vendor, s := range d.guardS {
		d.guards[vendor] = newGuard(vendor, s, d.now, d.breakerChanged)
	}
	return d
}

func (d *Dispatcher) breakerChanged(vendor, from, to string) {
	log := d.log.Info
	if to == BreakerOpen {
		log = d.log.Warn
	}
	log("vendor circuit breaker", zap.String("vendor", vendor), zap.String("from", from), zap.String("to", to))
	d.obs.BreakerChanged(vendor, from, to)
}

// BreakerState is the state of a vendor's breaker, BreakerClosed when it has none.
func (d *Dispatcher) BreakerState(vendor string) string {
	if g := d.guards[vendor]; g != nil {
		return g.State()
	}
	return BreakerClosed
}

// Run calls a with in until it succeeds, fails permanently, exhausts p, or ctx ends.
func (d *Dispatcher) Run(ctx context.Context, a Action, in Inputs, p RetryPolicy) Result {
	return d.RunLogged(ctx, d.log.With(zap.String("action", a.Spec().Name)), a, in, p)
}

// RunLogged is Run logging each retry to log, which names the alert, playbook, step and action
// the call is for.
func (d *Dispatcher) RunLogged(ctx context.Context, log *zap.Logger, a Action, in Inputs, p RetryPolicy) Result {
	spec := a.Spec()
	began := time.Now()
	defer func() { d.obs.ActionFinished(spec.Name, time.Since(began)) }()
	in, err := spec.Check(in)
	if err != nil {
		return Result{Err: err} // no call was made
	}
	p = p.normalised()
	lim := d.limits[spec.Vendor]
	grd := d.guards[spec.Vendor]

	var (
		res     Result
		lastErr error
	)
	bo := &stepBackOff{policy: p, jitter: d.jitter}
	op := func() error {
		var admitted *call
		if grd != nil {
			var held *HeldBackError
			if admitted, held = grd.admit(); held != nil {
				// No request: the alert goes back to the queue until the vendor is tried again,
				// rather than holding a slot for it.
				if lastErr == nil {
					res.HeldBack = true
				}
				lastErr = held
				return backoff.Permanent(held)
			}
		}
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				// Shutdown while waiting for the vendor's turn: no attempt was made.
				if admitted != nil {
					admitted.end(context.Canceled)
				}
				if lastErr == nil {
					lastErr = fmt.Errorf("%s: waiting for the %s rate limit: %w", spec.Name, spec.Vendor, err)
				}
				return backoff.Permanent(err)
			}
		}
		res.Attempts++
		actx, cancel := ctx, context.CancelFunc(func() {})
		if p.AttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, p.AttemptTimeout)
		}
		if lim != nil {
			actx = context.WithValue(actx, pacerKey{}, &pacer{lim: lim, prepaid: prepaid()})
		}
		out, err := a.Run(actx, in)
		timedOut := actx.Err() != nil && ctx.Err() == nil
		cancel()
		var reopened time.Duration
		if admitted != nil {
			reopened = admitted.end(breakerVerdict(err, timedOut))
		}
		if err == nil {
			d.obs.ActionAttempted(spec.Name, AttemptOK, "")
			res.Output = out
			return nil
		}
		if timedOut && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%s: no answer within %s: %w", spec.Name, p.AttemptTimeout, err)
		}
		if ctx.Err() != nil && lastErr != nil && errors.Is(err, ctx.Err()) {
			// Shutdown cut this attempt short: what the vendor said last is the better story.
			// The alert goes back to the queue, so the attempt counts as retryable.
			d.obs.ActionAttempted(spec.Name, AttemptRetryable, ReasonCanceled)
			return backoff.Permanent(err)
		}
		var unauthorized *UnauthorizedError
		if errors.As(err, &unauthorized) {
			// The client already renewed its credentials once: they are wrong, and waiting
			// will not make them right.
			err = Permanent(err)
		}
		earlier := lastErr
		lastErr = err
		if IsPermanent(err) {
			d.obs.ActionAttempted(spec.Name, AttemptPermanent, ReasonOf(err))
			return backoff.Permanent(err)
		}
		d.obs.ActionAttempted(spec.Name, AttemptRetryable, ReasonOf(err))
		if reopened > 0 {
			// This call was the breaker's probe, and the vendor is still down: the alert was
			// only the messenger, so it waits for the next probe like those held back.
			held := &HeldBackError{Vendor: spec.Vendor, Why: "probe failed", After: reopened, Last: err}
			if earlier == nil {
				res.HeldBack = true
			}
			lastErr = held
			return backoff.Permanent(held)
		}
		var ra *RetryAfterError
		if errors.As(err, &ra) {
			bo.retryAfter = ra.After
		}
		return err
	}
	notify := func(err error, wait time.Duration) {
		log.Warn("action attempt failed, retrying",
			zap.Int("attempt", res.Attempts),
			zap.String("reason", ReasonOf(err)), zap.Duration("wait", wait), zap.Error(err))
	}
	err = backoff.RetryNotifyWithTimer(op, backoff.WithContext(bo, ctx), notify, d.timer)
	if err == nil {
		return res
	}
	if lastErr == nil {
		lastErr = err
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) && !errors.Is(lastErr, ctx.Err()) {
		res.Err = fmt.Errorf("%w (gave up: %v)", lastErr, ctx.Err())
	} else {
		res.Err = lastErr
	}
	res.Retryable = !IsPermanent(lastErr)
	var held *HeldBackError
	if errors.As(lastErr, &held) {
		res.RetryAfter = held.After
	}
	var partial *PartialError
	if errors.As(lastErr, &partial) {
		res.Output = partial.Output
	}
	var ra *RetryAfterError
	if res.Retryable && errors.As(lastErr, &ra) && held == nil {
		res.RetryAfter = ra.After
	}
	return res
}

func (p RetryPolicy) normalised() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts < 1 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.InitialInterval <= 0 {
		p.InitialInterval = d.InitialInterval
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = d.MaxInterval
	}
	if p.MaxInterval < p.InitialInterval {
		p.MaxInterval = p.InitialInterval
	}
	return p
}

// stepBackOff is exponential backoff with full jitter over the upper half of each interval, a
// bounded number of retries, and a floor set by the vendor's Retry-After.
type stepBackOff struct {
	policy     RetryPolicy
	jitter     func() float64
	retries    int
	retryAfter time.Duration
}

func (b *stepBackOff) NextBackOff() time.Duration {
	if b.retries+1 >= b.policy.MaxAttempts {
		return backoff.Stop
	}
	interval := b.policy.InitialInterval
	for i := 0; i < b.retries && interval < b.policy.MaxInterval; i++ {
		interval *= 2
	}
	interval = min(interval, b.policy.MaxInterval)
	b.retries++
	// Half fixed, half random: replicas hammering one vendor spread out, yet waits stay growing.
	wait := interval/2 + time.Duration(b.jitter()*float64(interval/2))
	if b.retryAfter > b.policy.MaxInterval {
		// The vendor wants longer than this step may wait in place: give the alert back to
		// the queue, which redelivers it later, instead of holding a slot for that long.
		return backoff.Stop
	}
	if b.retryAfter > wait {
		wait = b.retryAfter
	}
	b.retryAfter = 0
	return wait
}

func (b *stepBackOff) Reset() { b.retries, b.retryAfter = 0, 0 }

type pacerKey struct{}

// pacer is one attempt's share of its vendor's rate limit; the dispatcher already waited for
// the attempt's first request.
type pacer struct {
	lim     *rate.Limiter
	prepaid *atomic.Bool
}

func prepaid() *atomic.Bool {
	b := new(atomic.Bool)
	b.Store(true)
	return b
}

// Pace waits until the vendor's rate limit lets one more request go, or ctx ends. Vendor
// clients call it before every HTTP request; outside a dispatched attempt, or for a vendor
// without a limit, it returns at once.
func Pace(ctx context.Context) error {
	p, _ := ctx.Value(pacerKey{}).(*pacer)
	if p == nil || p.prepaid.CompareAndSwap(true, false) {
		return nil
	}
	return p.lim.Wait(ctx)
}

// breakerVerdict is how an attempt counts for the vendor's breaker: an attempt cut short by
// shutdown says nothing about the vendor; one that ran out of time is a failure.
func breakerVerdict(err error, timedOut bool) error {
	var unauthorized *UnauthorizedError
	switch {
	case err == nil:
		return nil
	case timedOut:
		return err
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.As(err, &unauthorized):
		return Permanent(err) // the vendor answered; the credentials are the problem
	}
	return err
}
